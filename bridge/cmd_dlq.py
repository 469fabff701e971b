"""``govbridge dlq list|replay|drop``: inspect and act on dead letters.

Every consuming stage has a dead-letter queue ``<exchange>.<stage>.dead`` (see
``bridge.topology``). A dead letter arrives there two ways:

- the worker dead-lettered it (permanent error, attempts exhausted, malformed body): the reason
  is in the ``x-govbridge-reason`` header, with the stage, original routing key and time;
- the broker dead-lettered it after the work queue's delivery limit (a handler that crashes
  every time): the reason is the broker's ``x-death`` reason (``delivery_limit``).

``list`` shows reason, attempts, time, routing key, message id, message type and the ids inside
the body — never the body itself (citizens' text and personal data stay out of the terminal).
``replay`` republishes a dead letter to its stage's work queue (default exchange, routing key =
queue name) with the attempt count reset, waits for the broker's confirm, then removes the dead
letter. ``drop`` removes dead letters after confirmation (``--yes`` or an interactive "y").

Dead letters are read with ``basic.get`` and held unacknowledged while the command runs, so each
one is seen once; the ones not acted on go back to the queue when the command ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bridge.pii import redact_text
from bridge.rejected import STAGE as INGEST
from bridge.runtime import (
    ATTEMPT_HEADER,
    FAILED_AT_HEADER,
    REASON_HEADER,
    ROUTING_HEADER,
    STAGE_HEADER,
    Broker,
    BrokerUnavailable,
    PublishError,
)
from bridge.store import Store, open_store
from bridge.topology import STAGE_BINDINGS
from schemas import routing
from schemas.config import GovbridgeConfig

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


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dlq",
        help="list, replay or drop dead letters",
        description="Dead letters per stage queue (<exchange>.<stage>.dead) with their reasons.",
    )
    p.add_argument("action", choices=("list", "replay", "drop"))
    p.add_argument("-c", "--config", default="govbridge.toml")
    p.add_argument(
        "--stage",
        choices=(*STAGE_BINDINGS, INGEST),
        help="only this stage's dead letters (default: every stage)",
    )
    p.add_argument(
        "--limit", type=int, default=100, help="at most this many dead letters per stage"
    )
    p.add_argument("--id", dest="message_id", help="only the dead letter with this message id")
    p.add_argument("--yes", action="store_true", help="drop without asking")
    p.add_argument("--json", action="store_true", help="list: one JSON object per line")
    p.set_defaults(func=cmd_dlq)


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


def describe(
    stage: str, queue: str, message: AbstractIncomingMessage, delivery_limit: int
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


def _print_info(info: DeadLetterInfo) -> None:
    ids = " ".join(f"{k}={v}" for k, v in info.ids.items()) or "-"
    print(
        f"  {info.message_id}  {info.failed_at or '-'}  attempts {info.attempts}"
        f"  key {info.routing_key or '-'}  {info.type or '-'}  {ids}"
    )
    print(f"    reason: {info.reason}")


def _confirm(count: int, stage: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"drop {count} dead letter(s) of stage {stage}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def run_dlq(args: argparse.Namespace) -> int:
    from bridge.cli import _load

    cfg = _load(args.config)
    if args.limit < 1:
        print("govbridge dlq: --limit must be at least 1", file=sys.stderr)
        return 2
    store = None
    if args.action != "list":  # an operator action: recorded in the audit trail, or not done
        try:
            store = await open_store(cfg.store.url)
        except Exception as exc:
            print(
                f"govbridge dlq: the store is not reachable ({exc!r}); nothing done",
                file=sys.stderr,
            )
            return 1
    broker = Broker(cfg.broker)
    try:
        await broker.connect(declare=False)
    except BrokerUnavailable as exc:
        print(f"govbridge dlq: {exc}", file=sys.stderr)
        if store is not None:
            await store.close()
        return 1
    stages = [args.stage] if args.stage else [*STAGE_BINDINGS, INGEST]
    failures = 0
    matched = 0
    acted: list[tuple[str, DeadLetterInfo]] = []
    try:
        for stage in stages:
            queues = broker.topology.queues(stage)
            channel = await broker.channel()
            try:
                try:
                    messages = await fetch(channel, queues.dead, args.limit)
                except Exception as exc:  # a missing queue closes the channel
                    print(
                        f"{queues.dead}: not readable ({exc.__class__.__name__});"
                        " is the topology declared (govbridge topology -c …)?",
                        file=sys.stderr,
                    )
                    failures += 1
                    continue
                chosen = [m for m in messages if args.message_id in (None, m.message_id)]
                matched += len(chosen)
                if stage == INGEST and args.action == "replay":
                    failures += await _replay_ingest(cfg, broker, queues.dead, chosen, acted)
                else:
                    failures += await _act(
                        args, broker, stage, queues.dead, queues.work, chosen, acted
                    )
            finally:
                # Whatever was not acknowledged returns to the dead-letter queue.
                with contextlib.suppress(Exception):
                    await channel.close()
    finally:
        await broker.close()
        if store is not None:
            await _record(store, args.action, acted)
            await store.close()
    if args.message_id and not matched:
        print(f"govbridge dlq: no dead letter with message id {args.message_id}", file=sys.stderr)
        return 1
    return 1 if failures else 0


async def _act(
    args: argparse.Namespace,
    broker: Broker,
    stage: str,
    dead: str,
    work: str,
    messages: list[AbstractIncomingMessage],
    acted: list[tuple[str, DeadLetterInfo]] | None = None,
) -> int:
    """List, replay or drop ``messages`` of one stage; returns the number of failures."""
    infos = [describe(stage, dead, m, broker.cfg.delivery_limit) for m in messages]
    if args.action == "list":
        if args.json:
            for info in infos:
                print(json.dumps(info.as_dict(), ensure_ascii=False))
        elif infos or not args.message_id:
            more = " (the --limit; more may be waiting)" if len(infos) >= args.limit else ""
            print(f"{dead}: {len(infos)} dead letter(s){more}")
            for info in infos:
                _print_info(info)
        return 0
    if not messages:
        return 0
    if args.action == "drop":
        print(f"{dead}: {len(infos)} dead letter(s) to drop")
        for info in infos:
            _print_info(info)
        if not (args.yes or _confirm(len(messages), stage)):
            print("not dropped (confirm with --yes)", file=sys.stderr)
            return 1
        for message, info in zip(messages, infos, strict=True):
            await message.ack()
            if acted is not None:
                acted.append(("drop", info))
            print(f"dropped {info.message_id}")
        return 0
    failures = 0
    for message, info in zip(messages, infos, strict=True):
        try:
            await broker.publish_raw(
                "",
                work,
                message.body,
                type_=message.type,
                headers=replay_headers(message),
                correlation_id=message.correlation_id,
            )
        except PublishError as exc:
            print(f"replay of {info.message_id} failed: {exc}; kept", file=sys.stderr)
            failures += 1
            continue
        await message.ack()
        if acted is not None:
            acted.append(("replay", info))
        print(
            f"replayed {info.message_id} -> {work} ({info.type or 'message'}; was: {info.reason})"
        )
    return failures


async def _replay_ingest(
    cfg: GovbridgeConfig,
    broker: Broker,
    dead: str,
    messages: list[AbstractIncomingMessage],
    acted: list[tuple[str, DeadLetterInfo]] | None = None,
) -> int:
    """Give each kept item back to its account's adapter (``parse_item``) and publish the
    inquiry it now yields; an item still unreadable stays where it is, with the new reason."""
    from adapters.base import AdapterError, ParsesItems, Source, make_source

    failures = 0
    adapters: dict[str, Source] = {}
    try:
        for message in messages:
            info = describe(INGEST, dead, message, broker.cfg.delivery_limit)
            try:
                doc = json.loads(message.body)
                account = cfg.account(str(doc["handle"]), str(doc["adapter"]))
                key = f"{account.adapter}:{account.handle}"
                if key not in adapters:
                    adapters[key] = make_source(account)
                source = adapters[key]
                if not isinstance(source, ParsesItems):
                    raise ValueError(f"adapter {account.adapter} cannot read items again")
                inquiry = await source.parse_item(str(doc["raw"]).encode("utf-8"))
            except (ValueError, KeyError, TypeError, AdapterError) as exc:
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                print(
                    f"replay of {info.message_id} failed: {redact_text(reason)}; kept",
                    file=sys.stderr,
                )
                failures += 1
                continue
            if inquiry is not None:
                try:
                    await broker.publish(routing.inquiry_received(inquiry.platform), inquiry)
                except PublishError as exc:
                    print(f"replay of {info.message_id} failed: {exc}; kept", file=sys.stderr)
                    failures += 1
                    continue
            await message.ack()
            if acted is not None:
                acted.append(("replay", info))
            what = f"inquiry {inquiry.inquiry_id}" if inquiry is not None else "nothing to ingest"
            print(f"replayed {info.message_id} -> {what} (was: {info.reason})")
    finally:
        for source in adapters.values():
            with contextlib.suppress(Exception):
                await source.close()
    return failures


async def _record(store: Store, action: str, acted: list[tuple[str, DeadLetterInfo]]) -> None:
    """Each replay and drop in the audit trail, under the operating system user's name."""
    try:
        actor = f"cli:{getpass.getuser()}"
    except Exception:
        actor = f"cli:uid{os.getuid()}"
    for done, info in acted:
        await store.record_audit(
            "dead_letter.replayed" if done == "replay" else "dead_letter.dropped",
            actor=actor,
            inquiry_id=info.ids.get("inquiry_id"),
            subject=info.message_id,
            stage=info.stage,
            reason=info.reason[:200],
        )


def cmd_dlq(args: argparse.Namespace) -> int:
    return asyncio.run(run_dlq(args))
