"""The overdue and at-risk list (the console's 逾期与临期 page): each open ticket's deadline
as the SLA role counts it (the category's limit from the start of the current handling cycle,
or the deadline an approved 延期 set), the tickets past it or within ``sla.warn_before`` of
it, most overdue first, filtered and paged; as of the request, nothing kept.

Deadlines are worked out for few tickets, and counted for the rest. For each department and
category with a limit, the starts of the current cycle fall into three windows
(``_windows``): before the first, every ticket is past its deadline (a limit of N working
days ends on the N-th working day after the local day of the start, a day that never comes
earlier for a later start: every start on a local day whose deadline day is before today is
overdue); from the second on, none is due within the warning time; in between (a day or
two of starts) each ticket's deadline is worked out. The store counts the first window and
reads the second (``tickets_open_due``, migration 29: open tickets by department, the
inquiry's category as the clock counts it, and start). Of the first, only what the page
shows is read: the first ``offset + limit`` of each department and category by start give
a deadline the page's last ticket is no later than, and only the starts that can end as
early (a limit of N working days is at least N days) are read and worked out. Tickets with
an approved extension in their cycle are read apart (their deadline is the extension's).
The same answer as working out every open ticket's deadline (``tests/test_overdue_page.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from bridge.deadlines import WorkCalendar, calendar_of, deadline_for
from bridge.store import Store, iso
from bridge.store.reports import OpenTicket, StartSpan
from schemas.config import DepartmentConfig, GovbridgeConfig
from schemas.vocab import Category

KINDS = ("overdue", "at_risk")
_WORKING_DAYS = re.compile(r"^\s*(\d+)\s*wd\s*$")
# A deadline N working days on, at the start's local time of day, is N days after the start
# less at most a change of the zone's offset in between (an hour for daylight saving time).
_OFFSET_CHANGE = timedelta(hours=3)
_MICROSECOND = timedelta(microseconds=1)

Found = tuple[float, str, str, OpenTicket, datetime]  # seconds left, department, ticket, …


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
    tz: tzinfo
    calendar: WorkCalendar
    working_days: int  # N of "Nwd"; 0 for a limit in days, hours or minutes
    step: timedelta  # that limit
    shortest: timedelta  # the least time from a start to its deadline


class _Clock:
    """Deadlines of one page's rules, each working-day deadline day looked up once per
    (department, category, local day)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.days: dict[tuple[str, str, date], date] = {}

    def deadline_day(self, rule: _Rule, day: date) -> date:
        key = (rule.dept.id, rule.category.value, day)
        found = self.days.get(key)
        if found is None:
            found = self.days[key] = rule.calendar.add_working_days(day, rule.working_days)
        return found

    def deadline(self, rule: _Rule, t: OpenTicket) -> datetime:
        start = datetime.fromisoformat(t.reopened_at or t.created_at)
        if not rule.working_days:
            return (start + rule.step).astimezone(rule.tz)
        local = start.astimezone(rule.tz)
        day = self.deadline_day(rule, local.date())
        return local.replace(year=day.year, month=day.month, day=day.day)

    def found(self, t: OpenTicket, deadline: datetime) -> Found:
        return ((deadline - self.now).total_seconds(), t.department, t.ticket_id, t, deadline)


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
    warn = cfg.sla.warn_before
    clock = _Clock(now)
    rules: dict[tuple[str, str], _Rule] = {}
    overdue_spans: list[StartSpan] = []
    near_spans: list[StartSpan] = []
    for dept in departments.values():
        if department not in (None, dept.id):
            continue
        for cat in Category:
            rule = _rule(dept, cat.value)
            if rule is None:
                continue
            rules[(dept.id, cat.value)] = rule
            overdue_before, due_before = _windows(rule, clock, now, now + warn)
            overdue_spans.append(StartSpan(dept.id, cat.value, None, iso(overdue_before)))
            near_spans.append(StartSpan(dept.id, cat.value, iso(overdue_before), iso(due_before)))

    # worked out one by one: the starts near the deadline, and the extended tickets
    exact: list[Found] = []
    for t in await store.tickets_started(near_spans):
        exact.append(clock.found(t, clock.deadline(rules[(t.department, _category(t))], t)))
    moved_tickets = await store.extended_open_tickets(department)
    extended = await store.approved_deadlines()
    for t in moved_tickets:
        moved = extended.get((t.department, t.ticket_id, t.cycle))
        if moved is not None and t.department in departments:
            exact.append(clock.found(t, datetime.fromisoformat(moved).astimezone(UTC)))
    exact = [f for f in exact if f[0] <= warn.total_seconds()]
    counted = await store.count_started(overdue_spans)
    overdue = counted + sum(1 for f in exact if f[0] < 0)
    at_risk = sum(1 for f in exact if f[0] >= 0)

    if kind == "overdue":
        exact = [f for f in exact if f[0] < 0]
    elif kind == "at_risk":
        exact = [f for f in exact if f[0] >= 0]
    found = {(f[1], f[2]): f for f in exact}
    wanted = offset + limit
    if kind != "at_risk" and counted:
        first = await store.tickets_started(overdue_spans, limit=wanted)
        for t in first:
            f = clock.found(t, clock.deadline(rules[(t.department, _category(t))], t))
            found[(f[1], f[2])] = f
        if len(first) >= wanted:  # more: those that can be due as early as the page's last
            by = sorted(found.values(), key=lambda f: f[0])[wanted - 1][4]
            more = []
            for s in overdue_spans:
                latest = by - rules[(s.department, s.category)].shortest + _MICROSECOND
                more.append(StartSpan(s.department, s.category, None, min(s.before, iso(latest))))
            for t in await store.tickets_started(more):
                f = clock.found(t, clock.deadline(rules[(t.department, _category(t))], t))
                found[(f[1], f[2])] = f
    ordered = sorted(found.values(), key=lambda f: (f[0], f[1], f[2]))
    page = [
        {
            "department": t.department,
            "department_name": departments[t.department].name,
            "ticket_id": t.ticket_id,
            "inquiry_id": t.inquiry_id,
            "status": t.status,
            "category": _category(t),
            "deadline": deadline.isoformat(),
            "seconds_left": round(left),
            "overdue": left < 0,
            "extended": (t.department, t.ticket_id, t.cycle) in extended,
        }
        for left, _, _, t, deadline in ordered[offset:wanted]
    ]
    total = {"overdue": overdue, "at_risk": at_risk}.get(kind or "", overdue + at_risk)
    return OverduePage(page, total, overdue, at_risk)


