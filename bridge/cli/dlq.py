"""``govbridge dlq list|replay|drop``: inspect and act on dead letters.

Every consuming stage has a dead-letter queue ``<exchange>.<stage>.dead`` (see
``bridge.runtime.topology``). A dead letter arrives there two ways:

- the worker dead-lettered it (permanent error, attempts exhausted, malformed body): the reason
  is in the ``x-govbridge-reason`` header, with the stage, original routing key and time;
- the broker dead-lettered it after the work queue's delivery limit (a handler that crashes
  every time): the reason is the broker's ``x-death`` reason (``delivery_limit``).

``list`` shows reason, attempts, time, routing key, message id, message type, the ids inside
the body and whether the bridge signed it — never the body itself (citizens' text and personal
data stay out of the terminal). ``replay`` republishes a dead letter to its stage's work queue
(default exchange, routing key = queue name) with the attempt count reset and its signature as
it is, waits for the broker's confirm, then removes the dead letter; one the bridge did not sign
(``unauthenticated``) is not replayed (the stage would refuse it again; see
``bridge/security/bus.py``), with one narrow exception an operator asks for by name:
``--sign-unsigned-before TIME`` signs the dead letters an earlier version left (no signature
header at all, dead-lettered before TIME, the upgrade), which that version trusted anyway.
``drop`` removes dead letters after confirmation (``--yes`` or an interactive "y").

Both are operator actions recorded in the audit trail first: what cannot be recorded (the store
unreachable or locked) is not done, and the dead letter stays where it is.

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
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from bridge.cli.load import load
from bridge.privacy.pii import redact_text
from bridge.runtime.broker import (
    Broker,
    BrokerUnavailable,
    PublishError,
)
from bridge.runtime.deadletters import (
    INGEST,
    DeadLetterInfo,
    NotRecorded,
    NotReplayed,
    Recorder,
    act,
    describe,
    fetch,
    predates_signing,
    replay_key,
)
from bridge.runtime.topology import STAGE_BINDINGS
from bridge.security.keyring import Keyring
from bridge.store import open_store
from schemas import routing
from schemas.config import GovbridgeConfig


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
    p.add_argument(
        "--sign-unsigned-before",
        metavar="TIME",
        type=_cutoff,
        help="replay: also sign and replay dead letters that carry no signature at all and were"
        " dead-lettered before TIME (ISO 8601 with a time zone): those an earlier version left,"
        " from before its processes signed anything. Recorded as re-signed in the audit trail.",
    )
    p.set_defaults(func=cmd_dlq)


def _cutoff(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError("give the time zone too (e.g. 2026-12-01T08:00+08:00)")
    return when


def _print_info(info: DeadLetterInfo) -> None:
    ids = " ".join(f"{k}={v}" for k, v in info.ids.items()) or "-"
    print(
        f"  {info.message_id}  {info.failed_at or '-'}  attempts {info.attempts}"
        f"  key {info.routing_key or '-'}  {info.type or '-'}  {ids}"
    )
    print(f"    reason: {info.reason}")
    if info.unsigned is not None and info.stage != INGEST:
        print(f"    not signed by the bridge ({info.unsigned}): replay refused")


def _not_recorded(info: DeadLetterInfo, exc: NotRecorded) -> None:
    print(
        f"{info.message_id}: not done, the audit trail cannot be written ({exc}); kept",
        file=sys.stderr,
    )


def _confirm(count: int, stage: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"drop {count} dead letter(s) of stage {stage}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cli_actor() -> str:
    """Who acts from the command line, for the audit trail: the operating system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return f"cli:uid{os.getuid()}"


