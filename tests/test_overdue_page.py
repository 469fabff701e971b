"""The overdue page's data (``bridge/reports/overdue.py``) against the plain way: every open
ticket's deadline worked out on its own (``deadline_for``, or its approved 延期), those past
it or within the warning time, sorted by time left. The page counts most of them in the store
(migration 29's windows) and works out only the deadlines near now and of the page it serves;
on both engines it finds the same tickets, counts and order, and, as it keeps nothing, the
same again at once after tickets close, reopen, change category, get an extension or pass
their deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.deadlines import deadline_for
from bridge.reports.overdue import overdue_page
from bridge.store import SqlStore
from bridge.store.rows import CaseExtension, NewInquiry
from schemas.vocab import Category
from tests.conftest import bridge_config

NOW = datetime(2026, 12, 7, 9, 30, 0, 123456, tzinfo=UTC)
REST = {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}}
DEPARTMENTS = [
    {"id": "a", "name": "甲", "sla": {"complaint": "5wd", "help": "2d"}, "ticketing": REST},
    {
        "id": "b",
        "name": "乙",
        "sla": {"complaint": "15wd", "help": "8h", "other": "3wd"},
        "ticketing": REST,
    },
]


Row = tuple[str, int, bool]  # ticket, seconds left (rounded), overdue


@dataclass
class Seeded:
    department: str
    ticket_id: str
    inquiry_id: str
    category: str | None
    start: datetime
    cycle: int = 0
    final: bool = False
    moved: str | None = None  # an approved extension's deadline in the current cycle


def at(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


async def add_ticket(store: SqlStore, t: Seeded, created: datetime) -> None:
    await store.record_inquiry(
        NewInquiry(t.inquiry_id, "weibo", "a1", "comment", f"th-{t.inquiry_id}", "ticketed",
                   department=t.department, category=t.category)
    )  # fmt: skip
    await store.record_ticket(
        department=t.department,
        ticket_id=t.ticket_id,
        reference=f"GB-{t.ticket_id}",
        inquiry_id=t.inquiry_id,
        thread_key=f"th-{t.inquiry_id}",
        status="received",
        status_rank=10,
        native_status="NEW",
        status_at=at(created),
    )
    await store.db.execute(
        "UPDATE tickets SET created_at = ? WHERE department = ? AND ticket_id = ?",
        (at(created), t.department, t.ticket_id),
    )


async def extend(store: SqlStore, t: Seeded, cycle: int, deadline: datetime, n: int) -> None:
    ext = CaseExtension(
        f"x{t.ticket_id}-{n}", t.inquiry_id, t.department, t.ticket_id, cycle,
        at(NOW), at(deadline), "材料补充", "pending", "officer", at(NOW),
    )  # fmt: skip
    await store.request_extension(ext)
    await store.decide_extension(ext.extension_id, "approved", "approver")
    if cycle == t.cycle:
        t.moved = at(deadline)


async def seed(store: SqlStore) -> list[Seeded]:
    """Tickets over the 40 days before NOW in configured departments and one that is not,
    of every category (none, empty, without a limit), some reopened, some final, some with
    an approved extension in their cycle or in an earlier one, one refused."""
    rnd = random.Random(7)
    tickets = []
    for n in range(320):
        dept = ("a", "b", "gone")[n % 3 if n % 10 else 2]
        category = ("complaint", "help", "consultation", None, "", "other")[n % 6]
        created = NOW - timedelta(seconds=rnd.randrange(40 * 86400), microseconds=n)
        t = Seeded(dept, f"T{n}", f"i{n}", category, created)
        await add_ticket(store, t, created)
        if n % 17 == 0:  # reopened (重办): its clock starts again
            t.cycle, t.start = 1, created + (NOW - created) * rnd.random()
            await store.db.execute(
                "UPDATE tickets SET cycle = 1, reopened_at = ?, status = 'reopened'"
                " WHERE department = ? AND ticket_id = ?",
                (at(t.start), dept, t.ticket_id),
            )
        if n % 13 == 0:
            t.final = True
            await store.db.execute(
                "UPDATE tickets SET status = ? WHERE department = ? AND ticket_id = ?",
                (("resolved", "rejected", "closed")[n % 3], dept, t.ticket_id),
            )
        if n % 23 == 0:
            await extend(store, t, t.cycle, NOW + timedelta(hours=rnd.randrange(-48, 48)), 0)
        if n % 29 == 0:  # approved in an earlier cycle: no longer the deadline
            await extend(store, t, t.cycle - 1, NOW + timedelta(days=30), 1)
        tickets.append(t)
    return tickets


def plainly(
    cfg: Any, tickets: list[Seeded], department: str | None, now: datetime = NOW
) -> list[Row]:
    found = []
    for t in tickets:
        if t.final or department not in (None, t.department) or t.department == "gone":
            continue
        dept = cfg.department(t.department)
        deadline = (
            datetime.fromisoformat(t.moved)
            if t.moved
            else deadline_for(dept, Category(t.category or "other"), t.start)
        )
        if deadline is None or deadline - now > cfg.sla.warn_before:
            continue
        left = (deadline - now).total_seconds()
        found.append((left, t.department, t.ticket_id))
    return [(i, round(left), left < 0) for left, _, i in sorted(found)]


async def walk(
    store: SqlStore, cfg: Any, now: datetime, department: str | None, limit: int
) -> tuple[list[Row], Any]:
    """Every page of the list, one after the other."""
    pages: list[Row] = []
    offset = 0
    while True:
        page = await overdue_page(
            store, cfg, now, department=department, limit=limit, offset=offset
        )
        pages += [(x["ticket_id"], x["seconds_left"], x["overdue"]) for x in page.tickets]
        offset += limit
        if offset >= page.total:
            return pages, page


def check(pages: list[Row], page: Any, expected: list[Row]) -> None:
    assert page.total == len(expected)
    assert page.overdue == sum(1 for _, _, overdue in expected if overdue)
    assert page.at_risk == len(expected) - page.overdue
    assert pages == expected


@pytest.mark.parametrize("department", [None, "b"])
async def test_the_page_matches_every_deadline_worked_out(
    tmp_path: Path, store: SqlStore, department: str | None
) -> None:
    cfg = bridge_config(tmp_path, departments=DEPARTMENTS)
    tickets = await seed(store)
    expected = plainly(cfg, tickets, department)
    assert len(expected) > 60 and any(not overdue for _, _, overdue in expected)
    for limit in (7, 37, 200):
        pages, page = await walk(store, cfg, NOW, department, limit)
        check(pages, page, expected)
    late = await overdue_page(store, cfg, NOW, department=department, kind="at_risk", limit=200)
    assert all(not x["overdue"] for x in late.tickets)
    assert late.total == page.at_risk == len(late.tickets)
    due = await overdue_page(store, cfg, NOW, department=department, kind="overdue", limit=200)
    assert all(x["overdue"] for x in due.tickets)
    assert [(x["ticket_id"], x["seconds_left"]) for x in due.tickets] == [
        f[:2] for f in expected if f[2]
    ]
    extended = {t.ticket_id for t in tickets if t.moved}
    assert {x["ticket_id"] for x in due.tickets + late.tickets if x["extended"]} == {
        f[0] for f in expected if f[0] in extended
    }


async def test_the_windows_edges_and_the_order_within_them(tmp_path: Path, store: SqlStore) -> None:
    """Tickets on every local day of the last four weeks, a second either side of now's
    time of day (and of midnight), for each limit: those whose deadline day is today are
    overdue or not by a second, those whose deadline is within the warning time by a second
    too; starts on a weekend end before a Friday evening's start (5 working days), so the
    order by start and by deadline differ, on every page of three."""
    cfg = bridge_config(tmp_path, departments=DEPARTMENTS)
    tz = ZoneInfo("Asia/Shanghai")
    local_now = NOW.astimezone(tz)
    rules = [("a", "complaint"), ("a", "help"), ("b", "complaint"), ("b", "help"), ("b", None)]
    tickets, n = [], 0
    for days in range(28):
        day = local_now - timedelta(days=days)
        for start in (
            day.replace(hour=0, minute=0, second=0, microsecond=0),
            day - timedelta(seconds=1),
            day + timedelta(seconds=1),
            day.replace(hour=23, minute=59, second=59, microsecond=999999),
        ):
            for dept, category in rules:
                n += 1
                t = Seeded(dept, f"E{n}", f"e{n}", category, start)
                await add_ticket(store, t, start)
                tickets.append(t)
    for step in (timedelta(days=2), timedelta(hours=8)):  # the fixed limits' own edges
        for edge in (NOW - step, NOW + cfg.sla.warn_before - step):
            for start in (edge - timedelta(microseconds=1), edge, edge + timedelta(microseconds=1)):
                n += 1
                t = Seeded("a" if step.days else "b", f"E{n}", f"e{n}", "help", start)
                await add_ticket(store, t, start)
                tickets.append(t)
    for department in (None, "a"):
        expected = plainly(cfg, tickets, department)
        assert any(left == -1 for _, left, _ in expected)  # overdue by a second
        assert any(left == 0 and overdue for _, left, overdue in expected)  # by a µs
        pages, page = await walk(store, cfg, NOW, department, 3)
        check(pages, page, expected)
    # one limit alone: each page's tickets by start are those of one department and category,
    # and a Saturday's start comes before the Friday evening's, in the list, on some page's edge
    alone = bridge_config(tmp_path, departments=[{**DEPARTMENTS[0], "sla": {"complaint": "5wd"}}])
    expected = plainly(alone, tickets, "a")
    for limit in (3, 4, 5):
        pages, page = await walk(store, alone, NOW, "a", limit)
        check(pages, page, expected)


async def test_the_page_follows_the_tickets_at_once(tmp_path: Path, store: SqlStore) -> None:
    """Nothing is kept: after a ticket closes, reopens, changes category or gets an
    extension, and as time passes a deadline, the next answer is the plain one."""
    cfg = bridge_config(tmp_path, departments=DEPARTMENTS)
    tickets = await seed(store)
    by_id = {t.ticket_id: t for t in tickets}

    async def same(now: datetime = NOW) -> None:
        pages, page = await walk(store, cfg, now, None, 25)
        check(pages, page, plainly(cfg, tickets, None, now))

    await same()
    first = (await overdue_page(store, cfg, NOW, limit=1)).tickets[0]
    most_overdue = by_id[first["ticket_id"]]
    # it closes: gone from the list and from the counts
    await store.apply_status(
        department=most_overdue.department, ticket_id=most_overdue.ticket_id,
        event_id="close-1", status="closed", status_rank=90, native_status="DONE",
        occurred_at=at(NOW),
    )  # fmt: skip
    most_overdue.final = True
    await same()
    assert (await overdue_page(store, cfg, NOW, limit=1)).tickets[0]["ticket_id"] != first[
        "ticket_id"
    ]
    # it is reopened (重办): a new cycle, its clock from now, so neither overdue nor due
    await store.apply_status(
        department=most_overdue.department, ticket_id=most_overdue.ticket_id,
        event_id="reopen-1", status="reopened", status_rank=15, native_status="REOPEN",
        occurred_at=at(NOW),
    )  # fmt: skip
    most_overdue.final, most_overdue.cycle, most_overdue.start = False, most_overdue.cycle + 1, NOW
    await same()
    # a complaint of b (15 working days) becomes a help request (8 hours): overdue now
    quiet = Seeded("b", "Q1", "iq1", "complaint", NOW - timedelta(days=3))
    await add_ticket(store, quiet, quiet.start)
    tickets.append(quiet)
    await same()
    before = await overdue_page(store, cfg, NOW, limit=1)
    await store.update_inquiry(quiet.inquiry_id, category="help")
    quiet.category = "help"
    await same()
    assert (await overdue_page(store, cfg, NOW, limit=1)).overdue == before.overdue + 1
    # an extension approved in its cycle: its deadline is the extension's
    await extend(store, quiet, quiet.cycle, NOW + timedelta(hours=3), 9)
    await same()
    # time passes: tickets at risk become overdue, others come within the warning time
    for hours in (1, 5, 26, 24 * 9):
        await same(NOW + timedelta(hours=hours))


async def test_migration_29_fills_the_clock_category_of_the_tickets_there(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store at migration 28 with tickets: after 29 each has its inquiry's category as the
    clock counts it (none, empty or no inquiry: other), and the triggers keep it after."""
    from bridge.store import migrations, open_store

    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:28])
    old = await open_store(store_url)
    categories = {"T1": "complaint", "T2": None, "T3": "", "T4": "help"}
    try:
        for n, (tid, category) in enumerate(categories.items()):
            t = Seeded("a", tid, f"i{n}", category, NOW)
            await add_ticket(old, t, NOW)
        await old.db.execute("UPDATE tickets SET inquiry_id = 'nowhere' WHERE ticket_id = 'T4'")
    finally:
        await old.close()
    monkeypatch.undo()
    new = await open_store(store_url)
    try:

        async def clock() -> dict[str, str]:
            rows = await new.db.fetchall("SELECT ticket_id, clock_category FROM tickets")
            return {r["ticket_id"]: r["clock_category"] for r in rows}

        assert await clock() == {"T1": "complaint", "T2": "other", "T3": "other", "T4": "other"}
        await new.update_inquiry("i0", category="consultation")
        await new.update_inquiry("i1", category="complaint")
        await new.db.execute("UPDATE tickets SET inquiry_id = 'i0' WHERE ticket_id = 'T4'")
        assert await clock() == {
            "T1": "consultation",
            "T2": "complaint",
            "T3": "other",
            "T4": "consultation",
        }
    finally:
        await new.close()


async def test_the_open_ticket_index_is_what_the_page_reads(tmp_path: Path) -> None:
    """The partial index's predicate (migration 29) spells exactly the final statuses of the
    vocabulary, and SQLite plans the page's count on that index: were the statuses to change,
    or the query's words drift from the index's, the page would read every ticket again."""
    import re
    import sqlite3

    from bridge.store import open_store
    from bridge.store.migrations import _OPEN
    from bridge.store.reports import StartSpan, _per_span
    from schemas.vocab import FINAL_STATUSES

    assert set(re.findall(r"'([a-z_]+)'", _OPEN)) == {str(s) for s in FINAL_STATUSES}
    path = tmp_path / "plan.db"
    await (await open_store(f"sqlite:///{path}")).close()
    span = StartSpan("a", "complaint", None, at(NOW))
    sql, params = _per_span([span, StartSpan("b", "other", at(NOW), at(NOW))], "COUNT(*)")
    with sqlite3.connect(path) as db:
        plan = " | ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert plan.count("tickets_open_due") == 2, plan
