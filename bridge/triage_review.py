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

Publishing is at-least-once (publish, then mark released; the release sweep republishes what
a crash left unmarked): a repeat is harmless because the command id and the ticket reference
are deterministic and ticketing creates once per reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from bridge import audit
from bridge.http import actor_of, json_error, read_json, require_admin
from bridge.store import Store, now_iso
from schemas import routing
from schemas.messages import TicketCommand
from schemas.vocab import Category, InquiryState

if TYPE_CHECKING:
    from bridge.classify import Classification
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.triage")

PENDING = "pending"
CORRECTED = "corrected"  # an official chose another category before it was filed
CONFIRMED = "confirmed"  # an official agreed with the model before it was filed
TIMED_OUT = "timed_out"  # nobody checked in time: filed with the model's guess
CORRECTED_LATE = "corrected_late"  # checked after the timeout, ticket already filed
CHECKED = (CORRECTED, CONFIRMED, CORRECTED_LATE)
REPUBLISH_AFTER = timedelta(minutes=1)


class ReviewQueue:
    """The ``triage_reviews`` table."""

    def __init__(self, store: Store) -> None:
        self.db = store.db

    async def hold(
        self,
        command: TicketCommand,
        result: Classification,
        public_text: str,
        timeout: timedelta,
    ) -> None:
        held_at = datetime.now(UTC)
        await self.db.execute(
            "INSERT INTO triage_reviews (inquiry_id, department, model_category, confidence,"
            " public_text, command_json, state, held_at, release_after)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (inquiry_id) DO NOTHING",
            (
                command.inquiry.inquiry_id,
                command.department,
                result.category.value,
                round(result.confidence, 4),
                public_text,
                command.model_dump_json(),
                PENDING,
                held_at.isoformat(),
                (held_at + timeout).isoformat(),
            ),
        )

    async def get(self, inquiry_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetchall(
            "SELECT * FROM triage_reviews WHERE inquiry_id = ?", (inquiry_id,)
        )
        return rows[0] if rows else None

    async def pending(self) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            "SELECT * FROM triage_reviews WHERE state = ? ORDER BY held_at, inquiry_id", (PENDING,)
        )

    async def decide(self, inquiry_id: str, category: Category, actor: str) -> str | None:
        """Record an official's check; the new state, or None if there is nothing to check.
        Before the timeout the check decides the filing; after it, it is recorded only."""
        now = now_iso()
        for from_state, to_state in (
            (PENDING, None),
            (TIMED_OUT, CORRECTED_LATE),
        ):
            state_sql = (
                "CASE WHEN model_category = ? THEN 'confirmed' ELSE 'corrected' END"
                if to_state is None
                else "?"
            )
            state_arg = category.value if to_state is None else to_state
            async with self.db.transaction() as tx:
                n = await tx.execute(
                    f"UPDATE triage_reviews SET state = {state_sql}, category = ?,"
                    " decided_by = ?, decided_at = ? WHERE inquiry_id = ? AND state = ?",
                    (state_arg, category.value, actor, now, inquiry_id, from_state),
                )
                if n:
                    await audit.append(
                        tx,
                        "triage.checked",
                        actor=actor,
                        inquiry_id=inquiry_id,
                        category=category.value,
                        late=to_state is not None,
                    )
            if n:
                row = await self.get(inquiry_id)
                return str(row["state"]) if row else None
        return None

    async def expire(self) -> int:
        """Let the model's guess stand for holds past their timeout."""
        now = now_iso()
        return await self.db.execute(
            "UPDATE triage_reviews SET state = ?, category = model_category, decided_at = ?"
            " WHERE state = ? AND release_after <= ?",
            (TIMED_OUT, now, PENDING, now),
        )

    async def unreleased(self, decided_before: str | None = None) -> list[dict[str, Any]]:
        """Decided (or timed out) holds whose command has not been published yet."""
        sql = (
            "SELECT * FROM triage_reviews WHERE released_at IS NULL AND state IN (?, ?, ?)"
            " AND category IS NOT NULL"
        )
        params: list[Any] = [CORRECTED, CONFIRMED, TIMED_OUT]
        if decided_before is not None:
            sql += " AND decided_at <= ?"
            params.append(decided_before)
        return await self.db.fetchall(sql + " ORDER BY held_at", params)

    async def mark_released(self, inquiry_id: str) -> None:
        await self.db.execute(
            "UPDATE triage_reviews SET released_at = ? WHERE inquiry_id = ? AND released_at"
            " IS NULL",
            (now_iso(), inquiry_id),
        )

    async def training_items(self, *, include_confirmed: bool = True) -> list[dict[str, Any]]:
        """Checked inquiries as labelled items (``text`` is the redacted public text)."""
        states = CHECKED if include_confirmed else (CORRECTED, CORRECTED_LATE)
        marks = ", ".join("?" for _ in states)
        rows = await self.db.fetchall(
            f"SELECT * FROM triage_reviews WHERE state IN ({marks}) ORDER BY decided_at,"
            " inquiry_id",
            states,
        )
        return [
            {
                "text": r["public_text"],
                "category": r["category"],
                "noise": None,
                "source": "official-confirmation"
                if r["category"] == r["model_category"]
                else "official-correction",
                "model_category": r["model_category"],
                "confidence": r["confidence"],
                "checked_at": r["decided_at"],
                "inquiry_id": r["inquiry_id"],
            }
            for r in rows
        ]


