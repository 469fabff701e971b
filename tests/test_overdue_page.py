"""The overdue page's data (``bridge/reports/overdue.py``) against the plain way: every open
ticket's deadline worked out on its own (``deadline_for``, or its approved 延期), those past
it or within the warning time, sorted by time left. The page finds the same tickets, counts
and order while working out only the deadlines of the page it serves."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.deadlines import deadline_for
from bridge.reports.overdue import overdue_page
from bridge.store.reports import OpenTicket
from schemas.vocab import Category
from tests.conftest import bridge_config

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
REST = {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}}


class Store:
    def __init__(self, tickets: list[OpenTicket], extended: dict[Any, str]) -> None:
        self.tickets, self.extended = tickets, extended

    async def approved_deadlines(self) -> dict[Any, str]:
        return self.extended

    async def open_tickets(
        self, department: str | None = None, started_by: Any = None
    ) -> list[OpenTicket]:
        """As the store filters them (``bridge/store/reports.py``)."""
        latest = {(d, c): at for d, c, at in started_by or ()}
        return [
            t
            for t in self.tickets
            if department in (None, t.department)
            and (
                started_by is None
                or (t.department, t.ticket_id, t.cycle) in self.extended
                or (t.reopened_at or t.created_at)
                <= latest.get((t.department, t.category or "other"), "")
            )
        ]


def world(tmp_path: Path) -> tuple[Any, Store]:
    cfg = bridge_config(
        tmp_path,
        departments=[
            {"id": "a", "name": "甲", "sla": {"complaint": "5wd", "help": "2d"}, "ticketing": REST},
            {
                "id": "b",
                "name": "乙",
                "sla": {"complaint": "15wd", "help": "8h"},
                "ticketing": REST,
            },
        ],
    )
    rnd = random.Random(7)
    tickets, extended = [], {}
    for n in range(600):
        start = NOW - timedelta(seconds=rnd.randrange(40 * 86400))
        reopened = NOW - timedelta(seconds=rnd.randrange(3 * 86400)) if n % 17 == 0 else None
        dept = "ab"[n % 2]
        tickets.append(
            OpenTicket(dept, f"T{n}", f"i{n}", "received", start.isoformat(),
                       reopened.isoformat() if reopened else None, 0,
                       ("complaint", "help", "consultation", None)[n % 4])
        )  # fmt: skip
        if n % 23 == 0:
            extended[(dept, f"T{n}", 0)] = (
                NOW + timedelta(hours=rnd.randrange(-48, 48))
            ).isoformat()
    return cfg, Store(tickets, extended)


def plainly(cfg: Any, store: Store, department: str | None) -> list[tuple[str, int]]:
    found = []
    for t in store.tickets:
        if department not in (None, t.department):
            continue
        moved = store.extended.get((t.department, t.ticket_id, t.cycle))
        start = datetime.fromisoformat(t.reopened_at or t.created_at)
        dept = cfg.department(t.department)
        deadline = (
            datetime.fromisoformat(moved)
            if moved
            else deadline_for(dept, Category(t.category or "other"), start)
        )
        if deadline is None or deadline - NOW > cfg.sla.warn_before:
            continue
        found.append((t.ticket_id, round((deadline - NOW).total_seconds())))
    return sorted(found, key=lambda f: (f[1], f[0]))


@pytest.mark.parametrize("department", [None, "b"])
async def test_the_page_matches_every_deadline_worked_out(
    tmp_path: Path, department: str | None
) -> None:
    cfg, store = world(tmp_path)
    expected = plainly(cfg, store, department)
    assert len(expected) > 100
    pages: list[tuple[str, int]] = []
    offset = 0
    while True:
        page = await overdue_page(store, cfg, NOW, department=department, limit=37, offset=offset)  # type: ignore[arg-type]
        assert page.total == len(expected)
        assert page.overdue == sum(1 for _, left in expected if left < 0)
        assert page.at_risk == len(expected) - page.overdue
        pages += [(x["ticket_id"], x["seconds_left"]) for x in page.tickets]
        offset += 37
        if offset >= page.total:
            break
    assert [left for _, left in pages] == [left for _, left in expected]
    assert sorted(pages) == sorted(expected)
    late = await overdue_page(store, cfg, NOW, department=department, kind="at_risk", limit=200)  # type: ignore[arg-type]
    assert all(not x["overdue"] for x in late.tickets)
    assert late.total == page.at_risk