async def run_dlq(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    if args.limit < 1:
        print("govbridge dlq: --limit must be at least 1", file=sys.stderr)
        return 2
    record: Recorder | None = None
    if args.action != "list":  # an operator action: recorded in the audit trail, or not done
        try:
            store = await open_store(cfg.store.url, Keyring("audit", cfg.audit.keys))
        except Exception as exc:
            print(
                f"govbridge dlq: the store is not reachable ({exc!r}); nothing done",
                file=sys.stderr,
            )
            return 1
        record = Recorder(store, cli_actor())
    broker = Broker(cfg.broker)
    try:
        await broker.connect(declare=False)
    except BrokerUnavailable as exc:
        print(f"govbridge dlq: {exc}", file=sys.stderr)
        if record is not None:
            await record.store.close()
        return 1
    stages = [args.stage] if args.stage else [*STAGE_BINDINGS, INGEST]
    failures = 0
    matched = 0
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
                    failures += await _replay_ingest(cfg, broker, queues.dead, chosen, record)
                else:
                    failures += await _act(
                        args, broker, stage, queues.dead, queues.work, chosen, record
                    )
            finally:
                # Whatever was not acknowledged returns to the dead-letter queue.
                with contextlib.suppress(Exception):
                    await channel.close()
    finally:
        await broker.close()
        if record is not None:
            await record.store.close()
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
    record: Recorder | None = None,
) -> int:
    """List, replay or drop ``messages`` of one stage; returns the number of failures."""
    infos = [describe(stage, dead, m, broker.cfg.delivery_limit, broker) for m in messages]
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
    assert record is not None, "replay and drop are recorded"
    if args.action == "drop":
        print(f"{dead}: {len(infos)} dead letter(s) to drop")
        for info in infos:
            _print_info(info)
        if not (args.yes or _confirm(len(messages), stage)):
            print("not dropped (confirm with --yes)", file=sys.stderr)
            return 1
        for message, info in zip(messages, infos, strict=True):
            try:
                await act(broker, "drop", message, info, record)
            except NotRecorded as exc:
                _not_recorded(info, exc)
                return 1  # the store will not take the next record either
            print(f"dropped {info.message_id}")
        return 0
    failures = 0
    cutoff = getattr(args, "sign_unsigned_before", None)
    for message, info in zip(messages, infos, strict=True):
        sign_as: str | None = None
        if info.unsigned is not None:
            if not predates_signing(message, cutoff):
                print(
                    f"replay of {info.message_id} refused: the bridge did not sign it"
                    f" ({info.unsigned}); kept (drop it once looked into)",
                    file=sys.stderr,
                )
                failures += 1
                continue
            sign_as = replay_key(stage, message)
        try:
            await act(broker, "replay", message, info, record, sign_as=sign_as)
        except NotRecorded as exc:
            _not_recorded(info, exc)
            return failures + 1
        except NotReplayed as exc:
            print(f"replay of {info.message_id} failed: {exc}; kept", file=sys.stderr)
            failures += 1
            continue
        print(
            f"replayed {info.message_id} -> {work} ({info.type or 'message'}; was: {info.reason})"
        )
    return failures


async def _replay_ingest(
    cfg: GovbridgeConfig,
    broker: Broker,
    dead: str,
    messages: list[AbstractIncomingMessage],
    record: Recorder | None = None,
) -> int:
    """Give each kept item back to its account's adapter (``parse_item``) and publish the
    inquiry it now yields (signed, as anything the bridge reads from a source); an item still
    unreadable stays where it is, with the new reason."""
    from adapters.base import AdapterError, ParsesItems, Source, make_source

    failures = 0
    adapters: dict[str, Source] = {}
    try:
        for message in messages:
            info = describe(INGEST, dead, message, broker.cfg.delivery_limit)
            try:
                doc = json.loads(message.body)
                account = cfg.account(str(doc["handle"]), str(doc["adapter"]))
                key = account.key
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
            if record is not None:
                try:
                    await record.first("dead_letter.replayed", info)
                except NotRecorded as exc:
                    _not_recorded(info, exc)
                    return failures + 1
            if inquiry is not None:
                try:
                    await broker.publish(routing.inquiry_received(inquiry.platform), inquiry)
                except PublishError as exc:
                    print(f"replay of {info.message_id} failed: {exc}; kept", file=sys.stderr)
                    if record is not None:
                        await record.failed(info, str(exc))
                    failures += 1
                    continue
            await message.ack()
            what = f"inquiry {inquiry.inquiry_id}" if inquiry is not None else "nothing to ingest"
            print(f"replayed {info.message_id} -> {what} (was: {info.reason})")
    finally:
        for source in adapters.values():
            with contextlib.suppress(Exception):
                await source.close()
    return failures


def cmd_dlq(args: argparse.Namespace) -> int:
    return asyncio.run(run_dlq(args))
