"""``govbridge audit verify|show`` and ``govbridge trace INQUIRY_ID`` (see ``bridge.audit`` and
``bridge.journey``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bridge import audit
from bridge.journey import journey, render_text
from bridge.store import open_store


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="check or show the audit trail")
    p.add_argument("-c", "--config", default="govbridge.toml")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser("verify", help="check the hash chain; names the first altered record")
    v.add_argument(
        "--expect",
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify: it must still be there, unchanged",
    )
    v.set_defaults(func=lambda args: asyncio.run(run_verify(args)))
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
    from bridge.cli import _load

    cfg = _load(args.config)
    store = await open_store(cfg.store.url)
    try:
        verdict = await audit.verify(store.db, expect=args.expect)
    except ValueError as exc:
        print(f"govbridge audit verify: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    if verdict.ok:
        print(f"audit trail intact: {verdict.records} records; head {verdict.head}")
        return 0
    print(
        f"audit trail BROKEN at record {verdict.first_bad}: {verdict.problem}\n"
        f"  the {verdict.records} records before it are intact (head {verdict.head})",
        file=sys.stderr,
    )
    return 1


async def run_show(args: argparse.Namespace) -> int:
    from bridge.cli import _load

    cfg = _load(args.config)
    store = await open_store(cfg.store.url)
    try:
        records = await audit.recent(store.db, limit=args.limit)
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
    from bridge.cli import _load

    cfg = _load(args.config)
    store = await open_store(cfg.store.url)
    try:
        data = await journey(store, args.inquiry_id)
    finally:
        await store.close()
    if data is None:
        print(f"govbridge trace: no inquiry {args.inquiry_id}", file=sys.stderr)
        return 1
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else render_text(data))
    return 0
