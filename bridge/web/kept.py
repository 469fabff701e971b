"""Answers of the console's costly pages (the dashboard, the account inspection) kept as
counted: at 100,000 inquiries each costs a second of a core, so a page asked for again
within ``fresh`` (a minute) is given what was counted, and one asked for later, up to
``stale``, too, while it is counted again in the background (one counting per page and
query at a time); the page says when it was counted ("数据截至"). Per process, in memory, at
most ``size`` queries (the oldest dropped)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("govbridge.console")

T = TypeVar("T")


class KeptAnswers(Generic[T]):
    def __init__(
        self,
        fresh: timedelta = timedelta(minutes=1),
        stale: timedelta = timedelta(minutes=10),
        size: int = 16,
    ) -> None:
        self.fresh, self.stale, self.size = fresh, stale, size
        self.kept: dict[Hashable, tuple[datetime, T]] = {}
        self.running: dict[Hashable, asyncio.Task[None]] = {}

    async def get(
        self, key: Hashable, now: datetime, count: Callable[[datetime], Awaitable[T]]
    ) -> tuple[T, datetime]:
        """The answer for ``key`` and when it was counted: one kept and younger than
        ``fresh``; one younger than ``stale`` while it is counted again in the background;
        else counted now (``count(now)``)."""
        kept = self.kept.get(key)
        if kept is not None and kept[0] <= now:
            age = now - kept[0]
            if age <= self.fresh:
                return kept[1], kept[0]
            if age <= self.stale:
                self._count_again(key, count)
                return kept[1], kept[0]
        value = await count(now)
        self._keep(key, now, value)
        return value, now

    def _keep(self, key: Hashable, at: datetime, value: T) -> None:
        self.kept.pop(key, None)
        self.kept[key] = (at, value)
        while len(self.kept) > self.size:
            self.kept.pop(next(iter(self.kept)))

    def _count_again(self, key: Hashable, count: Callable[[datetime], Awaitable[T]]) -> None:
        task = self.running.get(key)
        if task is not None and not task.done():
            return

        async def again() -> None:
            at = datetime.now(UTC)
            try:
                self._keep(key, at, await count(at))
            except Exception as exc:  # the page keeps what it has; said in the log
                log.warning("page not counted again", error=f"{type(exc).__name__}: {exc}")
            finally:
                self.running.pop(key, None)

        self.running[key] = asyncio.get_running_loop().create_task(again())
