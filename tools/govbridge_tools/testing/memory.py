"""An in-memory broker: what the roles and workers use of ``bridge.runtime.broker.Broker``,
routed by the stage table (``schemas/stages.py`` through ``bridge.runtime.topology``) with no
RabbitMQ, so a stage's logic can be tested on its own.

``MemoryBroker`` is a ``Broker``: ``publish``, ``publish_raw`` and ``publish_many`` are the real
ones (encoding, signing, metrics); only the wire is replaced. The real ``Worker`` consumes from it
unchanged (signature check, decoding, retry tiers, dead letters, requeue on a crash), through a
channel and queues that offer the few calls the worker makes. What it keeps of RabbitMQ:

- the topic exchange routes by the work queues' bindings (``STAGE_BINDINGS``); what no queue
  is bound for goes to the unroutable queue (the alternate exchange);
- a retry tier holds a message for its delay, then puts it back on the stage's work queue;
- the dead-letter exchange routes by stage name to the stage's dead-letter queue;
- a work queue's delivery limit dead-letters a message whose handler crashed that many times;
- a publish nothing can route on the default or dead-letter exchange is returned
  (``PublishError``), as a mandatory publish is.

What it does not keep: durability, confirms that can fail (``fail_next_publishes`` makes
them fail on purpose), connections that drop, exclusive queues of other processes. The bus
itself is tested against the real broker (tests/test_runtime.py, test_bus_auth.py, chaos).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from bridge.runtime.broker import Broker, PublishError
from bridge.runtime.topology import STAGE_BINDINGS
from bridge.telemetry.metrics import Metrics
from schemas.config import BrokerConfig

DEFAULT_EXCHANGE = ""


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


@dataclass
class MemoryMessage:
    """A delivery: the part of ``AbstractIncomingMessage`` the worker and the CLI read."""

    body: bytes
    routing_key: str
    exchange: str
    type: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    timestamp: datetime | None = None
    redelivered: bool = False
    delivery_count: int = 0
    content_type: str = "application/json"
    _queue: MemoryQueue | None = field(default=None, repr=False)
    _consumer: _Consumer | None = field(default=None, repr=False)
    _settled: bool = field(default=False, repr=False)

    def copy(self, **changes: Any) -> MemoryMessage:
        """A fresh delivery of the same message (not settled, on no queue yet)."""
        fresh: dict[str, Any] = {"headers": dict(self.headers), "redelivered": False}
        fresh |= {"_queue": None, "_consumer": None, "_settled": False}
        return dataclasses.replace(self, **(fresh | changes))

    async def ack(self) -> None:
        self._settle(None)

    async def nack(self, requeue: bool = True) -> None:
        self._settle(requeue)

    async def reject(self, requeue: bool = False) -> None:
        self._settle(requeue)

    def _settle(self, requeue: bool | None) -> None:
        if self._settled:
            raise RuntimeError("delivery already settled")
        self._settled = True
        if self._queue is not None:
            self._queue.settled(self, requeue)


@dataclass
class _Consumer:
    tag: str
    callback: Callable[[Any], Awaitable[Any]]
    prefetch: int
    no_ack: bool
    channel: MemoryChannel
    unacked: set[int] = field(default_factory=set)


class MemoryQueue:
    """A queue: FIFO, consumers with a prefetch window, optional TTL and dead-lettering."""

    def __init__(
        self,
        broker: MemoryBroker,
        name: str,
        *,
        ttl: float | None = None,
        dead_letter: tuple[str, str] | None = None,
        delivery_limit: int | None = None,
    ) -> None:
        self.broker = broker
        self.name = name
        self.ttl = ttl
        self.dead_letter = dead_letter  # (exchange, routing key)
        self.delivery_limit = delivery_limit
        self.messages: deque[MemoryMessage] = deque()
        self.consumers: dict[str, _Consumer] = {}
        self._rr = itertools.count()
        self._timers: set[asyncio.TimerHandle] = set()

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def waiting(self) -> int:
        """Messages held by a TTL (a retry tier) not yet moved on."""
        return len(self._timers)

    @property
    def unacked(self) -> int:
        return sum(len(c.unacked) for c in self.consumers.values())

    def put(self, message: MemoryMessage) -> None:
        message._queue = self
        if self.ttl is not None and self.dead_letter is not None:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle

            def expire() -> None:
                self._timers.discard(handle)
                self.broker.dead_letter_from(self, message, "expired")

            handle = loop.call_later(self.ttl, expire)
            self._timers.add(handle)
            return
        self.messages.append(message)
        self.dispatch()

    def dispatch(self) -> None:
        while self.messages:
            ready = [c for c in self.consumers.values() if len(c.unacked) < c.prefetch]
            if not ready:
                return
            consumer = ready[next(self._rr) % len(ready)]
            message = self.messages.popleft()
            delivery = message.copy(redelivered=message.redelivered)
            delivery._queue = self
            delivery._consumer = consumer
            if consumer.no_ack:
                delivery._settled = True
            else:
                consumer.unacked.add(id(delivery))
            self.broker.spawn(consumer.callback(delivery))

    def settled(self, message: MemoryMessage, requeue: bool | None) -> None:
        consumer = message._consumer
        if consumer is not None:
            consumer.unacked.discard(id(message))
        if requeue:
            self.returned(message)
        elif requeue is False and self.dead_letter is not None:
            self.broker.dead_letter_from(self, message, "rejected")
        self.dispatch()

    def returned(self, message: MemoryMessage) -> None:
        """Back at the head of the queue, redelivered; past the delivery limit, dead-lettered
        (a quorum queue counts every return)."""
        count = message.delivery_count + 1
        if self.delivery_limit is not None and count > self.delivery_limit:
            if self.dead_letter is not None:
                self.broker.dead_letter_from(self, message, "delivery_limit")
            return
        again = message.copy(redelivered=True, delivery_count=count)
        again._queue = self
        self.messages.appendleft(again)

    def cancel(self, tag: str) -> None:
        self.consumers.pop(tag, None)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


class _QueueView:
    """A queue as one channel sees it (its prefetch)."""

    def __init__(self, queue: MemoryQueue, channel: MemoryChannel) -> None:
        self.queue = queue
        self.channel = channel
        self.name = queue.name

    async def consume(
        self, callback: Callable[[Any], Awaitable[Any]], no_ack: bool = False, **_: Any
    ) -> str:
        tag = f"ctag-{uuid.uuid4().hex[:12]}"
        consumer = _Consumer(tag, callback, self.channel.prefetch, no_ack, self.channel)
        self.queue.consumers[tag] = consumer
        self.channel.consumers[tag] = consumer
        self.queue.dispatch()
        return tag

    async def cancel(self, tag: str, **_: Any) -> None:
        self.queue.cancel(tag)
        self.channel.consumers.pop(tag, None)

    async def get(self, *, no_ack: bool = False, fail: bool = True, **_: Any) -> Any:
        if not self.queue.messages:
            if fail:
                raise LookupError(f"queue {self.name} is empty")
            return None
        message = self.queue.messages.popleft()
        delivery = message.copy(redelivered=message.redelivered)
        delivery._queue = self.queue
        delivery._settled = no_ack
        return delivery

    async def purge(self, **_: Any) -> None:
        self.queue.messages.clear()

    @property
    def declaration_result(self) -> Any:
        return _Declared(len(self.queue.messages), len(self.queue.consumers))


@dataclass
class _Declared:
    message_count: int
    consumer_count: int


@dataclass
class _Exchange:
    name: str


class MemoryChannel:
    """The channel calls the worker, the dead-letter commands and the console make."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.prefetch = broker.cfg.prefetch
        self.consumers: dict[str, _Consumer] = {}
        self.is_closed = False
        self.default_exchange = _Exchange(DEFAULT_EXCHANGE)

    async def set_qos(self, prefetch_count: int = 0, **_: Any) -> None:
        self.prefetch = prefetch_count or 1_000_000

    async def get_queue(self, name: str, ensure: bool = True) -> _QueueView:
        return _QueueView(self.broker.queue(name), self)

    async def declare_queue(self, name: str = "", **_: Any) -> _QueueView:
        return _QueueView(self.broker.queue(name), self)

    async def get_exchange(self, name: str, ensure: bool = True) -> _Exchange:
        if name not in self.broker.exchanges:
            raise LookupError(f"no exchange {name!r}")
        return _Exchange(name)

    async def get_underlay_channel(self) -> MemoryChannel:
        return self

    async def close(self) -> None:
        if self.is_closed:
            return
        self.is_closed = True
        for tag, consumer in list(self.consumers.items()):
            for queue in self.broker.queues.values():
                queue.cancel(tag)
            consumer.unacked.clear()
        self.consumers.clear()


