"""Replies: drafts, approval decisions, their copies on the platform and the sweeps that
look for late copies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bridge.store.base import StoreBase
from bridge.store.drivers import iso, now_iso
from bridge.store.rows import (
    QueueCard,
    QueuePage,
    ReplyCopy,
    StoredReply,
    text_sha256,
)
from schemas.states import CopyAnswer, Decision
from schemas.vocab import (
    FINAL_STATUSES,
    CopyFate,
    ReplyState,
    TicketStatus,
    rank_in_cycle,
)


class RepliesStore(StoreBase):
    async def add_reply(
        self,
        *,
        reply_id: str,
        inquiry_id: str,
        platform: str,
        account: str,
        department: str,
        status: str | None,
        templated: bool,
        state: str,
        request_json: str,
        cycle: int = 0,
        before_any_status: bool = False,
    ) -> bool:
        """Record a reply (False: it was there already). ``before_any_status``: only while the
        inquiry has no status reply (the holding acknowledgement, "the number follows", must
        never come after the 已受理 that gives the number); the check and the insert are one
        step against every other reply of the inquiry being recorded, and the outbox drops
        such a reply if a status reply is approved or posted before it goes out (an approver
        may approve them in either order)."""
        # The outbox's order when a quota binds: an inquiry's first reply (0), then final
        # answers (1), then the rest (2).
        async with self.transaction() as tx:
            # every reply of the inquiry recorded one at a time (an advisory lock on
            # PostgreSQL; SQLite writes one transaction at a time anyway)
            await tx.db.lock(f"replies:{inquiry_id}")
            if before_any_status and await tx.db.fetchall(
                "SELECT 1 FROM replies WHERE inquiry_id = ? AND status IS NOT NULL LIMIT 1",
                (inquiry_id,),
            ):
                return False
            # whether it is the inquiry's first is decided by the INSERT itself (priority 0);
            # the inquiry's earlier replies are read only when there are some and a newer
            # status may supersede drafts among them
            later = 1 if status in FINAL_STATUSES else 2
            priority = await tx._insert_reply(
                reply_id,
                inquiry_id,
                platform,
                account,
                department,
                status,
                templated,
                state,
                request_json,
                cycle,
                later,
                before_status=before_any_status,
            )
            if priority is not None:
                await tx.record_audit(
                    "reply.drafted",
                    inquiry_id=inquiry_id,
                    subject=reply_id,
                    department=department,
                    status=status,
                    templated=templated,
                    state=state,
                    cycle=cycle,
                )
                if status is not None and priority != 0:
                    earlier = await tx.db.fetchall(
                        "SELECT reply_id, department, status, cycle, state FROM replies"
                        " WHERE inquiry_id = ?",
                        (inquiry_id,),
                    )
                    await tx._supersede_drafts(inquiry_id, reply_id, status, cycle, earlier)
        return priority is not None

    async def _supersede_drafts(
        self,
        inquiry_id: str,
        newer: str,
        status: str,
        cycle: int,
        earlier: list[dict[str, Any]],
    ) -> None:
        """A newer status of the ticket makes its earlier status drafts still awaiting approval
        stale: they are superseded (a new version, never posted), so an approver who still has
        one open is told so (409) instead of publishing an old status. ``earlier``: the
        inquiry's replies as read in this transaction."""
        rows = [
            r
            for r in earlier
            if r["reply_id"] != newer
            and r["status"] is not None
            and r["state"] == ReplyState.AWAITING_APPROVAL
        ]
        place = (cycle, rank_in_cycle(TicketStatus(status)))
        for row in rows:
            if (int(row["cycle"]), rank_in_cycle(TicketStatus(row["status"]))) >= place:
                continue
            done = await self.db.execute(
                "UPDATE replies SET state = ?, merged_into = ?, version = version + 1"
                " WHERE reply_id = ? AND state = ?",
                (ReplyState.SUPERSEDED, newer, row["reply_id"], ReplyState.AWAITING_APPROVAL),
            )
            if done:
                await self.record_audit(
                    "reply.superseded",
                    inquiry_id=inquiry_id,
                    subject=row["reply_id"],
                    department=row["department"],
                    by=newer,
                )

    async def _insert_reply(
        self,
        reply_id: str,
        inquiry_id: str,
        platform: str,
        account: str,
        department: str,
        status: str | None,
        templated: bool,
        state: str,
        request_json: str,
        cycle: int,
        later: int,
        before_status: bool = False,
    ) -> int | None:
        """The reply's row, unless it is there already (None); its priority (returned) is 0
        when the inquiry has no other reply, else ``later``."""
        rows = await self.db.fetchall(
            "INSERT INTO replies (reply_id, inquiry_id, platform, account, department, status,"
            " templated, state, request_json, created_at, cycle, before_status, priority)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM"
            " replies WHERE inquiry_id = ?) THEN ? ELSE 0 END)"
            " ON CONFLICT (reply_id) DO NOTHING RETURNING priority",
            (
                reply_id,
                inquiry_id,
                platform,
                account,
                department,
                status,
                int(templated),
                state,
                request_json,
                now_iso(),
                cycle,
                int(before_status),
                inquiry_id,
                later,
            ),
        )
        return int(rows[0]["priority"]) if rows else None

    @staticmethod
    def _reply(row: dict[str, Any]) -> StoredReply:
        return StoredReply(
            reply_id=row["reply_id"],
            inquiry_id=row["inquiry_id"],
            platform=row["platform"],
            account=row["account"],
            department=row["department"],
            status=row["status"],
            templated=bool(row["templated"]),
            state=row["state"],
            request_json=row["request_json"],
            final_text=row["final_text"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            decision=row["decision"],
            created_at=row["created_at"],
            posted_at=row["posted_at"],
            external_ids=json.loads(row["external_ids"]) if row["external_ids"] else [],
            cycle=int(row.get("cycle") or 0),
            post_attempts=int(row.get("post_attempts") or 0),
            uncertain=bool(row.get("uncertain")),
            failure=row.get("failure"),
            merged_into=row.get("merged_into"),
            outcome=row.get("outcome"),
            version=int(row.get("version") or 1),
            looks=int(row.get("looks") or 0),
            sweep_at=row.get("sweep_at"),
        )

    async def get_reply(self, reply_id: str) -> StoredReply | None:
        rows = await self.db.fetchall("SELECT * FROM replies WHERE reply_id = ?", (reply_id,))
        return self._reply(rows[0]) if rows else None

    async def list_replies(
        self, state: str | None = None, inquiry_id: str | None = None
    ) -> list[StoredReply]:
        sql, params = "SELECT * FROM replies WHERE 1 = 1", []
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        if inquiry_id is not None:
            sql += " AND inquiry_id = ?"
            params.append(inquiry_id)
        rows = await self.db.fetchall(sql + " ORDER BY created_at, reply_id", params)
        return [self._reply(r) for r in rows]

    async def approval_queue_mark(self) -> tuple[int, str | None]:
        """What changes whenever the queue does: how many drafts await approval and the newest
        of them (a decision lowers the count; a superseded draft's successor is newer).
        Two index reads (``replies_queue``)."""
        rows = await self.db.fetchall(
            "SELECT COUNT(*) AS n, MAX(created_at) AS newest FROM replies WHERE state = ?",
            (ReplyState.AWAITING_APPROVAL,),
        )
        return int(rows[0]["n"]), rows[0]["newest"]

    async def supersede_obsolete_drafts(self) -> int:
        """Drafts awaiting approval whose ticket is already final at another status (a
        "received" draft of a closed ticket: no newer reply was drafted to supersede it) are
        superseded, as a newer status would (a new version, an audit entry, never posted).
        Returns how many."""
        finals = sorted(s.value for s in FINAL_STATUSES)
        marks = ", ".join("?" for _ in finals)
        count = 0
        async with self.transaction() as tx:
            rows = await tx.db.fetchall(
                "SELECT r.reply_id, r.inquiry_id, r.department, t.status AS ticket_status"
                " FROM replies r JOIN inquiries i ON i.inquiry_id = r.inquiry_id"
                " JOIN tickets t ON t.department = r.department AND t.ticket_id = i.ticket_id"
                f" WHERE r.state = ? AND t.status IN ({marks}) AND r.status IS NOT NULL"
                " AND r.status <> t.status",
                (ReplyState.AWAITING_APPROVAL, *finals),
            )
            for row in rows:
                by = f"ticket:{row['ticket_status']}"
                done = await tx.db.execute(
                    "UPDATE replies SET state = ?, merged_into = ?, version = version + 1"
                    " WHERE reply_id = ? AND state = ?",
                    (ReplyState.SUPERSEDED, by, row["reply_id"], ReplyState.AWAITING_APPROVAL),
                )
                if done:
                    count += 1
                    await tx.record_audit(
                        "reply.superseded",
                        inquiry_id=row["inquiry_id"],
                        subject=row["reply_id"],
                        department=row["department"],
                        by=by,
                    )
        return count

    async def approval_queue(
        self,
        *,
        department: str | None = None,
        platform: str | None = None,
        account: str | None = None,
        status: str | None = None,
        category: str | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> QueuePage:
        """The approval queue, oldest first, one card per conversation (inquiry): its oldest
        draft awaiting approval, once the drafts its ticket made obsolete are left out (a
        status draft of a ticket already final at another status: "closed → received").
        ``supersede_obsolete_drafts`` records those as superseded. Filters: the reply's
        department, account (platform and handle), draft status (a
        ticket status, or ``note`` for a draft without one), the inquiry's category, and
        ``created_before`` (the draft's age). ``total`` counts every matching card."""
        finals = sorted(s.value for s in FINAL_STATUSES)
        marks = ", ".join("?" for _ in finals)

        def obsolete(draft: str) -> str:  # the store knows the draft is obsolete
            return (
                f"(t.status IS NOT NULL AND t.status IN ({marks})"
                f" AND {draft}.status IS NOT NULL AND {draft}.status <> t.status)"
            )

        # Each draft awaiting approval, not obsolete, with no such draft of its inquiry before
        # it: one per conversation (a lookup per draft on replies_inquiry, no window over all
        # replies); walked oldest first on replies_queue, so a page stops early.
        body = (
            " FROM replies r JOIN inquiries i ON i.inquiry_id = r.inquiry_id"
            " LEFT JOIN tickets t ON t.department = r.department AND t.ticket_id = i.ticket_id"
            f" WHERE r.state = ? AND NOT {obsolete('r')}"
            " AND NOT EXISTS (SELECT 1 FROM replies o WHERE o.inquiry_id = r.inquiry_id"
            " AND o.state = ? AND (o.created_at < r.created_at"
            " OR (o.created_at = r.created_at AND o.reply_id < r.reply_id))"
            f" AND NOT {obsolete('o')})"
        )
        waiting = ReplyState.AWAITING_APPROVAL
        params: list[Any] = [waiting, *finals, waiting, *finals]
        for column, value in (
            ("r.department", department),
            ("r.platform", platform),
            ("r.account", account),
            ("i.category", category),
        ):
            if value is not None:
                body += f" AND {column} = ?"
                params.append(value)
        if status == "note":
            body += " AND r.status IS NULL"
        elif status is not None:
            body += " AND r.status = ?"
            params.append(status)
        if created_before is not None:
            body += " AND r.created_at <= ?"
            params.append(iso(created_before))
        counted = await self.db.fetchall(f"SELECT COUNT(*) AS n{body}", params)
        rows = await self.db.fetchall(
            "SELECT r.*, i.public_text AS original, i.citizen_handle, i.category,"
            f" t.status AS ticket_status{body}"
            " ORDER BY r.created_at, r.reply_id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        drafts: dict[str, int] = {}
        if rows:
            ids = sorted({row["inquiry_id"] for row in rows})
            many = await self.db.fetchall(
                "SELECT inquiry_id, COUNT(*) AS n FROM replies WHERE state = ? AND inquiry_id IN"
                f" ({', '.join('?' for _ in ids)}) GROUP BY inquiry_id",
                (waiting, *ids),
            )
            drafts = {m["inquiry_id"]: int(m["n"]) for m in many}
        cards = [
            QueueCard(
                reply=self._reply(row),
                original=row["original"],
                citizen_handle=row["citizen_handle"],
                category=row["category"],
                ticket_status=row["ticket_status"],
                drafts=drafts.get(row["inquiry_id"], 1),
            )
            for row in rows
        ]
        return QueuePage(cards, int(counted[0]["n"]))

    async def decide_reply(
        self,
        reply_id: str,
        *,
        decision: str,
        actor: str,
        text: str | None = None,
        reason: str | None = None,
        version: int | None = None,
    ) -> bool:
        """Approve / edit / reject a reply awaiting approval; False if not awaiting, or (with
        ``version``) if its draft is no longer that version. ``text``: the approver's text,
        which becomes the reply's. Each decision makes a new version."""
        state = ReplyState.REJECTED if decision == Decision.REJECT else ReplyState.APPROVED
        sql = (
            "UPDATE replies SET state = ?, decision = ?, decided_by = ?, decided_at = ?,"
            " final_text = COALESCE(?, final_text), version = version + 1"
            " WHERE reply_id = ? AND state = ?"
        )
        params: list[Any] = [
            state,
            decision,
            actor,
            now_iso(),
            text,
            reply_id,
            ReplyState.AWAITING_APPROVAL,
        ]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)
        async with self.transaction() as tx:
            n = await tx.db.execute(sql, params)
            if n > 0:
                decided = await tx.get_reply(reply_id)
                assert decided is not None
                action: dict[str, str] = {
                    Decision.APPROVE: "reply.approved",
                    Decision.EDIT: "reply.edited",
                }
                await tx.record_audit(
                    action.get(decision, "reply.rejected"),
                    actor=actor,
                    inquiry_id=decided.inquiry_id,
                    subject=reply_id,
                    department=decided.department,
                    reason=reason,
                    version=decided.version,
                    # the text itself is on the reply; the trail proves which one was approved
                    text_sha256=(
                        None
                        if decision == Decision.REJECT or not decided.text
                        else text_sha256(decided.text)
                    ),
                )
        return n > 0

    async def mark_reply(
        self,
        reply_id: str,
        state: str,
        *,
        external_ids: list[str] | None = None,
        outcome: str | None = None,
        only_from: Sequence[str] | None = None,
    ) -> bool:
        sql = "UPDATE replies SET state = ?, external_ids = COALESCE(?, external_ids),"
        sql += " outcome = COALESCE(?, outcome), posted_at = COALESCE(?, posted_at)"
        sql += " WHERE reply_id = ?"
        params: list[Any] = [
            state,
            json.dumps(external_ids) if external_ids is not None else None,
            outcome,
            now_iso() if state == ReplyState.POSTED else None,  # posted now; else as it was
            reply_id,
        ]
        if only_from:
            sql += f" AND state IN ({', '.join('?' for _ in only_from)})"
            params += list(only_from)
        return await self.db.execute(sql, params) > 0

    async def retry_reply(self, reply_id: str, actor: str = "bridge") -> bool:
        """An operator (or a replayed dead letter) puts a failed reply back in line."""
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE replies SET state = ?, not_before = NULL, post_attempts = 0"
                " WHERE reply_id = ? AND state = ?",
                (ReplyState.APPROVED, reply_id, ReplyState.FAILED),
            )
            if n > 0:
                rows = await tx.db.fetchall(
                    "SELECT inquiry_id FROM replies WHERE reply_id = ?", (reply_id,)
                )
                await tx.record_audit(
                    "reply.retried", actor=actor, inquiry_id=rows[0]["inquiry_id"], subject=reply_id
                )
        return n > 0

    @staticmethod
    def _copy(row: dict[str, Any]) -> ReplyCopy:
        return ReplyCopy(
            reply_id=row["reply_id"],
            attempt=int(row["attempt"]),
            answer=row["answer"],
            fate=row["fate"],
            external_ids=json.loads(row["external_ids"]) if row["external_ids"] else [],
            detail=row["detail"],
            started_at=row["started_at"],
            updated_at=row["updated_at"],
        )

    async def start_copy(self, reply_id: str, now: datetime | None = None) -> int:
        """A post call is about to be made: its row first (``calling``, fate ``pending``), so
        a process that dies during the call leaves the copy it may have made accounted for.
        Only the reply's lease holder calls this. Returns the call's number."""
        stamp = iso(now) if now is not None else now_iso()
        # the next number and the row in one statement (the lease holder is the only writer)
        rows = await self.db.fetchall(
            "INSERT INTO reply_copies (reply_id, attempt, answer, fate, started_at, updated_at)"
            " SELECT ?, COALESCE(MAX(attempt), 0) + 1, ?, ?, ?, ? FROM reply_copies"
            " WHERE reply_id = ? RETURNING attempt",
            (reply_id, CopyAnswer.CALLING, CopyFate.PENDING, stamp, stamp, reply_id),
        )
        return int(rows[0]["attempt"])

    async def end_copy(
        self,
        reply_id: str,
        attempt: int,
        *,
        answer: str,
        fate: str,
        external_ids: Sequence[str] = (),
        detail: str | None = None,
    ) -> None:
        """What the call answered, and what its copy is (as far as is known now)."""
        await self.db.execute(
            "UPDATE reply_copies SET answer = ?, fate = ?, external_ids = ?, detail = ?,"
            " updated_at = ? WHERE reply_id = ? AND attempt = ?",
            (
                answer,
                fate,
                json.dumps(list(external_ids)) if external_ids else None,
                detail,
                now_iso(),
                reply_id,
                attempt,
            ),
        )

    async def list_copies(self, reply_id: str) -> list[ReplyCopy]:
        rows = await self.db.fetchall(
            "SELECT * FROM reply_copies WHERE reply_id = ? ORDER BY attempt", (reply_id,)
        )
        return [self._copy(r) for r in rows]

    async def record_copies(self, reply: StoredReply, copies: Sequence[ReplyCopy]) -> None:
        """Settle what the bridge learnt of a reply's copies in one transaction: each row's
        fate and platform ids (a row numbered past the calls is a copy no call claims), and
        every copy's posts mapped to the reply (so a citizen answering any of them continues
        their conversation, and no other reply takes them for its own)."""
        stamp = now_iso()
        async with self.transaction() as tx:
            for copy in copies:
                ids = json.dumps(copy.external_ids) if copy.external_ids else None
                await tx.db.execute(
                    "INSERT INTO reply_copies (reply_id, attempt, answer, fate, external_ids,"
                    " detail, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (reply_id, attempt) DO UPDATE SET answer = excluded.answer,"
                    " fate = excluded.fate,"
                    " external_ids = excluded.external_ids, detail = excluded.detail,"
                    " updated_at = excluded.updated_at",
                    (
                        reply.reply_id,
                        copy.attempt,
                        copy.answer,
                        copy.fate,
                        ids,
                        copy.detail,
                        copy.started_at or stamp,
                        stamp,
                    ),
                )
                for external_id in copy.external_ids:
                    await tx.db.execute(
                        "INSERT INTO reply_posts (platform, account, external_id, reply_id,"
                        " inquiry_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (
                            reply.platform,
                            reply.account,
                            external_id,
                            reply.reply_id,
                            reply.inquiry_id,
                        ),
                    )
            deleted = [i for c in copies if c.fate == CopyFate.DELETED for i in c.external_ids]
            left = [i for c in copies if c.fate == CopyFate.EXTRA for i in c.external_ids]
            if deleted or left:
                await tx.record_audit(
                    "reply.copies_settled",
                    inquiry_id=reply.inquiry_id,
                    subject=reply.reply_id,
                    account=f"{reply.platform}:{reply.account}",
                    deleted=deleted or None,
                    left=left or None,
                )

    async def replies_of_posts(
        self, platform: str, account: str, external_ids: Sequence[str]
    ) -> dict[str, str]:
        """Which reply each of these platform posts belongs to (those the bridge recorded)."""
        if not external_ids:
            return {}
        marks = ", ".join("?" for _ in external_ids)
        rows = await self.db.fetchall(
            "SELECT external_id, reply_id FROM reply_posts WHERE platform = ? AND account = ?"
            f" AND external_id IN ({marks})",
            (platform, account, *external_ids),
        )
        return {r["external_id"]: r["reply_id"] for r in rows}

    async def due_sweeps(
        self, now: datetime, accounts: Sequence[tuple[str, str]], limit: int = 50
    ) -> list[StoredReply]:
        """Posted replies of these (platform, account) pairs due for one more look for late
        copies."""
        if not accounts:
            return []
        which = " OR ".join("(platform = ? AND account = ?)" for _ in accounts)
        rows = await self.db.fetchall(
            f"SELECT * FROM replies WHERE sweep_at IS NOT NULL AND sweep_at <= ? AND ({which})"
            " ORDER BY sweep_at LIMIT ?",
            (iso(now), *(x for pair in accounts for x in pair), limit),
        )
        return [self._reply(r) for r in rows]

    async def claim_sweep(self, reply_id: str, expected: str, until: datetime) -> bool:
        """Take a due sweep (compare-and-set on the time read): one process looks at a time;
        one that dies leaves it due again at ``until``."""
        return (
            await self.db.execute(
                "UPDATE replies SET sweep_at = ? WHERE reply_id = ? AND sweep_at = ?",
                (iso(until), reply_id, expected),
            )
            > 0
        )

    async def set_sweep(self, reply_id: str, sweep_at: datetime | None, looks: int) -> None:
        await self.db.execute(
            "UPDATE replies SET sweep_at = ?, looks = ? WHERE reply_id = ?",
            (iso(sweep_at) if sweep_at else None, looks, reply_id),
        )
