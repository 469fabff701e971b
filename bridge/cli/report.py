"""``govbridge report -c FILE [--since 7d | --period 2026-11] [--rank] [--department X]
[--format table|json|csv|html]``: department performance, or with ``--rank`` the three rates,
the scores and the ranking of departments and accounts (see ``bridge.reports.performance``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.cli.load import load
from bridge.reports.performance import (
    Period,
    department_reports,
    parse_period,
    parse_since,
    previous_month,
    rank_period,
    render_csv,
    render_html,
    render_json,
    render_rank_csv,
    render_rank_html,
    render_rank_json,
    render_rank_table,
    render_table,
)
from bridge.security.keyring import Keyring
from bridge.store import open_store

FORMATS = ("table", "json", "csv", "html")


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="how each department's accounts serve the public")
    p.add_argument("-c", "--config", default="govbridge.toml")
    p.add_argument(
        "--since", help="the period: 7d, 24h, 2w, a date or an ISO time (default: everything)"
    )
    p.add_argument(
        "--period",
        help="a month (2026-11), a day (2026-11-03) or days (2026-11-01..2026-11-15), CST",
    )
    p.add_argument(
        "--rank",
        action="store_true",
        help="响应率, 解决率, 满意率, on-time rate, score and rank per department and account"
        " (default period: the last whole month)",
    )
    p.add_argument("--department", help="only this department (its id)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=lambda args: asyncio.run(run_report(args)))


async def run_report(args: argparse.Namespace, now: datetime | None = None) -> int:
    cfg = load(args.config)
    now = now or datetime.now(UTC)
    period_text = getattr(args, "period", None)
    rank = bool(getattr(args, "rank", False))
    if period_text and args.since:
        print("govbridge report: give --since or --period, not both", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since, now) if args.since else None
        period = parse_period(period_text, now) if period_text else None
    except ValueError as exc:
        print(f"govbridge report: {exc}", file=sys.stderr)
        return 2
    known = [d.id for d in cfg.departments]
    if args.department is not None and args.department not in known:
        print(
            f"govbridge report: no department {args.department!r}; configured: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    fmt = "json" if args.json else args.format
    store = await open_store(cfg.store.url, Keyring("audit", cfg.audit.keys))
    try:
        if rank:
            if period is None:
                period = Period(since, now, f"since {args.since}") if since else previous_month(now)
            ranking = await rank_period(store, cfg, period, now, department=args.department)
        else:
            reports, ignored = await department_reports(
                store,
                cfg,
                now,
                since=period.start if period else since,
                until=period.end if period else None,
                department=args.department,
            )
    finally:
        await store.close()
    if rank:
        text = {
            "json": render_rank_json,
            "csv": render_rank_csv,
            "html": render_rank_html,
            "table": render_rank_table,
        }[fmt](ranking)
    elif fmt == "json":
        text = render_json(reports, ignored, period.start if period else since, now)
    elif fmt == "csv":
        text = render_csv(reports)
    elif fmt == "html":
        text = render_html(reports, ignored, period.start if period else since, now)
    else:
        text = render_table(reports, ignored)
    if args.output:
        ending = "" if text.endswith("\n") else "\n"
        await asyncio.to_thread(Path(args.output).write_text, text + ending, "utf-8")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0
