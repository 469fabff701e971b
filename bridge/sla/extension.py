"""延期: an extension of a case's deadline, asked with a reason and a new deadline, decided by
an approver before the old deadline. An approved extension is the ticket's deadline in its
handling cycle (the SLA clock reads it), and ``sla.extended.<department>`` has the reply role
tell the citizen the new deadline. Requests and decisions are audited. The HTTP handlers are
in ``bridge/web/api.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from bridge.deadlines import deadline_for
from bridge.privacy import pii
from bridge.store.rows import CaseExtension
from schemas import routing
from schemas.messages import SlaEvent, stable_id
from schemas.states import ExtensionState
from schemas.vocab import Category, TicketStatus

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.sla")


class ExtensionRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def current_deadline(ctx: BridgeContext, department: str, ticket_id: str) -> datetime:
    """The ticket's deadline now: the latest approved extension of its cycle, else the
    department's time limit for its category."""
    store = ctx.store
    ticket = await store.get_ticket(department, ticket_id)
    if ticket is None:
        raise ExtensionRefused(409, "the case's ticket is not recorded")
    moved = (await store.approved_deadlines()).get((department, ticket_id, ticket.cycle))
    if moved is not None:
        return datetime.fromisoformat(moved).astimezone(UTC)
    inquiry = await store.get_inquiry(ticket.inquiry_id)
    category = Category((inquiry.category if inquiry else None) or "other")
    created = datetime.fromisoformat(ticket.reopened_at or ticket.created_at).astimezone(UTC)
    deadline = deadline_for(ctx.cfg.department(department), category, created)
    if deadline is None:
        raise ExtensionRefused(409, "the case has no deadline to extend")
    return deadline.astimezone(UTC)


async def request(
    ctx: BridgeContext, inquiry_id: str, new_deadline: datetime, reason: str, actor: str
) -> CaseExtension:
    """A pending request (the same new deadline asked again is the same request)."""
    store = ctx.store
    inquiry = await store.get_inquiry(inquiry_id)
    if inquiry is None:
        raise ExtensionRefused(404, "no such inquiry")
    if inquiry.ticket_id is None or inquiry.department is None:
        raise ExtensionRefused(409, "the case has no ticket yet")
    ticket = await store.get_ticket(inquiry.department, inquiry.ticket_id)
    if ticket is None:
        raise ExtensionRefused(409, "the case's ticket is not recorded")
    if TicketStatus(ticket.status).is_final:
        raise ExtensionRefused(409, f"the ticket is {ticket.status}: nothing to extend")
    old = await current_deadline(ctx, ticket.department, ticket.ticket_id)
    now = datetime.now(UTC)
    if now >= old:
        raise ExtensionRefused(409, "the deadline has passed: an extension is asked before it")
    new = new_deadline.astimezone(UTC)
    if new <= old:
        raise ExtensionRefused(400, "new_deadline must be after the current deadline")
    ext_id = stable_id(
        "ext", ticket.department, ticket.ticket_id, str(ticket.cycle), new.isoformat()
    )
    ext = await store.request_extension(
        CaseExtension(
            extension_id=ext_id,
            inquiry_id=inquiry_id,
            department=ticket.department,
            ticket_id=ticket.ticket_id,
            cycle=ticket.cycle,
            old_deadline=old.isoformat(),
            new_deadline=new.isoformat(),
            reason=pii.redact_text(reason)[:500],
            state=ExtensionState.PENDING,
            requested_by=actor,
            requested_at=now.isoformat(),
        )
    )
    if await store.record_once("case.extension_requested", ext_id):
        await store.record_audit(
            "case.extension_requested",
            actor=actor,
            inquiry_id=inquiry_id,
            subject=ext_id,
            old_deadline=ext.old_deadline,
            new_deadline=ext.new_deadline,
            reason=ext.reason[:200],
        )
    return ext


async def decide(
    ctx: BridgeContext, inquiry_id: str, extension_id: str, approve: bool, actor: str
) -> CaseExtension:
    """An approver's decision, before the old deadline; an approval moves the deadline and
    tells the citizen (``sla.extended.<department>``)."""
    store = ctx.store
    ext = await store.get_extension(extension_id)
    if ext is None or ext.inquiry_id != inquiry_id:
        raise ExtensionRefused(404, "no such extension request on this case")
    if ext.state != ExtensionState.PENDING:
        raise ExtensionRefused(409, f"the request was already decided ({ext.state})")
    if approve and datetime.now(UTC) >= datetime.fromisoformat(ext.old_deadline):
        raise ExtensionRefused(409, "the old deadline has passed: too late to approve")
    state = ExtensionState.APPROVED if approve else ExtensionState.REFUSED
    if not await store.decide_extension(extension_id, state, actor):
        raise ExtensionRefused(409, "the request was decided meanwhile")
    await store.record_audit(
        "case.extension_decided",
        actor=actor,
        inquiry_id=inquiry_id,
        subject=extension_id,
        state=state,
    )
    decided = await store.get_extension(extension_id)
    assert decided is not None
    if approve:
        inquiry = await store.get_inquiry(inquiry_id)
        event = SlaEvent(
            event="extended",
            department=ext.department,
            inquiry_id=inquiry_id,
            ticket_id=ext.ticket_id,
            deadline=datetime.fromisoformat(ext.new_deadline),
            category=Category((inquiry.category if inquiry else None) or "other"),
            actor=actor,
        )
        ctx.metrics.sla_events.labels(ext.department, "extended").inc()
        await ctx.broker.publish(routing.sla_event("extended", ext.department), event)
    log.info("extension decided", extension_id=extension_id, state=state)
    return decided
