"""Store drivers: the small ``Database`` interface the repository (``bridge.store.sql``) runs
its portable SQL on, over SQLite (Python's sqlite3 on the event loop, WAL: the embedded
default) or PostgreSQL (asyncpg). Times are stored as fixed-width UTC text (``iso``), which
compares correctly on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bridge.security.keyring import Keyring
from bridge.store.chainhead import ChainWriters
from bridge.store.errors import store_errors
from bridge.telemetry import timing

_T = TypeVar("_T")
DeferredStep = Callable[["Executor"], Awaitable[None]]
SettledStep = Callable[[bool], None]


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso(when: datetime) -> str:
    """UTC, fixed width: stored times compare correctly as text (SQLite and PostgreSQL)."""
    if when.tzinfo is not UTC:  # most times are made in UTC already: no conversion then
        when = when.astimezone(UTC)
    return when.isoformat(timespec="microseconds")


class Executor(Protocol):
    """Runs statements: the database itself, or one open transaction. ``?`` placeholders."""

    @property
    def audit_keys(self) -> Keyring:
        """The keys the audit trail's records written through it are signed with (given
        when the store is opened: a secret that is not in the database)."""
        ...

    @property
    def audit_chains(self) -> ChainWriters:
        """The audit trail's writers of this process (one set per database)."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def transaction(self) -> AbstractAsyncContextManager[Executor]: ...

    async def lock(self, key: str) -> None:
        """Inside a transaction: serialise with every other transaction taking ``key``."""
        ...

    def defer(self, step: DeferredStep) -> bool:
        """Inside a transaction: run ``step`` just before it commits (and not at all if it
        rolls back), returning True; outside one, False (the caller runs it itself)."""
        ...

    def settled(self, step: SettledStep) -> None:
        """Inside a transaction: call ``step(committed)`` once it has committed or rolled
        back (an audit writer given back); outside one, nothing to wait for: at once."""
        ...

    async def executescript(self, sql: str) -> None:
        """Several statements (a migration); inside a transaction they commit with it."""
        ...


class Database(Executor, Protocol):
    """A connection (pool) to one store database."""

    async def close(self) -> None: ...


class _SqliteTransaction:
    """Statements inside one ``BEGIN IMMEDIATE`` … ``COMMIT`` on the shared connection."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.audit_keys = db.audit_keys
        self.audit_chains = db.audit_chains
        self.deferred: list[DeferredStep] = []
        self.on_settled: list[SettledStep] = []

    def defer(self, step: DeferredStep) -> bool:
        self.deferred.append(step)
        return True

    def settled(self, step: SettledStep) -> None:
        self.on_settled.append(step)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.db.run(lambda c: c.execute(sql, tuple(params)).rowcount)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.db.run(lambda c: _rows(c.execute(sql, tuple(params))))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        yield self  # nested: part of the enclosing transaction

    async def lock(self, key: str) -> None:
        """SQLite has one writer at a time: ``BEGIN IMMEDIATE`` already serialises."""

    async def executescript(self, sql: str) -> None:
        """Statement by statement: sqlite3's own ``executescript`` would commit first."""
        for statement in sqlite_statements(sql):
            await self.execute(statement)


def sqlite_statements(sql: str) -> list[str]:
    """A script cut into complete statements (SQLite's own test, so a ``;`` inside a string
    or a trigger body does not cut)."""
    statements, current = [], ""
    for piece in sql.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip(" \n\t;"):
        statements.append(current.strip().removesuffix(";"))  # incomplete: SQLite says so
    return [st for st in statements if st.strip(" \n\t;")]


