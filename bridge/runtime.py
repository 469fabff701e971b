"""The worker runtime: one robust connection, confirmed publishing, and stage workers whose
handler outcome decides ack / delayed retry / dead-letter.

Handler outcomes (what a stage handler does → what happens to the message):
- returns                → ack
- raises ``Retry``       → copy to the delay tier for its attempt (or the tier that covers
  ``delay``), then ack; past the last tier → dead-letter "attempts exhausted"
  (``Retry(counts=False)`` — rate limits, paused accounts — never exhausts)
- raises ``DeadLetter``  → copy to the stage's dead-letter queue with the reason, then ack
- a body that does not validate → dead-letter "malformed: …"
- any other exception    → nack with requeue; the queue's delivery limit dead-letters a
  message that crashes its handler every time (poison-message guard)

Parameters (``[broker]`` config): ``prefetch`` (concurrent messages per stage worker),
``confirm_timeout`` (bound on every publish), ``retry_delays`` (delay tiers),
``delivery_limit`` (crashes before the broker dead-letters), ``drain_timeout`` (SIGTERM grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
    DeliveryMode,
)
from pamqp.commands import Basic
from pydantic import ValidationError

from bridge import timing
from bridge.errors import StoreUnavailable
from bridge.metrics import Metrics
from bridge.topology import Topology
from schemas.config import BrokerConfig
from schemas.messages import Message
from schemas.stages import StageDecl

log = structlog.get_logger("govbridge.runtime")

ATTEMPT_HEADER = "x-govbridge-attempt"
REASON_HEADER = "x-govbridge-reason"
STAGE_HEADER = "x-govbridge-stage"
ROUTING_HEADER = "x-govbridge-routing-key"
FAILED_AT_HEADER = "x-govbridge-failed-at"

M = TypeVar("M", bound=Message)


class BrokerUnavailable(Exception):
    """RabbitMQ could not be reached within the connect timeout."""


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


class Retry(Exception):
    """Transient failure: try the message again later."""

    def __init__(self, reason: str, delay: timedelta | None = None, counts: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.counts = counts


class DeadLetter(Exception):
    """Permanent failure: the message can never succeed as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        self._channel = await self.channel(publisher_confirms=True)
        if declare:
            await self.topology.declare(self._channel)
        self._exchange = await self._channel.get_exchange(self.cfg.exchange, ensure=False)
        self._dlx = await self._channel.get_exchange(
            self.topology.dead_letter_exchange, ensure=False
        )

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
        """Publish a schema message to the topic exchange; returns once the broker confirmed."""
        assert self._exchange is not None, "connect() first"
        body = encode_message(message)
        await self._publish(
            self._exchange, routing_key, body, type(message).__name__, headers, correlation_id
        )

    async def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        type_: str | None = None,
        headers: dict[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> None:
        assert self._channel is not None, "connect() first"
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
                self._publish(exchange, key, body, type_, None, None)
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
            with timing.timed("broker"):
                confirm = await asyncio.wait_for(
                    exchange.publish(msg, routing_key=routing_key, mandatory=True), timeout
                )
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


@dataclass(frozen=True)
class Delivery:
    """What a handler may know of a delivery besides its typed message: how many attempts
    came before (the runtime's own counter) and whether the broker redelivered it."""

    attempt: int
    redelivered: bool = False


Handler = Callable[[M, Delivery], Awaitable[None]]


@dataclass
class Stage(Generic[M]):
    """A consuming stage: its name (queue), message model and handler."""

    name: str
    model: type[M]
    handler: Handler[M]
    prefetch: int | None = None

    @classmethod
    def declared(cls, decl: StageDecl[M], handler: Handler[M]) -> Stage[M]:
        """The stage as ``schemas/stages.py`` declares it (its queue is named after it and
        bound by the topology to what it declares)."""
        return cls(decl.name, decl.model, handler)


@dataclass
class Worker(Generic[M]):
    """Consumes one stage queue. ``start`` / ``stop`` (drain) / ``watchdog``."""

    broker: Broker
    stage: Stage[M]
    _channel: AbstractRobustChannel | None = None
    _queue: AbstractRobustQueue | None = None
    _tag: str | None = None
    _inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    _stopping: bool = False
    lost_since: float | None = None

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def metrics(self) -> Metrics:
        return self.broker.metrics

    async def start(self) -> None:
        self._channel = await self.broker.channel()
        prefetch = self.stage.prefetch or self.broker.cfg.prefetch
        await self._channel.set_qos(prefetch_count=prefetch)  # per consumer (quorum queues)
        queue_name = self.broker.topology.queues(self.stage.name).work
        self._queue = await self._channel.get_queue(queue_name, ensure=True)  # type: ignore[assignment]
        assert self._queue is not None
        self._tag = await self._queue.consume(self._on_message)
        self.metrics.consumers.labels(self.name).set(1)
        self.lost_since = None
        log.info("consumer started", stage=self.name, queue=queue_name, prefetch=prefetch)

    async def consuming(self) -> bool:
        """True when our consumer is registered on an open channel."""
        if self._channel is None or self._channel.is_closed or self._tag is None:
            return False
        try:
            underlay = await asyncio.wait_for(self._channel.get_underlay_channel(), 1)
        except Exception:
            return False
        return self._tag in getattr(underlay, "consumers", {})

    async def watchdog_tick(self, grace: float) -> bool:
        """Restore a lost consumer. Returns False when it stayed lost longer than ``grace``."""
        if self._stopping or not self.broker.connected:
            return True
        if await self.consuming():
            self.lost_since = None
            self.metrics.consumers.labels(self.name).set(1)
            return True
        self.metrics.consumers.labels(self.name).set(0)
        now = time.monotonic()
        self.lost_since = self.lost_since or now
        log.warning("consumer lost; restarting it", stage=self.name)
        try:
            if self._channel is not None and not self._channel.is_closed:
                with contextlib.suppress(Exception):
                    await self._channel.close()
            await self.start()
            return True
        except Exception as exc:
            log.error("consumer restart failed", stage=self.name, error=repr(exc))
            return now - self.lost_since < grace

    async def stop(self) -> None:
        """Stop taking messages, let in-flight handlers finish (bounded), then close."""
        self._stopping = True
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._tag), 5)
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            log.info("draining in-flight messages", stage=self.name, count=len(pending))
            _, still = await asyncio.wait(
                pending, timeout=self.broker.cfg.drain_timeout.total_seconds()
            )
            if still:
                log.warning(
                    "drain timeout; unfinished messages return to the queue",
                    stage=self.name,
                    count=len(still),
                )
                for task in still:
                    task.cancel()
        self.metrics.consumers.labels(self.name).set(0)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq cancels its delivery callbacks when the channel or connection closes; the
        # handler runs in its own task so a lost connection does not cut it off between a side
        # effect and its bookkeeping. It finishes, its ack fails harmlessly (``_settle``) and
        # the redelivery finds the work done.
        task = asyncio.create_task(self._process(message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        await asyncio.shield(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        self.metrics.consumed.labels(self.name).inc()
        headers = message.headers or {}
        raw_attempt = headers.get(ATTEMPT_HEADER, 0)
        attempt = raw_attempt if isinstance(raw_attempt, int) else 0
        with (
            timing.stage(self.name),
            structlog.contextvars.bound_contextvars(
                stage=self.name, message_id=message.message_id, attempt=attempt
            ),
        ):
            try:
                payload = self.stage.model.model_validate_json(message.body)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "(body)"
                await self._dead_letter(
                    message, f"malformed {self.stage.model.__name__}: {where}: {first['msg']}"
                )
                return
            ctx = {
                k: getattr(payload, k)
                for k in ("inquiry_id", "department", "ticket_id")
                if getattr(payload, k, None) is not None
            }
            inquiry = getattr(payload, "inquiry", None)
            if inquiry is not None:
                ctx["inquiry_id"] = inquiry.inquiry_id
            structlog.contextvars.bind_contextvars(**ctx)
            started = time.perf_counter()
            try:
                await self.stage.handler(payload, Delivery(attempt, bool(message.redelivered)))
            except Retry as exc:
                await self._retry(message, attempt, exc)
            except DeadLetter as exc:
                await self._dead_letter(message, exc.reason)
            except StoreUnavailable as exc:
                # Not the message's fault: a delay tier, attempts not used up, never dead.
                log.warning("store unavailable; message delayed", error=str(exc))
                retry = Retry(f"store unavailable: {exc}", counts=False)
                await self._retry(message, attempt, retry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.crashed.labels(self.name).inc()
                log.exception("handler crashed; message requeued", error=repr(exc))
                await self._settle(message.nack(requeue=True))
            else:
                if await self._settle(message.ack()):
                    self.metrics.acked.labels(self.name).inc()
            finally:
                self.metrics.latency.labels(self.name).observe(time.perf_counter() - started)

    async def _settle(self, op: Awaitable[Any]) -> bool:
        """Ack/nack without ever killing the worker: after a reconnect the old delivery tag
        is gone and the broker redelivers anyway (handlers are idempotent)."""
        try:
            await op
            return True
        except Exception as exc:
            log.warning("could not settle message (will be redelivered)", error=repr(exc))
            return False

    async def _retry(self, message: AbstractIncomingMessage, attempt: int, exc: Retry) -> None:
        tiers = self.broker.topology.queues(self.name).retry
        next_attempt = attempt + 1 if exc.counts else attempt
        if exc.counts and attempt >= len(tiers):
            await self._dead_letter(
                message, f"attempts exhausted after {attempt + 1} tries: {exc.reason}"
            )
            return
        if exc.delay is not None:
            index = next((i for i, (d, _) in enumerate(tiers) if d >= exc.delay), len(tiers) - 1)
            if exc.counts:
                index = max(index, min(attempt, len(tiers) - 1))
        else:
            index = min(attempt, len(tiers) - 1)
        delay, queue = tiers[index]
        headers = dict(message.headers or {})
        headers[ATTEMPT_HEADER] = next_attempt
        headers[REASON_HEADER] = exc.reason[:500]
        try:
            await self.broker.publish_raw(
                "",
                queue,
                message.body,
                type_=message.type,
                headers=headers,
                correlation_id=message.correlation_id,
            )
        except PublishError as perr:
            log.error("could not schedule retry; requeueing", error=str(perr))
            await self._settle(message.nack(requeue=True))
            return
        self.metrics.retried.labels(self.name, queue.rsplit(".", 1)[-1]).inc()
        log.info(
            "retry scheduled",
            reason=exc.reason,
            delay_s=delay.total_seconds(),
            next_attempt=next_attempt,
        )
        await self._settle(message.ack())

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason[:1000]
        headers[STAGE_HEADER] = self.name
        headers[ROUTING_HEADER] = message.routing_key or ""
        headers[FAILED_AT_HEADER] = datetime.now(UTC).isoformat()
        try:
            await self.broker.publish_raw(
                self.broker.topology.dead_letter_exchange,
                self.name,
                message.body,
                type_=message.type,
                headers=headers,
                correlation_id=message.correlation_id,
            )
        except PublishError as perr:
            log.error("could not dead-letter; requeueing", error=str(perr))
            await self._settle(message.nack(requeue=True))
            return
        self.metrics.dead_lettered.labels(self.name, reason.split(":", 1)[0][:40]).inc()
        log.warning("message dead-lettered", reason=reason)
        await self._settle(message.ack())
