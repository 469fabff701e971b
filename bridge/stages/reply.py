"""reply: tell the citizen about every status change, approved, in order, once, within limits.

Two workers: ``reply`` turns ticket events into replies, and ``outbox`` hands approved replies
to the posting dispatchers (``bridge/outbox.py``).

Composing: applying an event to its ticket and deciding its replies is one transaction, so a
crash between any two statements loses nothing (the redelivery applies it all). An event that
is replayed, late or older than the last applied one changes nothing and says nothing; one for
a ticket not recorded yet (a callback racing the create) waits in a delay tier. A ``follow_up``
event is acknowledged in the follow-up's own thread ("已补充到工单…"), once. Replies pass the
department's approval mode: ``none`` (everything goes out), ``templated-auto`` (templated
replies go out, officials' free-text notes wait), ``all-manual`` (everything waits). The queue
is served at ``/api/approvals`` by ``bridge/api.py``, in every process whatever its roles.

The outbox worker posts nothing itself: a ``reply.requested`` message only says "look at the
store". A request for a reply the store does not hold as approved (anyone who can publish to
the broker could send one) is dead-lettered with its reason and never posted; the text posted
is always the store's, never the message's.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from bridge import pii
from bridge.outbox import Outbox
from bridge.runtime import DeadLetter, Delivery, Retry, Stage, Worker
from bridge.stages.common import source_for
from bridge.store import Store, StoredInquiry, StoredTicket, iso
from bridge.templates import deadline_for, format_deadline, render
from schemas import routing, stages
from schemas.config import DepartmentConfig
from schemas.messages import ReplyRequest, ThreadRef, TicketEvent, stable_id
from schemas.vocab import REPLY_FINISHED_STATES, Category, ReplyState, TicketStatus, Visibility

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.reply")

FINISHED = REPLY_FINISHED_STATES  # kept importable from here


class ReplyRole:
    name = "reply"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.composer: Worker[TicketEvent] = Worker(
            ctx.broker, Stage.declared(stages.REPLY, self.compose)
        )
        self.requests: Worker[ReplyRequest] = Worker(
            ctx.broker, Stage.declared(stages.OUTBOX, self.accept)
        )
        self.workers: list[Worker[Any]] = [self.composer, self.requests]
        self.outbox = Outbox(ctx)
        ctx.details["outbox"] = self.outbox.backlog  # also what /api/outbox shows

    async def start(self) -> None:
        await self.outbox.start()
        await self.composer.start()
        await self.requests.start()

    async def stop(self) -> None:
        await self.composer.stop()
        await self.requests.stop()
        await self.outbox.stop()  # the daemon closes the adapters

    # ------------------------------------------------------------------ compose
    async def compose(self, event: TicketEvent, _: Delivery) -> None:
        store = self.ctx.store
        ticket = await store.get_ticket(event.department, event.ticket_id)
        if ticket is None:
            known = event.reference is not None and (
                await store.get_create_attempt(event.reference) is not None
            )
            if known or await store.creates_in_flight(event.department):
                # A callback or poll raced the create: its ticket will be recorded shortly.
                raise Retry(f"ticket {event.ticket_id} is not recorded yet (create in flight)")
            log.info("event for a ticket the bridge did not create; ignored")
            return
        try:
            dept = self.ctx.cfg.department(event.department)
        except KeyError:
            raise DeadLetter(f"unknown department {event.department!r}") from None
        if event.source == "follow_up":
            await self._acknowledge_follow_up(event, ticket, dept)
            return
        async with store.transaction() as tx:
            approved = await self._apply_and_decide(tx, event, ticket, dept)
        for request in approved:  # wake the outbox; the store already holds them
            await self.ctx.broker.publish(routing.reply_requested(request.platform), request)

    async def _apply_and_decide(
        self, tx: Store, event: TicketEvent, ticket: StoredTicket, dept: DepartmentConfig
    ) -> list[ReplyRequest]:
        """In one transaction: record the event, move the ticket, record its replies.
        Returns the replies that may go out now."""
        new, applied, cycle = await tx.apply_status(
            department=event.department,
            ticket_id=event.ticket_id,
            event_id=event.event_id,
            status=event.status.value,
            status_rank=event.status.rank,
            native_status=event.native_status,
            occurred_at=iso(event.occurred_at),
        )
        if event.source == "create":
            applied = True  # the ticket row was written with "received" when it was created
        if not applied and not event.note:
            log.info("event does not move the ticket; no reply", status=event.status.value, new=new)
            return []
        inquiry = await tx.get_inquiry(ticket.inquiry_id)
        if inquiry is None:
            raise DeadLetter(f"ticket {event.ticket_id} has no recorded inquiry")
        requests = self._compose(event, inquiry, ticket, dept, cycle, applied)
        tx.fault("compose:replies_decided")
        approved = []
        for request in requests:
            if await record_reply(tx, request, dept.approval):
                approved.append(request)
            tx.fault("compose:reply_recorded")
        return approved

    def _compose(
        self,
        event: TicketEvent,
        inquiry: StoredInquiry,
        ticket: StoredTicket,
        dept: DepartmentConfig,
        cycle: int,
        applied: bool,
    ) -> list[ReplyRequest]:
        """The replies an event calls for: its status (when it moved the ticket) and an
        official's note (when it carries one), in the department's templates, redacted."""
        category = Category(inquiry.category or "other")
        created = datetime.fromisoformat(ticket.created_at)
        deadline = format_deadline(deadline_for(dept, category, created))
        requests: list[ReplyRequest] = []
        base = _reply_base(inquiry, dept, event.ticket_id, cycle)
        if applied:
            text = render(
                dept,
                event.status.value,
                ticket_id=event.ticket_id,
                status=event.status,
                deadline=deadline,
                category=category,
            )
            requests.append(
                ReplyRequest(
                    reply_id=status_reply_id(inquiry.inquiry_id, event.status, cycle),
                    text=pii.redact_text(text, keep=[event.ticket_id]),
                    status=event.status,
                    templated=True,
                    **base,
                )
            )
        if event.note:
            text = render(
                dept,
                "note",
                ticket_id=event.ticket_id,
                note=event.note,
                status=event.status,
                deadline=deadline,
                category=category,
            )
            # An official's note carries case details: answered privately where the
            # platform can (Weibo's ordinary API cannot: there it stays in the thread, redacted).
            source = source_for(self.ctx, inquiry.platform, inquiry.account)
            private = source is not None and source.capabilities.supports_direct_messages
            requests.append(
                ReplyRequest(
                    reply_id=stable_id("rep", inquiry.inquiry_id, "note", event.event_id),
                    text=pii.redact_text(text, keep=[event.ticket_id]),
                    status=None,
                    templated=False,
                    **{**base, "visibility": Visibility.PRIVATE if private else base["visibility"]},
                )
            )
        return requests

    async def _acknowledge_follow_up(
        self, event: TicketEvent, ticket: StoredTicket, dept: DepartmentConfig
    ) -> None:
        """Tell the citizen, in the follow-up's own thread, that it was added to the ticket."""
        if event.inquiry_id is None:
            raise DeadLetter("follow_up event without inquiry_id")
        inquiry = await self.ctx.store.get_inquiry(event.inquiry_id)
        if inquiry is None:
            raise DeadLetter(f"follow-up {event.inquiry_id} is not recorded")
        text = render(dept, "follow_up", ticket_id=event.ticket_id, status=event.status)
        request = ReplyRequest(
            reply_id=stable_id("rep", event.inquiry_id, "follow_up"),
            text=pii.redact_text(text, keep=[event.ticket_id]),
            status=None,
            templated=True,
            **_reply_base(inquiry, dept, event.ticket_id, ticket.cycle),
        )
        await queue_reply(self.ctx, request, dept.approval)

    # ------------------------------------------------------------------ outbox requests
    async def accept(self, request: ReplyRequest, _: Delivery) -> None:
        """A reply is ready: check the store holds it as approved, then wake its account."""
        stored = await self.ctx.store.get_reply(request.reply_id)
        if stored is None:
            raise DeadLetter(
                f"reply {request.reply_id} was not composed by the bridge (not in the store);"
                " replies are only posted from the store"
            )
        if stored.state == ReplyState.FAILED:  # an operator replayed its dead letter
            await self.ctx.store.retry_reply(stored.reply_id)
        elif stored.state in (ReplyState.AWAITING_APPROVAL, ReplyState.REJECTED):
            raise DeadLetter(f"reply {request.reply_id} is not approved ({stored.state})")
        elif stored.state in FINISHED:
            log.info("reply already finished", state=stored.state)
            return
        if not self.outbox.wake(stored.platform, stored.account):
            raise DeadLetter(f"account {stored.platform}:{stored.account} is not configured")


