"""The broker connection: one robust connection, a confirming publish channel, and the
message's wire contract (the headers the runtime writes, the signature every message carries).

Every publish is mandatory, persistent, confirmed and bounded by ``confirm_timeout``; a
message the bridge publishes for its own stages is signed (``bridge/security/bus.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractRobustChannel,
    AbstractRobustConnection,
    DeliveryMode,
)
from pamqp.commands import Basic

from bridge.runtime.topology import Topology
from bridge.security.bus import BusAuth
from bridge.security.keyring import Keyring
from bridge.telemetry import timing
from bridge.telemetry.metrics import Metrics
from schemas.config import BrokerConfig
from schemas.messages import Message

log = structlog.get_logger("govbridge.runtime")

ATTEMPT_HEADER = "x-govbridge-attempt"
REASON_HEADER = "x-govbridge-reason"
STAGE_HEADER = "x-govbridge-stage"
ROUTING_HEADER = "x-govbridge-routing-key"
FAILED_AT_HEADER = "x-govbridge-failed-at"


class BrokerUnavailable(Exception):
    """RabbitMQ could not be reached within the connect timeout."""


# What a cut connection raises from a call in flight (aiormq's reader, aio-pika's channel).
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
)
# ... and aiormq's connection.channel() while the connection is down (a bare RuntimeError)
CONNECTION_LOST_OR_CLOSED: tuple[type[BaseException], ...] = (*CONNECTION_LOST, RuntimeError)


class PublishError(Exception):
    """A publish was not confirmed (nack, returned, timeout): the caller must not proceed."""


class UnencodableMessage(ValueError):
    """A message cannot be serialised (e.g. text with a lone surrogate): it never will be."""


def encode_message(message: Message) -> bytes:
    """The JSON body of ``message``; ``UnencodableMessage`` when it has no valid encoding."""
    try:
        return message.model_dump_json().encode()
    except (ValueError, UnicodeError) as exc:
        raise UnencodableMessage(
            f"{type(message).__name__} cannot be encoded: {type(exc).__name__}"
        ) from None


@dataclass(frozen=True)
class Unauthenticated:
    """A delivery a stage refused because the bridge did not sign it. Its body is there only
    for the ids it claims (a record of the refusal never holds the body itself)."""

    stage: str
    message_id: str | None
    routing_key: str
    type: str | None
    reason: str
    body: bytes = field(repr=False)


RejectionHook = Callable[[Unauthenticated], Awaitable[None]]


class Broker:
    """A robust connection with a confirming publish channel.

    ``connect`` retries until ``connect_timeout`` (aio-pika's robust connection only
    reconnects after a first success). Every publish is mandatory, persistent, confirmed and
    bounded by ``confirm_timeout``; the topic exchange's alternate exchange catches what no
    queue is bound for, and a returned message (no alternate exchange) raises ``PublishError``.
    """

    def __init__(self, cfg: BrokerConfig, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.topology = Topology(cfg)
        self.metrics = metrics or Metrics()
        self.bus = BusAuth(Keyring("bus", cfg.signing_keys))
        # Records a refused delivery before it is dead-lettered and acked (the daemon sets it
        # to an audit append); a failure there leaves the message where it is.
        self.on_unauthenticated: RejectionHook | None = None
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dlx: AbstractExchange | None = None
        # Read at scrape time from the same state /readyz reads, so the two never disagree
        # (reconnect and close callbacks may run after readiness already changed).
        self.metrics.broker_connected.set_function(lambda: float(self.connected))

    @property
    def connected(self) -> bool:
        conn = self.connection
        return bool(conn is not None and not conn.is_closed and conn.connected.is_set())

    async def connect(self, declare: bool = True) -> None:
        url = self.cfg.url.get_secret_value()
        deadline = time.monotonic() + self.cfg.connect_timeout.total_seconds()
        delay = 0.5
        last: BaseException | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(f"RabbitMQ not reachable: {last}") from last
            try:
                self.connection = await aio_pika.connect_robust(
                    url, timeout=max(1.0, min(5.0, remaining)), reconnect_interval=1
                )
                break
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                last = exc
                log.warning("broker connect failed; retrying", error=str(exc), in_s=delay)
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 5.0)
        self.connection.reconnect_callbacks.add(self._on_reconnect)
        self.connection.close_callbacks.add(self._on_close)

        async def open_and_declare() -> None:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self.channel(publisher_confirms=True)
            if declare:
                await self.topology.declare(self._channel)
            self._exchange = await self._channel.get_exchange(self.cfg.exchange, ensure=False)
            self._dlx = await self._channel.get_exchange(
                self.topology.dead_letter_exchange, ensure=False
            )

        await self.riding_out_cuts(open_and_declare, "declare the topology", deadline)

    async def riding_out_cuts(
        self, step: Callable[[], Awaitable[None]], what: str, deadline: float | None = None
    ) -> None:
        """Run a start-up ``step``, again after the robust connection is back if the
        connection is cut while it runs (the chaos suite cut it mid-declare on a loaded
        machine, and every process exited), until ``connect_timeout`` has passed."""
        if deadline is None:
            deadline = time.monotonic() + self.cfg.connect_timeout.total_seconds()
        while True:
            try:
                await step()
                return
            except CONNECTION_LOST_OR_CLOSED as exc:
                # aiormq's connection.channel() raises a bare RuntimeError("... closed") while
                # the robust connection is down: a cut too, but only then
                if not isinstance(exc, CONNECTION_LOST) and self.connected:
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.connection is None:
                    raise BrokerUnavailable(f"RabbitMQ lost while starting: {exc!r}") from exc
                log.warning("broker connection lost while starting; again", step=what)
                await asyncio.sleep(0.2)  # the robust connection notices the cut first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.connection.connected.wait(), remaining)

    def _on_reconnect(self, *_: Any) -> None:
        log.info("broker reconnected")

    def _on_close(self, *_: Any) -> None:
        log.info("broker connection closed")

    async def channel(self, publisher_confirms: bool = False) -> AbstractRobustChannel:
        assert self.connection is not None, "connect() first"
        ch = await self.connection.channel(
            publisher_confirms=publisher_confirms, on_return_raises=publisher_confirms
        )
        return ch

    async def publish(
        self,
        routing_key: str,
        message: Message,
        *,
        headers: dict[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Publish a schema message to the topic exchange, signed for ``routing_key``; returns
        once the broker confirmed."""
        assert self._exchange is not None, "connect() first"
        body = encode_message(message)
        type_ = type(message).__name__
        signed = {**(headers or {}), **self.bus.headers(routing_key, body, type_)}
        await self._publish(self._exchange, routing_key, body, type_, signed, correlation_id)

    async def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        type_: str | None = None,
        headers: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        sign_as: str | None = None,
    ) -> None:
        """Publish bytes as they are: a retry's or dead letter's copy keeps the headers (and
        so the signature) it came with. ``sign_as`` signs ``body`` for that routing key, for
        a message the bridge writes itself outside ``publish`` (the outbox's dead-letter copy
        of a failed reply, which a replay must find genuine)."""
        assert self._channel is not None, "connect() first"
        if sign_as is not None:
            headers = {**(headers or {}), **self.bus.headers(sign_as, body, type_)}
        if exchange == "":
            ex: Any = self._channel.default_exchange
        elif exchange == self.cfg.exchange:
            ex = self._exchange
        elif exchange == self.topology.dead_letter_exchange:
            ex = self._dlx
        else:
            ex = await self._channel.get_exchange(exchange, ensure=False)
        await self._publish(ex, routing_key, body, type_, headers, correlation_id)

    async def publish_many(self, items: Sequence[tuple[str, Message]]) -> None:
        """Publish concurrently (a window of in-flight confirms); raises if any is unconfirmed.

        Every message is encoded before the first is sent: one that cannot be encoded raises
        ``UnencodableMessage`` with nothing published (all or nothing for a multi-item push).
        """
        assert self._exchange is not None, "connect() first"
        encoded = [(key, type(msg).__name__, encode_message(msg)) for key, msg in items]
        exchange = self._exchange
        results = await asyncio.gather(
            *(
                self._publish(exchange, key, body, type_, self.bus.headers(key, body, type_), None)
                for key, type_, body in encoded
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise PublishError(f"{len(errors)} of {len(items)} publishes failed: {errors[0]}")

    async def _publish(
        self,
        exchange: Any,
        routing_key: str,
        body: bytes,
        type_: str | None,
        headers: dict[str, Any] | None,
        correlation_id: str | None,
    ) -> None:
        msg = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=uuid.uuid4().hex,  # unique per publish: aiormq matches returns by it
            correlation_id=correlation_id,
            type=type_,
            headers=headers or {},
            timestamp=datetime.now(UTC),
        )
        timeout = self.cfg.confirm_timeout.total_seconds()
        try:
            # asyncio.timeout, not wait_for: wait_for (3.11) runs the publish in a task of its
            # own, a task and its callbacks more per publish on the loop
            with timing.timed("broker"):
                async with asyncio.timeout(timeout):
                    confirm = await exchange.publish(msg, routing_key=routing_key, mandatory=True)
        except TimeoutError:
            self.metrics.publish_failures.labels("timeout").inc()
            raise PublishError(f"no confirm for {routing_key!r} within {timeout:g} s") from None
        except aio_pika.exceptions.DeliveryError as exc:
            self.metrics.unroutable.inc()
            self.metrics.publish_failures.labels("returned").inc()
            raise PublishError(f"broker returned {routing_key!r}: unroutable") from exc
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            self.metrics.publish_failures.labels("connection").inc()
            raise PublishError(f"publish of {routing_key!r} failed: {exc!r}") from exc
        if not isinstance(confirm, Basic.Ack):
            self.metrics.publish_failures.labels("nack").inc()
            raise PublishError(f"broker did not ack {routing_key!r}: {confirm!r}")
        self.metrics.published.labels(routing_key.rsplit(".", 1)[0]).inc()

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
