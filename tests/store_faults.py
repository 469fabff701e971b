"""Fault injection into the store, for tests only: a wrapper around the store's driver that
crashes between two statements (a ``RuntimeError`` raised inside the transaction, which then
rolls back as a crash would leave it). The product carries no fault hooks: the named points
below are found by the statements the store runs there.

``crash_once(store, point)`` wraps a ``SqlStore``'s driver; the list it returns holds the
point once the crash has happened.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from bridge.security.keyring import Keyring
from bridge.store import SqlStore
from bridge.store.chainhead import ChainWriters
from bridge.store.drivers import DeferredStep, Executor, SettledStep

# point: (before or after the statement, how the statement starts, which occurrence)
FAULT_POINTS: dict[str, tuple[str, str, int]] = {
    # inside apply_status: the event recorded, the ticket moved, the event marked applied
    "apply_status:event_recorded": ("after", "INSERT INTO ticket_events", 1),
    "apply_status:ticket_moved": ("after", "UPDATE tickets SET status", 1),
    "apply_status:event_marked_applied": ("after", "UPDATE ticket_events SET applied", 1),
    # the reply stage's transaction: the replies decided (none recorded yet), then one recorded
    "compose:replies_decided": ("before", "INSERT INTO replies", 1),
    "compose:reply_recorded": ("before", "INSERT INTO replies", 2),
}

Hook = Callable[[str, str], None]  # (before | after, statement)


class PassThroughExecutor:
    """What a test's wrapper of an ``Executor`` hands to the one it wraps (``inner``) as it
    is: the audit trail's keys and chains, and the steps run once a transaction settles."""

    inner: Executor

    @property
    def audit_keys(self) -> Keyring:
        return self.inner.audit_keys

    @property
    def audit_chains(self) -> ChainWriters:
        return self.inner.audit_chains

    def settled(self, step: SettledStep) -> None:
        self.inner.settled(step)


class FaultyExecutor(PassThroughExecutor):
    """An ``Executor`` that calls ``hook`` before and after each statement (in a transaction
    too); the hook raises to crash there."""

    def __init__(self, inner: Executor, hook: Hook) -> None:
        self.inner = inner
        self.hook = hook

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.hook("before", sql)
        n = await self.inner.execute(sql, params)
        self.hook("after", sql)
        return n

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.hook("before", sql)
        rows = await self.inner.fetchall(sql, params)
        self.hook("after", sql)
        return rows

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self.inner.transaction() as tx:
            yield FaultyExecutor(tx, self.hook)

    async def lock(self, key: str) -> None:
        await self.inner.lock(key)

    def defer(self, step: DeferredStep) -> bool:
        return self.inner.defer(step)

    async def executescript(self, sql: str) -> None:
        await self.inner.executescript(sql)


def crash_once(store: SqlStore, point: str) -> list[str]:
    """Crash the first time the store reaches ``point`` (a key of ``FAULT_POINTS``)."""
    moment, start, occurrence = FAULT_POINTS[point]
    crashed: list[str] = []
    seen = 0

    def hook(when: str, sql: str) -> None:
        nonlocal seen
        if crashed or when != moment or not sql.startswith(start):
            return
        seen += 1
        if seen == occurrence:
            crashed.append(point)
            raise RuntimeError(f"injected crash at {point}")

    store.db = FaultyExecutor(store.db, hook)
    return crashed
