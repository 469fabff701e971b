"""Stage workers: one per consumed queue, whose handler outcome decides ack / delayed retry /
dead-letter.

Handler outcomes (what a stage handler does → what happens to the message):
- returns                → ack
- raises ``Retry``       → copy to the delay tier for its attempt (or the tier that covers
  ``delay``), then ack; past the last tier → dead-letter "attempts exhausted"
  (``Retry(counts=False)`` — rate limits, paused accounts — never exhausts)
- raises ``DeadLetter``  → copy to the stage's dead-letter queue with the reason, then ack
- a body that does not validate → dead-letter "malformed: …"
- a message the bridge did not sign, or signed for another routing key → dead-letter
  "unauthenticated: …", checked before the body is even decoded (``bridge/security/bus.py``),
  recorded first by ``Broker.on_unauthenticated`` (the daemon's audit trail)
- any other exception    → nack with requeue; the queue's delivery limit dead-letters a
  message that crashes its handler every time (poison-message guard)

Parameters (``[broker]`` config): ``prefetch`` (concurrent messages per stage worker),
``confirm_timeout`` (bound on every publish), ``retry_delays`` (delay tiers),
``delivery_limit`` (crashes before the broker dead-letters), ``drain_timeout`` (SIGTERM grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustQueue,
)
from pydantic import BaseModel, ValidationError

from bridge.runtime.broker import (
    ATTEMPT_HEADER,
    REASON_HEADER,
    Broker,
    PublishError,
    Unauthenticated,
)
from bridge.runtime.deadletters import dead_letter
from bridge.runtime.topology import STAGE_BINDINGS
from bridge.store.errors import StoreUnavailable
from bridge.telemetry import timing
from bridge.telemetry.metrics import Metrics
from schemas.messages import Message
from schemas.stages import StageDecl

log = structlog.get_logger("govbridge.worker")

M = TypeVar("M", bound=Message)


class Retry(Exception):
    """Transient failure: try the message again later."""

    def __init__(self, reason: str, delay: timedelta | None = None, counts: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.counts = counts


class DeadLetter(Exception):
    """Permanent failure: the message can never succeed as it is.

    ``reason`` (any text: it names ids) goes into the dead letter's header and the log;
    ``kind`` is a fixed word of the code (``unknown_department``, ``not_approved``…), the only
    part that becomes a metric label, so forged or many messages add no time series."""

    def __init__(self, reason: str, kind: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Delivery:
    """What a handler may know of a delivery besides its typed message: how many attempts
    came before (the runtime's own counter) and whether the broker redelivered it."""

    attempt: int
    redelivered: bool = False


Handler = Callable[[M, Delivery], Awaitable[None]]


_CONTEXT_KEYS = ("inquiry_id", "department", "ticket_id")


@functools.cache
def _context_attributes(model: type[BaseModel]) -> tuple[tuple[str, ...], bool]:
    """Which of the ids a log line is bound to a message model has (fields or properties),
    and whether it carries an ``inquiry``: asked once per model, not per message (asking a
    pydantic model for an attribute it lacks goes through its slow ``__getattr__``). A model
    that keeps unknown fields may have any of them: all are asked for then."""
    if model.model_config.get("extra") == "allow":
        return _CONTEXT_KEYS, True

    def has(name: str) -> bool:
        return name in model.model_fields or hasattr(model, name)

    return tuple(k for k in _CONTEXT_KEYS if has(k)), has("inquiry")


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
        """Start consuming; a connection cut while starting is ridden out (see the broker)."""
        await self.broker.riding_out_cuts(self._consume, f"start the {self.name} consumer")

    async def _consume(self) -> None:
        if self._channel is not None and not self._channel.is_closed:  # a try cut short
            with contextlib.suppress(Exception):
                await self._channel.close()
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
            await self._consume()
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
            refused = self.broker.bus.check(
                message.body,
                headers,
                message.type,
                exchange=message.exchange,
                routing_key=message.routing_key,
                topic_exchange=self.broker.cfg.exchange,
                bindings=STAGE_BINDINGS.get(self.name, ()),
            )
            if refused is not None:
                await self._refuse(message, attempt, refused)
                return
            try:
                payload = self.stage.model.model_validate_json(message.body)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "(body)"
                await self._dead_letter(
                    message,
                    f"malformed {self.stage.model.__name__}: {where}: {first['msg']}",
                    "malformed",
                )
                return
            keys, nested = _context_attributes(type(payload))
            ctx = {k: v for k in keys if (v := getattr(payload, k, None)) is not None}
            inquiry = getattr(payload, "inquiry", None) if nested else None
            if inquiry is not None:
                ctx["inquiry_id"] = inquiry.inquiry_id
            structlog.contextvars.bind_contextvars(**ctx)
            started = time.perf_counter()
            try:
                await self.stage.handler(payload, Delivery(attempt, bool(message.redelivered)))
            except Retry as exc:
                await self._retry(message, attempt, exc)
            except DeadLetter as exc:
                await self._dead_letter(message, exc.reason, exc.kind)
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

    async def _refuse(self, message: AbstractIncomingMessage, attempt: int, why: str) -> None:
        """A message the bridge did not sign: recorded (audit first), then dead-lettered
        ``unauthenticated`` and acked. Nothing of it reaches the handler. When the record
        cannot be written, nothing else is done: a store outage delays the message like any
        other (attempts not used up), another failure like a transient error (its attempts
        run out into a dead letter this worker writes, never the broker's delivery limit, so
        the dead letter's time is always the worker's)."""
        hook = self.broker.on_unauthenticated
        if hook is not None:
            try:
                await hook(
                    Unauthenticated(
                        stage=self.name,
                        message_id=message.message_id,
                        routing_key=message.routing_key or "",
                        type=message.type,
                        reason=why,
                        body=message.body,
                    )
                )
            except StoreUnavailable as exc:
                log.warning("cannot record an unauthenticated message yet", error=str(exc))
                await self._retry(
                    message, attempt, Retry(f"store unavailable: {exc}", counts=False)
                )
                return
            except Exception as exc:
                log.error("cannot record an unauthenticated message", error=repr(exc))
                await self._retry(message, attempt, Retry(f"refusal not recorded: {exc!r}"))
                return
        await self._dead_letter(message, f"unauthenticated: {why}", "unauthenticated")

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
                message,
                f"attempts exhausted after {attempt + 1} tries: {exc.reason}",
                "attempts_exhausted",
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

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, kind: str = "rejected"
    ) -> None:
        try:
            await dead_letter(
                self.broker,
                self.name,
                message.body,
                reason=reason,
                routing_key=message.routing_key or "",
                type_=message.type,
                headers=message.headers,
                correlation_id=message.correlation_id,
            )
        except PublishError as perr:
            log.error("could not dead-letter; requeueing", error=str(perr))
            await self._settle(message.nack(requeue=True))
            return
        self.metrics.dead_lettered.labels(self.name, kind).inc()  # never the reason: it has ids
        log.warning("message dead-lettered", reason=reason)
        await self._settle(message.ack())
