"""Answers of the console's costly pages (the dashboard, the account inspection) kept as
counted: at 100,000 inquiries each costs a second of a core, so a page asked for again
within ``fresh`` (a minute) is given what was counted, and one asked for later, up to
``stale``, too, while it is counted again in the background; the page says when it was
counted ("数据截至"). One counting per page and query at a time (``Flights``): a visit that
finds one running, and nothing kept it may show, awaits it instead of counting again.
``warm`` counts a query before anyone asks (the console, when its process starts); after
that a query is counted again only when a visit finds it older than ``fresh``, so an idle
process counts nothing. Per process, in memory, at most ``size`` queries (the oldest
dropped)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

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


class KeptAnswers(Generic[T]):
    def __init__(
        self,
        fresh: timedelta = timedelta(minutes=1),
        stale: timedelta = timedelta(minutes=10),
        size: int = 16,
    ) -> None:
        self.fresh, self.stale, self.size = fresh, stale, size
        self.kept: dict[Hashable, tuple[datetime, T]] = {}
        self.flights: Flights[tuple[T, datetime]] = Flights()

    async def get(
        self, key: Hashable, now: datetime, count: Callable[[datetime], Awaitable[T]]
    ) -> tuple[T, datetime]:
        """The answer for ``key`` and when it was counted: one kept and younger than
        ``fresh``; one younger than ``stale`` while it is counted again in the background;
        else the counting already running for ``key``, awaited; else counted now
        (``count(now)``)."""
        kept = self.kept.get(key)
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
            value = await count(when)
            self._keep(key, when, value)
            return value, when

        task = self.flights.start(key, work)
        if background_of is not None:  # the page keeps what it has; said in the log
            background(task, background_of)
        return task

    def _keep(self, key: Hashable, at: datetime, value: T) -> None:
        self.kept.pop(key, None)
        self.kept[key] = (at, value)
        while len(self.kept) > self.size:
            self.kept.pop(next(iter(self.kept)))
