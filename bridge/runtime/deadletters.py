"""The one dead-letter path: how a dead letter is written (``dead_letter``: the failure
headers, published to the stage's dead-letter queue), how operators see it (what failed, why,
when, how often, the ids inside the body and whether the bridge signed it, never the body
itself: citizens' text and personal data stay out of terminals and pages), and how it is
replayed or dropped (``act``: recorded in the audit trail first, then done). The stage worker
(``bridge/runtime/worker.py``), the outbox, ingest's unreadable items, ``govbridge dlq``
(``bridge/cli/dlq.py``) and the console (``bridge/web/console.py``) all go through here.

Every consuming stage has a dead-letter queue ``<exchange>.<stage>.dead`` (see
``bridge/runtime/topology.py``). A dead letter arrives there two ways: the worker dead-lettered
it (the reason is in the ``x-govbridge-reason`` header, with the stage, original routing key and
time), or the broker did after the work queue's delivery limit (the reason is the broker's
``x-death`` reason, ``delivery_limit``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bridge.privacy.pii import redact_text
from bridge.runtime.broker import (
    ATTEMPT_HEADER,
    FAILED_AT_HEADER,
    REASON_HEADER,
    ROUTING_HEADER,
    STAGE_HEADER,
    Broker,
    PublishError,
)
from bridge.runtime.topology import STAGE_BINDINGS
from bridge.security.bus import SIGNATURE_HEADER, binds
from schemas.stages import INGEST as INGEST_STAGE

if TYPE_CHECKING:
    from bridge.store import Store

INGEST = INGEST_STAGE.name  # the dead-letter queue of items a source could not read

# Headers describing the failure: not carried into the replayed message.
FAILURE_HEADERS = (
    REASON_HEADER,
    STAGE_HEADER,
    ROUTING_HEADER,
    FAILED_AT_HEADER,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)
REPLAYED_HEADER = "x-govbridge-replayed"
# Fields of a message body that identify it without revealing what the citizen wrote.
ID_FIELDS = (
    "inquiry_id",
    "command_id",
    "event_id",
    "reply_id",
    "ticket_id",
    "reference",
    "department",
    "platform",
    "account",
    "external_id",
)


@dataclass
class DeadLetterInfo:
    """What an operator may see of a dead letter (no message body)."""

    stage: str
    queue: str
    message_id: str
    reason: str
    attempts: int
    failed_at: str | None
    routing_key: str | None
    type: str | None
    ids: dict[str, str] = field(default_factory=dict)
    # None: signed by the bridge (a replay is checked again like any delivery); else why not
    unsigned: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "queue": self.queue,
            "message_id": self.message_id,
            "reason": self.reason,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "routing_key": self.routing_key,
            "type": self.type,
            "ids": self.ids,
            "signed": self.unsigned is None,
            "not_signed_because": self.unsigned,
        }


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _time(value: Any) -> str | None:
    if isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=UTC)
        return ts.isoformat(timespec="seconds")
    if value is None or value == "":
        return None
    text = _text(value)
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text).isoformat(timespec="seconds")
    return text


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def body_ids(body: bytes) -> dict[str, str]:
    """The identifying fields of a message body (top level and its ``inquiry``)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    ids: dict[str, str] = {}
    inner = doc.get("inquiry")
    for source in (doc, inner if isinstance(inner, dict) else {}):
        for key in ID_FIELDS:
            value = source.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and key not in ids:
                ids[key] = redact_text(str(value))[:80]
    return ids


def not_signed(broker: Broker, stage: str, message: AbstractIncomingMessage) -> str | None:
    """Why the stage would refuse ``message`` replayed into its work queue (checked as that
    delivery will be), or None when the bridge signed it. Ingest items are not bus messages:
    their adapter reads them again."""
    if stage == INGEST:
        return None
    return broker.bus.check(
        message.body,
        message.headers,
        message.type,
        exchange="",
        routing_key=broker.topology.queues(stage).work,
        topic_exchange=broker.cfg.exchange,
        bindings=STAGE_BINDINGS.get(stage, ()),
    )