async def release(ctx: BridgeContext, queue: ReviewQueue, row: dict[str, Any]) -> None:
    """Publish the held command under the decided category (the API and the sweep both do)."""
    command = TicketCommand.model_validate_json(row["command_json"])
    command = command.model_copy(update={"category": Category(row["category"])})
    await ctx.broker.publish(routing.inquiry_routed(command.department), command)
    await queue.mark_released(row["inquiry_id"])
    inquiry = await ctx.store.get_inquiry(row["inquiry_id"])
    fields: dict[str, Any] = {"category": row["category"]}
    if inquiry is not None and inquiry.state == InquiryState.HELD_FOR_REVIEW:
        fields["state"] = InquiryState.ROUTED
    await ctx.store.update_inquiry(row["inquiry_id"], **fields)
    log.info(
        "held inquiry filed",
        inquiry_id=row["inquiry_id"],
        category=row["category"],
        how=row["state"],
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

    async def hold(self, command: TicketCommand, result: Classification, public_text: str) -> None:
        await self.queue.hold(command, result, public_text, self.timeout)

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
            if row["state"] != TIMED_OUT and row["decided_at"] > cutoff:
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


class TriageReviewApi:
    """``GET /api/triage/review`` and ``POST /api/triage/review/{inquiry_id}``: registered by
    the daemon, so an official can check held inquiries through any process, whatever roles
    it runs (publishing a check needs only the broker and the store)."""

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.queue = ReviewQueue(ctx.store)

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/triage/review", self.list_held)
        app.router.add_post("/api/triage/review/{inquiry_id}", self.check)

    async def list_held(self, request: web.Request) -> web.Response:
        require_admin(request)
        held = []
        for r in await self.queue.pending():
            inquiry = await self.ctx.store.get_inquiry(r["inquiry_id"])
            held.append(
                {
                    "inquiry_id": r["inquiry_id"],
                    "department": r["department"],
                    "text": r["public_text"],
                    "model_category": r["model_category"],
                    "confidence": r["confidence"],
                    "explanation": json.loads(inquiry.explanation or "null") if inquiry else None,
                    "held_at": r["held_at"],
                    "release_after": r["release_after"],
                }
            )
        return web.json_response({"held": held, "categories": [c.value for c in Category]})

    async def check(self, request: web.Request) -> web.Response:
        """Body: ``{"category": "<id>", "actor": "..."}``."""
        require_admin(request)
        inquiry_id = request.match_info["inquiry_id"]
        body = await read_json(request)
        if not isinstance(body, dict) or "category" not in body:
            return json_error(400, 'body must be {"category": ..., "actor": ...}')
        category, actor = body["category"], actor_of(request, body) or ""
        if not isinstance(category, str) or category not in {c.value for c in Category}:
            return json_error(
                400, f"category must be one of {', '.join(c.value for c in Category)}"
            )
        if not isinstance(actor, str) or not actor.strip():
            return json_error(400, "actor must be a non-empty string")
        row = await self.queue.get(inquiry_id)
        if row is None:
            return json_error(404, f"inquiry {inquiry_id} was not held for review")
        state = await self.queue.decide(inquiry_id, Category(category), actor.strip())
        if state is None:
            return json_error(409, f"inquiry {inquiry_id} was already checked ({row['state']})")
        log.info(
            "triage checked", inquiry_id=inquiry_id, category=category, actor=actor, outcome=state
        )
        decided = await self.queue.get(inquiry_id)
        assert decided is not None
        if state == CORRECTED_LATE:
            await self.ctx.store.update_inquiry(inquiry_id, category=category)
            filed = "already filed with the model's guess; the correction is recorded"
        else:
            await release(self.ctx, self.queue, decided)
            filed = "filed now"
        return web.json_response(
            {
                "inquiry_id": inquiry_id,
                "state": state,
                "category": category,
                "model_category": decided["model_category"],
                "decided_by": decided["decided_by"],
                "decided_at": decided["decided_at"],
                "filed": filed,
            }
        )
