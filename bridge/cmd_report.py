"""``govbridge report -c FILE``: department performance (see ``bridge.report``)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bridge.report import department_reports, render_table
from bridge.store import open_store


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="how each department's accounts serve the public")
    p.add_argument("-c", "--config", default="govbridge.toml")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: asyncio.run(run_report(args)))


async def run_report(args: argparse.Namespace) -> int:
    from bridge.cli import _load

    cfg = _load(args.config)
    store = await open_store(cfg.store.url)
    try:
        reports, ignored = await department_reports(store, cfg)
    finally:
        await store.close()
    if args.json:
        print(
            json.dumps(
                {"departments": [r.as_dict() for r in reports], "ignored": ignored},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(render_table(reports, ignored))
    return 0