def _reply_base(
    inquiry: StoredInquiry, dept: DepartmentConfig, ticket_id: str, cycle: int
) -> dict[str, Any]:
    """What every reply to an inquiry shares: where it goes and to whom (triage records the
    thread and visibility with every inquiry; a row without them fails here as it always did)."""
    return {
        "inquiry_id": inquiry.inquiry_id,
        "platform": inquiry.platform,
        "account": inquiry.account,
        "department": dept.id,
        "thread": ThreadRef.model_validate_json(inquiry.thread_json or ""),
        "citizen_handle": inquiry.citizen_handle,
        "visibility": Visibility(inquiry.visibility or ""),
        "ticket_id": ticket_id,
        "cycle": cycle,
    }


def status_reply_id(inquiry_id: str, status: TicketStatus, cycle: int) -> str:
    """One reply per status per handling cycle: a replay posts nothing new."""
    if cycle == 0:
        return stable_id("rep", inquiry_id, status.value)
    return stable_id("rep", inquiry_id, status.value, f"cycle-{cycle}")


async def record_reply(store: Store, request: ReplyRequest, approval: str) -> bool:
    """Record a reply with its approval decision; True when it may go out now (otherwise it
    waits in ``/api/approvals``)."""
    auto = approval == "none" or (approval == "templated-auto" and request.templated)
    added = await store.add_reply(
        reply_id=request.reply_id,
        inquiry_id=request.inquiry_id,
        platform=request.platform,
        account=request.account,
        department=request.department,
        status=request.status.value if request.status else None,
        templated=request.templated,
        state=ReplyState.APPROVED if auto else ReplyState.AWAITING_APPROVAL,
        request_json=request.model_dump_json(),
        cycle=request.cycle,
    )
    stored = await store.get_reply(request.reply_id)
    if stored is None or stored.state != ReplyState.APPROVED:
        if added:
            log.info("reply awaits approval", reply_id=request.reply_id)
        return False
    return True


async def queue_reply(ctx: BridgeContext, request: ReplyRequest, approval: str) -> None:
    """Record a reply and, when it may go out unseen, wake the outbox."""
    if await record_reply(ctx.store, request, approval):
        await ctx.broker.publish(routing.reply_requested(request.platform), request)


def create(ctx: BridgeContext) -> ReplyRole:
    return ReplyRole(ctx)
