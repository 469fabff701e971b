"""sla: deadlines per category, so no citizen is left waiting in silence.

Every ``[sla] check_every`` the role looks at each open ticket's deadline (the department's
limit for the inquiry's category, counted in working days where configured):
- past half of the allowed time with no status news since 已受理 → a holding reply
  ("still in progress, answer by …") through the department's approval mode;
- within ``warn_before`` of the deadline → ``sla.warning.<department>``;
- past the deadline → ``sla.breached.<department>`` (and a warning log line).
Each event happens once per ticket (recorded in the store), however often the role runs and
however many processes run it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog

from bridge import pii
from bridge.runtime import Worker
from bridge.stages.common import sleep_or_stop
from bridge.stages.reply import queue_reply
from bridge.store import StoredInquiry, StoredTicket
from bridge.templates import deadline_for, format_deadline, render
from schemas import routing
from schemas.messages import ReplyRequest, SlaEvent, ThreadRef, stable_id
from schemas.vocab import Category, TicketStatus, Visibility

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.sla")


class SlaRole:
    name = "sla"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.workers: list[Worker[Any]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sla")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)

    async def _loop(self) -> None:
        every = self.ctx.cfg.sla.check_every.total_seconds()
        while not self._stop.is_set():
            try:
                await self.scan()
            except Exception as exc:
                log.exception("sla scan failed", error=repr(exc))
            if await sleep_or_stop(self._stop, every):
                return

    async def scan(self, now: datetime | None = None) -> list[SlaEvent]:
        """One pass over open tickets; returns the events emitted (each at most once)."""
        now = now or datetime.now(UTC)
        store, cfg = self.ctx.store, self.ctx.cfg
        emitted: list[SlaEvent] = []
        for ticket in await store.list_tickets():
            if TicketStatus(ticket.status).is_final:
                continue
            try:
                dept = cfg.department(ticket.department)
            except KeyError:
                continue
            inquiry = await store.get_inquiry(ticket.inquiry_id)
            if inquiry is None:
                continue
            category = Category(inquiry.category or "other")
            created = datetime.fromisoformat(ticket.created_at).astimezone(UTC)
            deadline = deadline_for(dept, category, created)
            if deadline is None:
                continue
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
                if not await store.record_once("sla", key):
                    continue
                event = SlaEvent(
                    event=kind,
                    department=dept.id,
                    inquiry_id=inquiry.inquiry_id,
                    ticket_id=ticket.ticket_id,
                    deadline=deadline,
                    category=category,
                )
                if kind == "holding_reply":
                    await self._holding_reply(inquiry, ticket, dept.id, deadline)
                elif kind == "breached":
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

    async def _holding_reply(
        self, inquiry: StoredInquiry, ticket: StoredTicket, dept_id: str, deadline: datetime
    ) -> None:
        dept = self.ctx.cfg.department(dept_id)
        text = render(
            dept,
            "holding",
            ticket_id=ticket.ticket_id,
            status=TicketStatus(ticket.status),
            deadline=format_deadline(deadline),
        )
        request = ReplyRequest(
            reply_id=stable_id("rep", inquiry.inquiry_id, "holding"),
            inquiry_id=inquiry.inquiry_id,
            platform=inquiry.platform,
            account=inquiry.account,
            department=dept.id,
            thread=ThreadRef.model_validate_json(inquiry.thread_json or ""),
            citizen_handle=inquiry.citizen_handle,
            visibility=Visibility(inquiry.visibility or ""),
            text=pii.redact_text(text, keep=[ticket.ticket_id]),
            status=None,
            ticket_id=ticket.ticket_id,
            templated=True,
        )
        await queue_reply(self.ctx, request, dept.approval)


def create(ctx: BridgeContext) -> SlaRole:
    return SlaRole(ctx)
