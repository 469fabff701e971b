"""The repository: every query of the bridge's durable state (cursors, inquiries, tickets,
create attempts, ticket events, replies, approval decisions and the audit trail), over a
``Database`` driver (``bridge.store.drivers``) so the same portable SQL runs on SQLite and
PostgreSQL.

``SqlStore`` implements the ``Store`` protocol (``bridge.store.protocol``) that stages use.
The schema is created and migrated at start (``bridge.store.migrations``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge import audit
from bridge.store.drivers import (
    Database,
    Executor,
    PostgresDatabase,
    SqliteDatabase,
    iso,
    now_iso,
)
from bridge.store.migrations import migrate
from bridge.store.rows import (
    AppliedEvent,
    CreateAttempt,
    ReplyClaim,
    StoredInquiry,
    StoredReply,
    StoredTicket,
)
from schemas.vocab import (
    FINAL_STATUSES,
    REOPENED_RANK_IN_CYCLE,
    CreateState,
    ReplyState,
    TicketStatus,
    rank_in_cycle,
)

ANY_CURSOR = object()  # set_cursor without compare-and-set
FINAL_RANK = TicketStatus.RESOLVED.rank  # resolved, rejected and closed can be reopened

FaultHook = Callable[[str], None]


class SqlStore:
    """All durable state of the bridge. Methods are small and idempotent where it matters.

    ``transaction()`` gives a store whose statements commit together. ``fault_hook`` (tests)
    is called at named points between statements so a crash can be injected there.
    """

    def __init__(
        self, db: Executor, *, database: Database | None = None, fault_hook: FaultHook | None = None
    ) -> None:
        self.db = db
        self._database = database
        self.fault_hook = fault_hook

    def fault(self, point: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(point)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlStore]:
        """A store whose statements commit together, or not at all."""
        async with self.db.transaction() as tx:
            yield SqlStore(tx, database=self._database, fault_hook=self.fault_hook)

    # ---------------------------------------------------------------- lifecycle
    @property
    def database(self) -> Database:
        assert self._database is not None, "not a store opened on a database"
        return self._database

    async def migrate(self) -> int:
        return await migrate(self.db, self.database)

    async def ping(self) -> None:
        await self.db.fetchall("SELECT 1 AS ok")

    async def close(self) -> None:
        await self.database.close()

    # ---------------------------------------------------------------- audit trail
    async def record_audit(self, action: str, **fields: Any) -> None:
        """Append to the audit trail, in this store's transaction when it holds one (written
        as it commits; ``bridge.audit.append``: actor, inquiry_id, subject and detail fields)."""
        await audit.append(self.db, action, **fields)

    async def _audit_inquiry(self, inquiry_id: str, fields: dict[str, Any], new: bool) -> None:
        """What an inquiry write means for the trail: received, ignored, routed, or moved."""
        if new:
            await self.record_audit(
                "inquiry.received",
                inquiry_id=inquiry_id,
                platform=fields.get("platform"),
                account=fields.get("account"),
                kind=fields.get("kind"),
            )
        state = fields.get("state")
        if state == "ignored":
            await self.record_audit(
                "inquiry.ignored", inquiry_id=inquiry_id, reason=fields.get("reason")
            )
        elif fields.get("department"):
            how = json.loads(fields["explanation"]) if fields.get("explanation") else {}
            await self.record_audit(
                "inquiry.routed",
                inquiry_id=inquiry_id,
                subject=fields["department"],
                department=fields["department"],
                category=fields.get("category"),
                decided_by=how.get("decided_by") or ("conversation" if not new else None),
                confidence=fields.get("confidence"),
                conversation=fields.get("conversation"),
                state=state,
            )
        elif state is not None or fields.get("category"):
            await self.record_audit(
                "inquiry.state",
                inquiry_id=inquiry_id,
                state=state,
                ticket_id=fields.get("ticket_id"),
                category=fields.get("category"),
            )

    # ---------------------------------------------------------------- cursors
    async def get_cursor(self, name: str) -> str | None:
        rows = await self.db.fetchall("SELECT cursor FROM cursors WHERE name = ?", (name,))
        return rows[0]["cursor"] if rows else None

    async def set_cursor(
        self, name: str, cursor: str | None, *, expected: object = ANY_CURSOR
    ) -> bool:
        """Store a cursor. With ``expected`` (the cursor the caller read) it is a
        compare-and-set: it writes only if the cursor is still that one and returns whether
        it did, so a poller that lost its lease never moves a cursor back or over a newer
        holder's."""
        if expected is ANY_CURSOR:
            n = await self.db.execute(
                "UPDATE cursors SET cursor = ?, updated_at = ? WHERE name = ?",
                (cursor, now_iso(), name),
            )
            if n == 0:
                await self.db.execute(
                    "INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?)",
                    (name, cursor, now_iso()),
                )
            return True
        n = await self.db.execute(
            "UPDATE cursors SET cursor = ?, updated_at = ?"
            " WHERE name = ? AND cursor IS NOT DISTINCT FROM ?",
            (cursor, now_iso(), name, expected),
        )
        if n == 0 and expected is None:
            n = await self.db.execute(
                "INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, cursor, now_iso()),
            )
        return n == 1

    async def record_once(self, kind: str, key: str) -> bool:
        """True the first time (kind, key) is marked, across processes; False after."""
        n = await self.db.execute(
            "INSERT INTO once_marks (kind, key, marked_at) VALUES (?, ?, ?)"
            " ON CONFLICT (kind, key) DO NOTHING",
            (kind, key, now_iso()),
        )
        return n > 0

    # ---------------------------------------------------------------- inquiries
    async def record_inquiry(self, **row: Any) -> bool:
        """Insert an inquiry row; False if it was already there (dedupe by inquiry id)."""
        row = {**row, "created_at": now_iso(), "updated_at": now_iso()}
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        async with self.transaction() as tx:
            n = await tx.db.execute(
                f"INSERT INTO inquiries ({cols}) VALUES ({marks})"
                " ON CONFLICT (inquiry_id) DO NOTHING",
                tuple(row.values()),
            )
            if n > 0:
                await tx._audit_inquiry(row["inquiry_id"], row, new=True)
        return n > 0

    async def update_inquiry(self, inquiry_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        async with self.transaction() as tx:
            n = await tx.db.execute(
                f"UPDATE inquiries SET {sets}, updated_at = ? WHERE inquiry_id = ?",
                (*fields.values(), now_iso(), inquiry_id),
            )
            if n > 0:
                await tx._audit_inquiry(inquiry_id, fields, new=False)

    async def advance_inquiry(self, inquiry_id: str, from_state: str, state: str) -> bool:
        """Move an inquiry on only from ``from_state`` (a later stage may have moved it
        further already: triage's "routed" must not overwrite ticketing's "ticketed")."""
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE inquiries SET state = ?, updated_at = ? WHERE inquiry_id = ? AND state = ?",
                (state, now_iso(), inquiry_id, from_state),
            )
            if n > 0:
                await tx._audit_inquiry(inquiry_id, {"state": state}, new=False)
        return n > 0

    @staticmethod
    def _inquiry(row: dict[str, Any]) -> StoredInquiry:
        return StoredInquiry(**row)

    async def get_inquiry(self, inquiry_id: str) -> StoredInquiry | None:
        rows = await self.db.fetchall("SELECT * FROM inquiries WHERE inquiry_id = ?", (inquiry_id,))
        return self._inquiry(rows[0]) if rows else None

    async def list_inquiries(self) -> list[StoredInquiry]:
        rows = await self.db.fetchall("SELECT * FROM inquiries ORDER BY created_at, inquiry_id")
        return [self._inquiry(r) for r in rows]

    # ---------------------------------------------------------------- tickets
    async def claim_thread(self, thread_key: str, inquiry_id: str, reference: str) -> str:
        """The reference of the ticket this thread's inquiries belong to.

        The first inquiry of a thread claims it (a unique key makes this atomic across
        processes); later ones get the owner's reference and are appended. Once the owner's
        ticket is final, the next inquiry takes the thread over and gets a new ticket.
        """
        await self.db.execute(
            "INSERT INTO threads (thread_key, reference, inquiry_id, claimed_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (thread_key) DO NOTHING",
            (thread_key, reference, inquiry_id, now_iso()),
        )
        rows = await self.db.fetchall(
            "SELECT reference, inquiry_id FROM threads WHERE thread_key = ?", (thread_key,)
        )
        owner = rows[0]
        if owner["inquiry_id"] == inquiry_id:
            return str(owner["reference"])
        ticket = await self.ticket_by_reference(owner["reference"])
        if ticket is not None and ticket.status in FINAL_STATUSES:
            await self.db.execute(
                "UPDATE threads SET reference = ?, inquiry_id = ?, claimed_at = ?"
                " WHERE thread_key = ? AND reference = ?",
                (reference, inquiry_id, now_iso(), thread_key, owner["reference"]),
            )
            return await self.claim_thread(thread_key, inquiry_id, reference)
        return str(owner["reference"])

    async def thread_owner(self, thread_key: str) -> str | None:
        """The inquiry that holds a claimed thread."""
        rows = await self.db.fetchall(
            "SELECT inquiry_id FROM threads WHERE thread_key = ?", (thread_key,)
        )
        return str(rows[0]["inquiry_id"]) if rows else None

    @staticmethod
    def _ticket(row: dict[str, Any]) -> StoredTicket:
        return StoredTicket(**row)

    async def get_ticket(self, department: str, ticket_id: str) -> StoredTicket | None:
        rows = await self.db.fetchall(
            "SELECT * FROM tickets WHERE department = ? AND ticket_id = ?",
            (department, ticket_id),
        )
        return self._ticket(rows[0]) if rows else None

    async def ticket_by_reference(self, reference: str) -> StoredTicket | None:
        rows = await self.db.fetchall("SELECT * FROM tickets WHERE reference = ?", (reference,))
        return self._ticket(rows[0]) if rows else None

    async def record_ticket(
        self,
        *,
        department: str,
        ticket_id: str,
        reference: str,
        inquiry_id: str,
        thread_key: str,
        status: str,
        status_rank: int,
        native_status: str,
        status_at: str,
    ) -> bool:
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "INSERT INTO tickets (department, ticket_id, reference, inquiry_id, thread_key,"
                " status, status_rank, native_status, status_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (department, ticket_id) DO NOTHING",
                (
                    department,
                    ticket_id,
                    reference,
                    inquiry_id,
                    thread_key,
                    status,
                    status_rank,
                    native_status,
                    status_at,
                    now_iso(),
                ),
            )
            if n > 0:
                await tx.record_audit(
                    "ticket.created",
                    inquiry_id=inquiry_id,
                    subject=f"{department}/{ticket_id}",
                    department=department,
                    ticket_id=ticket_id,
                    reference=reference,
                    status=status,
                )
        return n > 0

    async def list_tickets(self, department: str | None = None) -> list[StoredTicket]:
        if department is None:
            rows = await self.db.fetchall("SELECT * FROM tickets ORDER BY created_at")
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM tickets WHERE department = ? ORDER BY created_at", (department,)
            )
        return [self._ticket(r) for r in rows]

    async def apply_status(
        self,
        *,
        department: str,
        ticket_id: str,
        event_id: str,
        status: str,
        status_rank: int,
        native_status: str,
        occurred_at: str,
    ) -> AppliedEvent:
        """Record a ticket event and apply it if it takes the ticket forward.

        An event seen before (same event id), or one whose status is not past the current
        one in the lifecycle (a late or out-of-order event), is recorded but changes nothing:
        status never goes backwards. Lifecycle rank decides, not timestamps: backends report
        times to the second, so a change made in the second of creation would look "older".

        ``reopened`` (重办) on a resolved/rejected/closed ticket opens the next handling cycle;
        from then on only events that happened at or after the reopening can move it, so a
        late event of the earlier cycle cannot.

        One transaction (and part of the caller's, when it holds one): the reply stage
        records the event, moves the ticket and decides the replies together, so a crash
        between any two statements leaves either nothing or everything.
        """
        async with self.transaction() as tx:
            return await tx._apply_status(
                department, ticket_id, event_id, status, status_rank, native_status, occurred_at
            )

    async def _apply_status(
        self,
        department: str,
        ticket_id: str,
        event_id: str,
        status: str,
        status_rank: int,
        native_status: str,
        occurred_at: str,
    ) -> AppliedEvent:
        inserted = await self.db.execute(
            "INSERT INTO ticket_events (department, event_id, ticket_id, status, native_status,"
            " occurred_at, applied, recorded_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)"
            " ON CONFLICT (department, event_id) DO NOTHING",
            (department, event_id, ticket_id, status, native_status, occurred_at, now_iso()),
        )
        self.fault("apply_status:event_recorded")
        if inserted == 0:  # seen before: report whether it was applied then, and in which cycle
            rows = await self.db.fetchall(
                "SELECT applied, cycle FROM ticket_events WHERE department = ? AND event_id = ?",
                (department, event_id),
            )
            row = rows[0] if rows else {"applied": 0, "cycle": None}
            return AppliedEvent(False, bool(row["applied"]), int(row["cycle"] or 0))
        if status == "reopened":
            moved = await self.db.execute(
                "UPDATE tickets SET status = ?, status_rank = ?, native_status = ?,"
                " status_at = ?, cycle = cycle + 1, reopened_at = ?"
                " WHERE department = ? AND ticket_id = ? AND status_rank >= ?"
                " AND (reopened_at IS NULL OR reopened_at <= ?)",
                (
                    status,
                    REOPENED_RANK_IN_CYCLE,
                    native_status,
                    occurred_at,
                    occurred_at,
                    department,
                    ticket_id,
                    FINAL_RANK,
                    occurred_at,
                ),
            )
        else:
            moved = await self.db.execute(
                "UPDATE tickets SET status = ?, status_rank = ?, native_status = ?, status_at = ?"
                " WHERE department = ? AND ticket_id = ? AND status_rank < ?"
                " AND (reopened_at IS NULL OR reopened_at <= ?)",
                (
                    status,
                    status_rank,
                    native_status,
                    occurred_at,
                    department,
                    ticket_id,
                    status_rank,
                    occurred_at,
                ),
            )
        self.fault("apply_status:ticket_moved")
        rows = await self.db.fetchall(
            "SELECT cycle, inquiry_id FROM tickets WHERE department = ? AND ticket_id = ?",
            (department, ticket_id),
        )
        cycle = int(rows[0]["cycle"]) if rows else 0
        if moved:
            await self.db.execute(
                "UPDATE ticket_events SET applied = 1, cycle = ?"
                " WHERE department = ? AND event_id = ?",
                (cycle, department, event_id),
            )
            self.fault("apply_status:event_marked_applied")
            await self.record_audit(
                "ticket.status",
                inquiry_id=rows[0]["inquiry_id"] if rows else None,
                subject=f"{department}/{ticket_id}",
                status=status,
                native_status=native_status,
                event_id=event_id,
                occurred_at=occurred_at,
                cycle=cycle,
            )
        return AppliedEvent(True, moved > 0, cycle)

    # ---------------------------------------------------------------- create attempts
    @staticmethod
    def _attempt(row: dict[str, Any]) -> CreateAttempt:
        return CreateAttempt(**row)

    async def get_create_attempt(self, reference: str) -> CreateAttempt | None:
        rows = await self.db.fetchall(
            "SELECT * FROM create_attempts WHERE reference = ?", (reference,)
        )
        return self._attempt(rows[0]) if rows else None

    async def claim_create(
        self,
        reference: str,
        department: str,
        inquiry_id: str,
        *,
        expected_updated_at: str | None = None,
        command_json: str | None = None,
    ) -> bool:
        """Durably note, before the call, that this delivery will create the ticket.

        Atomic across processes: True for exactly one claimant. A first attempt inserts the
        record; a later one takes it over only from ``not_sent`` (nothing reached the
        backend), ``rejected`` (the backend refused it: a replay after a fix may create) or,
        with ``expected_updated_at``, from the ``attempted`` record it has just inspected
        (compare-and-set: the earlier attempt's lease expired and the ticket was not found).
        ``command_json`` keeps the command so an operator can have it run again.
        """
        now = now_iso()
        inserted = await self.db.execute(
            "INSERT INTO create_attempts (reference, department, inquiry_id, state, attempts,"
            " updated_at, command_json) VALUES (?, ?, ?, 'attempted', 1, ?, ?)"
            " ON CONFLICT (reference) DO NOTHING",
            (reference, department, inquiry_id, now, command_json),
        )
        if inserted:
            return True
        if expected_updated_at is not None:
            taken = await self.db.execute(
                "UPDATE create_attempts SET attempts = attempts + 1, updated_at = ?"
                " WHERE reference = ? AND state = 'attempted' AND updated_at = ?",
                (now, reference, expected_updated_at),
            )
        else:
            taken = await self.db.execute(
                "UPDATE create_attempts SET attempts = attempts + 1, state = 'attempted',"
                " updated_at = ?, command_json = COALESCE(?, command_json)"
                " WHERE reference = ? AND state IN ('not_sent', 'rejected')",
                (now, command_json, reference),
            )
        return taken > 0

    async def decide_reconciliation(
        self, reference: str, *, decision: str, actor: str, ticket_id: str | None = None
    ) -> bool:
        """An official settles an uncertain create: ``attached`` to an existing ticket (state
        ``created``) or ``not_created`` (state ``not_sent``: the create may run again).
        False unless the attempt awaits reconciliation (compare-and-set)."""
        state = CreateState.CREATED if decision == "attached" else CreateState.NOT_SENT
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE create_attempts SET state = ?, ticket_id = COALESCE(?, ticket_id),"
                " decision = ?, decided_by = ?, decided_at = ?, updated_at = ?"
                " WHERE reference = ? AND state = 'needs_reconciliation'",
                (state, ticket_id, decision, actor, now_iso(), now_iso(), reference),
            )
            if n > 0:
                rows = await tx.db.fetchall(
                    "SELECT inquiry_id, department FROM create_attempts WHERE reference = ?",
                    (reference,),
                )
                await tx.record_audit(
                    "reconciliation.settled",
                    actor=actor,
                    inquiry_id=rows[0]["inquiry_id"],
                    subject=reference,
                    department=rows[0]["department"],
                    decision=decision,
                    ticket_id=ticket_id,
                )
        return n > 0

    async def create_attempt_for_inquiry(self, inquiry_id: str) -> CreateAttempt | None:
        rows = await self.db.fetchall(
            "SELECT * FROM create_attempts WHERE inquiry_id = ?", (inquiry_id,)
        )
        return self._attempt(rows[0]) if rows else None

    async def creates_in_flight(self, department: str) -> bool:
        """A create whose ticket id is not known yet: an event for an unknown ticket may be
        its (a callback racing the create's answer)."""
        rows = await self.db.fetchall(
            "SELECT 1 AS x FROM create_attempts WHERE department = ?"
            " AND state IN ('attempted', 'needs_reconciliation') LIMIT 1",
            (department,),
        )
        return bool(rows)

    async def set_create_state(
        self, reference: str, state: str, ticket_id: str | None = None, detail: str | None = None
    ) -> None:
        await self.db.execute(
            "UPDATE create_attempts SET state = ?, ticket_id = COALESCE(?, ticket_id),"
            " detail = ?, updated_at = ? WHERE reference = ?",
            (state, ticket_id, detail, now_iso(), reference),
        )

    async def list_create_attempts(self, state: str | None = None) -> list[CreateAttempt]:
        if state is None:
            rows = await self.db.fetchall("SELECT * FROM create_attempts ORDER BY updated_at")
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM create_attempts WHERE state = ? ORDER BY updated_at", (state,)
            )
        return [self._attempt(r) for r in rows]

    # ---------------------------------------------------------------- replies
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
    ) -> bool:
        # The outbox's order when a quota binds: an inquiry's first reply (0), then final
        # answers (1), then the rest (2).
        first = not await self.db.fetchall(
            "SELECT 1 AS x FROM replies WHERE inquiry_id = ? LIMIT 1", (inquiry_id,)
        )
        priority = 0 if first else 1 if status in FINAL_STATUSES else 2
        async with self.transaction() as tx:
            n = await tx._insert_reply(
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
                priority,
            )
            if n > 0:
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
        return n > 0

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
        priority: int,
    ) -> int:
        return await self.db.execute(
            "INSERT INTO replies (reply_id, inquiry_id, platform, account, department, status,"
            " templated, state, request_json, created_at, cycle, priority)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (reply_id) DO NOTHING",
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
                priority,
            ),
        )

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

    async def decide_reply(
        self,
        reply_id: str,
        *,
        decision: str,
        actor: str,
        text: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Approve / edit / reject a reply awaiting approval; False if not awaiting."""
        state = ReplyState.REJECTED if decision == "reject" else ReplyState.APPROVED
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE replies SET state = ?, decision = ?, decided_by = ?, decided_at = ?,"
                " final_text = COALESCE(?, final_text)"
                " WHERE reply_id = ? AND state = 'awaiting_approval'",
                (state, decision, actor, now_iso(), text, reply_id),
            )
            if n > 0:
                rows = await tx.db.fetchall(
                    "SELECT inquiry_id, department FROM replies WHERE reply_id = ?", (reply_id,)
                )
                action = {"approve": "reply.approved", "edit": "reply.edited"}
                await tx.record_audit(
                    action.get(decision, "reply.rejected"),
                    actor=actor,
                    inquiry_id=rows[0]["inquiry_id"],
                    subject=reply_id,
                    department=rows[0]["department"],
                    reason=reason,
                    # the edited text itself is on the reply; the trail proves which it was
                    text_sha256=hashlib.sha256(text.encode()).hexdigest() if text else None,
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
        sql += " outcome = COALESCE(?, outcome), posted_at = CASE WHEN ? = 'posted' THEN ?"
        sql += " ELSE posted_at END WHERE reply_id = ?"
        params: list[Any] = [
            state,
            json.dumps(external_ids) if external_ids is not None else None,
            outcome,
            state,
            now_iso(),
            reply_id,
        ]
        if only_from:
            sql += f" AND state IN ({', '.join('?' for _ in only_from)})"
            params += list(only_from)
        return await self.db.execute(sql, params) > 0

    # ---------------------------------------------------------------- conversations
    async def inquiry_by_post(
        self, platform: str, account: str, external_id: str
    ) -> StoredInquiry | None:
        """The inquiry that this platform post is (on this account), if the bridge has it."""
        rows = await self.db.fetchall(
            "SELECT * FROM inquiries WHERE platform = ? AND account = ? AND external_id = ?",
            (platform, account, external_id),
        )
        return self._inquiry(rows[0]) if rows else None

    async def inquiry_answered_by_post(
        self, platform: str, account: str, external_id: str
    ) -> StoredInquiry | None:
        """The inquiry that this platform post (one of the bridge's replies) answered."""
        rows = await self.db.fetchall(
            "SELECT i.* FROM reply_posts p JOIN inquiries i ON i.inquiry_id = p.inquiry_id"
            " WHERE p.platform = ? AND p.account = ? AND p.external_id = ?",
            (platform, account, external_id),
        )
        return self._inquiry(rows[0]) if rows else None

    async def conversation_inquiries(self, owner: str) -> list[StoredInquiry]:
        """Every inquiry of one conversation: the first (``owner``) and its follow-ups."""
        rows = await self.db.fetchall(
            "SELECT * FROM inquiries WHERE inquiry_id = ? OR conversation = ?"
            " ORDER BY created_at, inquiry_id",
            (owner, owner),
        )
        return [self._inquiry(r) for r in rows]

    # ---------------------------------------------------------------- outbox
    async def claim_reply(
        self,
        platform: str,
        account: str,
        *,
        owner: str,
        lease: timedelta,
        quota: tuple[int, timedelta] | None = None,
        now: datetime | None = None,
    ) -> ReplyClaim:
        """Lease the reply an account should post next, within its posting quota.

        One transaction, serialised per account across processes, so two outboxes never
        take the same reply, never two replies of one inquiry at once, and together never
        exceed the quota. Order, when the quota is what limits: an inquiry's first answer
        before any second reply, then final answers, then the rest, oldest first. Pending
        status replies of one inquiry become one: the latest is posted, the ones it
        overtook are marked superseded. A lease that ran out (a crash, or a call whose
        outcome is unknown) can be taken again; the reply is then ``uncertain``. ``now`` is
        the outbox's clock (the quota's window and the leases are measured on it).
        """
        async with self.transaction() as tx:
            await tx.db.lock(f"outbox:{platform}:{account}")
            return await tx._claim_reply(
                platform, account, owner, lease, quota, now or datetime.now(UTC)
            )

    async def _claim_reply(
        self,
        platform: str,
        account: str,
        owner: str,
        lease: timedelta,
        quota: tuple[int, timedelta] | None,
        now: datetime,
    ) -> ReplyClaim:
        stamp = iso(now)
        claimable = (
            "(r.state = 'approved' OR (r.state = 'posting' AND r.lease_until < ?))"
            " AND (r.not_before IS NULL OR r.not_before <= ?)"
        )
        # In the order of the claim index: a lease that ran out first (its reply may be on
        # the platform already), then approved replies by priority and age. Only the rows up
        # to the first that may go are read.
        ready = (
            " AND (r.not_before IS NULL OR r.not_before <= ?)"
            " AND NOT EXISTS (SELECT 1 FROM replies q WHERE q.inquiry_id = r.inquiry_id"
            " AND q.state = 'posting' AND q.lease_until >= ?)"
            " ORDER BY r.priority, r.created_at LIMIT 1"
        )
        rows = await self.db.fetchall(
            "SELECT r.* FROM replies r WHERE r.platform = ? AND r.account = ?"
            " AND r.state = 'posting' AND r.lease_until < ?" + ready,
            (platform, account, stamp, stamp, stamp),
        )
        if not rows:
            rows = await self.db.fetchall(
                "SELECT r.* FROM replies r WHERE r.platform = ? AND r.account = ?"
                " AND r.state = 'approved'" + ready,
                (platform, account, stamp, stamp),
            )
        if not rows:
            return ReplyClaim(None)
        pressed = False  # the quota, not the platform, decides when replies go out
        if quota is not None:
            wait, free = await self._quota_wait(platform, account, now, lease, *quota)
            if wait is not None:
                return ReplyClaim(None, wait_until=wait)
            waiting = await self.db.fetchall(  # counted only as far as it matters
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM replies r WHERE r.platform = ?"
                " AND r.account = ? AND " + claimable + " LIMIT ?) AS w",
                (platform, account, stamp, stamp, free + 1),
            )
            pressed = int(waiting[0]["n"]) > free
        first: StoredReply = self._reply(rows[0])
        chosen: StoredReply | None = first
        superseded: list[str] = []
        if first.status is not None:
            chosen, superseded = await self._latest_status_reply(first, stamp, merge=pressed)
        for reply_id in superseded:
            await self.db.execute(
                "UPDATE replies SET state = 'superseded', merged_into = ?"
                " WHERE reply_id = ? AND state IN ('approved', 'posting')",
                (None if chosen is None else chosen.reply_id, reply_id),
            )
        if chosen is None:  # everything pending was overtaken by what is already posted
            return ReplyClaim(None, superseded=tuple(superseded))
        taken = await self.db.execute(
            "UPDATE replies SET state = 'posting', lease_owner = ?, lease_until = ?,"
            " post_attempts = post_attempts + 1,"
            " uncertain = CASE WHEN state = 'posting' THEN 1 ELSE uncertain END"
            " WHERE reply_id = ?"
            " AND (state = 'approved' OR (state = 'posting' AND lease_until < ?))",
            (owner, iso(now + lease), chosen.reply_id, stamp),
        )
        if not taken:
            return ReplyClaim(None, superseded=tuple(superseded))
        call_id = uuid.uuid4().hex
        await self.db.execute(
            "INSERT INTO post_calls (call_id, platform, account, reply_id, started_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (call_id, platform, account, chosen.reply_id, stamp),
        )
        claimed = await self.get_reply(chosen.reply_id)
        return ReplyClaim(claimed, call_id=call_id, superseded=tuple(superseded))

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
        self, chosen: StoredReply, stamp: str, *, merge: bool
    ) -> tuple[StoredReply | None, list[str]]:
        """The status reply to post and the ones it overtook. A status already overtaken by
        a posted later one is never posted. With ``merge`` (the quota binds), pending
        statuses of one inquiry become one reply: the latest in its lifecycle; without it,
        each is posted in turn, the earliest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM replies WHERE inquiry_id = ? AND status IS NOT NULL"
            " AND (state IN ('approved', 'posted') OR (state = 'posting' AND lease_until < ?))",
            (chosen.inquiry_id, stamp),
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
    ) -> bool:
        """The platform call is over: the reply is posted (or undeliverable), its posts are
        recorded (a citizen answering one of them continues their conversation) and its
        quota slot is weighed by the posts it made. False if the lease was lost meanwhile."""
        reply = claim.reply
        assert reply is not None
        async with self.transaction() as tx:
            done = await tx.db.execute(
                "UPDATE replies SET state = ?, external_ids = ?, outcome = ?, posted_at = ?,"
                " lease_until = NULL, failure = NULL WHERE reply_id = ? AND state = 'posting'",
                (state, json.dumps(external_ids), outcome, now_iso(), reply.reply_id),
            )
            for external_id in external_ids:
                await tx.db.execute(
                    "INSERT INTO reply_posts (platform, account, external_id, reply_id,"
                    " inquiry_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (reply.platform, reply.account, external_id, reply.reply_id, reply.inquiry_id),
                )
            await tx._end_call(claim.call_id, max(1, len(external_ids)), now)
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
    ) -> None:
        """The call did not post the reply: it waits again (``not_before``). ``uncertain``
        when the platform may have posted it anyway (a timeout after sending): the next
        attempt first looks for it. ``counts`` False gives the attempt back (a rate limit or
        a paused account is not the reply's fault)."""
        reply = claim.reply
        assert reply is not None
        async with self.transaction() as tx:
            await tx.db.execute(
                "UPDATE replies SET state = 'approved', lease_until = NULL,"
                " uncertain = CASE WHEN ? THEN 1 ELSE uncertain END, not_before = ?, failure = ?,"
                " post_attempts = post_attempts - ? WHERE reply_id = ? AND state = 'posting'",
                (
                    int(uncertain),
                    iso(not_before) if not_before else None,
                    failure,
                    0 if counts else 1,
                    reply.reply_id,
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
                "UPDATE replies SET state = 'failed', lease_until = NULL, failure = ?"
                " WHERE reply_id = ? AND state = 'posting'",
                (failure[:500], reply.reply_id),
            )
            await tx._end_call(claim.call_id, 1, now)
            if failed > 0:
                await tx.record_audit(
                    "reply.failed",
                    inquiry_id=reply.inquiry_id,
                    subject=reply.reply_id,
                    failure=failure[:200],
                )

    async def retry_reply(self, reply_id: str, actor: str = "bridge") -> bool:
        """An operator (or a replayed dead letter) puts a failed reply back in line."""
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE replies SET state = 'approved', not_before = NULL, post_attempts = 0"
                " WHERE reply_id = ? AND state = 'failed'",
                (reply_id,),
            )
            if n > 0:
                rows = await tx.db.fetchall(
                    "SELECT inquiry_id FROM replies WHERE reply_id = ?", (reply_id,)
                )
                await tx.record_audit(
                    "reply.retried", actor=actor, inquiry_id=rows[0]["inquiry_id"], subject=reply_id
                )
        return n > 0

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

    async def outbox_backlog(self) -> list[dict[str, Any]]:
        """Per account: replies waiting to be posted (approved or being posted), the oldest's
        age, and failed ones."""
        return await self.db.fetchall(
            "SELECT platform, account,"
            " SUM(CASE WHEN state IN ('approved', 'posting') THEN 1 ELSE 0 END) AS waiting,"
            " MIN(CASE WHEN state IN ('approved', 'posting') THEN created_at END) AS oldest,"
            " SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed"
            " FROM replies WHERE state IN ('approved', 'posting', 'failed')"
            " GROUP BY platform, account ORDER BY platform, account"
        )

    async def unannounced_posts(self, limit: int = 100) -> list[StoredReply]:
        rows = await self.db.fetchall(
            "SELECT * FROM replies WHERE announced = 0 AND state IN ('posted', 'undeliverable')"
            " ORDER BY posted_at LIMIT ?",
            (limit,),
        )
        return [self._reply(r) for r in rows]

    async def mark_announced(self, reply_id: str) -> None:
        await self.db.execute("UPDATE replies SET announced = 1 WHERE reply_id = ?", (reply_id,))


async def open_store(url: str) -> SqlStore:
    """Open and migrate the store named by a URL (``sqlite:///path`` or ``postgresql://…``)."""
    db: SqliteDatabase | PostgresDatabase
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/") and not path.startswith("//") else path
        db = SqliteDatabase(path or ":memory:")
    else:
        db = PostgresDatabase(url)
    await db.open()
    store = SqlStore(db, database=db)
    try:
        await store.migrate()
    except BaseException:
        await db.close()  # a store that cannot be used leaves no connection open
        raise
    return store
