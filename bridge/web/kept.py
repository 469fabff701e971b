"""Answers of the console's costly pages (the dashboard, the account inspection) kept as
counted: at 100,000 inquiries each costs a second of a core, so a page asked for again
within ``fresh`` (a minute) is given what was counted, and one asked for later, up to
``stale``, too, while it is counted again in the background; the page says when it was
counted ("数据截至"). One counting per page and query at a time (``Flights``): a visit that
finds one running, and nothing kept it may show, awaits it instead of counting again.
``warm`` counts a query before anyone asks (the console, when its process starts); after
that a query is counted again only when a visit finds it older than ``fresh``, so an idle
process counts nothing. In memory, at most ``size`` queries (the oldest dropped); with a
``Shelf``, in the store too (``kept_answers``): a process that has nothing it may show
reads what another process (or its predecessor) counted and shows it if younger than
``stale`` (counting again in the background when older than ``fresh``), one about to count
again in the background takes another's count younger than ``fresh`` instead, and each
count is written there for the others. An unreadable or unknown row is ignored (counted
again), and the store unreachable makes the answer counted, not failed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import structlog

log = structlog.get_logger("govbridge.console")

T = TypeVar("T")


class Flights(Generic[T]):
    """One piece of work per key at a time: asked for while it runs, the running one is
    awaited (shielded: an asker that goes away does not cancel it for the others)."""

    def __init__(self) -> None:
        self.running: dict[Hashable, asyncio.Task[T]] = {}

    def get(self, key: Hashable) -> asyncio.Task[T] | None:
        task = self.running.get(key)
        return task if task is not None and not task.done() else None

    def start(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """The work running for ``key``, else ``work()`` started."""
        task = self.get(key)
        if task is not None:
            return task

        async def run() -> T:
            return await work()

        task = asyncio.get_running_loop().create_task(run())
        self.running[key] = task
        task.add_done_callback(lambda t: self._done(key, t))
        return task

    async def join(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.shield(self.start(key, work))

    def _done(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self.running.get(key) is task:
            del self.running[key]
        if not task.cancelled():
            task.exception()  # retrieved: its askers, if any, have it (``background`` logs)


def background(task: asyncio.Task[object], what: str) -> None:
    """Say in the log when ``task``, which nobody may await, fails."""

    def done(t: asyncio.Task[object]) -> None:
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.warning(f"{what} not counted", error=f"{type(exc).__name__}: {exc}")

    task.add_done_callback(done)


class KeptRows(Protocol):
    """Where answers are kept for the other processes (``bridge.store.kept``)."""

    async def kept_answer(self, key: str) -> tuple[str, str] | None: ...

    async def keep_answer(self, key: str, counted_at: datetime, body: str) -> None: ...


@dataclass(frozen=True)
class Shelf(Generic[T]):
    """The answers of one page (``name``) kept in the store: ``encode`` gives a value as
    JSON-able data, ``decode`` takes it back exactly (raising on anything it does not know)."""

    rows: KeptRows
    name: str
    encode: Callable[[T], Any]
    decode: Callable[[Any], T]

    def key(self, key: Hashable) -> str:
        return f"{self.name} {json.dumps(key, default=str, ensure_ascii=False)}"

    async def read(self, key: Hashable) -> tuple[datetime, T] | None:
        """The answer kept for ``key`` and when it was counted; ``None`` when none is kept,
        it cannot be read (logged) or the store cannot be reached (logged)."""
        try:
            row = await self.rows.kept_answer(self.key(key))
            if row is None:
                return None
            at = datetime.fromisoformat(row[0])
            if at.tzinfo is None:
                raise ValueError("counted_at without a time zone")
            return at.astimezone(UTC), self.decode(json.loads(row[1]))
        except Exception as exc:  # a cache: what cannot be read is counted again
            log.warning(
                "kept answer not read", page=self.name, error=f"{type(exc).__name__}: {exc}"
            )
            return None

    async def write(self, key: Hashable, at: datetime, value: T) -> None:
        """Keep ``value`` counted at ``at`` for the others (a failure is logged, no more)."""
        try:
            body = json.dumps(self.encode(value), ensure_ascii=False)
            await self.rows.keep_answer(self.key(key), at, body)
        except Exception as exc:
            log.warning(
                "kept answer not written", page=self.name, error=f"{type(exc).__name__}: {exc}"
            )


class KeptAnswers(Generic[T]):
    def __init__(
        self,
        fresh: timedelta = timedelta(minutes=1),
        stale: timedelta = timedelta(minutes=10),
        size: int = 16,
        shelf: Shelf[T] | None = None,
    ) -> None:
        self.fresh, self.stale, self.size = fresh, stale, size
        self.shelf = shelf
        self.kept: dict[Hashable, tuple[datetime, T]] = {}
        self.flights: Flights[tuple[T, datetime]] = Flights()

    async def get(
        self, key: Hashable, now: datetime, count: Callable[[datetime], Awaitable[T]]
    ) -> tuple[T, datetime]:
        """The answer for ``key`` and when it was counted: one kept and younger than
        ``fresh``; one younger than ``stale`` while it is counted again in the background;
        else the counting already running for ``key``, awaited; else counted now
        (``count(now)``). Kept here or, when nothing here may be shown, in the store (the
        ``Shelf``'s row, another process's or a predecessor's count)."""
        kept = self.kept.get(key)
        if self.shelf is not None and (kept is None or not kept[0] <= now <= kept[0] + self.stale):
            kept = await self._take_stored(key, now) or kept  # another process's, if younger
        if kept is not None and kept[0] <= now:
            age = now - kept[0]
            if age <= self.fresh:
                return kept[1], kept[0]
            if age <= self.stale:
                self._count(key, None, count, "page")
                return kept[1], kept[0]
        return await asyncio.shield(self._count(key, now, count))

    def warm(
        self, key: Hashable, count: Callable[[datetime], Awaitable[T]]
    ) -> asyncio.Task[tuple[T, datetime]]:
        """Count ``key`` in the background now (unless it is being counted): the first
        visit finds it kept."""
        return self._count(key, None, count, "page")

    def _count(
        self,
        key: Hashable,
        at: datetime | None,
        count: Callable[[datetime], Awaitable[T]],
        background_of: str | None = None,
    ) -> asyncio.Task[tuple[T, datetime]]:
        """The counting of ``key`` running, else one started (as of ``at``, default now)."""
        running = self.flights.get(key)
        if running is not None:
            return running

        async def work() -> tuple[T, datetime]:
            when = at or datetime.now(UTC)
            if at is None and self.shelf is not None:  # another process's count, if fresh
                stored = await self._take_stored(key, when)
                if stored is not None and when - stored[0] <= self.fresh:
                    return stored[1], stored[0]
            value = await count(when)
            self._keep(key, when, value)
            if self.shelf is not None:
                await self.shelf.write(key, when, value)
            return value, when

        task = self.flights.start(key, work)
        if background_of is not None:  # the page keeps what it has; said in the log
            background(task, background_of)
        return task

    async def _take_stored(self, key: Hashable, now: datetime) -> tuple[datetime, T] | None:
        """The answer kept in the store for ``key``, kept here too, if it is younger than
        ``stale`` (as of ``now``) and than the one kept here."""
        assert self.shelf is not None
        stored = await self.shelf.read(key)
        if stored is None or not stored[0] <= now <= stored[0] + self.stale:
            return None
        kept = self.kept.get(key)
        if kept is not None and kept[0] >= stored[0]:
            return None
        self._keep(key, *stored)
        return stored

    def _keep(self, key: Hashable, at: datetime, value: T) -> None:
        self.kept.pop(key, None)
        self.kept[key] = (at, value)
        while len(self.kept) > self.size:
            self.kept.pop(next(iter(self.kept)))