def predates_signing(message: AbstractIncomingMessage, before: datetime | None) -> bool:
    """Whether ``message`` is a dead letter an earlier version left: no signature header at
    all, dead-lettered by a worker before ``before`` (the worker writes that time over
    whatever the message carried). A forged message sent since was refused at once, so it was
    dead-lettered after that time and never qualifies. What the broker dead-lettered
    (``x-death``: a crash loop) does not qualify either: it holds the headers it came with."""
    headers = message.headers or {}
    if before is None or SIGNATURE_HEADER in headers or "x-death" in headers:
        return False
    at = _time(headers.get(FAILED_AT_HEADER)) if REASON_HEADER in headers else None
    if at is None:
        return False
    when = datetime.fromisoformat(at)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) < before


def replay_key(stage: str, message: AbstractIncomingMessage) -> str:
    """The routing key to sign a dead letter for: the one it came with when that is one the
    stage binds (a retried message came through its work queue's name instead)."""
    routing = message.headers.get(ROUTING_HEADER) if message.headers else None
    key = _text(routing) if routing is not None else ""
    patterns = STAGE_BINDINGS.get(stage, ())
    if binds(patterns, key):
        return key
    return patterns[0].replace("*", "replayed")


def describe(
    stage: str,
    queue: str,
    message: AbstractIncomingMessage,
    delivery_limit: int,
    broker: Broker | None = None,
) -> DeadLetterInfo:

    headers: dict[str, Any] = dict(message.headers or {})
    death = _first_death(headers)
    reason = headers.get(REASON_HEADER)
    if reason is None:
        broker_reason = death.get("reason") or headers.get("x-first-death-reason") or "unknown"
        reason = f"broker: {_text(broker_reason)}"
        if death.get("queue"):
            reason += f" (queue {_text(death['queue'])})"
    # The attempt header counts delayed retries (the first try is attempt 0). A delivery-limit
    # dead letter crashed its handler delivery_limit + 1 times on its last attempt.
    # (``x-delivery-count`` here counts deliveries from the dead-letter queue itself.)
    raw_attempt = headers.get(ATTEMPT_HEADER, 0)
    attempt = (
        raw_attempt if isinstance(raw_attempt, int) and not isinstance(raw_attempt, bool) else 0
    )
    if REASON_HEADER not in headers and _text(death.get("reason", "")) == "delivery_limit":
        attempts = attempt + delivery_limit + 1
    else:
        attempts = attempt + 1
    routing_key = headers.get(ROUTING_HEADER)
    if routing_key is None:
        keys = death.get("routing-keys")
        routing_key = keys[0] if isinstance(keys, list) and keys else None
    failed_at = _time(headers.get(FAILED_AT_HEADER)) or _time(death.get("time"))
    if failed_at is None and message.timestamp is not None:
        failed_at = _time(message.timestamp)
    return DeadLetterInfo(
        stage=stage,
        queue=queue,
        message_id=message.message_id or "",
        reason=redact_text(_text(reason)),
        attempts=attempts,
        failed_at=failed_at,
        routing_key=_text(routing_key) if routing_key is not None else None,
        type=message.type,
        ids=body_ids(message.body),
        unsigned=not_signed(broker, stage, message) if broker is not None else None,
    )


