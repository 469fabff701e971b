"""The account inspection (巡检): ``inspection`` (what each account's timeline, answers and
backlog say; ``govbridge inspect`` and the console read it) and ``role`` (the ``inspect``
role: the inspection on a clock, an alert and ``account.flagged.<department>`` when an account
crosses a line)."""
