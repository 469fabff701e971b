"""The roles of the daemon, one module each: ingest, triage, ticketing, sync, reply."""
