"""Case actions on a ticketed case (issue 22): 转派 (re-route to another department) and 退单
(a department returns a misrouted case to the triage review queue). The HTTP handlers
(``bridge/web/api.py``) only parse and call these. A re-route is carried out by the
ticketing worker when its command arrives (``TicketingRole._reroute``: the old system told,
the old ticket closed in the bridge's record, exactly one new ticket, the citizen told once
through the reply role).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from bridge.store.reviews import ReviewHold
from schemas import routing
from schemas.messages import TicketCommand, TicketEvent, stable_id
from schemas.states import ReviewReason
from schemas.vocab import InquiryState, TicketStatus

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext
    from bridge.store.rows import StoredTicket

NEVER = "9999-12-31T00:00:00+00:00"  # a returned case is never filed by the review timeout

log = structlog.get_logger("govbridge.ticketing.actions")


class CaseRefused(Exception):
    """The action cannot be taken on this case: ``status`` (404, 409, 400) and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Rerouted:
    inquiry_id: str
    command_id: str
    from_department: str
    from_ticket_id: str
    department: str
    reference: str


async def reroute(
    ctx: BridgeContext, inquiry_id: str, department: str, reason: str, actor: str
) -> Rerouted:
    """转派: the case's current ticket goes to ``department``. Idempotent for one (case, old
    ticket, new department): a retried request sends the same command (same id, same
    reference), which the ticketing worker carries out once; the audit record is written once."""
    store = ctx.store
    try:
        ctx.cfg.department(department)
    except KeyError:
        raise CaseRefused(400, f"unknown department {department!r}") from None
    ticket, original = await _case(ctx, inquiry_id)
    if ticket.department == department:
        if original.action == "reroute" and original.from_ticket_id is not None:
            # the operator's retry after the re-route was carried out: the same answer
            return Rerouted(
                inquiry_id,
                original.command_id,
                original.from_department or "",
                original.from_ticket_id,
                department,
                original.reference,
            )
        raise CaseRefused(409, f"the case is already with {department}")
    command_id = stable_id("rr", inquiry_id, ticket.department, ticket.ticket_id, department)
    # the new ticket's own reference: the case's, marked as this re-route's
    reference = f"{ticket.reference}-R{command_id.removeprefix('rr_')[:6].upper()}"
    command = original.model_copy(
        update={
            "command_id": command_id,
            "action": "reroute",
            "department": department,
            "reference": reference,
            "ticket_id": None,
            "from_department": ticket.department,
            "from_ticket_id": ticket.ticket_id,
            "reason": reason,
        }
    )
    if await store.record_once("case.rerouted", command_id):
        await store.record_audit(
            "case.rerouted",
            actor=actor,
            inquiry_id=inquiry_id,
            subject=ticket.ticket_id,
            from_department=ticket.department,
            department=department,
            reason=reason[:200],
        )
    await ctx.broker.publish(routing.inquiry_routed(department), command)
    await store.settle_returned(inquiry_id, actor)  # a returned case waited for this
    log.info("case re-route sent", from_department=ticket.department, department=department)
    return Rerouted(
        inquiry_id, command_id, ticket.department, ticket.ticket_id, department, reference
    )


async def _case(ctx: BridgeContext, inquiry_id: str) -> tuple[StoredTicket, TicketCommand]:
    """The case's current ticket and the command that created it; refused otherwise."""
    store = ctx.store
    inquiry = await store.get_inquiry(inquiry_id)
    if inquiry is None:
        raise CaseRefused(404, "no such inquiry")
    if inquiry.ticket_id is None or inquiry.department is None:
        raise CaseRefused(409, "the case has no ticket yet: it is routed in the triage review")
    ticket = await store.get_ticket(inquiry.department, inquiry.ticket_id)
    if ticket is None:
        raise CaseRefused(409, "the case's ticket is not recorded")
    attempt = await store.get_create_attempt(ticket.reference)
    if attempt is None or not attempt.command_json:
        raise CaseRefused(409, "the ticket's create command was not kept")
    return ticket, TicketCommand.model_validate_json(attempt.command_json)


async def return_case(ctx: BridgeContext, inquiry_id: str, reason: str, actor: str) -> str:
    """退单: the department holding the case returns it as not theirs. It waits in the triage
    review queue (reason ``returned``; never filed by the timeout) until an official re-routes
    it; ``ticket.updated`` with ``returned`` tells the citizen it is being reassigned. A repeated
    return while it waits changes nothing. Returns the returned ticket's id."""
    store = ctx.store
    ticket, original = await _case(ctx, inquiry_id)
    inquiry = await store.get_inquiry(inquiry_id)
    assert inquiry is not None  # _case found it
    held = await store.return_to_review(
        ReviewHold(
            inquiry_id=inquiry_id,
            department=ticket.department,
            model_category=inquiry.category or original.category.value,
            confidence=0.0,
            public_text=inquiry.public_text or original.public_text,
            command_json=original.model_dump_json(),
            held_at=datetime.now(UTC),
            release_after=NEVER,
            reason=ReviewReason.RETURNED,
        )
    )
    if not held:
        raise CaseRefused(409, "the case is already returned and waits in the triage review")
    await store.update_inquiry(
        inquiry_id, state=InquiryState.HELD_FOR_REVIEW, reason=f"returned by {ticket.department}"
    )
    await store.record_audit(
        "case.returned",
        actor=actor,
        inquiry_id=inquiry_id,
        subject=ticket.ticket_id,
        department=ticket.department,
        reason=reason[:200],
    )
    when = datetime.now(UTC)
    await ctx.broker.publish(
        routing.ticket_updated(ticket.department),
        TicketEvent(
            event_id=stable_id("ret", ticket.department, ticket.ticket_id, when.isoformat()),
            department=ticket.department,
            ticket_id=ticket.ticket_id,
            reference=ticket.reference,
            status=TicketStatus.RETURNED,
            native_status="returned",
            occurred_at=when,
            source="return",
        ),
    )
    log.info("case returned to the triage review", department=ticket.department)
    return ticket.ticket_id
