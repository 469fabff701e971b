"""What operators read about the service: one inquiry's journey and each department's
performance."""
