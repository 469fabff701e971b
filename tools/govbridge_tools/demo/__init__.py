"""``govbridge demo``'s parts: its data (``data``: the citizens' script and the bridge's
config over the simulators) and its orchestration (``orchestration``: simulators, daemon,
lifecycle, report)."""
