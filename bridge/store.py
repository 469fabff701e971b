"""The state store: cursors, inquiries, tickets, create attempts, ticket events, replies and
approval decisions.

``Store`` is the protocol stages use; ``SqlStore`` implements it over a tiny ``Database``
interface so the same portable SQL runs on SQLite (aiosqlite, WAL — the embedded default) and
PostgreSQL (asyncpg). The schema is created/migrated at start (``migrate``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import aiosqlite

from schemas.vocab import REOPENED_RANK_IN_CYCLE, TicketStatus

FINAL_RANK = TicketStatus.RESOLVED.rank  # resolved, rejected and closed can be reopened

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        cursor TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE inquiries (
        inquiry_id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        thread_key TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        department TEXT,
        category TEXT,
        ticket_id TEXT,
        public_text TEXT,
        citizen_handle TEXT,
        visibility TEXT,
        thread_json TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX inquiries_thread ON inquiries (thread_key);
    CREATE TABLE tickets (
        department TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        reference TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        thread_key TEXT NOT NULL,
        status TEXT NOT NULL,
        status_rank INTEGER NOT NULL,
        native_status TEXT NOT NULL,
        status_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (department, ticket_id)
    );
    CREATE INDEX tickets_thread ON tickets (thread_key);
    CREATE INDEX tickets_reference ON tickets (reference);
    CREATE TABLE create_attempts (
        reference TEXT PRIMARY KEY,
        department TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        state TEXT NOT NULL,
        ticket_id TEXT,
        attempts INTEGER NOT NULL,
        detail TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE ticket_events (
        department TEXT NOT NULL,
        event_id TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        status TEXT NOT NULL,
        native_status TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        applied INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (department, event_id)
    );
    CREATE TABLE replies (
        reply_id TEXT PRIMARY KEY,
        inquiry_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        department TEXT NOT NULL,
        status TEXT,
        templated INTEGER NOT NULL,
        state TEXT NOT NULL,
        request_json TEXT NOT NULL,
        final_text TEXT,
        external_ids TEXT,
        outcome TEXT,
        decided_by TEXT,
        decided_at TEXT,
        decision TEXT,
        created_at TEXT NOT NULL,
        posted_at TEXT
    );
    CREATE INDEX replies_state ON replies (state);
    CREATE INDEX replies_inquiry ON replies (inquiry_id);
    """,
    # 2: which inquiry's ticket a thread's follow-ups belong to (claimed atomically)
    """
    CREATE TABLE threads (
        thread_key TEXT PRIMARY KEY,
        reference TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        claimed_at TEXT NOT NULL
    );
    """,
    # 3: things that must happen once (SLA events, …), keyed by kind and key
    """
    CREATE TABLE once_marks (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        marked_at TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    );
    """,
    # 4: handling cycles (a reopened ticket is handled again)
    """
    ALTER TABLE tickets ADD COLUMN cycle INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tickets ADD COLUMN reopened_at TEXT;
    ALTER TABLE ticket_events ADD COLUMN cycle INTEGER;
    ALTER TABLE replies ADD COLUMN cycle INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: triage explanations, and inquiries held for an official's check (bridge/triage_review.py)
    """
    ALTER TABLE inquiries ADD COLUMN confidence REAL;
    ALTER TABLE inquiries ADD COLUMN explanation TEXT;
    CREATE TABLE triage_reviews (
        inquiry_id TEXT PRIMARY KEY,
        department TEXT NOT NULL,
        model_category TEXT NOT NULL,
        confidence REAL NOT NULL,
        public_text TEXT NOT NULL,
        command_json TEXT NOT NULL,
        state TEXT NOT NULL,
        held_at TEXT NOT NULL,
        release_after TEXT NOT NULL,
        category TEXT,
        decided_by TEXT,
        decided_at TEXT,
        released_at TEXT
    );
    CREATE INDEX triage_reviews_state ON triage_reviews (state);
    """,
]


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Database(Protocol):
    """The few operations the store needs; ``?`` placeholders everywhere."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def executescript(self, sql: str) -> None: ...

    async def close(self) -> None: ...


