"""The overdue and at-risk list (the console's 逾期与临期 page): each open ticket's deadline
as the SLA role counts it (the category's limit from the start of the current handling cycle,
or the deadline an approved 延期 set), the tickets past it or within ``sla.warn_before`` of
it, most overdue first, filtered and paged.

One read of the store (``open_tickets``, with each inquiry's category). A working-day limit
ends at the same time of day N working days after the local day it started, so the working
day is counted once per (department, category, local day) and not once per ticket: at
100,000 open tickets the calendar is asked a few hundred times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from bridge.deadlines import calendar_of, deadline_for
from bridge.store import Store
from schemas.config import DepartmentConfig, GovbridgeConfig
from schemas.vocab import Category

KINDS = ("overdue", "at_risk")


@dataclass(frozen=True)
class OverduePage:
    tickets: list[dict[str, Any]]
    total: int  # matching the filter
    overdue: int  # of the department filter, whatever the kind filter
    at_risk: int


async def overdue_page(
    store: Store,
    cfg: GovbridgeConfig,
    now: datetime,
    *,
    department: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> OverduePage:
    departments = {d.id: d for d in cfg.departments}
    extended = await store.approved_deadlines()
    warn = cfg.sla.warn_before.total_seconds()
    days: dict[tuple[str, str, date], datetime | None] = {}
    found: list[tuple[float, str, Any, Category, datetime]] = []
    for t in await store.open_tickets(department):
        dept = departments.get(t.department)
        if dept is None:
            continue
        category = Category(t.category or "other")
        moved = extended.get((t.department, t.ticket_id, t.cycle))
        if moved is not None:
            deadline: datetime | None = datetime.fromisoformat(moved).astimezone(UTC)
        else:
            start = datetime.fromisoformat(t.reopened_at or t.created_at).astimezone(UTC)
            deadline = _deadline(dept, category, start, days)
        if deadline is None:
            continue
        left = (deadline - now).total_seconds()
        if left > warn:
            continue
        found.append((left, t.ticket_id, t, category, deadline))
    overdue = sum(1 for f in found if f[0] < 0)
    at_risk = len(found) - overdue
    if kind == "overdue":
        found = [f for f in found if f[0] < 0]
    elif kind == "at_risk":
        found = [f for f in found if f[0] >= 0]
    found.sort(key=lambda f: (f[0], f[2].department, f[1]))
    page = [
        {
            "department": t.department,
            "department_name": departments[t.department].name,
            "ticket_id": t.ticket_id,
            "inquiry_id": t.inquiry_id,
            "status": t.status,
            "category": category.value,
            "deadline": deadline.isoformat(),
            "seconds_left": round(left),
            "overdue": left < 0,
            "extended": (t.department, t.ticket_id, t.cycle) in extended,
        }
        for left, _, t, category, deadline in found[offset : offset + limit]
    ]
    return OverduePage(page, len(found), overdue, at_risk)


def _deadline(
    dept: DepartmentConfig,
    category: Category,
    start: datetime,
    days: dict[tuple[str, str, date], datetime | None],
) -> datetime | None:
    """``deadline_for``, its working days counted once per local day: the deadline of the
    day's first ticket moved to this ticket's time of day (working-day limits only)."""
    limit = dept.sla.get(category.value)
    if limit is None or not limit.endswith("wd"):
        return deadline_for(dept, category, start)
    local = calendar_of(dept).local(start)
    key = (dept.id, category.value, local.date())
    if key not in days:
        days[key] = deadline_for(dept, category, start)
    first = days[key]
    if first is None:
        return None
    return first.replace(
        hour=local.hour, minute=local.minute, second=local.second, microsecond=local.microsecond
    )
