"""How long the approval queue's data and one approval take on a big store (issue 23,
must-show 2): a measurement, not a test.

    .venv/bin/python scripts/bench_approval_queue.py [--inquiries N] [--pending N]
        [--postgresql URL_OF_AN_ADMIN_DATABASE]

Fills a store with INQUIRIES (default 100,000) made-up inquiries of 12 departments and 24
accounts, each with a ticket; PENDING (default 10,000) of them have a template draft awaiting
approval, the rest a posted reply. SQLite in a temporary directory; with ``--postgresql`` a
database of its own on that server, dropped afterwards. Then times, in this process, what the
console's requests run on the server:

- the sweep that records drafts of final tickets as superseded (at most every 30 s per
  process, in a queue read; not in the figures below);
- the queue's data (``approval.queue`` and its JSON, as ``GET /api/approvals`` answers it):
  the first page of 20 unfiltered, one department, one category older than a day, the last
  page (offset PENDING - 20); each 7 times, median and slowest;
- one approval (``approval.decide`` with the version and hash shown): 20 drafts, median and
  slowest; and a bulk approval of 20 (``approval.decide_many``).

Not included: HTTP parsing and the session check (aiohttp, the same for every route), and the
broker's publisher confirm of the approved reply (``reply.requested``): the broker here is a
stand-in that records the publish. Prints wall-clock figures and the load average;
docs/performance.md keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.config import parse_config
from bridge.reply import approval
from bridge.store import open_store, text_sha256
from bridge.telemetry.logging import configure_logging
from schemas.config import GovbridgeConfig
from schemas.messages import ReplyRequest, ThreadRef
from schemas.states import Decision
from schemas.vocab import TicketStatus

NOW = datetime.now(UTC)
REST = {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}}
CATEGORIES = ("complaint", "help", "consultation", "report", "suggestion")


def config(url: str) -> GovbridgeConfig:
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
    data = {"store": {"url": url}, "departments": departments, "accounts": accounts}
    return parse_config(data, env={})


def rows(count: int, pending: int) -> tuple[list[tuple[Any, ...]], ...]:
    rnd = random.Random(23)
    inquiries, tickets, replies = [], [], []
    start = NOW - timedelta(days=30)
    waiting = set(rnd.sample(range(count), pending))
    for n in range(count):
        a = rnd.randrange(24)
        dept = f"d{a % 12}"
        at = start + timedelta(seconds=rnd.randrange(30 * 86400))
        when = at.isoformat(timespec="microseconds")
        text = f"@a{a} 第{n}号路灯不亮了，晚上走路很危险，请尽快修理"
        inquiries.append(
            (f"i{n}", "hotline12345", f"a{a}", "mention", f"t{n}", "ticketed", dept,
             CATEGORIES[n % 5], f"T{n}", text, f"citizen{n}", "public", when, when)
        )  # fmt: skip
        tickets.append(
            (dept, f"T{n}", f"GB{n}", f"i{n}", f"t{n}", "received", 10, "NEW", when, when)
        )
        reply = ReplyRequest(
            reply_id=f"r{n}",
            inquiry_id=f"i{n}",
            platform="hotline12345",
            account=f"a{a}",
            department=dept,
            thread=ThreadRef(root_id=f"m{n}"),
            citizen_handle=f"citizen{n}",
            visibility="public",
            text=f"您好，您反映的问题已受理，工单号T{n}，部门{a % 12}将尽快办理并在此答复。",
            status=TicketStatus.RECEIVED,
            ticket_id=f"T{n}",
        )
        state = "awaiting_approval" if n in waiting else "posted"
        replies.append(
            (f"r{n}", f"i{n}", "hotline12345", f"a{a}", dept, "received", 1, state,
             reply.model_dump_json(), when, 1)
        )  # fmt: skip
    return inquiries, tickets, replies


INQUIRY_COLUMNS = (
    "inquiry_id, platform, account, kind, thread_key, state, department, category, ticket_id,"
    " public_text, citizen_handle, visibility, created_at, updated_at"
)
TICKET_COLUMNS = (
    "department, ticket_id, reference, inquiry_id, thread_key, status, status_rank,"
    " native_status, status_at, created_at"
)
REPLY_COLUMNS = (
    "reply_id, inquiry_id, platform, account, department, status, templated, state,"
    " request_json, created_at, version"
)


def fill_sqlite(path: Path, data: tuple[list[tuple[Any, ...]], ...]) -> None:
    db = sqlite3.connect(path)
    for table, columns, values in zip(
        ("inquiries", "tickets", "replies"),
        (INQUIRY_COLUMNS, TICKET_COLUMNS, REPLY_COLUMNS),
        data,
        strict=True,
    ):
        marks = ", ".join("?" for _ in values[0])
        db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
    db.commit()
    db.execute("ANALYZE")
    db.close()


async def fill_postgresql(url: str, data: tuple[list[tuple[Any, ...]], ...]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for table, columns, values in zip(
            ("inquiries", "tickets", "replies"),
            (INQUIRY_COLUMNS, TICKET_COLUMNS, REPLY_COLUMNS),
            data,
            strict=True,
        ):
            await conn.copy_records_to_table(
                table, records=values, columns=[c.strip() for c in columns.split(",")]
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


class Broker:
    """Stands in for RabbitMQ: records what would be published (its confirm is not timed)."""

    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, key: str, message: Any) -> None:
        self.published.append((key, message))


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = await work()
    return (time.perf_counter() - start) * 1000, result


async def measure(url: str, pending: int, label: str) -> None:
    cfg = config(url)
    store = await open_store(url, migrate=False)
    ctx: Any = SimpleNamespace(
        cfg=cfg, store=store, broker=Broker(), adapters=SimpleNamespace(source_for=lambda *_: None)
    )

    async def page(**filters: Any) -> dict[str, Any]:
        found = await approval.queue(ctx, limit=20, **filters)
        json.dumps(found, ensure_ascii=False)  # the response body
        return found

    try:
        ms, n = await timed(store.supersede_obsolete_drafts)
        print(f"{label}: the sweep for drafts of final tickets: {ms:.1f} ms ({n} superseded)")
        await page()  # warm the connection and the caches once (the sweep runs here)
        for name, filters in (
            ("first page, no filter", {}),
            ("one department", {"department": "d3"}),
            ("one category, older than a day", {"category": "help", "older_than": timedelta(1)}),
            ("last page", {"offset": pending - 20}),
        ):
            times, found = [], None
            for _ in range(7):
                ms, found = await timed(lambda f=filters: page(**f))  # type: ignore[misc]
                times.append(ms)
            assert found is not None
            print(
                f"{label}: queue data, {name}: median {statistics.median(times):.1f} ms,"
                f" slowest {max(times):.1f} ms ({found['total']} cards, {len(found['approvals'])}"
                " on the page)"
            )
        first = (await page())["approvals"]
        times = []
        for card in first:
            ms, _ = await timed(
                lambda c=card: approval.decide(  # type: ignore[misc]
                    ctx,
                    c["reply_id"],
                    Decision.APPROVE,
                    "bench",
                    text=c["text"],
                    version=c["version"],
                    shown_sha256=text_sha256(c["text"]),
                )
            )
            times.append(ms)
        print(
            f"{label}: one approval: median {statistics.median(times):.1f} ms,"
            f" slowest {max(times):.1f} ms (20 approvals)"
        )
        batch = [
            (c["reply_id"], c["version"], c["text_sha256"]) for c in (await page())["approvals"]
        ]
        ms, outcomes = await timed(lambda: approval.decide_many(ctx, batch, "bench"))
        assert all(o["ok"] for o in outcomes), outcomes
        print(f"{label}: bulk approval of 20: {ms:.1f} ms")
    finally:
        await store.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--inquiries", type=int, default=100_000)
    p.add_argument("--pending", type=int, default=10_000)
    p.add_argument("--postgresql", help="an admin database URL: measure PostgreSQL too")
    args = p.parse_args()
    configure_logging("warning")
    started = time.perf_counter()
    data = rows(args.inquiries, args.pending)
    folder = Path(tempfile.mkdtemp(prefix="govbridge-queue-"))
    url = f"sqlite:///{folder / 'queue.db'}"
    await (await open_store(url)).close()  # the schema
    fill_sqlite(folder / "queue.db", data)
    print(f"filled SQLite in {time.perf_counter() - started:.0f} s")
    await measure(url, args.pending, f"SQLite, {args.inquiries} inquiries")
    if args.postgresql:
        import asyncpg

        name = f"gbqueue_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(args.postgresql)
        await admin.execute(f"CREATE DATABASE {name}")
        pg = args.postgresql.rsplit("/", 1)[0] + f"/{name}"
        try:
            await (await open_store(pg)).close()
            await fill_postgresql(pg, data)
            await measure(pg, args.pending, f"PostgreSQL, {args.inquiries} inquiries")
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()
    load = os.getloadavg()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {load[0]:.2f} {load[1]:.2f}"
        f" {load[2]:.2f}; {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    asyncio.run(main())