async def fetch(channel: AbstractChannel, queue: str, limit: int) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` dead letters, held unacknowledged on ``channel``."""
    q = await channel.get_queue(queue, ensure=False)
    got: list[AbstractIncomingMessage] = []
    while len(got) < limit:
        message = await q.get(no_ack=False, fail=False, timeout=10)
        if message is None:
            break
        got.append(message)
    return got


def replay_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers: dict[str, Any] = {
        k: v for k, v in (message.headers or {}).items() if k not in FAILURE_HEADERS
    }
    headers[ATTEMPT_HEADER] = 0
    previous = headers.get(REPLAYED_HEADER)
    headers[REPLAYED_HEADER] = (previous if isinstance(previous, int) else 0) + 1
    return headers


# ---------------------------------------------------------------------- writing one
def failure_headers(
    headers: Mapping[str, Any] | None,
    *,
    reason: str,
    stage: str,
    routing_key: str,
    failed_at: datetime | None = None,
    reason_limit: int = 1000,
) -> dict[str, Any]:
    """``headers`` (those the message came with: its signature stays valid) with why, where
    and when it failed. The time is always the writer's, whatever the message carried."""
    out = dict(headers or {})
    out[REASON_HEADER] = reason[:reason_limit]
    out[STAGE_HEADER] = stage
    out[ROUTING_HEADER] = routing_key
    out[FAILED_AT_HEADER] = (failed_at or datetime.now(UTC)).isoformat()
    return out


async def dead_letter(
    broker: Broker,
    stage: str,
    body: bytes,
    *,
    reason: str,
    routing_key: str,
    type_: str | None,
    headers: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    sign_as: str | None = None,
    failed_at: datetime | None = None,
    reason_limit: int = 1000,
) -> None:
    """Put ``body`` in ``stage``'s dead-letter queue with its failure headers (confirmed;
    ``PublishError`` otherwise). ``sign_as``: the bridge's own copy of something it made, signed
    for that routing key so that a replay finds it genuine."""
    await broker.publish_raw(
        broker.topology.dead_letter_exchange,
        stage,
        body,
        type_=type_,
        headers=failure_headers(
            headers,
            reason=reason,
            stage=stage,
            routing_key=routing_key,
            failed_at=failed_at,
            reason_limit=reason_limit,
        ),
        correlation_id=correlation_id,
        sign_as=sign_as,
    )


# ---------------------------------------------------------------------- acting on one
class NotRecorded(Exception):
    """The audit trail could not take the action's record: it was not done (kept)."""


class NotReplayed(Exception):
    """The replay was recorded but the broker did not confirm it: kept (and said so)."""


class Recorder:
    """Writes an operator's action on a dead letter to the audit trail under ``actor``."""

    def __init__(self, store: Store, actor: str) -> None:
        self.store = store
        self.actor = actor

    async def __call__(self, action: str, info: DeadLetterInfo, **detail: Any) -> None:
        await self.store.record_audit(
            action,
            actor=self.actor,
            inquiry_id=info.ids.get("inquiry_id"),
            subject=info.message_id,
            stage=info.stage,
            reason=info.reason[:200],
            **detail,
        )

    async def first(self, action: str, info: DeadLetterInfo, **detail: Any) -> None:
        """Record ``action`` before it is done; ``NotRecorded`` when that cannot be."""
        try:
            await self(action, info, **detail)
        except Exception as exc:
            raise NotRecorded(f"{type(exc).__name__}: {redact_text(str(exc))[:160]}") from exc

    async def failed(self, info: DeadLetterInfo, error: str) -> None:
        """A replay recorded but not confirmed by the broker: said so too (if it can be)."""
        with contextlib.suppress(Exception):
            await self("dead_letter.replay_failed", info, error=redact_text(error)[:200])


async def act(
    broker: Broker,
    action: Literal["replay", "drop"],
    message: AbstractIncomingMessage,
    info: DeadLetterInfo,
    record: Recorder,
    *,
    sign_as: str | None = None,
) -> None:
    """Replay ``message`` into its stage's work queue (attempts reset, signature as it is, or
    signed for ``sign_as``) or drop it, recorded in the audit trail first: ``NotRecorded``
    and nothing done when the record cannot be written, ``NotReplayed`` when the broker did
    not confirm (the dead letter stays either way). Done, the dead letter is acknowledged."""
    if action == "drop":
        await record.first("dead_letter.dropped", info)
    else:
        detail = {"re_signed_for": sign_as} if sign_as is not None else {}
        await record.first("dead_letter.replayed", info, **detail)
        try:
            await broker.publish_raw(
                "",
                broker.topology.queues(info.stage).work,
                message.body,
                type_=message.type,
                headers=replay_headers(message),
                correlation_id=message.correlation_id,
                sign_as=sign_as,
            )
        except PublishError as exc:
            await record.failed(info, str(exc))
            raise NotReplayed(str(exc)) from exc
    await message.ack()
