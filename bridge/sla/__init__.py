"""sla: deadlines per category, so no citizen is left waiting in silence."""
