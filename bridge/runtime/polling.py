"""One poll loop for everything the bridge polls (source accounts, ticket systems), and the
leases that let exactly one process poll each of them, however many processes run.

A :class:`PollLoop` holds the lease named after what it polls before each step and gives it up
when it stops or loses it. Leases sit on engines the bridge already has, nothing home-made:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on one dedicated
  connection per process. When the holder dies its connection closes and PostgreSQL releases the
  lock at once; a holder that vanishes silently (a machine lost, a cable cut) is found by TCP
  keepalives on both sides within 11 seconds (``bridge.store.leases.PG_KEEPALIVE``). The
  others try again every ``acquire_every`` seconds, so hand-over takes at most that plus the
  keepalive bound.
- SQLite: ``flock`` on one file per lease beside the database (the kernel releases it when the
  holding process dies, whatever the cause). An in-memory database cannot be shared, so its
  leases are in-process only.

A lease alone cannot stop a holder that has been cut off from the database from finishing the
step it is in. The step therefore writes its cursor with a compare-and-set
(``store.set_cursor(..., expected=<the cursor it read>)``): a stale poller never moves a cursor
back nor over a newer holder's. What it published meanwhile is a duplicate that triage and the
ticket stage already absorb (deterministic ids).

Errors are handled the same way everywhere: a rate limit waits for its window, an auth failure
is handed to the owner (an alert, a pause), transient failures (the platform, the broker, the
store) back off exponentially up to the poll interval, anything else is logged and the loop goes
on at its interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from adapters.base import AdapterError, AuthError, RateLimited, TransientError
from bridge.runtime.broker import PublishError
from bridge.store.errors import StoreUnavailable
from bridge.store.leases import Leases

log = structlog.get_logger("govbridge.polling")

Step = Callable[[], Awaitable[bool]]


@dataclass
class PollLoop:
    """Poll one thing (``name``, also the lease name) every ``interval`` seconds while this
    process holds its lease; ``step`` fetches, publishes, stores the cursor and says whether
    a backlog remains (then the next step follows at once)."""

    name: str
    step: Step
    interval: float
    stop: asyncio.Event
    leases: Leases
    on_auth_error: Callable[[AuthError], Awaitable[float]] | None = None
    on_success: Callable[[], None] | None = None
    on_rate_limited: Callable[[], None] | None = None
    # The wait after a step (``more``: a backlog remains), when an account's call budget
    # paces the polls (``bridge.runtime.pacing``); None: ``interval``, at once while ``more``.
    next_wait: Callable[[bool], float] | None = None
    acquire_every: float = 1.0
    # This process cannot publish (its broker connection is down) for this long: it lets the
    # lease go so a process that can takes over, and stays out for ``step_aside`` seconds.
    hand_over_after: float = 30.0
    step_aside: float = 10.0
    min_backoff: float = 1.0
    max_backoff: float | None = None
    holding: bool = field(default=False, init=False)
    steps: int = field(default=0, init=False)
    _backoff: float = field(default=0.0, init=False)
    _cannot_publish_since: float | None = field(default=None, init=False)

    async def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not await self._hold():
                    if await self._sleep(self.acquire_every):
                        return
                    continue
                wait = await self.step_once()
                if self._should_step_aside():
                    await self._release()
                    wait = max(wait, self.step_aside)
                if wait > 0 and await self._sleep(wait):
                    return
        finally:
            await self._release()

    async def _release(self) -> None:
        if self.holding:
            self.holding = False
            with contextlib.suppress(Exception):
                await self.leases.release(self.name)

    def _should_step_aside(self) -> bool:
        since = self._cannot_publish_since
        if since is None or time.monotonic() - since < self.hand_over_after:
            return False
        log.warning(
            "cannot publish for a while; handing the poll over to another process",
            poll=self.name,
            for_s=round(time.monotonic() - since),
        )
        self._cannot_publish_since = None
        return True

    async def _hold(self) -> bool:
        """Make sure this process holds the lease: keep it, or try to take it."""
        try:
            if self.holding:
                if await self.leases.still_held(self.name):
                    return True
                self.holding = False
                log.warning("poll lease lost; polling stops here", poll=self.name)
                return False
            if await self.leases.try_acquire(self.name):
                self.holding = True
                log.info("poll lease taken; polling here", poll=self.name, pid=os.getpid())
                return True
        except StoreUnavailable as exc:
            log.warning("cannot reach the lease store", poll=self.name, error=str(exc))
        return False

    async def step_once(self) -> float:
        """One step; returns how long to wait before the next (0 while a backlog drains)."""
        ceiling = self.max_backoff if self.max_backoff is not None else max(self.interval, 5.0)
        self._backoff = max(self._backoff, self.min_backoff)
        try:
            more = await self.step()
        except RateLimited as exc:
            wait = exc.retry_after.total_seconds() if exc.retry_after else self.interval
            log.warning("rate limited; waiting for the window", poll=self.name, wait_s=wait)
            if self.on_rate_limited is not None:
                self.on_rate_limited()
            return wait
        except AuthError as exc:
            if self.on_auth_error is None:
                log.error("refused: check the credentials", poll=self.name, error=exc.reason)
                return max(self.interval, 30.0)
            return await self.on_auth_error(exc)
        except (TransientError, PublishError, StoreUnavailable) as exc:
            if isinstance(exc, PublishError) and self._cannot_publish_since is None:
                self._cannot_publish_since = time.monotonic()
            wait = self._backoff
            if self.next_wait is not None:  # a failed call is spent all the same
                wait = max(wait, self.next_wait(False))
            log.warning("poll failed; will retry", poll=self.name, error=str(exc), in_s=wait)
            self._backoff = min(self._backoff * 2, ceiling)
            return wait
        except AdapterError as exc:
            log.error("poll failed", poll=self.name, error=exc.reason)
            return self.interval
        except Exception as exc:
            log.exception("poll error", poll=self.name, error=repr(exc))
            return self.interval
        self.steps += 1
        self._backoff = self.min_backoff
        self._cannot_publish_since = None
        if self.on_success is not None:
            self.on_success()
        if self.next_wait is not None:
            return self.next_wait(more)
        return 0.0 if more else self.interval

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early on stop; True when stopping."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        return self.stop.is_set()