def _category(t: OpenTicket) -> str:
    return Category(t.category or "other").value


def _windows(rule: _Rule, clock: _Clock, now: datetime, due: datetime) -> tuple[datetime, datetime]:
    """Where the rule's starts stop being all overdue and where they start being none due
    by ``due``: every start before the first is past its deadline at ``now``, none from the
    second on has its deadline by ``due``."""
    if not rule.working_days:  # the deadline is the start and the limit
        return now - rule.step, due - rule.step + _MICROSECOND
    today = now.astimezone(rule.tz).date()
    # the first local day whose deadline day is today or later: N working days after a day
    # are at least N days after it, and a later day never has an earlier deadline day
    first = today - timedelta(days=rule.working_days)
    while clock.deadline_day(rule, first - timedelta(days=1)) >= today:
        first -= timedelta(days=1)
    due_day = due.astimezone(rule.tz).date()
    after = due_day - timedelta(days=rule.working_days - 1)  # its deadline day is later
    while clock.deadline_day(rule, after - timedelta(days=1)) > due_day:
        after -= timedelta(days=1)
    return _midnight(first, rule.tz), _midnight(after, rule.tz)


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


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
    calendar = calendar_of(dept)
    match = _WORKING_DAYS.match(dept.sla[cat.value])
    if match is None:  # a limit in minutes, hours or days is the same span from any start
        step = ends - probe
        return _Rule(dept, cat, calendar.tz, calendar, 0, step, step)
    days = int(match.group(1))
    shortest = timedelta(days=days) - _OFFSET_CHANGE
    return _Rule(dept, cat, calendar.tz, calendar, days, timedelta(0), shortest)
