"""One loop for a source that streams (``adapters.base.StreamsItems``): a connection per
account, heartbeats watched, reconnects with back-off, and the REST read (``catch_up``) after
every (re)connect and every ``catch_up_every`` seconds, so what a stream never carries or lost
in a gap is still read. Like a poll loop it runs only while this process holds the account's
lease (the same lease: one process streams or polls an account at a time).

The stream only speeds things up; the cursor stays the REST read's (``catch_up`` stores it
after the confirm, as a poll step does), because a stream's items are not a gap-free sequence
(a server does not stream what its notification policy filtered, a dropped connection loses
what was in flight). Items seen both ways are published once per process: the caller's
``on_items`` and ``catch_up`` share a record of what was published; across processes and
restarts the deterministic inquiry ids absorb a repeat in triage.

``run`` returns ``"unavailable"`` when the server has no streaming (the caller polls instead)
and ``"stopped"`` on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog

from adapters.base import (
    AdapterError,
    AuthError,
    RateLimited,
    StreamEvent,
    StreamUnavailable,
)
from bridge.runtime.broker import PublishError
from bridge.store.errors import StoreUnavailable
from bridge.store.leases import Leases

log = structlog.get_logger("govbridge.streaming")

Outcome = Literal["unavailable", "stopped"]
_END = object()


class _Silent(Exception):
    """No event, not even a heartbeat, within the bound."""


@dataclass
class StreamLoop:
    name: str  # also the lease name (the account's poll lease)
    open: Callable[[], AsyncIterator[StreamEvent]]
    # One REST read from the cursor (publish, store the cursor): whether it has more, and
    # the inquiry ids it read.
    read_step: Callable[[], Awaitable[tuple[bool, list[str]]]]
    on_items: Callable[[list[StreamEvent]], Awaitable[None]]  # publish with confirms
    stop: asyncio.Event
    leases: Leases
    heartbeat_timeout: float
    catch_up_every: float
    max_backoff: float = 60.0
    min_backoff: float = 1.0
    acquire_every: float = 1.0
    on_auth_error: Callable[[AuthError], Awaitable[float]] | None = None
    on_connected: Callable[[], None] | None = None
    holding: bool = field(default=False, init=False)
    connections: int = field(default=0, init=False)
    _backoff: float = field(default=0.0, init=False)
    _last_event: float = field(default=0.0, init=False)
    _streamed_now: set[str] = field(default_factory=set, init=False)

    async def run(self) -> Outcome:
        self._backoff = self.min_backoff
        try:
            while not self.stop.is_set():
                if not await self._hold():
                    if await self._sleep(self.acquire_every):
                        break
                    continue
                try:
                    lively = await self._connection()
                except StreamUnavailable as exc:
                    log.warning(
                        "no streaming on this server; polling instead",
                        stream=self.name,
                        reason=exc.reason,
                    )
                    return "unavailable"
                except AuthError as exc:
                    if self.on_auth_error is None:
                        wait = max(self.max_backoff, 30.0)
                        log.error("refused: check the credentials", stream=self.name)
                    else:
                        wait = await self.on_auth_error(exc)
                    if await self._sleep(wait):
                        break
                    continue
                except RateLimited as exc:
                    wait = exc.retry_after.total_seconds() if exc.retry_after else self.max_backoff
                    log.warning(
                        "rate limited; waiting for the window", stream=self.name, wait_s=wait
                    )
                    if await self._sleep(wait):
                        break
                    continue
                except (AdapterError, PublishError, StoreUnavailable, _Silent) as exc:
                    reason = getattr(exc, "reason", None) or type(exc).__name__
                    log.warning(
                        "stream lost; reconnecting",
                        stream=self.name,
                        error=str(reason),
                        in_s=self._backoff,
                    )
                    lively = False
                except Exception as exc:
                    log.exception("stream error", stream=self.name, error=repr(exc))
                    lively = False
                if self.stop.is_set():
                    break
                if lively:
                    self._backoff = self.min_backoff
                wait, self._backoff = self._backoff, min(self._backoff * 2, self.max_backoff)
                if await self._sleep(wait):
                    break
        finally:
            await self._release()
        return "stopped"

    async def _connection(self) -> bool:
        """One connection from open to end. True when it was worth keeping (it delivered an
        item or lasted a heartbeat bound): the back-off starts again from its minimum."""
        started = time.monotonic()
        queue: asyncio.Queue[object] = asyncio.Queue()
        delivered = False

        self._last_event = time.monotonic()
        self._streamed_now = set()

        async def pump() -> None:
            try:
                async for event in self.open():
                    self._last_event = time.monotonic()
                    queue.put_nowait(event)
                queue.put_nowait(_END)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                queue.put_nowait(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

        reader = asyncio.create_task(pump(), name=f"stream:{self.name}")
        try:
            first = await self._next(queue)
            if not (isinstance(first, StreamEvent) and first.kind == "connected"):
                return False
            self.connections += 1
            log.info("stream connected", stream=self.name, pid=os.getpid())
            # Subscribed first, then read what came before: nothing falls in between.
            await self._catch_up(queue)
            if self.on_connected is not None:
                self.on_connected()
            next_catch_up = time.monotonic() + self.catch_up_every
            while not self.stop.is_set():
                wait = min(self.heartbeat_timeout, max(0.0, next_catch_up - time.monotonic()))
                try:
                    event = await self._next(queue, wait)
                except _Silent:
                    if time.monotonic() < next_catch_up:
                        raise
                    event = None
                if event is not None and await self._publish(queue, [event]):
                    delivered = True
                if time.monotonic() >= next_catch_up:
                    if not await self._still_held():
                        return delivered
                    await self._catch_up(queue)
                    next_catch_up = time.monotonic() + self.catch_up_every
            return delivered
        except _Stopping:
            return delivered
        except _Ended:
            log.info("stream ended by the server; reconnecting", stream=self.name)
            return delivered or time.monotonic() - started >= self.heartbeat_timeout
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _publish(self, queue: asyncio.Queue[object], batch: list[StreamEvent]) -> bool:
        """Publish the items among ``batch`` and what else is queued (up to 100 events);
        True if there were any."""
        while not queue.empty() and len(batch) < 100:
            head = queue._queue[0]  # type: ignore[attr-defined]
            if not isinstance(head, StreamEvent):
                break  # an end or an error: left for ``_next``
            batch.append(queue.get_nowait())  # type: ignore[arg-type]
        items = [e for e in batch if e.kind == "item"]
        if items:
            await self.on_items(items)
            self._streamed_now.update(i.inquiry_id for e in items for i in e.items)
        return bool(items)

    async def _catch_up(self, queue: asyncio.Queue[object]) -> None:
        """The REST read until it has nothing the stream has not brought, publishing what
        the stream brings between its pages (a burst does not wait for the read to end).

        The read has caught up once it reads an item this connection's stream brought: the
        stream was subscribed before the read began, so what follows that item is on it. (An
        item the previous connection brought proves nothing: what it lost comes after.)"""
        for _ in range(10_000):
            more, read = await self.read_step()
            await self._publish(queue, [])
            if not more or self.stop.is_set() or not self._streamed_now.isdisjoint(read):
                return
            if not queue.empty() and not isinstance(queue._queue[0], StreamEvent):  # type: ignore[attr-defined]
                return  # the stream ended or failed: reconnect (and read again) first
            if time.monotonic() - self._last_event > self.heartbeat_timeout:
                raise _Silent()  # the stream died while the read went on

    async def _next(self, queue: asyncio.Queue[object], wait: float | None = None) -> StreamEvent:
        bound = self.heartbeat_timeout if wait is None else wait
        getter = asyncio.ensure_future(queue.get())
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait(
                {getter, stopper}, timeout=bound, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
        if not getter.done() or getter.cancelled():
            if self.stop.is_set():
                raise _Stopping()
            raise _Silent()
        got = getter.result()
        if got is _END:
            raise _Ended()
        if isinstance(got, BaseException):
            raise got
        assert isinstance(got, StreamEvent)
        return got

    async def _hold(self) -> bool:
        try:
            if self.holding:
                return await self._still_held()
            if await self.leases.try_acquire(self.name):
                self.holding = True
                log.info("lease taken; streaming here", stream=self.name, pid=os.getpid())
                return True
        except StoreUnavailable as exc:
            log.warning("cannot reach the lease store", stream=self.name, error=str(exc))
        return False

    async def _still_held(self) -> bool:
        if await self.leases.still_held(self.name):
            return True
        self.holding = False
        log.warning("lease lost; streaming stops here", stream=self.name)
        return False

    async def _release(self) -> None:
        if self.holding:
            self.holding = False
            with contextlib.suppress(Exception):
                await self.leases.release(self.name)

    async def _sleep(self, seconds: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        return self.stop.is_set()


class _Ended(Exception):
    """The server closed the stream."""


class _Stopping(Exception):
    """The bridge is stopping."""


__all__ = ["StreamLoop"]
