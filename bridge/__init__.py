"""govbridge runtime: config, topology, workers, stages, store, HTTP server and CLI."""

__version__ = "0.1.0"
