"""ingest: citizens' inquiries onto the bus, polled from each account or pushed to a signed hook."""
