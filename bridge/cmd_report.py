"""``govbridge report -c FILE [--since 7d] [--department X] [--format table|json|csv|html]``:
department performance (see ``bridge.report``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.report import (
    department_reports,
    parse_since,
    render_csv,
    render_html,
    render_json,
    render_table,
)
from bridge.store import open_store

FORMATS = ("table", "json", "csv", "html")


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="how each department's accounts serve the public")
    p.add_argument("-c", "--config", default="govbridge.toml")
    p.add_argument(
        "--since", help="the period: 7d, 24h, 2w, a date or an ISO time (default: everything)"
    )
    p.add_argument("--department", help="only this department (its id)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=lambda args: asyncio.run(run_report(args)))


async def run_report(args: argparse.Namespace, now: datetime | None = None) -> int:
    from bridge.cli import _load

    cfg = _load(args.config)
    now = now or datetime.now(UTC)
    try:
        since = parse_since(args.since, now) if args.since else None
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
    store = await open_store(cfg.store.url)
    try:
        reports, ignored = await department_reports(
            store, cfg, now, since=since, department=args.department
        )
    finally:
        await store.close()
    fmt = "json" if args.json else args.format
    if fmt == "json":
        text = render_json(reports, ignored, since, now)
    elif fmt == "csv":
        text = render_csv(reports)
    elif fmt == "html":
        text = render_html(reports, ignored, since, now)
    else:
        text = render_table(reports, ignored)
    if args.output:
        ending = "" if text.endswith("\n") else "\n"
        await asyncio.to_thread(Path(args.output).write_text, text + ending, "utf-8")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0
