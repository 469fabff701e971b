"""How long the three rates, the ranking and the inspection take on a big store (issue 22).

    .venv/bin/python scripts/bench_ranking.py [INQUIRIES] [--dir DIR]

Fills a SQLite store (kept in DIR, default a temporary directory) with INQUIRIES (default
100,000) made-up inquiries spread over the 360 days before 2026-12-07, 24 accounts of 12
departments: each with a posted reply within 10 minutes and a ticket, every second one with a
回访 result. Then times, on a connection of its own: the ranking of November 2026
(``rank_period``), the 12 months' rankings the console shows (``rank_months``; then as the
console asks, with the months kept, ``RankingCache``: counted, and asked again) and the
inspection (``inspect_accounts``, 30 days, no platform asked); wall-clock and CPU time, the
process's peak resident memory and the load average. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.config import parse_config
from bridge.inspect.inspection import inspect_accounts
from bridge.reports.performance import RankingCache, parse_period, rank_months, rank_period
from bridge.store import open_store
from schemas.config import GovbridgeConfig

NOW = datetime(2026, 12, 7, 4, tzinfo=UTC)
REST = {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}}


def config(path: Path) -> GovbridgeConfig:
    departments = [
        {"id": f"d{k}", "name": f"部门{k}", "sla": {"complaint": "5wd"}, "ticketing": REST}
        for k in range(12)
    ]
    accounts = [
        {
            "adapter": "webhook",
            "handle": f"a{k}",
            "department": f"d{k % 12}",
            "platform": "hotline12345",
            "secret": "s" * 16,
            "reply_url": "http://127.0.0.1:9/r",
        }
        for k in range(24)
    ]
    store = {"url": f"sqlite:///{path}"}
    return parse_config({"store": store, "departments": departments, "accounts": accounts}, env={})


def fill(path: Path, count: int) -> None:
    db = sqlite3.connect(path)
    rnd = random.Random(1)
    start = NOW - timedelta(days=360)
    inquiries, replies, tickets, results = [], [], [], []
    for n in range(count):
        a = rnd.randrange(24)
        dept = f"d{a % 12}"
        at = start + timedelta(seconds=rnd.randrange(360 * 86400))
        when = at.isoformat(timespec="microseconds")
        posted = (at + timedelta(seconds=rnd.randrange(600))).isoformat(timespec="microseconds")
        inquiries.append(
            (f"i{n}", "hotline12345", f"a{a}", "comment", f"t{n}", "ticketed", dept,
             "complaint", when, when, when)
        )  # fmt: skip
        replies.append(
            (f"r{n}", f"i{n}", "hotline12345", f"a{a}", dept, "received", 1, "posted", "{}",
             when, posted)
        )  # fmt: skip
        tickets.append(
            (dept, f"T{n}", f"GB{n}", f"i{n}", f"t{n}", "received", 10, "NEW", when, when)
        )
        if n % 2 == 0:
            concluded = (at + timedelta(days=3)).isoformat(timespec="microseconds")
            level = rnd.choice(["满意", "基本满意", "不满意"])
            results.append(
                (dept, f"T{n}", 0, f"i{n}", "hotline12345", f"a{a}", "answered",
                 rnd.randrange(2), level, None, 1, when, concluded)
            )  # fmt: skip
    db.executemany(
        "INSERT INTO inquiries (inquiry_id, platform, account, kind, thread_key, state,"
        " department, category, created_at, updated_at, posted_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        inquiries,
    )
    db.executemany(
        "INSERT INTO replies (reply_id, inquiry_id, platform, account, department, status,"
        " templated, state, request_json, created_at, posted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        replies,
    )
    db.executemany(
        "INSERT INTO tickets (department, ticket_id, reference, inquiry_id, thread_key, status,"
        " status_rank, native_status, status_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        tickets,
    )
    db.executemany("INSERT INTO survey_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", results)
    db.commit()
    db.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("inquiries", type=int, nargs="?", default=100_000)
    p.add_argument("--dir", help="keep the store here (default: a temporary directory)")
    args = p.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="govbridge-rank-"))
    path = folder / f"rank-{args.inquiries}.db"
    cfg = config(path)
    if not path.exists():
        store = await open_store(cfg.store.url)
        await store.close()
        fill(path, args.inquiries)
    store = await open_store(cfg.store.url, migrate=False)
    kept = RankingCache()
    try:
        for name, work in (
            (
                "one month (2026-11)",
                lambda: rank_period(store, cfg, parse_period("2026-11", NOW), NOW),
            ),
            ("12 months", lambda: rank_months(store, cfg, NOW)),
            # as the console asks: the months kept (RankingCache), then asked again
            ("12 months, counted and kept", lambda: rank_months(store, cfg, NOW, cache=kept)),
            ("12 months, kept", lambda: rank_months(store, cfg, NOW, cache=kept)),
            ("inspection (30 days)", lambda: inspect_accounts(store, cfg, {}, NOW)),
        ):
            wall, cpu = time.perf_counter(), time.process_time()
            await work()
            print(
                f"{args.inquiries} inquiries, {name}: {time.perf_counter() - wall:.2f} s wall,"
                f" {time.process_time() - cpu:.2f} s CPU"
            )
    finally:
        await store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