class SqliteDatabase:
    """aiosqlite in WAL mode; one connection, writes serialised by a lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # autocommit: each statement is its own transaction, one thread hop per call
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute("PRAGMA synchronous=NORMAL")
        await self._conn.execute("PRAGMA busy_timeout=5000")

    @property
    def conn(self) -> aiosqlite.Connection:
        assert self._conn is not None, "open() first"
        return self._conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock:
            cur = await self.conn.execute(sql, tuple(params))
            return cur.rowcount

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self._lock:
            cur = await self.conn.execute(sql, tuple(params))
            rows = await cur.fetchall()
            return [dict(r) for r in rows]

    async def executescript(self, sql: str) -> None:
        async with self._lock:
            await self.conn.executescript(sql)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class PostgresDatabase:
    """asyncpg pool; ``?`` placeholders are rewritten to ``$n``."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg  # optional dependency: pip install govbridge[postgres]

        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=10)

    @staticmethod
    def _sql(sql: str) -> str:
        out, n = [], 0
        for ch in sql:
            if ch == "?":
                n += 1
                out.append(f"${n}")
            else:
                out.append(ch)
        return "".join(out)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        status: str = await self._pool.execute(self._sql(sql), *params)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(self._sql(sql), *params)
        return [dict(r) for r in rows]

    async def executescript(self, sql: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class AppliedEvent(NamedTuple):
    new: bool  # first time this event id was seen
    applied: bool  # it moved the ticket (now or when first seen)
    cycle: int  # the handling cycle it belongs to (0, then +1 per reopening)


@dataclass(frozen=True)
class StoredReply:
    reply_id: str
    inquiry_id: str
    platform: str
    account: str
    department: str
    status: str | None
    templated: bool
    state: str
    request_json: str
    final_text: str | None
    decided_by: str | None
    decided_at: str | None
    decision: str | None
    created_at: str
    posted_at: str | None
    external_ids: list[str]
    cycle: int = 0


class SqlStore:
    """All durable state of the bridge. Methods are small and idempotent where it matters."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---------------------------------------------------------------- lifecycle
    async def migrate(self) -> int:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
        )
        rows = await self.db.fetchall("SELECT version FROM schema_version")
        current = rows[0]["version"] if rows else 0
        for version in range(current + 1, len(MIGRATIONS) + 1):
            await self.db.executescript(MIGRATIONS[version - 1])
            if current == 0 and version == 1:
                await self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (1,))
            else:
                await self.db.execute("UPDATE schema_version SET version = ?", (version,))
        return len(MIGRATIONS)

    async def ping(self) -> None:
        await self.db.fetchall("SELECT 1 AS ok")

    async def close(self) -> None:
        await self.db.close()

    # ---------------------------------------------------------------- cursors
    async def get_cursor(self, name: str) -> str | None:
        rows = await self.db.fetchall("SELECT cursor FROM cursors WHERE name = ?", (name,))
        return rows[0]["cursor"] if rows else None

    async def set_cursor(self, name: str, cursor: str | None) -> None:
        n = await self.db.execute(
            "UPDATE cursors SET cursor = ?, updated_at = ? WHERE name = ?",
            (cursor, now_iso(), name),
        )
        if n == 0:
            await self.db.execute(
                "INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?)",
                (name, cursor, now_iso()),
            )

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
        n = await self.db.execute(
            f"INSERT INTO inquiries ({cols}) VALUES ({marks}) ON CONFLICT (inquiry_id) DO NOTHING",
            tuple(row.values()),
        )
        return n > 0

    async def update_inquiry(self, inquiry_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.db.execute(
            f"UPDATE inquiries SET {sets}, updated_at = ? WHERE inquiry_id = ?",
            (*fields.values(), now_iso(), inquiry_id),
        )

    async def get_inquiry(self, inquiry_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetchall("SELECT * FROM inquiries WHERE inquiry_id = ?", (inquiry_id,))
        return rows[0] if rows else None

    async def list_inquiries(self) -> list[dict[str, Any]]:
        return await self.db.fetchall("SELECT * FROM inquiries ORDER BY created_at, inquiry_id")

    # ---------------------------------------------------------------- tickets
    async def open_ticket_for_thread(self, thread_key: str) -> dict[str, Any] | None:
        rows = await self.db.fetchall(
            "SELECT * FROM tickets WHERE thread_key = ? AND status NOT IN (?, ?, ?) "
            "ORDER BY created_at DESC",
            (thread_key, "resolved", "rejected", "closed"),
        )
        return rows[0] if rows else None

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
        if ticket is not None and ticket["status"] in ("resolved", "rejected", "closed"):
            await self.db.execute(
                "UPDATE threads SET reference = ?, inquiry_id = ?, claimed_at = ?"
                " WHERE thread_key = ? AND reference = ?",
                (reference, inquiry_id, now_iso(), thread_key, owner["reference"]),
            )
            return await self.claim_thread(thread_key, inquiry_id, reference)
        return str(owner["reference"])

    async def get_ticket(self, department: str, ticket_id: str) -> dict[str, Any] | None:
        rows = await self.db.fetchall(
            "SELECT * FROM tickets WHERE department = ? AND ticket_id = ?",
            (department, ticket_id),
        )
        return rows[0] if rows else None

    async def ticket_by_reference(self, reference: str) -> dict[str, Any] | None:
        rows = await self.db.fetchall("SELECT * FROM tickets WHERE reference = ?", (reference,))
        return rows[0] if rows else None

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
        n = await self.db.execute(
            "INSERT INTO tickets (department, ticket_id, reference, inquiry_id, thread_key, status,"
            " status_rank, native_status, status_at, created_at)"
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
        return n > 0

    async def list_tickets(self, department: str | None = None) -> list[dict[str, Any]]:
        if department is None:
            return await self.db.fetchall("SELECT * FROM tickets ORDER BY created_at")
        return await self.db.fetchall(
            "SELECT * FROM tickets WHERE department = ? ORDER BY created_at", (department,)
        )

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
        """
        inserted = await self.db.execute(
            "INSERT INTO ticket_events (department, event_id, ticket_id, status, native_status,"
            " occurred_at, applied, recorded_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)"
            " ON CONFLICT (department, event_id) DO NOTHING",
            (department, event_id, ticket_id, status, native_status, occurred_at, now_iso()),
        )
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
        rows = await self.db.fetchall(
            "SELECT cycle FROM tickets WHERE department = ? AND ticket_id = ?",
            (department, ticket_id),
        )
        cycle = int(rows[0]["cycle"]) if rows else 0
        if moved:
            await self.db.execute(
                "UPDATE ticket_events SET applied = 1, cycle = ?"
                " WHERE department = ? AND event_id = ?",
                (cycle, department, event_id),
            )
        return AppliedEvent(True, moved > 0, cycle)

    # ---------------------------------------------------------------- create attempts
    async def get_create_attempt(self, reference: str) -> dict[str, Any] | None:
        rows = await self.db.fetchall(
            "SELECT * FROM create_attempts WHERE reference = ?", (reference,)
        )
        return rows[0] if rows else None

    async def claim_create(
        self,
        reference: str,
        department: str,
        inquiry_id: str,
        *,
        expected_updated_at: str | None = None,
    ) -> bool:
        """Durably note, before the call, that this delivery will create the ticket.

        Atomic across processes: True for exactly one claimant. A first attempt inserts the
        record; a later one takes it over only from ``not_sent`` (nothing reached the backend)
        or, with ``expected_updated_at``, from the ``attempted`` record it has just inspected
        (compare-and-set: the earlier attempt's lease expired and the ticket was not found).
        """
        now = now_iso()
        inserted = await self.db.execute(
            "INSERT INTO create_attempts (reference, department, inquiry_id, state, attempts,"
            " updated_at) VALUES (?, ?, ?, 'attempted', 1, ?)"
            " ON CONFLICT (reference) DO NOTHING",
            (reference, department, inquiry_id, now),
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
                " updated_at = ? WHERE reference = ? AND state = 'not_sent'",
                (now, reference),
            )
        return taken > 0

    async def set_create_state(
        self, reference: str, state: str, ticket_id: str | None = None, detail: str | None = None
    ) -> None:
        await self.db.execute(
            "UPDATE create_attempts SET state = ?, ticket_id = COALESCE(?, ticket_id),"
            " detail = ?, updated_at = ? WHERE reference = ?",
            (state, ticket_id, detail, now_iso(), reference),
        )

    async def list_create_attempts(self, state: str | None = None) -> list[dict[str, Any]]:
        if state is None:
            return await self.db.fetchall("SELECT * FROM create_attempts ORDER BY updated_at")
        return await self.db.fetchall(
            "SELECT * FROM create_attempts WHERE state = ? ORDER BY updated_at", (state,)
        )

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
        n = await self.db.execute(
            "INSERT INTO replies (reply_id, inquiry_id, platform, account, department, status,"
            " templated, state, request_json, created_at, cycle)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
            ),
        )
        return n > 0

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
        self, reply_id: str, *, decision: str, actor: str, text: str | None = None
    ) -> bool:
        """Approve / edit / reject a reply awaiting approval; False if not awaiting."""
        state = "rejected" if decision == "reject" else "approved"
        n = await self.db.execute(
            "UPDATE replies SET state = ?, decision = ?, decided_by = ?, decided_at = ?,"
            " final_text = COALESCE(?, final_text)"
            " WHERE reply_id = ? AND state = 'awaiting_approval'",
            (state, decision, actor, now_iso(), text, reply_id),
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
    store = SqlStore(db)
    await store.migrate()
    return store
