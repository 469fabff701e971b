"""Counting the store's work, from outside: ``counted_store`` wraps a store's ``Database`` in a
proxy that counts each statement (``execute``, ``fetchall``, ``executescript``) and each
transaction that commits, and notes which asyncio task ran it. Test-only: production code has no
hook for it (the proxy stands where the driver stood, nothing else changes).

A *transaction* is a ``transaction()`` block that commits, or a writing statement run outside one
(it commits on its own). ``BEGIN`` and ``COMMIT`` are not counted as statements (on PostgreSQL they
are two more round trips per transaction)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from bridge.store import Database, Executor, SqlStore
from bridge.store.drivers import PostgresDatabase
from tests.store_faults import PassThroughExecutor

if TYPE_CHECKING:
    pass

WRITES = ("INSERT", "UPDATE", "DELETE")


@dataclass
class SqlCount:
    statements: int = 0
    transactions: int = 0
    rolled_back: int = 0
    # transactions that wrote nothing (an outbox scan that found no reply to claim: how many
    # there are depends on timing, not on the inquiries) and their statements
    read_only: int = 0
    read_only_statements: int = 0
    by_sql: Counter[str] = field(default_factory=Counter)
    by_task: Counter[str] = field(default_factory=Counter)
    by_stage_sql: Counter[str] = field(default_factory=Counter)
    tx_by_stage: Counter[str] = field(default_factory=Counter)
    paused: bool = False
    locks_round_trip: bool = False  # PostgreSQL: an advisory lock is a statement of its own

    def committed(self, what: str) -> None:
        if self.paused:
            return
        self.transactions += 1
        self.tx_by_stage[f"{_where():10s} {what}"] += 1

    def note(self, sql: str) -> None:
        if self.paused:
            return
        self.statements += 1
        self.by_sql[" ".join(sql.split())[:90]] += 1
        where = _where()
        self.by_task[where] += 1
        self.by_stage_sql[f"{where:10s} {' '.join(sql.split())[:80]}"] += 1

    @property
    def working_statements(self) -> int:
        """Statements less those of transactions that wrote nothing."""
        return self.statements - self.read_only_statements

    def reset(self) -> None:
        self.statements = self.transactions = self.rolled_back = 0
        self.read_only = self.read_only_statements = 0
        self.by_sql.clear()
        self.by_task.clear()

    def report(self) -> str:
        lines = [
            f"{self.statements} statements in {self.transactions} transactions, and"
            f" {self.read_only} read-only transactions ({self.read_only_statements} statements)"
        ]
        lines += [f"{n:5d}  {sql}" for sql, n in self.by_sql.most_common()]
        lines += [f"{n:5d}  task {name}" for name, n in self.by_task.most_common()]
        lines += [f"{n:5d}  {k}" for k, n in sorted(self.by_stage_sql.items())]
        lines += [f"{n:5d}  tx {k}" for k, n in sorted(self.tx_by_stage.items())]
        return "\n".join(lines)


def _where() -> str:
    """The stage running (its log context), else the task's name."""
    stage = structlog.contextvars.get_contextvars().get("stage")
    task = asyncio.current_task()
    return str(stage or (task.get_name() if task else "?"))


class _CountingTx(PassThroughExecutor):
    """One open transaction (or the database itself), counted."""

    def __init__(self, inner: Executor, count: SqlCount, *, in_tx: bool) -> None:
        self.inner = inner
        self.count = count
        self.in_tx = in_tx
        self.statements = 0
        self.wrote = False
        self.first = ""  # a transaction's first statement (its name in the report)

    def _first(self, sql: str) -> None:
        if self.in_tx and not self.first:
            self.first = " ".join(sql.split())[:50]
        self.statements += 1
        if sql.lstrip().upper().startswith(WRITES):
            self.wrote = True

    async def lock(self, key: str) -> None:
        if self.count.locks_round_trip:
            self.statements += 1
            self.count.note(f"(lock) {key.split(':')[0]}")
        await self.inner.lock(key)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._first(sql)
        self.count.note(sql)
        result = await self.inner.execute(sql, params)
        if not self.in_tx and sql.lstrip().upper().startswith(WRITES):
            self.count.committed(" ".join(sql.split())[:60])
        return result

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self._first(sql)
        self.count.note(sql)
        result = await self.inner.fetchall(sql, params)
        if not self.in_tx and sql.lstrip().upper().startswith(WRITES):
            self.count.committed(" ".join(sql.split())[:60])  # INSERT … RETURNING
        return result

    async def executescript(self, sql: str) -> None:
        self.count.note(sql)
        await self.inner.executescript(sql)

    def defer(self, step: Callable[[Executor], Awaitable[None]]) -> bool:
        count = self.count

        async def counted(tx: Executor) -> None:
            await step(_CountingTx(tx, count, in_tx=True))

        return self.inner.defer(counted)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        if self.in_tx:
            yield self  # nested: part of the enclosing transaction
            return
        committed = False
        counted = _CountingTx(self.inner, self.count, in_tx=True)
        try:
            async with self.inner.transaction() as tx:
                counted.inner = tx
                yield counted
            committed = True
        finally:
            if committed and not counted.wrote and not self.count.paused:
                self.count.read_only += 1
                self.count.read_only_statements += counted.statements
            elif committed:
                self.count.committed(f"transaction of {counted.first}")
            elif not self.count.paused:
                self.count.rolled_back += 1


class CountingDatabase(_CountingTx):
    def __init__(self, inner: Database, count: SqlCount) -> None:
        super().__init__(inner, count, in_tx=False)
        self.database = inner

    async def close(self) -> None:
        await self.database.close()

    def __getattr__(self, name: str) -> Any:  # path, dsn … of the driver
        return getattr(self.database, name)


def counted_store(store: SqlStore, count: SqlCount) -> SqlStore:
    """The same store, its statements and transactions counted in ``count``."""
    count.locks_round_trip = isinstance(store.database, PostgresDatabase)
    db = CountingDatabase(store.database, count)
    return SqlStore(db, database=db)
