"""sync: every status change of the departments' tickets, polled or called back."""
