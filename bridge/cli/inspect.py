"""``govbridge inspect -c FILE [--since 30d] [--dormant-days 14] [--offline] [--format
table|json]``: the account inspection (巡检, ``bridge.inspect.inspection``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.cli.load import load
from bridge.inspect.inspection import (
    inspect_accounts,
    read_timelines,
    render_inspection_json,
    render_inspection_table,
)
from bridge.reports.performance import parse_since
from bridge.runtime.adapters import AdapterPool
from bridge.security.keyring import Keyring
from bridge.store import open_store


def register(sub: Any) -> None:
    p = sub.add_parser(
        "inspect", help="account inspection (巡检): dormant, zombie and empty accounts"
    )
    p.add_argument("-c", "--config", default="govbridge.toml")
    p.add_argument(
        "--since", help="the period the inquiries count over (default [inspection].period, 30d)"
    )
    p.add_argument(
        "--dormant-days",
        type=int,
        help="no own post for this many days is dormant (default [inspection].dormant_after,"
        " 14 days: an update every two weeks)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="do not ask the platforms: judge every account by the replies the bridge posted",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=lambda args: asyncio.run(run_inspect(args)))


async def run_inspect(args: argparse.Namespace, now: datetime | None = None) -> int:
    cfg = load(args.config)
    now = now or datetime.now(UTC)
    try:
        since = parse_since(args.since, now) if args.since else now - cfg.inspection.period
    except ValueError as exc:
        print(f"govbridge inspect: {exc}", file=sys.stderr)
        return 2
    if args.dormant_days is not None and args.dormant_days < 1:
        print("govbridge inspect: --dormant-days must be at least 1", file=sys.stderr)
        return 2
    dormant = (
        timedelta(days=args.dormant_days)
        if args.dormant_days is not None
        else cfg.inspection.dormant_after
    )
    timelines = {}
    if not args.offline:
        pool = AdapterPool(cfg)
        try:
            timelines = await read_timelines(pool.sources())
        finally:
            await pool.close()
    store = await open_store(cfg.store.url, Keyring("audit", cfg.audit.keys))
    try:
        rows = await inspect_accounts(
            store, cfg, timelines, now, since=since, dormant_after=dormant
        )
    finally:
        await store.close()
    if args.json or args.format == "json":
        text = render_inspection_json(rows, now, since, dormant)
    else:
        text = render_inspection_table(rows, dormant)
    if args.output:
        await asyncio.to_thread(Path(args.output).write_text, text + "\n", "utf-8")
    else:
        print(text)
    return 0
