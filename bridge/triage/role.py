"""triage: from a received inquiry to a routed ticket command (or a recorded "ignored").

Per inquiry, in order: dedupe by inquiry id; echo and noise (advertising, empty, emoji-only, a
bare thanks) are recorded as ignored with the reason; personal data is found and redacted for
everything public (the ticket gets the original text only where the department allows). Then
the conversation (``bridge.triage.conversations``): a citizen's follow-up in the chain of their own
earlier inquiry becomes an ``append`` to that conversation's ticket, in the department and
ticket system that hold it, whatever its text says; anything else is a new conversation, whose
department comes from content routes, else the receiving account, and whose category comes
from the classifier. A new conversation beyond its author's hourly limit (``bridge.triage.flood``)
is
held for an official's check with reason ``flood``, as an unsure category is with ``unsure``.
Where the department's ``incidents`` is not ``off``, a new conversation is also linked to its
incident (``bridge.triage.incident_links``); in ``merge`` mode a later case of an incident
becomes an ``append`` to the incident's lead ticket, in its citizen's own conversation.

Redelivery is safe: the inquiry row is written first (state ``triaged``), the command id is
deterministic, and only after the confirmed publish does the row become ``routed``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog

from bridge.privacy import pii
from bridge.runtime.worker import DeadLetter, Delivery, Retry, Stage, Worker
from bridge.store import NewInquiry, StoredInquiry, iso
from bridge.telemetry import timing
from bridge.triage import classify, conversations, survey_answers
from bridge.triage.flood import FLOOD, FloodGate
from bridge.triage.incident_links import IncidentLinker, Link
from bridge.triage.review import UNSURE, TriageReview
from schemas import routing, stages
from schemas.config import DepartmentConfig
from schemas.messages import Inquiry, PersonalDataFinding, TicketCommand, reference_for, stable_id
from schemas.vocab import INQUIRY_DONE_STATES, Category, IncidentRole, InquiryState

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.triage")


class TriageRole:
    name = "triage"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.worker: Worker[Inquiry] = Worker(
            ctx.broker, Stage.declared(stages.TRIAGE, self.handle)
        )
        self.workers: list[Worker[Any]] = [self.worker]
        self.classifier = classify.Classifier.from_config(ctx.cfg.triage)
        self.review = TriageReview(ctx)
        self.flood = FloodGate(ctx.store, ctx.cfg.triage)
        self.incidents = IncidentLinker(ctx)

    async def start(self) -> None:
        # The segmentation dictionary and the model load in about a second: now, off the
        # event loop, not on the first inquiry (where the whole stage would wait for it).
        await asyncio.to_thread(classify.warm_up)
        await self.incidents.start()  # the incident index, rebuilt from the store
        await self.worker.start()
        await self.review.start()

    async def stop(self) -> None:
        await self.review.stop()
        await self.worker.stop()

    def _department(self, inquiry: Inquiry) -> DepartmentConfig:
        """A content route wins; else the department of the account that received it."""
        cfg = self.ctx.cfg
        dept_id = classify.route_by_keywords(inquiry.text, cfg.routes)
        if dept_id is None:
            for acc in cfg.accounts:
                if acc.handle == inquiry.account and inquiry.platform in (
                    acc.adapter,
                    acc.platform_name,
                ):
                    dept_id = acc.department
                    break
        if dept_id is None:
            raise DeadLetter(
                f"no department for account {inquiry.platform}:{inquiry.account}: add it to"
                " [[accounts]] or a [[routes]] entry",
                "no_department",
            )
        return cfg.department(dept_id)

    async def handle(self, inquiry: Inquiry, delivery: Delivery) -> None:
        store = self.ctx.store
        # one read: the inquiry as recorded (a redelivery) and whether a 回访 question
        # waits for an answer on its account
        existing, open_surveys = await store.inquiry_and_open_surveys(
            inquiry.inquiry_id, inquiry.platform, inquiry.account
        )
        if existing is not None and await survey_answers.resend_reopen(
            self.ctx, inquiry, existing.public_text or "", existing
        ):
            return
        if existing is not None and existing.state in INQUIRY_DONE_STATES:
            log.info("duplicate inquiry; already handled", state=existing.state)
            self.ctx.metrics.inquiries.labels(
                self.ctx.metrics.platform(inquiry.platform), "duplicate"
            ).inc()
            return

        with timing.timed("classify"):  # personal-data search counts as text work
            redacted, findings = pii.redact(inquiry.text)

        async def record(**fields: Any) -> None:
            """One write: the row with its outcome (a redelivery updates the earlier row)."""
            if existing is None:
                row = _inquiry_row(inquiry, redacted)
                await store.record_inquiry(
                    NewInquiry(inquiry_id=inquiry.inquiry_id, **row, **fields)
                )
            else:
                await store.update_inquiry(inquiry.inquiry_id, **fields)

        if not inquiry.author.is_official and open_surveys:
            # A 回访 question waits on this account: a message in the asked citizen's own
            # conversation is its answer (a bare "4" or "👍" too, which noise would drop).
            asked = await conversations.asked_conversation(store, inquiry)
            ask = await survey_answers.waiting_question(self.ctx, inquiry, asked)
            if ask is not None:
                outcome = await survey_answers.take_answer(
                    self.ctx, inquiry, redacted, _inquiry_row(inquiry, redacted), existing, ask
                )
                self.ctx.metrics.inquiries.labels(
                    self.ctx.metrics.platform(inquiry.platform), f"survey_{outcome}"
                ).inc()
                return

        noise = (
            "own post (echo)" if inquiry.author.is_official else classify.detect_noise(inquiry.text)
        )
        if noise:
            await record(state=InquiryState.IGNORED, reason=noise)
            self.ctx.metrics.inquiries.labels(
                self.ctx.metrics.platform(inquiry.platform), InquiryState.IGNORED
            ).inc()
            log.info("inquiry ignored", reason=noise)
            return

        owner = await self._conversation_owner(inquiry, delivery.attempt)
        kinds: dict[pii.Kind, int] = {}
        for f in findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        d = self._decide(inquiry, owner)
        flood = d.action == "create" and not await self.flood.admit(inquiry, d.dept)
        unsure = d.result is not None and self.review.should_hold(d.result)
        if d.action == "create":
            link = await self.incidents.link(
                inquiry, redacted, d.dept, d.category, files_now=not (flood or unsure)
            )
            if link is not None and link.merged:
                d, unsure = _merged(d, link), False  # filed on the lead's ticket: no category
        elif owner is not None:
            d = await self._on_merged_ticket(d, owner)
        command = TicketCommand(
            command_id=stable_id("cmd", inquiry.inquiry_id),
            action=d.action,
            inquiry=inquiry,
            department=d.dept.id,
            category=d.category,
            reference=d.reference,
            description=inquiry.text if d.dept.keep_personal_data else redacted,
            public_text=redacted,
            personal_data=[PersonalDataFinding(kind=k, count=n) for k, n in kinds.items()],
            ticket_id=d.ticket_id,
        )
        if d.result is not None and (flood or unsure):
            # held for an official's check: the hold first, so a redelivery re-holds (no-op)
            why = FLOOD if flood else UNSURE
            await self.review.hold(command, d.result, redacted, reason=why)
            await record(
                state=InquiryState.HELD_FOR_REVIEW,
                ticket_id=None,
                conversation=d.conversation,
                reason=why,
                **d.classified,
            )
            outcome = "held_flood" if flood else InquiryState.HELD_FOR_REVIEW
            platform = self.ctx.metrics.platform(inquiry.platform)
            self.ctx.metrics.inquiries.labels(platform, outcome).inc()
            log.info(
                "inquiry held for an official's check",
                reason=why,
                department=d.dept.id,
                category=d.category.value,
                confidence=d.classified["confidence"],
            )
            return
        await record(
            state=InquiryState.TRIAGED,
            ticket_id=d.ticket_id,
            conversation=d.conversation,
            **d.classified,
        )
        await self._route(inquiry, command, d, sorted(kinds))

    async def _route(
        self, inquiry: Inquiry, command: TicketCommand, d: _Decision, personal_data: list[str]
    ) -> None:
        """Publish the ticket command, then mark the inquiry routed (unless ticketing has
        moved it on already)."""
        await self.ctx.broker.publish(routing.inquiry_routed(d.dept.id), command)
        await self.ctx.store.advance_inquiry(
            inquiry.inquiry_id, InquiryState.TRIAGED, InquiryState.ROUTED
        )
        self.ctx.metrics.inquiries.labels(
            self.ctx.metrics.platform(inquiry.platform), InquiryState.ROUTED
        ).inc()
        result = d.result
        log.info(
            "inquiry routed",
            department=d.dept.id,
            category=d.category.value,
            decided_by="conversation" if result is None else (result.rule or "model"),
            confidence=None if result is None else round(result.confidence, 3),
            action=d.action,
            personal_data=personal_data,
        )

    async def _on_merged_ticket(self, d: _Decision, owner: StoredInquiry) -> _Decision:
        """A follow-up in the conversation of a case merged into an incident's lead goes to
        the ticket that conversation joined (the lead's reference)."""
        case = await self.ctx.store.get_incident_case(owner.inquiry_id)
        if case is None or case.role != IncidentRole.MERGED or case.lead_inquiry is None:
            return d
        return dataclasses.replace(d, reference=reference_for(case.lead_inquiry))

    def _decide(self, inquiry: Inquiry, owner: StoredInquiry | None) -> _Decision:
        """Where the inquiry goes. A follow-up goes to the ticket that holds the conversation,
        in the department and ticket system that hold it, whatever its own text would route
        to; a new matter is classified."""
        if owner is not None:
            conversation = owner.inquiry_id
            try:
                dept = self.ctx.cfg.department(owner.department or "")
            except KeyError:
                raise DeadLetter(
                    f"the conversation's department {owner.department!r} is not configured",
                    "unknown_department",
                ) from None
            category = Category(owner.category or "other")
            return _Decision(
                action="append",
                conversation=conversation,
                dept=dept,
                category=category,
                reference=reference_for(conversation),
                ticket_id=owner.ticket_id,
                classified={"department": dept.id, "category": category.value},
            )
        dept = self._department(inquiry)
        with timing.timed("classify"):
            result = self.classifier.classify(inquiry.text)
        return _Decision(
            action="create",
            conversation=inquiry.inquiry_id,
            dept=dept,
            category=result.category,
            reference=reference_for(inquiry.inquiry_id),
            ticket_id=None,
            classified={
                "department": dept.id,
                "category": result.category.value,
                "confidence": round(result.confidence, 4),
                "explanation": json.dumps(result.explanation(), ensure_ascii=False),
            },
            result=result,
        )

    async def _conversation_owner(self, inquiry: Inquiry, attempt: int) -> StoredInquiry | None:
        """The first inquiry of the conversation this one continues, or None for a new one."""
        store = self.ctx.store
        if conversations.is_direct(inquiry):
            if conversations.answers_a_post(inquiry):  # a private reply in a chain
                placement = await conversations.place(store, inquiry)
                if placement.owner is not None:
                    return placement.owner
            key = conversations.dm_claim_key(inquiry)
            own = reference_for(inquiry.inquiry_id)
            if await store.claim_thread(key, inquiry.inquiry_id, own) == own:
                return None
            holder = await store.thread_owner(key)
            row = await store.get_inquiry(holder) if holder else None
            if row is None:  # the holder is claimed but not recorded yet: wait for it
                raise Retry("the citizen's earlier message in this DM thread is in flight")
            return await conversations.owner_of(store, row)
        placement = await conversations.place(store, inquiry)
        if placement.wait_for is not None and attempt == 0:
            # The citizen's own earlier post in this chain is not recorded yet: probably in
            # flight right now. Wait once rather than open a second ticket for one matter.
            raise Retry("the citizen's earlier post in this chain is not recorded yet")
        return placement.owner


@dataclass(frozen=True)
class _Decision:
    """What triage decided for one inquiry (``result`` only when it was classified)."""

    action: Literal["create", "append"]
    conversation: str
    dept: DepartmentConfig
    category: Category
    reference: str
    ticket_id: str | None
    classified: dict[str, Any]
    result: classify.Classification | None = None


def _merged(d: _Decision, link: Link) -> _Decision:
    """A later case of an incident in ``merge`` mode: appended to the lead's ticket, in the
    citizen's own conversation (their follow-ups continue it; the answers go to them)."""
    lead = link.case.lead_inquiry
    assert lead is not None
    return dataclasses.replace(
        d, action="append", reference=reference_for(lead), ticket_id=link.lead_ticket_id
    )


def _inquiry_row(inquiry: Inquiry, redacted: str) -> dict[str, Any]:
    """The inquiry's row as first recorded (its outcome fields are added by the caller)."""
    return {
        "platform": inquiry.platform,
        "account": inquiry.account,
        "kind": inquiry.kind.value,
        "thread_key": inquiry.thread_key,
        "public_text": redacted,
        "citizen_handle": inquiry.author.handle,
        "visibility": inquiry.visibility.value,
        "thread_json": inquiry.thread.model_dump_json(),
        "external_id": inquiry.external_id,
        "author_id": inquiry.author.id,
        "posted_at": _posted_at(inquiry.created_at),
    }


def _posted_at(when: datetime) -> str | None:
    """When the citizen posted it, as the store keeps times (UTC; naive read as UTC); None
    for a time no calendar holds in UTC."""
    try:
        return iso(when if when.tzinfo else when.replace(tzinfo=UTC))
    except (OverflowError, ValueError):
        return None


def create(ctx: BridgeContext) -> TriageRole:
    return TriageRole(ctx)
