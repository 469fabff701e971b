"""The outbox's queries: leasing the reply an account posts next within its quota, settling
the call, and the backlog per account."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bridge.store.drivers import iso, now_iso
from bridge.store.replies import RepliesStore
from bridge.store.rows import (
    AccountBacklog,
    ReplyClaim,
    StoredReply,
)
from schemas.vocab import (
    CopyFate,
    ReplyState,
    TicketStatus,
    rank_in_cycle,
)


def _lapsed(alias: str, dead: Sequence[str]) -> str:
    """SQL: a claim of ``alias`` (``r.``, or empty) that no longer holds: its lease ran out
    (one parameter, the time) or its owner is known dead (one parameter per dead owner)."""
    cond = f"{alias}lease_until < ?"
    if dead:
        cond += f" OR {alias}lease_owner IN ({', '.join('?' for _ in dead)})"
    return f"({cond})"


def _owned(claim: ReplyClaim) -> str:
    """SQL: the claim is still its owner's (another process may have taken it over when this
    one's liveness lease was lost)."""
    return " AND lease_owner = ?" if claim.owner is not None else ""


def _owner(claim: ReplyClaim) -> tuple[str, ...]:
    return (claim.owner,) if claim.owner is not None else ()


class OutboxStore(RepliesStore):
    async def live_claim_owners(
        self, platform: str, account: str, now: datetime | None = None
    ) -> list[str]:
        """The owners of the account's claims whose fixed lease has not run out: whether each
        still lives is for the outbox to learn (``bridge.store.leases``)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT lease_owner FROM replies WHERE platform = ? AND account = ?"
            " AND state = ? AND lease_until >= ? AND lease_owner IS NOT NULL",
            (platform, account, ReplyState.POSTING, iso(now or datetime.now(UTC))),
        )
        return sorted(str(r["lease_owner"]) for r in rows)

    async def claim_reply(
        self,
        platform: str,
        account: str,
        *,
        owner: str,
        lease: timedelta,
        quota: tuple[int, timedelta] | None = None,
        now: datetime | None = None,
        dead_owners: Sequence[str] = (),
    ) -> ReplyClaim:
        """Lease the reply an account should post next, within its posting quota.

        One transaction, serialised per account across processes, so two outboxes never
        take the same reply, never two replies of one inquiry at once, and together never
        exceed the quota. Order, when the quota is what limits: an inquiry's first answer
        before any second reply, then final answers, then the rest, oldest first. Pending
        status replies of one inquiry become one: the latest is posted, the ones it
        overtook are marked superseded. A lease that ran out (a crash, or a call whose
        outcome is unknown) can be taken again; the reply is then ``uncertain``. So can a
        claim whose owner is in ``dead_owners`` (its liveness lease was found free: the
        process is gone), at once. ``now`` is the outbox's clock (the quota's window and the
        leases are measured on it).
        """
        dead = tuple(o for o in dict.fromkeys(dead_owners) if o != owner)
        async with self.transaction() as tx:
            await tx.db.lock(f"outbox:{platform}:{account}")
            return await tx._claim_reply(
                platform, account, owner, lease, quota, now or datetime.now(UTC), dead
            )

    async def _claim_reply(
        self,
        platform: str,
        account: str,
        owner: str,
        lease: timedelta,
        quota: tuple[int, timedelta] | None,
        now: datetime,
        dead: tuple[str, ...] = (),
    ) -> ReplyClaim:
        stamp = iso(now)
        approved, posting = ReplyState.APPROVED, ReplyState.POSTING
        lapsed = (stamp, *dead)  # the parameters of ``_lapsed``
        claimable = (
            f"(r.state = ? OR (r.state = ? AND {_lapsed('r.', dead)}))"
            " AND (r.not_before IS NULL OR r.not_before <= ?)"
        )
        # In the order of the claim index: a lease that ran out first (its reply may be on
        # the platform already), then approved replies by priority and age. Only the rows up
        # to the first that may go are read. While a status reply whose post may still appear
        # (uncertain) waits for its next look, the inquiry's other status replies wait with it:
        # taking one of them would take the uncertain one early (statuses go in order).
        ready = (
            " AND (r.not_before IS NULL OR r.not_before <= ?)"
            " AND NOT EXISTS (SELECT 1 FROM replies q WHERE q.inquiry_id = r.inquiry_id"
            f" AND q.state = ? AND NOT {_lapsed('q.', dead)})"
            " AND (r.status IS NULL OR NOT EXISTS (SELECT 1 FROM replies w"
            " WHERE w.inquiry_id = r.inquiry_id AND w.status IS NOT NULL AND w.uncertain = 1"
            " AND w.state = ? AND w.not_before > ?))"
            " ORDER BY r.priority, r.created_at LIMIT 1"
        )
        ready_params = (stamp, posting, *lapsed, approved, stamp)
        # both in one statement (each part its own LIMIT 1 on the claim index): the first
        # row of the first part that has one (``pick``) is the reply to take
        # (``others``: whether its inquiry has another status reply that is pending or posted;
        # without one, a status reply is the one to post and overtakes nothing: no more read)
        rows = await self.db.fetchall(
            "SELECT u.*, EXISTS (SELECT 1 FROM replies o WHERE o.inquiry_id = u.inquiry_id"
            " AND o.reply_id <> u.reply_id AND o.status IS NOT NULL"
            f" AND (o.state IN (?, ?) OR (o.state = ? AND {_lapsed('o.', dead)}))) AS others"
            " FROM (SELECT * FROM (SELECT r.*, 0 AS pick FROM replies r WHERE r.platform = ?"
            f" AND r.account = ? AND r.state = ? AND {_lapsed('r.', dead)}"
            + ready
            + ") AS expired UNION ALL SELECT * FROM (SELECT r.*, 1 AS pick FROM replies r"
            " WHERE r.platform = ? AND r.account = ? AND r.state = ?" + ready + ") AS ready) u",
            (
                *(approved, ReplyState.POSTED, posting, *lapsed),
                *(platform, account, posting, *lapsed, *ready_params),
                *(platform, account, approved, *ready_params),
            ),
        )
        if not rows:
            return ReplyClaim(None)
        rows.sort(key=lambda r: int(r["pick"]))
        pressed = False  # the quota, not the platform, decides when replies go out
        if quota is not None:
            wait, free = await self._quota_wait(platform, account, now, lease, *quota)
            if wait is not None:
                return ReplyClaim(None, wait_until=wait)
            waiting = await self.db.fetchall(  # counted only as far as it matters
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM replies r WHERE r.platform = ?"
                " AND r.account = ? AND " + claimable + " LIMIT ?) AS w",
                (platform, account, approved, posting, *lapsed, stamp, free + 1),
            )
            pressed = int(waiting[0]["n"]) > free
        first: StoredReply = self._reply(rows[0])
        if (
            rows[0]["before_status"]
            and first.state == approved  # one being posted already goes first: let it
            and await self._has_status_reply(first)
        ):
            # "the number follows" after a reply that gives the number: never posted
            await self.db.execute(
                "UPDATE replies SET state = ? WHERE reply_id = ? AND state = ?",
                (ReplyState.SUPERSEDED, first.reply_id, approved),
            )
            return ReplyClaim(None, superseded=(first.reply_id,))
        chosen: StoredReply | None = first
        superseded: list[str] = []
        if first.status is not None and rows[0]["others"]:
            chosen, superseded = await self._latest_status_reply(
                first, stamp, merge=pressed, dead=dead
            )
        for reply_id in superseded:
            await self.db.execute(
                "UPDATE replies SET state = ?, merged_into = ?"
                " WHERE reply_id = ? AND state IN (?, ?)",
                (
                    ReplyState.SUPERSEDED,
                    None if chosen is None else chosen.reply_id,
                    reply_id,
                    approved,
                    posting,
                ),
            )
        if chosen is None:  # everything pending was overtaken by what is already posted
            return ReplyClaim(None, superseded=tuple(superseded))
        taken = await self.db.fetchall(  # the claimed row as it is now: no read back
            "UPDATE replies SET state = ?, lease_owner = ?, lease_until = ?,"
            " post_attempts = post_attempts + 1,"
            # Taken from a claim that lapsed: uncertain if a post call may have been made (a
            # call's row is written before it, ``start_copy``, and stays pending until its
            # answer is known); a claimant that died before calling made no copy.
            " uncertain = CASE WHEN state = ? AND EXISTS (SELECT 1 FROM reply_copies c"
            " WHERE c.reply_id = replies.reply_id AND c.fate = ?) THEN 1 ELSE uncertain END"
            " WHERE reply_id = ?"
            f" AND (state = ? OR (state = ? AND {_lapsed('', dead)})) RETURNING *",
            (
                posting,
                owner,
                iso(now + lease),
                posting,
                CopyFate.PENDING,
                chosen.reply_id,
                approved,
                posting,
                *lapsed,
            ),
        )
        if not taken:
            return ReplyClaim(None, superseded=tuple(superseded))
        call_id = uuid.uuid4().hex
        await self.db.execute(
            "INSERT INTO post_calls (call_id, platform, account, reply_id, started_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (call_id, platform, account, chosen.reply_id, stamp),
        )
        # The call's copy row is not written with the claim (perf2 did, one transaction less
        # per inquiry): written just before the call (``start_copy``), it is what tells a
        # process taking the claim over whether a call may have been made
        claimed = self._reply(taken[0])
        return ReplyClaim(claimed, call_id=call_id, superseded=tuple(superseded), owner=owner)

    async def _has_status_reply(self, reply: StoredReply) -> bool:
        """Whether the reply's inquiry has a status reply on its way or out."""
        rows = await self.db.fetchall(
            "SELECT 1 FROM replies WHERE inquiry_id = ? AND status IS NOT NULL"
            " AND state IN (?, ?, ?) LIMIT 1",
            (reply.inquiry_id, ReplyState.APPROVED, ReplyState.POSTING, ReplyState.POSTED),
        )
        return bool(rows)

    async def _quota_wait(
        self,
        platform: str,
        account: str,
        now: datetime,
        lease: timedelta,
        max_calls: int,
        period: timedelta,
    ) -> tuple[datetime | None, int]:
        """When the account may post again (None: now), and how many slots are free. A call
        counts from its start until ``period`` after it returned (so the platform, counting
        at any moment of the call, never sees more than ``max_calls`` in a window); a call
        whose process died counts until its lease ran out."""
        rows = await self.db.fetchall(
            "SELECT started_at, done_at, weight FROM post_calls WHERE platform = ?"
            " AND account = ? AND ((done_at IS NULL AND started_at > ?) OR done_at > ?)",
            (platform, account, iso(now - lease), iso(now - period)),
        )
        used = sum(int(r["weight"]) for r in rows)
        if used < max_calls:
            return None, max_calls - used
        frees = [
            datetime.fromisoformat(r["done_at"]) + period
            if r["done_at"]
            else datetime.fromisoformat(r["started_at"]) + lease
            for r in rows
        ]
        return min(frees), 0

    async def _latest_status_reply(
        self, chosen: StoredReply, stamp: str, *, merge: bool, dead: tuple[str, ...] = ()
    ) -> tuple[StoredReply | None, list[str]]:
        """The status reply to post and the ones it overtook. A status already overtaken by
        a posted later one is never posted. With ``merge`` (the quota binds), pending
        statuses of one inquiry become one reply: the latest in its lifecycle; without it,
        each is posted in turn, the earliest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM replies WHERE inquiry_id = ? AND status IS NOT NULL"
            f" AND (state IN (?, ?) OR (state = ? AND {_lapsed('', dead)}))",
            (
                chosen.inquiry_id,
                ReplyState.APPROVED,
                ReplyState.POSTED,
                ReplyState.POSTING,
                stamp,
                *dead,
            ),
        )
        replies = [self._reply(r) for r in rows]

        def place(r: StoredReply) -> tuple[int, int]:
            return (r.cycle, rank_in_cycle(TicketStatus(r.status or "received")))

        latest_posted = max(
            (place(r) for r in replies if r.state == ReplyState.POSTED), default=None
        )
        pending = [r for r in replies if r.state != ReplyState.POSTED]
        overtaken = [r for r in pending if latest_posted is not None and place(r) <= latest_posted]
        pending = [r for r in pending if r not in overtaken]
        if not pending:
            return None, [r.reply_id for r in overtaken]
        # A reply whose post may still appear (uncertain) is settled first, never merged away.
        merge = merge and not any(r.uncertain for r in pending)
        best = max(pending, key=place) if merge else min(pending, key=place)
        merged = [r for r in pending if merge and r.reply_id != best.reply_id]
        return best, [r.reply_id for r in overtaken + merged]

    async def finish_post(
        self,
        claim: ReplyClaim,
        *,
        state: str,
        external_ids: list[str],
        outcome: str,
        now: datetime | None = None,
        sweep_at: datetime | None = None,
        calls_used: int | None = None,
        kept_copy: int | None = None,
    ) -> bool:
        """The platform call is over: the reply is posted (or undeliverable), its posts are
        recorded (a citizen answering one of them continues their conversation) and its
        quota slot is weighed by the posts it made (``calls_used`` when that differs: a
        copy found, not posted, used none). ``sweep_at``: an earlier call may still commit
        a copy, so look once more then. ``kept_copy``: the number of the call whose copy
        ``external_ids`` are (answered ``posted``, kept), noted in the same transaction.
        False if the lease was lost meanwhile."""
        reply = claim.reply
        assert reply is not None
        async with self.transaction() as tx:
            if kept_copy is not None:
                await tx.db.execute(
                    "UPDATE reply_copies SET answer = ?, fate = ?, external_ids = ?,"
                    " detail = NULL, updated_at = ? WHERE reply_id = ? AND attempt = ?",
                    (
                        "posted",
                        CopyFate.KEPT,
                        json.dumps(list(external_ids)) if external_ids else None,
                        now_iso(),
                        reply.reply_id,
                        kept_copy,
                    ),
                )
            done = await tx.db.execute(
                "UPDATE replies SET state = ?, external_ids = ?, outcome = ?, posted_at = ?,"
                " lease_until = NULL, failure = NULL, looks = 0, sweep_at = ?"
                " WHERE reply_id = ? AND state = ?" + _owned(claim),
                (
                    state,
                    json.dumps(external_ids),
                    outcome,
                    now_iso(),
                    iso(sweep_at) if sweep_at else None,
                    reply.reply_id,
                    ReplyState.POSTING,
                    *_owner(claim),
                ),
            )
            for external_id in external_ids:
                await tx.db.execute(
                    "INSERT INTO reply_posts (platform, account, external_id, reply_id,"
                    " inquiry_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (reply.platform, reply.account, external_id, reply.reply_id, reply.inquiry_id),
                )
            weight = max(1, len(external_ids)) if calls_used is None else calls_used
            await tx._end_call(claim.call_id, weight, now)
            if done > 0:
                await tx.record_audit(
                    "reply.posted" if state == ReplyState.POSTED else "reply.undeliverable",
                    inquiry_id=reply.inquiry_id,
                    subject=reply.reply_id,
                    account=f"{reply.platform}:{reply.account}",
                    posts=len(external_ids),
                    outcome=outcome,
                )
            return done > 0

    async def release_post(
        self,
        claim: ReplyClaim,
        *,
        uncertain: bool,
        not_before: datetime | None = None,
        failure: str | None = None,
        counts: bool = True,
        calls_used: int = 1,
        now: datetime | None = None,
        looks: int | None = None,
    ) -> None:
        """The call did not post the reply: it waits again (``not_before``). ``uncertain``
        when the platform may have posted it anyway (a timeout after sending): the next
        attempt first looks for it. ``counts`` False gives the attempt back (a rate limit, a
        paused account or a look into the thread is not a post). ``looks``: how many looks
        for the uncertain post's copy have been made since its call."""
        reply = claim.reply
        assert reply is not None
        async with self.transaction() as tx:
            await tx.db.execute(
                "UPDATE replies SET state = ?, lease_until = NULL,"
                " uncertain = CASE WHEN ? = 1 THEN 1 ELSE uncertain END, not_before = ?,"
                " failure = ?,"
                " post_attempts = post_attempts - ?, looks = COALESCE(?, looks)"
                " WHERE reply_id = ? AND state = ?" + _owned(claim),
                (
                    ReplyState.APPROVED,
                    int(uncertain),
                    iso(not_before) if not_before else None,
                    failure,
                    0 if counts else 1,
                    looks,
                    reply.reply_id,
                    ReplyState.POSTING,
                    *_owner(claim),
                ),
            )
            await tx._end_call(claim.call_id, calls_used, now)

    async def fail_post(self, claim: ReplyClaim, failure: str, now: datetime | None = None) -> None:
        """The platform refused the reply for good: kept as ``failed`` with the reason,
        visible to operators; ``retry_reply`` puts it back in line."""
        reply = claim.reply
        assert reply is not None
        async with self.transaction() as tx:
            failed = await tx.db.execute(
                "UPDATE replies SET state = ?, lease_until = NULL, failure = ?"
                " WHERE reply_id = ? AND state = ?" + _owned(claim),
                (
                    ReplyState.FAILED,
                    failure[:500],
                    reply.reply_id,
                    ReplyState.POSTING,
                    *_owner(claim),
                ),
            )
            await tx._end_call(claim.call_id, 1, now)
            if failed > 0:
                await tx.record_audit(
                    "reply.failed",
                    inquiry_id=reply.inquiry_id,
                    subject=reply.reply_id,
                    failure=failure[:200],
                )

    async def _end_call(self, call_id: str | None, weight: int, now: datetime | None) -> None:
        """The call is over at ``now`` (the outbox's clock; the quota's window counts from it)."""
        if call_id is None:
            return
        await self.db.execute(
            "UPDATE post_calls SET done_at = ?, weight = ? WHERE call_id = ?",
            (iso(now) if now is not None else now_iso(), weight, call_id),
        )

    async def prune_post_calls(self, older_than: datetime) -> None:
        await self.db.execute(
            "DELETE FROM post_calls WHERE done_at IS NOT NULL AND done_at < ?",
            (iso(older_than),),
        )

    async def outbox_backlog(self) -> list[AccountBacklog]:
        """Per account: replies waiting to be posted (approved or being posted), the oldest's
        creation, and failed ones."""
        approved, posting, failed = ReplyState.APPROVED, ReplyState.POSTING, ReplyState.FAILED
        rows = await self.db.fetchall(
            "SELECT platform, account,"
            " SUM(CASE WHEN state IN (?, ?) THEN 1 ELSE 0 END) AS waiting,"
            " MIN(CASE WHEN state IN (?, ?) THEN created_at END) AS oldest,"
            " SUM(CASE WHEN state = ? THEN 1 ELSE 0 END) AS failed"
            " FROM replies WHERE state IN (?, ?, ?)"
            " GROUP BY platform, account ORDER BY platform, account",
            (approved, posting, approved, posting, failed, approved, posting, failed),
        )
        return [
            AccountBacklog(
                r["platform"],
                r["account"],
                int(r["waiting"] or 0),
                r["oldest"],
                int(r["failed"] or 0),
            )
            for r in rows
        ]

    async def unannounced_posts(self, limit: int = 100) -> list[StoredReply]:
        rows = await self.db.fetchall(
            "SELECT * FROM replies WHERE announced = 0 AND state IN (?, ?)"
            " ORDER BY posted_at LIMIT ?",
            (ReplyState.POSTED, ReplyState.UNDELIVERABLE, limit),
        )
        return [self._reply(r) for r in rows]

    async def mark_announced(self, reply_id: str) -> None:
        await self.db.execute("UPDATE replies SET announced = 1 WHERE reply_id = ?", (reply_id,))
