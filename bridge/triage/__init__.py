"""triage: from a received inquiry to a routed ticket command: classification, personal data,
conversations, the flood limit and the official's review."""
