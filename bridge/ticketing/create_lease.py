"""The create lease's names and waits, shared by a ticket's create (``bridge.ticketing.role``)
and a follow-up's linked request (``bridge.ticketing.follow_ups``): a create in flight is held
under ``create:<reference>`` (``bridge.store.leases``), which lives exactly as long as the
process holding it."""

from __future__ import annotations

from datetime import timedelta

# A delivery that finds a create held by a live process looks again this soon.
HELD_ELSEWHERE = timedelta(seconds=1)
# The detail of an attempt whose holder lived but had no answer (a timeout, a 502/504).
UNCERTAIN = "no answer: "


def create_lease_name(reference: str) -> str:
    """The lease a create of ``reference`` is held under (``bridge.store.leases``)."""
    return f"create:{reference}"