def _rows(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    rows = cur.fetchall()
    if not rows:
        return []
    names = [d[0] for d in cur.description]
    if len(set(names)) < len(names):
        # a name twice (a join's ``*``): ``dict(row)`` keeps the first column of that name
        return [dict(r) for r in rows]
    # a third cheaper than ``dict(row)``, which looks each name up again (the profile)
    return [dict(zip(names, r, strict=True)) for r in rows]


def _read_only(path: str) -> sqlite3.Connection:
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row  # as the loop's connection: ``_rows`` may need ``dict(row)``
    return conn


class SqliteDatabase:
    """Python's sqlite3 in WAL mode, called on the event loop; one connection, statements
    serialised by a lock.

    Why not a thread (aiosqlite): an indexed statement takes tens of microseconds, the hop to
    a thread and back costs more than that, and an inquiry runs about sixty of them (the
    benchmark's profile, docs/performance.md). Nothing here waits on the disk for long (WAL,
    ``synchronous=NORMAL``: a commit does not fsync). Waiting for another process's write lock
    never blocks the loop: SQLite's own busy wait is off and ``run`` retries with a sleep.
    """

    BUSY_WAIT_S = 5.0

    def __init__(self, path: str, audit_keys: Keyring | None = None) -> None:
        self.path = path
        self.audit_keys = audit_keys or Keyring("audit")
        self.audit_chains = ChainWriters("sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # autocommit outside transactions (isolation_level=None): each statement commits
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        self._conn = conn
        await self.run(lambda c: c.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=0")

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "open() first"
        return self._conn

    async def run(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """``call(connection)``; while another process holds the write lock, try again after
        a growing sleep (the loop keeps serving), for up to ``BUSY_WAIT_S``."""
        delay, waited = 0.001, 0.0
        while True:
            try:
                return call(self.conn)
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or waited >= self.BUSY_WAIT_S:
                    raise
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with timing.timed("store"), store_errors():
            async with self._lock:
                return await self.run(lambda c: c.execute(sql, tuple(params)).rowcount)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with timing.timed("store"), store_errors():
            async with self._lock:
                return await self.run(lambda c: _rows(c.execute(sql, tuple(params))))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """All or nothing: the block's statements commit together or not at all (an
        exception, a crash or a cancellation rolls back). Other statements on this
        connection wait; other processes wait for the write lock."""
        with timing.timed("store"), store_errors():
            async with self._lock:
                await self.run(lambda c: c.execute("BEGIN IMMEDIATE"))
                tx = _SqliteTransaction(self)
                committed = False
                try:
                    try:
                        yield tx
                        for step in tx.deferred:
                            await step(tx)
                    except BaseException:
                        self.conn.execute("ROLLBACK")
                        raise
                    try:
                        await self.run(lambda c: c.execute("COMMIT"))
                    except BaseException:
                        if self.conn.in_transaction:
                            self.conn.execute("ROLLBACK")
                        raise
                    committed = True
                finally:
                    for settled in tx.on_settled:
                        settled(committed)

    async def lock(self, key: str) -> None:
        """Only meaningful inside a transaction (see ``_SqliteTransaction.lock``)."""

    def defer(self, step: DeferredStep) -> bool:
        return False  # not in a transaction

    def settled(self, step: SettledStep) -> None:
        step(True)  # not in a transaction

    async def fetchall_apart(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A long read (the console's reports) on a read-only connection of its own, in a
        thread: WAL lets it read what is committed while the loop's connection goes on
        writing, and sqlite3 lets go of the GIL while it steps, so a count of 100,000 rows
        no longer stops the event loop (every request and every stage of the process) for
        its half second. A database in memory has no second connection: read as usual."""
        if self.path == ":memory:":
            return await self.fetchall(sql, params)
        with timing.timed("store"), store_errors():
            async with self._reader_lock:
                if self._reader is None:
                    self._reader = await asyncio.to_thread(_read_only, self.path)
                reader = self._reader
                return await asyncio.to_thread(lambda: _rows(reader.execute(sql, tuple(params))))

    async def executescript(self, sql: str) -> None:
        async with self._lock:
            await self.run(lambda c: c.executescript(sql))

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        async with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders rewritten to ``$n`` (once per statement text: the same few dozen
    statements run for every inquiry)."""
    out, n = [], 0
    for ch in sql:
        if ch == "?":
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)


def _pg_count(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class _PostgresTransaction:
    """Statements on one pooled connection inside ``conn.transaction()``."""

    def __init__(self, conn: Any, audit_keys: Keyring, audit_chains: ChainWriters) -> None:
        self.conn = conn
        self.audit_keys = audit_keys
        self.audit_chains = audit_chains
        self.deferred: list[DeferredStep] = []
        self.on_settled: list[SettledStep] = []

    def defer(self, step: DeferredStep) -> bool:
        self.deferred.append(step)
        return True

    def settled(self, step: SettledStep) -> None:
        self.on_settled.append(step)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _pg_count(await self.conn.execute(_pg_sql(sql), *params))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.conn.fetch(_pg_sql(sql), *params)]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        yield self

    async def lock(self, key: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)

    async def executescript(self, sql: str) -> None:
        await self.conn.execute(sql)  # no arguments: asyncpg runs every statement


class PostgresDatabase:
    """asyncpg pool; ``?`` placeholders are rewritten to ``$n``. Every statement with
    arguments runs prepared: asyncpg keeps each connection's prepared statements by text
    (``STATEMENT_CACHE``, more than the bridge's distinct statements), so the same few dozen
    per inquiry are parsed and planned once per connection. ``pool_size``: connections at
    most (the daemon sizes it to its handlers in flight, ``pool_size_for``)."""

    DEFAULT_POOL = 10
    STATEMENT_CACHE = 512

    def __init__(
        self, dsn: str, audit_keys: Keyring | None = None, pool_size: int | None = None
    ) -> None:
        self.dsn = dsn
        self.audit_keys = audit_keys or Keyring("audit")
        self.audit_chains = ChainWriters("postgresql")
        self.pool_size = pool_size or self.DEFAULT_POOL
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg  # optional dependency: pip install govbridge[postgres]

        with store_errors():  # unreachable at start: the daemon tries again (connect_timeout)
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                statement_cache_size=self.STATEMENT_CACHE,
            )

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with timing.timed("store"), store_errors():
            return _pg_count(await self._pool.execute(_pg_sql(sql), *params))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with timing.timed("store"), store_errors():
            rows = await self._pool.fetch(_pg_sql(sql), *params)
            return [dict(r) for r in rows]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        with timing.timed("store"), store_errors():
            settled: list[SettledStep] = []
            committed = False
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    tx = _PostgresTransaction(conn, self.audit_keys, self.audit_chains)
                    settled = tx.on_settled
                    yield tx
                    for step in tx.deferred:
                        await step(tx)
                committed = True
            finally:
                for step_done in settled:
                    step_done(committed)

    async def lock(self, key: str) -> None:
        """Only meaningful inside a transaction (see ``_PostgresTransaction.lock``)."""

    def defer(self, step: DeferredStep) -> bool:
        return False  # not in a transaction

    def settled(self, step: SettledStep) -> None:
        step(True)  # not in a transaction

    async def executescript(self, sql: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
