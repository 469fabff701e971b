"""Inquiries held for an official's check because the classifier was unsure.

Why hold rather than file and fix later: a ticket's category picks its service code and its
deadline in the department's own system, and the ticket systems offer no way to change them
afterwards (Open311 has no update). So a low-confidence new inquiry (confidence below
``[triage] review_below``; operator rules and follow-ups are never held) is not published:
its ready ticket command is stored here and it appears in ``GET /api/triage/review``. An
official's ``POST /api/triage/review/{inquiry_id}`` files it at once under the category they
chose (recorded with actor and time). If nobody checks it within ``review_timeout`` (at most
an hour), it is filed with the model's guess, so no citizen waits longer than that for the
已受理 reply. A check that arrives after that is still recorded (as training data and for the
bridge's own deadline), and the answer says the ticket was already filed.

Every check, corrected or confirmed, is exported as training data by
``govbridge triage export-corrections`` (the redacted text: no personal data).

Each hold has a ``reason``: ``unsure`` (the classifier's confidence, above) or ``flood`` (its
author started more new conversations within the hour than allowed, ``bridge/triage/flood.py``). A
flood hold never times out into a ticket, which would undo the limit: it waits for an
official, who files it under a category (as above) or dismisses it (``{"dismiss": true}``:
recorded as ignored, with actor and time). Nothing held is ever dropped by the bridge.

Publishing is at-least-once (publish, then mark released; the release sweep republishes what
a crash left unmarked): a repeat is harmless because the command id and the ticket reference
are deterministic and ticketing creates once per reference.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from bridge.store import Store
from bridge.store.inquiries import KEEP
from bridge.store.reviews import HeldReview, ReviewHold
from schemas import routing
from schemas.messages import TicketCommand
from schemas.states import ReviewReason, ReviewState
from schemas.vocab import Category, InquiryState

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext
    from bridge.triage.classify import Classification

log = structlog.get_logger("govbridge.triage")

PENDING = ReviewState.PENDING
CORRECTED = ReviewState.CORRECTED
CONFIRMED = ReviewState.CONFIRMED
TIMED_OUT = ReviewState.TIMED_OUT
CORRECTED_LATE = ReviewState.CORRECTED_LATE
DISMISSED = ReviewState.DISMISSED
CHECKED = (CORRECTED, CONFIRMED, CORRECTED_LATE)
REPUBLISH_AFTER = timedelta(minutes=1)
UNSURE = ReviewReason.UNSURE  # why held: the classifier's confidence was below review_below
# A flood hold (bridge.triage.flood.FLOOD) is never filed by the timeout, only by an official.
NEVER = "9999-12-31T00:00:00+00:00"


class ReviewQueue:
    """The holds, in the store (``bridge.store.reviews``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def hold(
        self,
        command: TicketCommand,
        result: Classification,
        public_text: str,
        timeout: timedelta,
        reason: str = UNSURE,
    ) -> None:
        """Hold a ready command; an ``unsure`` hold is filed after ``timeout``, a ``flood``
        hold only by an official."""
        held_at = datetime.now(UTC)
        release_after = (held_at + timeout).isoformat() if reason == UNSURE else NEVER
        await self.store.hold_review(
            ReviewHold(
                inquiry_id=command.inquiry.inquiry_id,
                department=command.department,
                model_category=result.category.value,
                confidence=round(result.confidence, 4),
                public_text=public_text,
                command_json=command.model_dump_json(),
                held_at=held_at,
                release_after=release_after,
                reason=reason,
            )
        )

    async def get(self, inquiry_id: str) -> HeldReview | None:
        return await self.store.get_review(inquiry_id)

    async def pending(self, limit: int | None = None) -> list[HeldReview]:
        return await self.store.reviews_in([PENDING], limit=limit)

    async def decide(self, inquiry_id: str, category: Category, actor: str) -> str | None:
        """Record an official's check; the new state, or None if there is nothing to check.
        Before the timeout the check decides the filing; after it, it is recorded only."""
        for from_state, to_state in (
            (PENDING, None),
            (TIMED_OUT, CORRECTED_LATE),
        ):
            if await self.store.check_review(
                inquiry_id, category.value, actor=actor, from_state=from_state, to_state=to_state
            ):
                row = await self.get(inquiry_id)
                return str(row.state) if row else None
        return None

    async def expire(self) -> int:
        """Let the model's guess stand for unsure holds past their timeout (never for a
        flood hold)."""
        return await self.store.expire_reviews()

    async def dismiss(self, inquiry_id: str, actor: str) -> bool:
        """An official dismisses a pending flood hold: no ticket; recorded and audited."""
        return await self.store.dismiss_review(inquiry_id, actor)

    async def unreleased(self, decided_before: str | None = None) -> list[HeldReview]:
        """Decided (or timed out) holds whose command has not been published yet."""
        return await self.store.reviews_in(
            [CORRECTED, CONFIRMED, TIMED_OUT], unreleased=True, decided_before=decided_before
        )

    async def mark_released(self, inquiry_id: str) -> None:
        await self.store.mark_review_released(inquiry_id)

    async def training_items(self, *, include_confirmed: bool = True) -> list[dict[str, Any]]:
        """Checked inquiries as labelled items (``text`` is the redacted public text)."""
        states = CHECKED if include_confirmed else (CORRECTED, CORRECTED_LATE)
        rows = await self.store.reviews_in(states, order="decided")
        return [
            {
                "text": r.public_text,
                "category": r.category,
                "noise": None,
                "source": "official-confirmation"
                if r.category == r.model_category
                else "official-correction",
                "model_category": r.model_category,
                "confidence": r.confidence,
                "checked_at": r.decided_at,
                "inquiry_id": r.inquiry_id,
            }
            for r in rows
        ]


async def release(ctx: BridgeContext, queue: ReviewQueue, row: HeldReview) -> None:
    """Publish the held command under the decided category (the API and the sweep both do)."""
    assert row.category is not None, "a hold is released once its category is decided"
    command = TicketCommand.model_validate_json(row.command_json)
    command = command.model_copy(update={"category": Category(row.category)})
    await ctx.broker.publish(routing.inquiry_routed(command.department), command)
    await queue.mark_released(row.inquiry_id)
    inquiry = await ctx.store.get_inquiry(row.inquiry_id)
    held = inquiry is not None and inquiry.state == InquiryState.HELD_FOR_REVIEW
    await ctx.store.update_inquiry(
        row.inquiry_id, category=row.category, state=InquiryState.ROUTED if held else KEEP
    )
    log.info(
        "held inquiry filed",
        inquiry_id=row.inquiry_id,
        category=row.category,
        how=row.state,
    )


class TriageReview:
    """Holding unsure inquiries and the release sweep; owned by the triage role (the HTTP API
    is ``TriageReviewApi``, served by every process)."""

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.queue = ReviewQueue(ctx.store)
        self.review_below = ctx.cfg.triage.review_below
        self.timeout = ctx.cfg.triage.review_timeout
        self._sweeper: asyncio.Task[None] | None = None

    def should_hold(self, result: Classification) -> bool:
        return result.rule is None and result.confidence < self.review_below

    async def hold(
        self,
        command: TicketCommand,
        result: Classification,
        public_text: str,
        reason: str = UNSURE,
    ) -> None:
        await self.queue.hold(command, result, public_text, self.timeout, reason)

    async def sweep(self) -> int:
        """File what timed out, and what a crash left decided but unpublished."""
        expired = await self.queue.expire()
        if expired:
            log.warning(
                "held inquiries filed with the model's guess: nobody checked in time", count=expired
            )
        cutoff = (datetime.now(UTC) - REPUBLISH_AFTER).isoformat()
        released = 0
        for row in await self.queue.unreleased():
            if row.state != TIMED_OUT and (row.decided_at or "") > cutoff:
                continue  # an official's check being published right now by the API
            await release(self.ctx, self.queue, row)
            released += 1
        return released

    async def start(self) -> None:
        # always: holds made before review_below was lowered (even to 0) must still be filed
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        every = max(1.0, min(30.0, self.timeout.total_seconds() / 4))
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the broker or store is down: try again next round
                log.error("review sweep failed", error=repr(exc))
            await asyncio.sleep(every)
