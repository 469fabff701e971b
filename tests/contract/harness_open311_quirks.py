"""Contract harness: the Open311 simulator in ``quirks`` mode (a plain GeoReport server as
real ones behave: paged lists, no extensions, dropped attributes, stale ``updated_datetime``,
``{"code", "detail"}`` errors) and an ``Open311TicketSystem`` with its default config."""

from __future__ import annotations

from typing import Any

from schemas.vocab import TicketStatus
from tests.contract.harness_open311 import Open311Harness


class Open311QuirksHarness(Open311Harness):
    name = "open311-quirks"
    # A plain server reports only open/closed; "closed" is what the status test moves to.
    native_in_progress = "closed"
    moved_status = TicketStatus.CLOSED

    def __init__(self, **sim_options: Any) -> None:
        super().__init__(quirks=True, **sim_options)


HARNESS = Open311QuirksHarness
