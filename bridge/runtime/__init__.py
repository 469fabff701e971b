"""The machinery every role runs on: the broker and its workers, topology, polling, pushed
hooks, the daemon's shared context, adapters, alerts, credentials and dead letters."""
