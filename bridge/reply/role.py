"""reply: tell the citizen about every status change, approved, in order, once, within limits.

Three workers: ``reply`` turns ticket events into replies, ``holding`` answers the SLA clock's
``sla.holding_reply.<department>`` (a ticket waited half its time with no news: "still in
progress, answer by …"; or, without a ticket id, an inquiry still without a ticket near its
first-response limit: "received, the number follows"), and ``outbox`` hands approved replies to
the posting dispatchers (``bridge/reply/outbox.py``).

Composing: applying an event to its ticket and deciding its replies is one transaction, so a
crash between any two statements loses nothing (the redelivery applies it all). An event that
is replayed, late or older than the last applied one changes nothing and says nothing; one for
a ticket not recorded yet (a callback racing the create) waits in a delay tier. A ``follow_up``
event is acknowledged in the follow-up's own thread ("已补充到工单…"), once. Replies pass the
department's approval mode: ``none`` (everything goes out), ``templated-auto`` (templated
replies go out, officials' free-text notes wait), ``all-manual`` (everything waits). What
waits is approved in ``bridge/reply/approval.py`` (served at ``/api/approvals`` by every
process, whatever its roles).

The outbox worker posts nothing itself: a ``reply.requested`` message only says "look at the
store". A request for a reply the store does not hold as approved (anyone who can publish to
the broker could send one) is dead-lettered with its reason and never posted; the text posted
is always the store's, never the message's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from bridge.deadlines import calendar_of, deadline_for, format_deadline
from bridge.privacy import pii
from bridge.reply.outbox import Outbox
from bridge.reply.templates import render
from bridge.runtime.context import sleep_or_stop
from bridge.runtime.worker import DeadLetter, Delivery, Retry, Stage, Worker
from bridge.store import Store, StoredInquiry, StoredTicket, iso
from bridge.store.surveys import survey_reply_id
from schemas import routing, stages
from schemas.config import DepartmentConfig
from schemas.messages import ReplyRequest, SlaEvent, ThreadRef, TicketEvent, stable_id
from schemas.states import SurveyAskState, SurveyOutcome
from schemas.vocab import (
    REPLY_FINISHED_STATES,
    Category,
    FollowUpChannel,
    IncidentRole,
    InquiryState,
    ReplyState,
    TicketStatus,
    Visibility,
)

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.reply")


class ReplyRole:
    name = "reply"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.composer: Worker[TicketEvent] = Worker(
            ctx.broker, Stage.declared(stages.REPLY, self.compose)
        )
        self.holding: Worker[SlaEvent] = Worker(
            ctx.broker, Stage.declared(stages.HOLDING, self.hold)
        )
        self.requests: Worker[ReplyRequest] = Worker(
            ctx.broker, Stage.declared(stages.OUTBOX, self.accept)
        )
        self.workers: list[Worker[Any]] = [self.composer, self.holding, self.requests]
        self.outbox = Outbox(ctx)
        ctx.details["outbox"] = self.outbox.backlog  # also what /api/outbox shows
        self._stop = asyncio.Event()
        self._surveys: asyncio.Task[None] | None = None

    def _department(self, department: str) -> DepartmentConfig:
        """The department an event names; one this bridge does not know is dead-lettered."""
        try:
            return self.ctx.cfg.department(department)
        except KeyError:
            raise DeadLetter(f"unknown department {department!r}", "unknown_department") from None

    async def start(self) -> None:
        await self.outbox.start()
        await self.composer.start()
        await self.holding.start()
        await self.requests.start()
        if self.ctx.cfg.survey.enabled:
            self._surveys = asyncio.create_task(self._survey_loop(), name="reply:survey")

    async def stop(self) -> None:
        self._stop.set()
        if self._surveys is not None:
            await asyncio.wait([self._surveys], timeout=10)
        await self.composer.stop()
        await self.holding.stop()
        await self.requests.stop()
        await self.outbox.stop()  # the daemon closes the adapters

    # ------------------------------------------------------------------ compose
    async def compose(self, event: TicketEvent, _: Delivery) -> None:
        store = self.ctx.store
        # one read: the ticket and its inquiry (what the replies are composed from)
        ticket, inquiry = await store.ticket_and_inquiry(event.department, event.ticket_id)
        if ticket is None:
            known = event.reference is not None and (
                await store.get_create_attempt(event.reference) is not None
            )
            if known or await store.creates_in_flight(event.department):
                # A callback or poll raced the create: its ticket will be recorded shortly.
                raise Retry(f"ticket {event.ticket_id} is not recorded yet (create in flight)")
            log.info("event for a ticket the bridge did not create; ignored")
            return
        dept = self._department(event.department)
        if event.source == "follow_up":
            await self._acknowledge_follow_up(event, ticket, dept)
            return
        async with store.transaction() as tx:
            approved = await self._apply_and_decide(tx, event, ticket, inquiry, dept)
        # wake the outbox (the store already holds them): confirms awaited together
        if len(approved) == 1:
            request = approved[0]
            await self.ctx.broker.publish(routing.reply_requested(request.platform), request)
        elif approved:
            await self.ctx.broker.publish_many(
                [(routing.reply_requested(r.platform), r) for r in approved]
            )

    async def _apply_and_decide(
        self,
        tx: Store,
        event: TicketEvent,
        ticket: StoredTicket,
        inquiry: StoredInquiry | None,
        dept: DepartmentConfig,
    ) -> list[ReplyRequest]:
        """In one transaction: record the event, move the ticket, record its replies.
        Returns the replies that may go out now. ``ticket`` and ``inquiry`` as read just
        before (the ticket's cycle, when the event does not move it, is the one read)."""
        new, applied, cycle = await tx.apply_status(
            department=event.department,
            ticket_id=event.ticket_id,
            event_id=event.event_id,
            status=event.status.value,
            status_rank=event.status.rank,
            native_status=event.native_status,
            occurred_at=iso(event.occurred_at),
            read=ticket,
        )
        if event.source == "create":
            applied = True  # the ticket row was written with "received" when it was created
        if not applied and not event.note:
            log.info("event does not move the ticket; no reply", status=event.status.value, new=new)
            return []
        if inquiry is None:
            raise DeadLetter(f"ticket {event.ticket_id} has no recorded inquiry", "unknown_ticket")
        requests = self._compose(event, inquiry, ticket, dept, cycle, applied)
        if applied and event.source != "create":
            # An incident's cases merged into this ticket: each citizen hears every status
            # change once, in their own thread (the official's note stays with its own case;
            # 已受理 they were told as "已并入工单…" when they joined).
            quiet = event.model_copy(update={"note": None})
            for case in await tx.merged_cases(inquiry.inquiry_id):
                merged = await tx.get_inquiry(case.inquiry_id)
                if merged is not None:
                    requests += self._compose(quiet, merged, ticket, dept, cycle, True)
        if applied and event.status.is_final and cycle > 0:
            # the reopened case is final again: the officials' 重办 alert is over
            self.ctx.alerts.clear("case_reopened", f"{dept.id}:{ticket.ticket_id}", by="bridge")
        if applied and event.status.is_final and self.ctx.cfg.survey.enabled:
            # 回访: the question is due after the configured delay (once per cycle).
            await tx.schedule_survey(
                department=dept.id,
                ticket_id=ticket.ticket_id,
                cycle=cycle,
                inquiry_id=inquiry.inquiry_id,
                platform=inquiry.platform,
                account=inquiry.account,
                due_at=survey_due(self.ctx.cfg.survey.delay, dept, datetime.now(UTC)),
            )
        approved = []
        for request in requests:
            if await record_reply(tx, request, dept.approval):
                approved.append(request)
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
        created = datetime.fromisoformat(ticket.reopened_at or ticket.created_at)
        deadline = format_deadline(deadline_for(dept, category, created))
        requests: list[ReplyRequest] = []
        base = _reply_base(inquiry, dept, event.ticket_id, cycle)
        if applied and event.source == "reroute":
            # 转派: told once where the case went (its own reply id: an earlier 已转办 of the
            # old ticket does not swallow it, a redelivery posts nothing new).
            text = render(dept, "rerouted", ticket_id=event.ticket_id, category=category)
            requests.append(
                ReplyRequest(
                    reply_id=stable_id("rep", inquiry.inquiry_id, "reroute", event.event_id),
                    text=pii.redact_text(text, keep=[event.ticket_id]),
                    # no status: the old ticket's later statuses (a 退单's 重新分派) must not
                    # overtake the one reply that says where the case went
                    status=None,
                    templated=True,
                    **base,
                )
            )
        elif applied:
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
            source = self.ctx.adapters.source_for(inquiry.platform, inquiry.account)
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
        """Tell the citizen, in the follow-up's own thread, what happened to it: appended to
        the ticket, filed as a linked request, forwarded to the handling unit, or only kept on
        record (then they are told so, and that they may call; never that it will be handled)."""
        if event.inquiry_id is None:
            raise DeadLetter("follow_up event without inquiry_id", "malformed")
        inquiry = await self.ctx.store.get_inquiry(event.inquiry_id)
        if inquiry is None:
            raise DeadLetter(f"follow-up {event.inquiry_id} is not recorded", "unknown_inquiry")
        delivery = await self.ctx.store.get_follow_up_delivery(event.inquiry_id)
        key, linked = "follow_up", ""
        if delivery is not None and delivery.state == "delivered":
            if delivery.channel == FollowUpChannel.NEW_REQUEST:
                key, linked = "follow_up_new_request", delivery.linked_id or ""
            elif delivery.channel == FollowUpChannel.WEBHOOK:
                key = "follow_up_forwarded"
        elif delivery is not None or inquiry.state == InquiryState.KEPT_ON_RECORD:
            key = "follow_up_recorded"  # it reached no one who handles it
        if key in ("follow_up", "follow_up_forwarded"):
            case = await self.ctx.store.get_incident_case(event.inquiry_id)
            if case is not None and case.role == IncidentRole.MERGED:
                key = "incident_merged"  # an incident's later case, not a follow-up
        text = render(
            dept, key, ticket_id=event.ticket_id, status=event.status, linked_ticket_id=linked
        )
        request = ReplyRequest(
            reply_id=stable_id("rep", event.inquiry_id, "follow_up"),
            text=pii.redact_text(text, keep=[event.ticket_id]),
            status=None,
            templated=True,
            **_reply_base(inquiry, dept, event.ticket_id, ticket.cycle),
        )
        await queue_reply(self.ctx, request, dept.approval)

    # ------------------------------------------------------------------ holding replies
    async def hold(self, event: SlaEvent, _: Delivery) -> None:
        """The SLA clock found a ticket past half its time with no news since 已受理: tell the
        citizen it is still in progress and by when they will hear (once per inquiry). Without
        a ticket id: an inquiry still without a ticket near its first-response limit, told it
        was received (``acknowledged``)."""
        if event.event == "holding_reply" and event.ticket_id is None:
            await self._acknowledge(event)
            return
        if event.event not in ("holding_reply", "extended") or event.ticket_id is None:
            raise DeadLetter(f"sla event {event.event} asks for no holding reply", "malformed")
        store = self.ctx.store
        ticket = await store.get_ticket(event.department, event.ticket_id)
        inquiry = await store.get_inquiry(event.inquiry_id)
        if ticket is None or inquiry is None:
            raise DeadLetter(
                f"holding reply for unknown ticket {event.ticket_id}", "unknown_ticket"
            )
        dept = self._department(event.department)
        text = render(
            dept,
            "holding" if event.event == "holding_reply" else "extended",
            ticket_id=ticket.ticket_id,
            status=TicketStatus(ticket.status),
            deadline=format_deadline(event.deadline),
        )
        once = ("holding",) if event.event == "holding_reply" else ("extended", iso(event.deadline))
        request = ReplyRequest(
            reply_id=stable_id("rep", inquiry.inquiry_id, *once),
            text=pii.redact_text(text, keep=[ticket.ticket_id]),
            status=None,
            templated=True,
            **_reply_base(inquiry, dept, ticket.ticket_id, ticket.cycle),
        )
        await queue_reply(self.ctx, request, dept.approval)

    async def _acknowledge(self, event: SlaEvent) -> None:
        """The holding acknowledgement without a ticket number (``acknowledged``): once per
        inquiry (a stable reply id: two SLA processes, or a replay, record one reply), through
        the department's approval mode and the outbox like every reply, and not at all once
        the 已受理 (with the number) is composed."""
        store = self.ctx.store
        inquiry = await store.get_inquiry(event.inquiry_id)
        if inquiry is None:
            raise DeadLetter(
                f"acknowledgement of unknown inquiry {event.inquiry_id}", "unknown_inquiry"
            )
        dept = self._department(event.department)
        received = status_reply_id(inquiry.inquiry_id, TicketStatus.RECEIVED, 0)
        if inquiry.ticket_id is not None or await store.get_reply(received) is not None:
            log.info("ticket number known already; no holding acknowledgement")
            return
        category = Category(inquiry.category or event.category)
        text = render(dept, "acknowledged", ticket_id="", category=category)
        request = ReplyRequest(
            reply_id=acknowledgement_reply_id(inquiry.inquiry_id),
            text=pii.redact_text(text),
            status=None,
            templated=True,
            **_reply_base(inquiry, dept, None, 0),
        )
        # The look above and this record are not one step: a 已受理 recorded in between would
        # be posted before an acknowledgement recorded after it ("the number follows" after
        # the number). The store records it only while the inquiry has no status reply.
        await queue_reply(self.ctx, request, dept.approval, before_any_status=True)
        log.info("holding acknowledgement composed", department=dept.id)

    # ------------------------------------------------------------------ 回访
    async def _survey_loop(self) -> None:
        every = self.ctx.cfg.survey.check_every.total_seconds()
        while not await sleep_or_stop(self._stop, every):
            try:
                await self.survey_pass()
            except Exception as exc:  # the store or the broker is away: next time
                log.warning("survey pass failed", error=repr(exc))

    async def survey_pass(self, now: datetime | None = None) -> tuple[int, int]:
        """Send the 回访 questions (and re-asks) that are due, and end those left unanswered
        for ``[survey] answer_within``. Every step moves its row only from the state it saw,
        and every question has a stable reply id: two processes ask once. Returns
        (questions sent, silences ended)."""
        now = now or datetime.now(UTC)
        store, cfg = self.ctx.store, self.ctx.cfg
        asked = ended = 0
        for ask in await store.survey_asks_due(now):
            try:
                dept = cfg.department(ask.department)
            except KeyError:
                continue
            inquiry = await store.get_inquiry(ask.inquiry_id)
            if inquiry is None:
                continue
            again = ask.state == SurveyAskState.REASK_DUE
            key = "survey_again" if again else "survey"
            text = render(dept, key, ticket_id=ask.ticket_id)
            request = ReplyRequest(
                reply_id=survey_reply_id(ask.inquiry_id, key, ask.cycle),
                text=pii.redact_text(text, keep=[ask.ticket_id]),
                status=None,
                templated=True,
                **_reply_base(inquiry, dept, ask.ticket_id, ask.cycle),
            )
            await queue_reply(self.ctx, request, dept.approval)
            to = SurveyAskState.REASKED if again else SurveyAskState.ASKED
            if await store.move_survey_ask(ask, from_state=ask.state, to_state=to, asked_at=now):
                asked += 1
                log.info("survey asked", ticket_id=ask.ticket_id, cycle=ask.cycle, again=again)
        for ask in await store.survey_asks_silent(now - cfg.survey.answer_within):
            # Silence: after the question no response; after the re-ask of an unclear answer,
            # unrated (that answer stays unclear). [ranking] no_response says how it counts.
            # The period runs from when the question was posted (not while it waits for an
            # approver or a posting slot).
            key = "survey_again" if ask.state == SurveyAskState.REASKED else "survey"
            reply = await store.get_reply(survey_reply_id(ask.inquiry_id, key, ask.cycle))
            if reply is not None and reply.state == ReplyState.REJECTED:
                # an approver decided the citizen is not to be asked: the 回访 ends without a
                # result (no silence counted, no later message read as its answer)
                if await store.move_survey_ask(
                    ask,
                    from_state=ask.state,
                    to_state=SurveyAskState.DONE,
                    outcome=SurveyOutcome.NOT_ASKED,
                ):
                    ended += 1
                    log.info("survey not asked", ticket_id=ask.ticket_id, cycle=ask.cycle)
                continue
            if reply is None or reply.posted_at is None:
                continue
            if datetime.fromisoformat(reply.posted_at) + cfg.survey.answer_within > now:
                continue
            answer = _Unclear(ask.unclear) if ask.state == SurveyAskState.REASKED else None
            outcome = "unrated" if answer is not None else "no_response"
            if not await store.move_survey_ask(
                ask, from_state=ask.state, to_state=SurveyAskState.DONE, outcome=outcome
            ):
                continue
            await store.record_survey_result(
                department=ask.department,
                ticket_id=ask.ticket_id,
                cycle=ask.cycle,
                inquiry_id=ask.inquiry_id,
                platform=ask.platform,
                account=ask.account,
                answer=answer,
                asks=ask.asks,
                asked_at=datetime.fromisoformat(ask.asked_at or ask.due_at),
                concluded_at=now,
            )
            ended += 1
            log.info("survey unanswered", ticket_id=ask.ticket_id, cycle=ask.cycle, outcome=outcome)
        return asked, ended

    # ------------------------------------------------------------------ outbox requests
    async def accept(self, request: ReplyRequest, _: Delivery) -> None:
        """A reply is ready: check the store holds it as approved, then wake its account."""
        stored = await self.ctx.store.get_reply(request.reply_id)
        if stored is None:
            raise DeadLetter(
                f"reply {request.reply_id} was not composed by the bridge (not in the store);"
                " replies are only posted from the store",
                "unknown_reply",
            )
        if stored.state == ReplyState.FAILED:  # an operator replayed its dead letter
            await self.ctx.store.retry_reply(stored.reply_id)
        elif stored.state in (ReplyState.AWAITING_APPROVAL, ReplyState.REJECTED):
            raise DeadLetter(
                f"reply {request.reply_id} is not approved ({stored.state})", "not_approved"
            )
        elif stored.state in REPLY_FINISHED_STATES:
            log.info("reply already finished", state=stored.state)
            return
        if not self.outbox.wake(stored.platform, stored.account):
            raise DeadLetter(
                f"account {stored.platform}:{stored.account} is not configured",
                "unknown_account",
            )


def _reply_base(
    inquiry: StoredInquiry, dept: DepartmentConfig, ticket_id: str | None, cycle: int
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


@dataclass(frozen=True)
class _Unclear:
    """What is kept of an answer still unclear when the re-ask met silence."""

    reason: str | None
    solved: bool | None = None
    satisfaction: str | None = None

    @property
    def unclear(self) -> str:
        return self.reason or "no answer to the re-ask"


def survey_due(delay: timedelta | str, dept: DepartmentConfig, final_at: datetime) -> datetime:
    """When the 回访 of a ticket final at ``final_at`` is asked: ``[survey] delay`` after it,
    or (``next_working_day``, the default) 09:00 of the next working day in the department's
    calendar (调休 included: a make-up Saturday is one, a weekday inside a holiday is not)."""
    if isinstance(delay, timedelta):
        return final_at + delay
    cal = calendar_of(dept)
    day = cal.add_working_days(cal.local(final_at).date(), 1)
    return datetime.combine(day, time(9, 0), tzinfo=cal.tz).astimezone(UTC)


def acknowledgement_reply_id(inquiry_id: str) -> str:
    """The one holding acknowledgement an inquiry without a ticket gets."""
    return stable_id("rep", inquiry_id, "acknowledged")


def status_reply_id(inquiry_id: str, status: TicketStatus, cycle: int) -> str:
    """One reply per status per handling cycle: a replay posts nothing new."""
    if cycle == 0:
        return stable_id("rep", inquiry_id, status.value)
    return stable_id("rep", inquiry_id, status.value, f"cycle-{cycle}")


async def record_reply(
    store: Store, request: ReplyRequest, approval: str, *, before_any_status: bool = False
) -> bool:
    """Record a reply with its approval decision; True when it may go out now (otherwise it
    waits in ``/api/approvals``). ``before_any_status``: not at all once the inquiry has a
    status reply (``add_reply``)."""
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
        before_any_status=before_any_status,
    )
    if added:  # written just now, in the state decided here
        if not auto:
            log.info("reply awaits approval", reply_id=request.reply_id)
        return auto
    stored = await store.get_reply(request.reply_id)
    return stored is not None and stored.state == ReplyState.APPROVED


async def queue_reply(
    ctx: BridgeContext, request: ReplyRequest, approval: str, *, before_any_status: bool = False
) -> None:
    """Record a reply and, when it may go out unseen, wake the outbox."""
    if await record_reply(ctx.store, request, approval, before_any_status=before_any_status):
        await ctx.broker.publish(routing.reply_requested(request.platform), request)


def create(ctx: BridgeContext) -> ReplyRole:
    return ReplyRole(ctx)
