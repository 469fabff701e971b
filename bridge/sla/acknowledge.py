"""The holding acknowledgement: no citizen waits past the first-response limit in silence.

GB/T 33358 asks for a response to other media within 3 minutes; the 已受理 reply carries the
ticket number, so it can only go once the ticket exists. When it cannot exist in time (the
ticket system is down, a create is in doubt after a crash, ticketing holds commands for a
refused key), the citizen still hears from the bridge: every ``[sla] acknowledge_every`` the
SLA role looks for new conversations without a ticket and without any reply, and for each one
``acknowledge_at`` (half, by default) into its first-response limit (the department's
``sla.first_response``, else ``[ranking].first_response``, counted from the citizen's post) it
publishes ``sla.holding_reply.<department>`` without a ticket id. The reply role answers it
with the department's ``acknowledged`` template ("您的诉求已收到，正在登记转办，办理编号稍后
告知。"), through its approval mode and the outbox like any reply; the 已受理 with the number
follows once the ticket exists.

Once: the event is published, then marked (``once_marks``, kind ``acknowledged``), so a failed
publish is tried again at the next look; two SLA processes that publish the same one make one
reply (its reply id is stable), and an inquiry whose 已受理 is already composed gets none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from bridge.deadlines import deadline_for
from bridge.store import iso
from schemas import routing
from schemas.config import DepartmentConfig
from schemas.messages import SlaEvent
from schemas.vocab import Category

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.sla")

# once_marks kind of a published acknowledgement
MARK = "acknowledged"
# Inquiries received longer ago than this are not looked at (their time is long past).
HORIZON = timedelta(days=7)


def _utc(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


class Acknowledgements:
    """One look (``scan``) for inquiries due their holding acknowledgement."""

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx

    def _first_response(self, dept: DepartmentConfig) -> DepartmentConfig:
        """The department with its first-response limit as its only limit, so
        ``deadline_for`` counts it (working days included) as every other clock does."""
        limit = dept.sla.get("first_response", self.ctx.cfg.ranking.first_response)
        return dept.model_copy(update={"sla": {Category.OTHER.value: limit}})

    async def scan(self, now: datetime | None = None) -> list[SlaEvent]:
        """Publish the acknowledgements due; returns them."""
        cfg = self.ctx.cfg
        if not cfg.sla.acknowledge:
            return []
        now = now or datetime.now(UTC)
        store = self.ctx.store
        limits: dict[str, DepartmentConfig] = {}
        emitted: list[SlaEvent] = []
        for inquiry in await store.inquiries_awaiting_acknowledgement(
            iso(now - HORIZON), mark=MARK
        ):
            try:
                dept = cfg.department(inquiry.department or "")
            except KeyError:
                continue
            probe = limits.get(dept.id)
            if probe is None:
                probe = limits[dept.id] = self._first_response(dept)
            # The citizen's wait starts at their post (the platform's clock); a post time
            # later than the bridge's receipt (a clock ahead) counts from the receipt.
            received = _utc(inquiry.created_at)
            posted = min(received, _utc(inquiry.posted_at)) if inquiry.posted_at else received
            deadline = deadline_for(probe, Category.OTHER, posted)
            if deadline is None:
                continue
            if now < posted + (deadline - posted) * cfg.sla.acknowledge_at:
                continue
            event = SlaEvent(
                event="holding_reply",
                department=dept.id,
                inquiry_id=inquiry.inquiry_id,
                ticket_id=None,
                deadline=deadline,
                category=Category(inquiry.category or "other"),
            )
            await self.ctx.broker.publish(routing.sla_event("holding_reply", dept.id), event)
            await store.record_once(MARK, inquiry.inquiry_id)
            self.ctx.metrics.sla_events.labels(dept.id, MARK).inc()
            log.info(
                "inquiry without a ticket acknowledged",
                department=dept.id,
                waited_s=round((now - posted).total_seconds(), 1),
                state=inquiry.state,
            )
            emitted.append(event)
        return emitted
