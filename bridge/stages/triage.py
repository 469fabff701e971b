"""triage: from a received inquiry to a routed ticket command (or a recorded "ignored").

Per inquiry, in order: dedupe by inquiry id; echo and noise (advertising, empty, emoji-only, a
bare thanks) are recorded as ignored with the reason; the department comes from content routes,
else the receiving account; the category from the classifier; personal data is found and
redacted for everything public (the ticket gets the original text only where the department
allows); a follow-up in a thread whose ticket is still open becomes an ``append`` to it.

Redelivery is safe: the inquiry row is written first (state ``triaged``), the command id is
deterministic, and only after the confirmed publish does the row become ``routed``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aio_pika.abc import AbstractIncomingMessage

from bridge import classify, pii
from bridge.runtime import DeadLetter, Stage, Worker
from bridge.triage_review import TriageReview
from schemas.config import DepartmentConfig
from schemas.messages import Inquiry, PersonalDataFinding, TicketCommand, stable_id

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.triage")

DONE_STATES = (
    "routed",
    "ignored",
    "ticketed",
    "appended",
    "needs_reconciliation",
    "held_for_review",
)


def thread_key(inquiry: Inquiry) -> str:
    """Inquiries that share this key belong to one conversation (and one ticket)."""
    root = inquiry.thread.conversation_id or inquiry.thread.root_id
    return f"{inquiry.platform}:{inquiry.account}:{root}"


def reference_for(inquiry_id: str) -> str:
    """The bridge's reference stored in the ticket system (stable per first inquiry)."""
    return "GB-" + inquiry_id.removeprefix("inq_")[:16].upper()


class TriageRole:
    name = "triage"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.worker: Worker[Inquiry] = Worker(ctx.broker, Stage("triage", Inquiry, self.handle))
        self.workers: list[Worker[Any]] = [self.worker]
        self.classifier = classify.Classifier.from_config(ctx.cfg.triage)
        self.review = TriageReview(ctx)

    async def start(self) -> None:
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
                    getattr(acc, "platform", acc.adapter),
                ):
                    dept_id = acc.department
                    break
        if dept_id is None:
            raise DeadLetter(
                f"no department for account {inquiry.platform}:{inquiry.account}: add it to"
                " [[accounts]] or a [[routes]] entry"
            )
        return cfg.department(dept_id)

    async def handle(self, inquiry: Inquiry, _: AbstractIncomingMessage) -> None:
        store = self.ctx.store
        existing = await store.get_inquiry(inquiry.inquiry_id)
        if existing is not None and existing["state"] in DONE_STATES:
            log.info("duplicate inquiry; already handled", state=existing["state"])
            self.ctx.metrics.inquiries.labels(inquiry.platform, "duplicate").inc()
            return

        redacted, findings = pii.redact(inquiry.text)
        key = thread_key(inquiry)
        row: dict[str, Any] = {
            "platform": inquiry.platform,
            "account": inquiry.account,
            "kind": inquiry.kind.value,
            "thread_key": key,
            "public_text": redacted,
            "citizen_handle": inquiry.author.handle,
            "visibility": inquiry.visibility.value,
            "thread_json": inquiry.thread.model_dump_json(),
        }

        async def record(**fields: Any) -> None:
            """One write: the row with its outcome (a redelivery updates the earlier row)."""
            if existing is None:
                await store.record_inquiry(inquiry_id=inquiry.inquiry_id, **row, **fields)
            else:
                await store.update_inquiry(inquiry.inquiry_id, **fields)

        noise = (
            "own post (echo)" if inquiry.author.is_official else classify.detect_noise(inquiry.text)
        )
        if noise:
            await record(state="ignored", reason=noise)
            self.ctx.metrics.inquiries.labels(inquiry.platform, "ignored").inc()
            log.info("inquiry ignored", reason=noise)
            return

        dept = self._department(inquiry)
        result = self.classifier.classify(inquiry.text)
        kinds: dict[Literal["mobile", "id_number", "email"], int] = {}
        for f in findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1

        # A follow-up in a thread whose ticket is open (or still being created) is appended.
        own_reference = reference_for(inquiry.inquiry_id)
        reference = await store.claim_thread(key, inquiry.inquiry_id, own_reference)
        action: Literal["create", "append"] = "create" if reference == own_reference else "append"
        ticket_id: str | None = None
        if action == "append":
            owner = await store.ticket_by_reference(reference)
            ticket_id = owner["ticket_id"] if owner is not None else None

        command = TicketCommand(
            command_id=stable_id("cmd", inquiry.inquiry_id),
            action=action,
            inquiry=inquiry,
            department=dept.id,
            category=result.category,
            reference=reference,
            description=inquiry.text if dept.keep_personal_data else redacted,
            public_text=redacted,
            personal_data=[PersonalDataFinding(kind=k, count=n) for k, n in kinds.items()],
            ticket_id=ticket_id,
        )
        classified = {
            "department": dept.id,
            "category": result.category.value,
            "confidence": round(result.confidence, 4),
            "explanation": json.dumps(result.explanation(), ensure_ascii=False),
        }
        if action == "create" and self.review.should_hold(result):
            # held for an official's check: the hold first, so a redelivery re-holds (no-op)
            await self.review.hold(command, result, redacted)
            await record(state="held_for_review", ticket_id=None, **classified)
            self.ctx.metrics.inquiries.labels(inquiry.platform, "held_for_review").inc()
            log.info(
                "inquiry held for an official's check",
                department=dept.id,
                category=result.category.value,
                confidence=classified["confidence"],
            )
            return
        await record(state="triaged", ticket_id=ticket_id, **classified)
        await self.ctx.broker.publish(f"inquiry.routed.{dept.id}", command)
        await store.update_inquiry(inquiry.inquiry_id, state="routed")
        self.ctx.metrics.inquiries.labels(inquiry.platform, "routed").inc()
        log.info(
            "inquiry routed",
            department=dept.id,
            category=result.category.value,
            decided_by=result.rule or "model",
            confidence=round(result.confidence, 3),
            action=action,
            personal_data=sorted(kinds),
        )


def create(ctx: BridgeContext) -> TriageRole:
    return TriageRole(ctx)
