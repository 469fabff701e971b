"""A tap on the bus: what the bridge publishes, as another system reading the exchange sees it.
On RabbitMQ an exclusive queue of the test's own bound to the exchange; on a ``MemoryBroker``
the same view without a queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from bridge.runtime.topology import Topology
from govbridge_tools.testing.memory import MemoryBroker, Published, topic_matches
from schemas.config import BrokerConfig
from schemas.messages import Message

M = TypeVar("M", bound=Message)
Seen = Published  # routing_key, type, headers, body


class BusTap:
    """Collects every message published on the exchange for ``patterns`` (default all).

    ``declare=True`` declares the whole topology first (idempotent), so the tap can be bound
    before the bridge starts; otherwise only the exchange is declared. ``url``: another way to
    the same broker than the config's (the bridge's may be a proxy a test cuts)."""

    def __init__(
        self,
        target: BrokerConfig | MemoryBroker,
        patterns: str | Sequence[str] = "#",
        *,
        declare: bool = False,
        url: str | None = None,
    ) -> None:
        self.target = target
        self.cfg = target.cfg if isinstance(target, MemoryBroker) else target
        self.patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        self.declare = declare
        self.url = url
        self.seen: list[Seen] = []
        self._connection: AbstractRobustConnection | None = None
        self._remove: Any = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> BusTap:
        if isinstance(self.target, MemoryBroker):
            self._remove = self.target.add_tap(self.patterns, self._record)
            return self
        self._connection = await aio_pika.connect_robust(
            self.url or self.cfg.url.get_secret_value()
        )
        channel = await self._connection.channel()
        if self.declare:
            await Topology(self.cfg).declare(channel)
        exchange = await channel.declare_exchange(
            self.cfg.exchange,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": f"{self.cfg.exchange}.unroutable"},
        )
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        for pattern in self.patterns:
            await queue.bind(exchange, routing_key=pattern)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._remove is not None:
            self._remove()
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._record(
            Seen(message.routing_key or "", message.type, dict(message.headers or {}), message.body)
        )

    def _record(self, seen: Seen) -> None:
        self.seen.append(seen)
        self._changed.set()

    # ------------------------------------------------------------------ reading
    def matching(self, pattern: str = "#") -> list[Seen]:
        return [s for s in self.seen if topic_matches(pattern, s.routing_key)]

    def on(self, routing_key: str) -> list[Seen]:
        """Messages published with exactly this routing key."""
        return [s for s in self.seen if s.routing_key == routing_key]

    def bodies(self, pattern: str = "#") -> list[dict[str, Any]]:
        """The JSON bodies, in the order published."""
        return [json.loads(s.body) for s in self.matching(pattern)]

    def values(self, name: str, pattern: str = "#") -> list[Any]:
        """One field of every body (``values("external_id")``: the inquiries' external ids)."""
        return [body[name] for body in self.bodies(pattern)]

    def messages(self, model: type[M], pattern: str = "#") -> list[M]:
        """The bodies as schema messages (those of ``model``'s type)."""
        return [
            model.model_validate_json(s.body)
            for s in self.matching(pattern)
            if s.type in (None, model.__name__)
        ]

    async def wait_for(self, n: int, pattern: str = "#", timeout: float = 20.0) -> list[Seen]:
        """Wait until at least ``n`` messages matching ``pattern`` were seen; returns them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found := self.matching(pattern)) < n:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{len(found)} of {n} messages on {pattern!r} within {timeout} s"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return found
