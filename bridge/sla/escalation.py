"""督办: a supervisor escalates a case. ``sla.escalated.<department>`` goes out for the systems
that follow supervision (the bridge binds none of its own), the escalation is audited
(``case.escalated``: who, when, why), and the escalation list is read from the audit trail
(``GET /api/escalations``). Once per ticket and handling cycle: a second escalation of the
same open case is refused. The HTTP handlers are in ``bridge/web/api.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from bridge.deadlines import deadline_for
from bridge.privacy import pii
from schemas import routing
from schemas.messages import SlaEvent
from schemas.vocab import Category, TicketStatus

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.sla")


class EscalationRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def escalate(ctx: BridgeContext, inquiry_id: str, reason: str, actor: str) -> SlaEvent:
    """Escalate the case's open ticket; the event published."""
    store = ctx.store
    inquiry = await store.get_inquiry(inquiry_id)
    if inquiry is None:
        raise EscalationRefused(404, "no such inquiry")
    if inquiry.ticket_id is None or inquiry.department is None:
        raise EscalationRefused(409, "the case has no ticket to supervise yet")
    ticket = await store.get_ticket(inquiry.department, inquiry.ticket_id)
    if ticket is None:
        raise EscalationRefused(409, "the case's ticket is not recorded")
    if TicketStatus(ticket.status).is_final:
        raise EscalationRefused(409, f"the ticket is {ticket.status}: nothing to supervise")
    dept = ctx.cfg.department(ticket.department)
    category = Category(inquiry.category or "other")
    created = datetime.fromisoformat(ticket.reopened_at or ticket.created_at).astimezone(UTC)
    deadline = deadline_for(dept, category, created) or created
    key = f"{ticket.department}:{ticket.ticket_id}:cycle-{ticket.cycle}"
    if not await store.record_once("escalated", key):
        raise EscalationRefused(409, "the case is already escalated in this handling cycle")
    said = pii.redact_text(reason)
    await store.record_audit(
        "case.escalated",
        actor=actor,
        inquiry_id=inquiry_id,
        subject=f"{ticket.department}/{ticket.ticket_id}",
        department=ticket.department,
        ticket_id=ticket.ticket_id,
        cycle=ticket.cycle,
        reason=said[:200],
    )
    event = SlaEvent(
        event="escalated",
        department=ticket.department,
        inquiry_id=inquiry_id,
        ticket_id=ticket.ticket_id,
        deadline=deadline,
        category=category,
        actor=actor,
        reason=said[:200],
    )
    ctx.metrics.sla_events.labels(ticket.department, "escalated").inc()
    await ctx.broker.publish(routing.sla_event("escalated", ticket.department), event)
    log.warning("case escalated (督办)", ticket_id=ticket.ticket_id, department=ticket.department)
    return event


async def escalations(
    ctx: BridgeContext, department: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The escalation list, newest first (from the audit trail)."""
    found = []
    for r in await ctx.store.recent_audit(limit=limit, actions=["case.escalated"]):
        detail = r.get("detail") or {}
        if department is not None and detail.get("department") != department:
            continue
        found.append(
            {
                "inquiry_id": r.get("inquiry_id"),
                "department": detail.get("department"),
                "ticket_id": detail.get("ticket_id"),
                "cycle": detail.get("cycle"),
                "reason": detail.get("reason"),
                "escalated_by": r.get("actor"),
                "escalated_at": r.get("at"),
            }
        )
    return found