@dataclass
class Published:
    """One message the topic exchange took (every publish, whoever routes it)."""

    routing_key: str
    type: str | None
    headers: dict[str, Any]
    body: bytes


Tap = Callable[[Published], None]


class MemoryBroker(Broker):
    """A ``Broker`` whose exchange, queues and consumers live in this process."""

    def __init__(self, cfg: BrokerConfig, metrics: Metrics | None = None) -> None:
        super().__init__(cfg, metrics)
        top = self.topology
        self.exchanges = {
            DEFAULT_EXCHANGE,
            top.exchange,
            top.dead_letter_exchange,
            top.alternate_exchange,
        }
        self.queues: dict[str, MemoryQueue] = {}
        self.bindings: list[tuple[str, str]] = []  # (pattern on the topic exchange, queue)
        self.dead_bindings: dict[str, str] = {}  # dead-letter exchange: stage -> queue
        self.published: list[Published] = []
        self.taps: list[tuple[tuple[str, ...], Tap]] = []
        self._open = False
        self._failing = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channels: list[MemoryChannel] = []
        self._declare()

    # ------------------------------------------------------------------ the stage table
    def _declare(self) -> None:
        top = self.topology
        limit = self.cfg.delivery_limit
        dlx = top.dead_letter_exchange
        for stage in top.stages:
            q = top.queues(stage)
            self.queues[q.work] = MemoryQueue(
                self, q.work, dead_letter=(dlx, stage), delivery_limit=limit
            )
            for pattern in STAGE_BINDINGS[stage]:
                self.bindings.append((pattern, q.work))
            for delay, name in q.retry:
                self.queues[name] = MemoryQueue(
                    self,
                    name,
                    ttl=delay.total_seconds(),
                    dead_letter=(DEFAULT_EXCHANGE, q.work),
                )
            self.queues[q.dead] = MemoryQueue(self, q.dead)
            self.dead_bindings[stage] = q.dead
        self.queues[top.ingest_dead] = MemoryQueue(self, top.ingest_dead)
        self.dead_bindings["ingest"] = top.ingest_dead
        self.queues[top.unroutable_queue] = MemoryQueue(self, top.unroutable_queue)

    def queue(self, name: str) -> MemoryQueue:
        if name not in self.queues:
            self.queues[name] = MemoryQueue(self, name)  # a queue of the test's own
        return self.queues[name]

    # ------------------------------------------------------------------ Broker's surface
    @property
    def connected(self) -> bool:
        return self._open

    async def connect(self, declare: bool = True) -> None:
        channel = await self.channel(publisher_confirms=True)
        self._channel = channel
        self._exchange = cast(Any, _Exchange(self.topology.exchange))
        self._dlx = cast(Any, _Exchange(self.topology.dead_letter_exchange))
        self._open = True

    async def channel(self, publisher_confirms: bool = False) -> Any:
        channel = MemoryChannel(self)
        self._channels.append(channel)
        return channel

    async def close(self) -> None:
        self._open = False
        for channel in self._channels:
            await channel.close()
        for queue in self.queues.values():
            queue.close()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _publish(
        self,
        exchange: Any,
        routing_key: str,
        body: bytes,
        type_: str | None,
        headers: dict[str, Any] | None,
        correlation_id: str | None,
    ) -> None:
        if not self._open:
            self.metrics.publish_failures.labels("connection").inc()
            raise PublishError(f"publish of {routing_key!r} failed: not connected")
        if self._failing:
            self._failing -= 1
            self.metrics.publish_failures.labels("nack").inc()
            raise PublishError(f"broker did not ack {routing_key!r}: (memory: failing on purpose)")
        message = MemoryMessage(
            body,
            routing_key,
            exchange.name,
            type=type_,
            headers=dict(headers or {}),
            message_id=uuid.uuid4().hex,
            correlation_id=correlation_id,
            timestamp=datetime.now(UTC),
        )
        if not self.route(exchange.name, routing_key, message):
            self.metrics.unroutable.inc()
            self.metrics.publish_failures.labels("returned").inc()
            raise PublishError(f"broker returned {routing_key!r}: unroutable")
        self.metrics.published.labels(routing_key.rsplit(".", 1)[0]).inc()

    # ------------------------------------------------------------------ routing
    def route(self, exchange: str, routing_key: str, message: MemoryMessage) -> bool:
        """Put ``message`` where ``exchange`` routes it; False when nothing takes it."""
        if exchange == self.topology.exchange:
            seen = Published(routing_key, message.type, dict(message.headers), message.body)
            self.published.append(seen)
            for patterns, tap in self.taps:
                if any(topic_matches(p, routing_key) for p in patterns):
                    tap(seen)
            targets = [q for p, q in self.bindings if topic_matches(p, routing_key)]
            if not targets:  # the alternate exchange
                targets = [self.topology.unroutable_queue]
        elif exchange == self.topology.dead_letter_exchange:
            dead = self.dead_bindings.get(routing_key)
            targets = [dead] if dead else []
        elif exchange == DEFAULT_EXCHANGE:
            targets = [routing_key] if routing_key in self.queues else []
        elif exchange == self.topology.alternate_exchange:
            targets = [self.topology.unroutable_queue]
        else:
            raise PublishError(f"no exchange {exchange!r}")
        for name in dict.fromkeys(targets):
            self.queues[name].put(message.copy())
        return bool(targets)

    def dead_letter_from(self, queue: MemoryQueue, message: MemoryMessage, reason: str) -> None:
        """What RabbitMQ does when a message leaves ``queue`` by expiry, rejection or the
        delivery limit: on to the queue's dead-letter target, with an ``x-death`` entry."""
        assert queue.dead_letter is not None
        exchange, key = queue.dead_letter
        headers = dict(message.headers)
        deaths = list(headers.get("x-death") or [])
        deaths.insert(
            0,
            {
                "queue": queue.name,
                "reason": reason,
                "count": 1,
                "exchange": message.exchange,
                "routing-keys": [message.routing_key],
            },
        )
        headers["x-death"] = deaths
        moved = message.copy(headers=headers, redelivered=False, routing_key=key)
        moved.exchange = exchange
        self.route(exchange, key, moved)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ for tests
    def add_tap(self, patterns: Iterable[str], tap: Tap) -> Callable[[], None]:
        """Call ``tap`` with every publish on the topic exchange whose key matches; returns
        the function that removes it."""
        entry = (tuple(patterns), tap)
        self.taps.append(entry)
        return lambda: self.taps.remove(entry) if entry in self.taps else None

    def fail_next_publishes(self, n: int = 1) -> None:
        """The next ``n`` publishes are not confirmed (``PublishError``)."""
        self._failing = n

    def dead_letters(self, stage: str) -> list[MemoryMessage]:
        """What ``stage``'s dead-letter queue holds (not consumed)."""
        return list(self.queues[self.topology.queues(stage).dead].messages)

    def unroutable(self) -> list[MemoryMessage]:
        return list(self.queues[self.topology.unroutable_queue].messages)

    def busy(self) -> bool:
        """Anything queued, held in a retry tier or being handled."""
        return any(q.messages or q.waiting or q.unacked for q in self._consumed()) or any(
            not t.done() for t in self._tasks
        )

    def _consumed(self) -> list[MemoryQueue]:
        top = self.topology
        names = [top.queues(s).work for s in top.stages]
        names += [n for s in top.stages for _, n in top.queues(s).retry]
        return [self.queues[n] for n in names]

    async def settle(self, timeout: float = 20.0, quiet: float = 0.05) -> None:
        """Wait until nothing is queued, held in a tier or in a handler (for ``quiet``
        seconds in a row: a handler's publish may start the next stage)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        calm_since: float | None = None
        while True:
            now = loop.time()
            if self.busy():
                calm_since = None
            elif calm_since is None:
                calm_since = now
            elif now - calm_since >= quiet:
                return
            if now > deadline:
                raise AssertionError(f"the in-memory broker was still busy after {timeout} s")
            await asyncio.sleep(0.01)
