"""Data files shipped with the bridge (default triage rules)."""
