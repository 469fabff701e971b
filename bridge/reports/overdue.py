"""The overdue and at-risk list (the console's 逾期与临期 page): each open ticket's deadline
as the SLA role counts it (the category's limit from the start of the current handling cycle,
or the deadline an approved 延期 set), the tickets past it or within ``sla.warn_before`` of
it, most overdue first, filtered and paged.

One read of the store (``open_tickets``, with each inquiry's category). Each department's
limit for a category is looked up once, and a working-day limit ends at the same time of day
N working days after the local day its clock started, so the calendar is asked once per
(department, category, day) and not once per ticket (``deadline_for`` gives that day): at
100,000 open tickets a few hundred times."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bridge.deadlines import calendar_of, deadline_for
from bridge.store import Store, iso
from bridge.store.reports import OpenTicket
from schemas.config import DepartmentConfig, GovbridgeConfig
from schemas.vocab import Category

KINDS = ("overdue", "at_risk")
_WORKING_DAYS = re.compile(r"^\s*(\d+)\s*wd\s*$")


@dataclass(frozen=True)
class OverduePage:
    tickets: list[dict[str, Any]]
    total: int  # matching the filter
    overdue: int  # of the department filter, whatever the kind filter
    at_risk: int


@dataclass(frozen=True)
class _Rule:
    """A department's limit for a category, ready to apply."""

    dept: DepartmentConfig
    category: Category
    tz: Any
    working_days: bool
    step: timedelta


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
    rules: dict[tuple[str, str | None], _Rule | None] = {}
    days: dict[tuple[str, str | None, date], date] = {}
    found: list[tuple[float, str, str, OpenTicket, datetime]] = []
    # Only the tickets that can be due within the warning time are read: a limit of N
    # working days is at least N whole days, one in minutes, hours or days that span.
    started_by = []
    for dept in departments.values():
        if department not in (None, dept.id):
            continue
        for cat in Category:
            rule = _rule(dept, cat.value)
            if rule is None:
                continue
            shortest = _shortest(dept, cat) if rule.working_days else rule.step
            started_by.append((dept.id, cat.value, iso(now + cfg.sla.warn_before - shortest)))
    for t in await store.open_tickets(department, started_by):
        key = (t.department, t.category)
        if key not in rules:
            rules[key] = _rule(departments.get(t.department), t.category)
        rule = rules[key]
        moved = extended.get((t.department, t.ticket_id, t.cycle))
        if moved is not None and t.department in departments:
            deadline = datetime.fromisoformat(moved).astimezone(UTC)
        elif rule is None:
            continue
        else:
            start = datetime.fromisoformat(t.reopened_at or t.created_at)
            if rule.working_days:
                local = start.astimezone(rule.tz)
                day_key = (t.department, t.category, local.date())
                if day_key not in days:
                    first = deadline_for(rule.dept, rule.category, start)
                    assert first is not None  # the rule has a limit
                    days[day_key] = first.date()
                day = days[day_key]
                deadline = local.replace(year=day.year, month=day.month, day=day.day)
            else:
                deadline = (start + rule.step).astimezone(rule.tz)
        left = (deadline - now).total_seconds()
        if left <= warn:
            found.append((left, t.department, t.ticket_id, t, deadline))
    overdue = sum(1 for f in found if f[0] < 0)
    at_risk = len(found) - overdue
    if kind == "overdue":
        found = [f for f in found if f[0] < 0]
    elif kind == "at_risk":
        found = [f for f in found if f[0] >= 0]
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    page = [
        {
            "department": t.department,
            "department_name": departments[t.department].name,
            "ticket_id": t.ticket_id,
            "inquiry_id": t.inquiry_id,
            "status": t.status,
            "category": Category(t.category or "other").value,
            "deadline": deadline.isoformat(),
            "seconds_left": round(left),
            "overdue": left < 0,
            "extended": (t.department, t.ticket_id, t.cycle) in extended,
        }
        for left, _, _, t, deadline in found[offset : offset + limit]
    ]
    return OverduePage(page, len(found), overdue, at_risk)


def _rule(dept: DepartmentConfig | None, category: str | None) -> _Rule | None:
    """How the department counts the category's limit (as ``deadline_for`` does); None when
    it has none (or the department is no longer configured)."""
    if dept is None:
        return None
    cat = Category(category or "other")
    probe = datetime(2026, 1, 5, tzinfo=UTC)
    ends = deadline_for(dept, cat, probe)
    if ends is None:
        return None
    working_days = _WORKING_DAYS.match(dept.sla[cat.value]) is not None
    # a limit in minutes, hours or days is the same span from any start
    return _Rule(dept, cat, calendar_of(dept).tz, working_days, ends - probe)


def _shortest(dept: DepartmentConfig, category: Category) -> timedelta:
    """The least time a working-day limit can give: as many days as it counts."""
    match = _WORKING_DAYS.match(dept.sla[category.value])
    assert match is not None
    return timedelta(days=int(match.group(1)))
