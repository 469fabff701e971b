"""``govbridge audit verify|checkpoint|show`` and ``govbridge trace INQUIRY_ID`` (see
``bridge.store.audit`` and ``bridge.reports.journey``).

``verify`` and ``checkpoint`` check each record's HMAC with ``[audit] keys`` (a secret kept out
of the store): run them where that key is, with the same config as the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bridge.cli.load import load
from bridge.reports.journey import journey, render_text
from bridge.security.keyring import Keyring
from bridge.store import audit, open_store


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="check or show the audit trail")
    p.add_argument("-c", "--config", default="govbridge.toml")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser("verify", help="check the hash chain; names the first altered record")
    noted = v.add_mutually_exclusive_group()
    noted.add_argument(
        "--expect",
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify: it must still be there, unchanged",
    )
    noted.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="a file written by `govbridge audit checkpoint`: its head must still be there",
    )
    v.set_defaults(func=lambda args: asyncio.run(run_verify(args)))
    k = verbs.add_parser(
        "checkpoint",
        help="verify, then write the head (sequence, hash, HMAC) to keep outside the database",
    )
    k.add_argument("--out", default="-", help="file to write (default: standard output)")
    k.set_defaults(func=lambda args: asyncio.run(run_checkpoint(args)))
    s = verbs.add_parser("show", help="the latest records, newest first")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=lambda args: asyncio.run(run_show(args)))

    t = sub.add_parser("trace", help="one inquiry's journey (the console's journey page)")
    t.add_argument("inquiry_id")
    t.add_argument("-c", "--config", default="govbridge.toml")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=lambda args: asyncio.run(run_trace(args)))


async def run_verify(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    keys = Keyring("audit", cfg.audit.keys)
    expect: str | audit.Checkpoint | None = args.expect
    try:
        if getattr(args, "checkpoint", None):
            text = await asyncio.to_thread(Path(args.checkpoint).read_text, "utf-8")
            expect = audit.Checkpoint.load(text, keys)
    except (OSError, ValueError) as exc:
        print(f"govbridge audit verify: {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    store = await open_store(cfg.store.url, keys)
    try:
        verdict = await store.verify_audit(expect=expect)
    except ValueError as exc:
        print(f"govbridge audit verify: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    unsigned = (
        f" (records 1-{verdict.unsigned} predate the audit key: not signed, pinned by the next)"
        if verdict.unsigned
        else ""
    )
    if verdict.ok:
        print(f"audit trail intact: {verdict.records} records{unsigned}; head {verdict.head}")
        if expect is None:
            print(
                "  (records cut from the end leave no trace in what remains: check against a"
                " head kept elsewhere with --checkpoint FILE from `govbridge audit checkpoint`)"
            )
        return 0
    print(
        f"audit trail BROKEN at record {verdict.first_bad}: {verdict.problem}\n"
        f"  the {verdict.records} records before it are intact (head {verdict.head})",
        file=sys.stderr,
    )
    return 1


async def run_checkpoint(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    keys = Keyring("audit", cfg.audit.keys)
    store = await open_store(cfg.store.url, keys)
    try:
        head = await store.audit_checkpoint()
    except ValueError as exc:
        print(f"govbridge audit checkpoint: not written: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    text = json.dumps(head.as_dict(), indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        await asyncio.to_thread(Path(args.out).write_text, text, "utf-8")
        print(f"checkpoint of record {head.seq} written to {args.out}", file=sys.stderr)
    return 0


async def run_show(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    store = await open_store(cfg.store.url, Keyring("audit", cfg.audit.keys))
    try:
        records = await store.recent_audit(limit=args.limit)
    finally:
        await store.close()
    if args.json:
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    for r in records:
        detail = ", ".join(f"{k}={v}" for k, v in r["detail"].items())
        print(
            f"#{r['seq']} {r['at']}  {r['action']:<22} by {r['actor']:<12}"
            f" {r['inquiry_id'] or '-'}  {r['subject'] or ''}  {detail}"
        )
    return 0


async def run_trace(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    store = await open_store(cfg.store.url, Keyring("audit", cfg.audit.keys))
    try:
        data = await journey(store, args.inquiry_id)
    finally:
        await store.close()
    if data is None:
        print(f"govbridge trace: no inquiry {args.inquiry_id}", file=sys.stderr)
        return 1
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else render_text(data))
    return 0
