"""ticketing: routed inquiries become tickets in the department's own system, exactly once;
follow-ups reach the officials; commands refused for their credentials are held."""
