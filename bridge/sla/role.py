"""sla: deadlines per category, so no citizen is left waiting in silence.

Every ``[sla] check_every`` the role looks at each open ticket's deadline (the department's
limit for the inquiry's category, counted in working days where configured):
- past half of the allowed time with no status news since 已受理 →
  ``sla.holding_reply.<department>``, which the reply role answers with a holding reply
  ("still in progress, answer by …") through the department's approval mode;
- within ``warn_before`` of the deadline → ``sla.warning.<department>``;
- past the deadline → ``sla.breached.<department>`` (and a warning log line).
Each event happens once per ticket (recorded in the store), however often the role runs and
however many processes run it.

Beside it, every ``[sla] acknowledge_every``, the holding acknowledgement of inquiries still
without a ticket near their first-response limit (``bridge/sla/acknowledge.py``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import structlog

from bridge.deadlines import deadline_for
from bridge.runtime.context import sleep_or_stop
from bridge.runtime.periodic import PeriodicRole
from bridge.sla.acknowledge import Acknowledgements
from schemas import routing
from schemas.messages import SlaEvent
from schemas.vocab import FINAL_STATUSES, Category, TicketStatus

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext
    from bridge.store.rows import StoredTicket

log = structlog.get_logger("govbridge.sla")


class SlaRole(PeriodicRole):
    name = "sla"
    SCAN_PAGE = 500  # open tickets read at a time (not every ticket of the store at once)

    def __init__(self, ctx: BridgeContext) -> None:
        super().__init__(ctx)
        self.acknowledgements = Acknowledgements(ctx)
        self._ack_task: asyncio.Task[None] | None = None

    def interval(self) -> float:
        return self.ctx.cfg.sla.check_every.total_seconds()

    async def start(self) -> None:
        await super().start()
        self._ack_task = asyncio.create_task(self._acknowledge_loop(), name="sla:acknowledge")

    async def stop(self) -> None:
        await super().stop()  # sets the stop event the acknowledgement loop waits on
        if self._ack_task is not None:
            await asyncio.wait([self._ack_task], timeout=10)

    async def _acknowledge_loop(self) -> None:
        """Every ``[sla] acknowledge_every``: the holding acknowledgements due
        (``bridge/sla/acknowledge.py``). A failed look is logged; the next runs on time."""
        while not await sleep_or_stop(
            self._stop, self.ctx.cfg.sla.acknowledge_every.total_seconds()
        ):
            try:
                await self.acknowledgements.scan()
            except Exception as exc:
                log.warning("acknowledgement scan failed", error=repr(exc))

    async def scan(self, now: datetime | None = None) -> list[SlaEvent]:
        """One pass over open tickets; returns the events emitted (each at most once)."""
        now = now or datetime.now(UTC)
        store = self.ctx.store
        emitted: list[SlaEvent] = []
        extended = await store.approved_deadlines()  # 延期 approved before the old deadline
        final = sorted(FINAL_STATUSES)
        after: tuple[str, str] | None = None
        while page := await store.open_tickets_after(after, self.SCAN_PAGE, final):
            after = (page[-1][0].department, page[-1][0].ticket_id)
            for ticket, inquiry_category in page:
                emitted += await self._scan_ticket(ticket, inquiry_category, extended, now)
        return emitted

    async def _scan_ticket(
        self,
        ticket: StoredTicket,
        inquiry_category: str | None,
        extended: dict[tuple[str, str, int], str],
        now: datetime,
    ) -> list[SlaEvent]:
        """The events one open ticket is due (each recorded once)."""
        cfg = self.ctx.cfg
        emitted: list[SlaEvent] = []
        try:
            dept = cfg.department(ticket.department)
        except KeyError:
            return emitted
        category = Category(inquiry_category or "other")
        # A reopened ticket (重办) counts a new deadline from its reopening.
        created = datetime.fromisoformat(ticket.reopened_at or ticket.created_at).astimezone(UTC)
        deadline = deadline_for(dept, category, created)
        moved = extended.get((ticket.department, ticket.ticket_id, ticket.cycle))
        if moved is not None:
            deadline = datetime.fromisoformat(moved).astimezone(UTC)
        if deadline is None:
            return emitted
        allowed = (deadline - created).total_seconds()
        elapsed = (now - created).total_seconds()
        due: list[Literal["warning", "breached", "holding_reply"]] = []
        if now >= deadline:
            due.append("breached")
        elif (deadline - now) <= cfg.sla.warn_before:
            due.append("warning")
        if elapsed >= allowed / 2 and ticket.status == TicketStatus.RECEIVED.value:
            due.append("holding_reply")
        for kind in due:
            key = f"{ticket.department}:{ticket.ticket_id}:{kind}"
            if ticket.cycle:  # each handling cycle has its own clock
                key += f":cycle-{ticket.cycle}"
            if not await self.ctx.store.record_once("sla", key):
                continue
            event = SlaEvent(
                event=kind,
                department=dept.id,
                inquiry_id=ticket.inquiry_id,
                ticket_id=ticket.ticket_id,
                deadline=deadline,
                category=category,
            )
            if kind == "breached":
                log.warning(
                    "ticket past its deadline",
                    ticket_id=ticket.ticket_id,
                    department=dept.id,
                    deadline=deadline.isoformat(),
                )
            self.ctx.metrics.sla_events.labels(dept.id, kind).inc()
            await self.ctx.broker.publish(routing.sla_event(kind, dept.id), event)
            emitted.append(event)
        return emitted


def create(ctx: BridgeContext) -> SlaRole:
    return SlaRole(ctx)
