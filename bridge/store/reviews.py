"""Inquiries held for an official's category check (``triage_reviews``; the rules are
``bridge.triage.review``'s). States are ``ReviewState``s, bound as parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso
from schemas.states import ReviewReason, ReviewState


@dataclass(frozen=True)
class ReviewHold:
    """A hold to record: the ready command and what the classifier guessed."""

    inquiry_id: str
    department: str
    model_category: str
    confidence: float
    public_text: str
    command_json: str
    held_at: datetime
    release_after: str
    reason: str


@dataclass(frozen=True)
class HeldReview:
    """A row of ``triage_reviews``, in the table's column order."""

    inquiry_id: str
    department: str
    model_category: str
    confidence: float
    public_text: str
    command_json: str
    state: str
    held_at: str
    release_after: str
    category: str | None
    decided_by: str | None
    decided_at: str | None
    released_at: str | None
    reason: str = ReviewReason.UNSURE


class ReviewsStore(StoreBase):
    async def hold_review(self, hold: ReviewHold) -> None:
        """Record a pending hold (a second hold of one inquiry changes nothing)."""
        await self.db.execute(
            "INSERT INTO triage_reviews (inquiry_id, department, model_category, confidence,"
            " public_text, command_json, state, held_at, release_after, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (inquiry_id) DO NOTHING",
            (
                hold.inquiry_id,
                hold.department,
                hold.model_category,
                hold.confidence,
                hold.public_text,
                hold.command_json,
                ReviewState.PENDING,
                hold.held_at.isoformat(),
                hold.release_after,
                hold.reason,
            ),
        )

    async def return_to_review(self, hold: ReviewHold) -> bool:
        """退单: a returned case waits in the review queue (pending, reason ``returned``), also
        when it was held and checked before; False when it already waits there as returned."""
        n = await self.db.execute(
            "INSERT INTO triage_reviews (inquiry_id, department, model_category, confidence,"
            " public_text, command_json, state, held_at, release_after, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (inquiry_id) DO UPDATE SET"
            " department = excluded.department, model_category = excluded.model_category,"
            " confidence = excluded.confidence, public_text = excluded.public_text,"
            " command_json = excluded.command_json, state = excluded.state,"
            " held_at = excluded.held_at, release_after = excluded.release_after,"
            " reason = excluded.reason, category = NULL, decided_by = NULL, decided_at = NULL,"
            " released_at = NULL"
            " WHERE triage_reviews.state <> ? OR triage_reviews.reason <> ?",
            (
                hold.inquiry_id,
                hold.department,
                hold.model_category,
                hold.confidence,
                hold.public_text,
                hold.command_json,
                ReviewState.PENDING,
                hold.held_at.isoformat(),
                hold.release_after,
                ReviewReason.RETURNED,
                ReviewState.PENDING,
                ReviewReason.RETURNED,
            ),
        )
        return n > 0

    async def settle_returned(self, inquiry_id: str, actor: str) -> bool:
        """A returned case was re-routed: its hold is settled (confirmed, released: the sweep
        publishes nothing for it)."""
        now = now_iso()
        n = await self.db.execute(
            "UPDATE triage_reviews SET state = ?, category = model_category, decided_by = ?,"
            " decided_at = ?, released_at = ? WHERE inquiry_id = ? AND state = ? AND reason = ?",
            (
                ReviewState.CONFIRMED,
                actor,
                now,
                now,
                inquiry_id,
                ReviewState.PENDING,
                ReviewReason.RETURNED,
            ),
        )
        return n > 0

    async def get_review(self, inquiry_id: str) -> HeldReview | None:
        rows = await self.db.fetchall(
            "SELECT * FROM triage_reviews WHERE inquiry_id = ?", (inquiry_id,)
        )
        return HeldReview(**rows[0]) if rows else None

    async def reviews_in(
        self,
        states: Sequence[ReviewState],
        *,
        limit: int | None = None,
        unreleased: bool = False,
        decided_before: str | None = None,
        order: str = "held",
    ) -> list[HeldReview]:
        """Holds in one of ``states``; ``unreleased``: decided ones whose command is not
        published yet (optionally decided by ``decided_before``). ``order``: ``held`` (oldest
        hold first) or ``decided`` (oldest decision first)."""
        marks = ", ".join("?" for _ in states)
        sql = f"SELECT * FROM triage_reviews WHERE state IN ({marks})"
        params: list[object] = [ReviewState(s) for s in states]
        if unreleased:
            sql += " AND released_at IS NULL AND category IS NOT NULL"
        if decided_before is not None:
            sql += " AND decided_at <= ?"
            params.append(decided_before)
        sql += {
            "held": " ORDER BY held_at, inquiry_id",
            "decided": " ORDER BY decided_at, inquiry_id",
        }[order]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [HeldReview(**r) for r in await self.db.fetchall(sql, params)]

    async def check_review(
        self,
        inquiry_id: str,
        category: str,
        *,
        actor: str,
        from_state: ReviewState,
        to_state: ReviewState | None,
    ) -> bool:
        """An official's check of a hold in ``from_state``, audited: to ``to_state``, or
        (None) confirmed when the category is the model's, else corrected. False if the hold
        is not in ``from_state``."""
        now = now_iso()
        if to_state is None:
            state_sql = "CASE WHEN model_category = ? THEN ? ELSE ? END"
            state_args: tuple[object, ...] = (
                category,
                ReviewState.CONFIRMED,
                ReviewState.CORRECTED,
            )
        else:
            state_sql, state_args = "?", (to_state,)
        async with self.transaction() as tx:
            n = await tx.db.execute(
                f"UPDATE triage_reviews SET state = {state_sql}, category = ?,"
                " decided_by = ?, decided_at = ? WHERE inquiry_id = ? AND state = ?",
                (*state_args, category, actor, now, inquiry_id, from_state),
            )
            if n:
                await tx.record_audit(
                    "triage.checked",
                    actor=actor,
                    inquiry_id=inquiry_id,
                    category=category,
                    late=to_state is not None,
                )
        return n > 0

    async def expire_reviews(self) -> int:
        """Unsure holds past their timeout are filed with the model's guess (timed out);
        how many."""
        now = now_iso()
        return await self.db.execute(
            "UPDATE triage_reviews SET state = ?, category = model_category, decided_at = ?"
            " WHERE state = ? AND release_after <= ? AND reason = ?",
            (ReviewState.TIMED_OUT, now, ReviewState.PENDING, now, ReviewReason.UNSURE),
        )

    async def dismiss_review(self, inquiry_id: str, actor: str) -> bool:
        """A pending hold that is not an unsure one dismissed by an official, audited."""
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE triage_reviews SET state = ?, decided_by = ?, decided_at = ?"
                " WHERE inquiry_id = ? AND state = ? AND reason <> ?",
                (
                    ReviewState.DISMISSED,
                    actor,
                    now_iso(),
                    inquiry_id,
                    ReviewState.PENDING,
                    ReviewReason.UNSURE,
                ),
            )
            if n:
                await tx.record_audit(
                    "triage.checked", actor=actor, inquiry_id=inquiry_id, dismissed=True
                )
        return bool(n)

    async def mark_review_released(self, inquiry_id: str) -> None:
        await self.db.execute(
            "UPDATE triage_reviews SET released_at = ? WHERE inquiry_id = ? AND released_at"
            " IS NULL",
            (now_iso(), inquiry_id),
        )
