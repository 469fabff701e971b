"""Deadlines: when a department must answer an inquiry of a category, counted in working days
or in days, hours and minutes. Every clock of the bridge (SLA, holding replies, reports, the
console) asks here, so they all count the same days.

Working days are those of one calendar (:class:`WorkCalendar`): weekends, official holidays and
make-up working days (调休: a Saturday or Sunday worked next to a holiday) from the
``chinese-calendar`` package for the years it carries, with ``[calendar]`` and a department's
``[departments.calendar]`` on top (local holidays; the arrangement of a year the package does
not carry yet). A day of a year nobody covers is counted Monday to Friday (with the configured
holidays and workdays), and the process says so once per year in its log, loudly:
``govbridge check`` warns 60 days ahead (:func:`uncovered_message`). Stopping the clocks
instead would leave citizens unanswered and deadlines unwatched; a deadline that may be a few
days off around next year's Spring Festival is the lesser harm, and it is announced.

Days start at midnight in ``[calendar].timezone`` (Asia/Shanghai by default), whatever zone a
timestamp comes in: a ticket created at 00:30 Beijing time (16:30 UTC the day before) was
created on the Beijing day, and its deadline is a Beijing date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar
import structlog

from schemas.config import CalendarConfig, DepartmentConfig
from schemas.vocab import Category

log = structlog.get_logger("govbridge.deadlines")

_SLA = re.compile(r"^\s*(\d+)\s*(wd|d|h|m|s)\s*$")

# "s" (seconds) exists for tests that run the service's clocks scaled down.
_STEPS = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}

LIBRARY_VERSION: str = getattr(chinese_calendar, "__version__", "?")
# The years chinese-calendar carries (it raises NotImplementedError outside them).
LIBRARY_YEARS: tuple[int, int] = (
    min(chinese_calendar.holidays).year,
    max(chinese_calendar.holidays).year,
)


def uncovered_message(year: int) -> str:
    """What to do about a year whose working days nobody gave."""
    first, last = LIBRARY_YEARS
    return (
        f"no working-day calendar for {year}: chinese-calendar {LIBRARY_VERSION} covers"
        f" {first}–{last}; give {year}'s official holidays (holidays) and make-up working"
        f" days (workdays) under [calendar] and add {year} to [calendar].years, or install"
        f" a chinese-calendar release that carries {year}"
    )


_warned: set[int] = set()


@lru_cache(maxsize=16384)
def _library_workday(day: date) -> bool:
    """chinese-calendar's answer, remembered: the package checks each date against its whole
    table of holidays (a min and a max over it) on every call, which made a report's
    deadlines cost ~25 µs a day counted; its tables never change while a process runs."""
    return bool(chinese_calendar.is_workday(day))


def _counting_weekdays(year: int) -> None:
    """Say once per process and year that ``year`` is counted Monday to Friday."""
    if year not in _warned:
        _warned.add(year)
        log.warning(
            "working days of an uncovered year counted Monday to Friday",
            year=year,
            reason=uncovered_message(year),
        )


@dataclass(frozen=True)
class WorkCalendar:
    """Which days are working days, in one time zone. Days listed in ``workdays`` or
    ``holidays`` win; then chinese-calendar for the years it carries; then Monday to Friday
    (for ``years`` as configured; for any other year with a warning in the log)."""

    tz: tzinfo
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    years: frozenset[int] = frozenset()

    @staticmethod
    def of(config: CalendarConfig) -> WorkCalendar:
        """The calendar a ``[calendar]`` section (with a department's days on top) describes."""
        return _calendar(
            config.timezone,
            tuple(sorted(config.holidays)),
            tuple(sorted(config.workdays)),
            tuple(config.years),
        )

    def covers(self, year: int) -> bool:
        return year in self.years or LIBRARY_YEARS[0] <= year <= LIBRARY_YEARS[1]

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        if LIBRARY_YEARS[0] <= day.year <= LIBRARY_YEARS[1]:
            return _library_workday(day)
        if day.year not in self.years:
            _counting_weekdays(day.year)
        return day.weekday() < 5

    def add_working_days(self, start: date, days: int) -> date:
        """The day ``days`` working days after ``start`` (``start`` itself never counts)."""
        current, added = start, 0
        while added < days:
            current += timedelta(days=1)
            added += self.is_workday(current)
        return current

    def uncovered_years(self, first: date, last: date) -> list[int]:
        """The years between two days (both included) whose working days nobody gave."""
        return [y for y in range(first.year, last.year + 1) if not self.covers(y)]

    def local(self, when: datetime) -> datetime:
        """``when`` in this calendar's zone (a naive time is taken as UTC, as stored)."""
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(self.tz)

    def today(self, now: datetime | None = None) -> date:
        return self.local(now or datetime.now(UTC)).date()


@lru_cache(maxsize=64)
def _calendar(
    zone: str, holidays: tuple[date, ...], workdays: tuple[date, ...], years: tuple[int, ...]
) -> WorkCalendar:
    return WorkCalendar(ZoneInfo(zone), frozenset(holidays), frozenset(workdays), frozenset(years))


DEFAULT_CALENDAR = WorkCalendar.of(CalendarConfig())


def calendar_of(dept: DepartmentConfig) -> WorkCalendar:
    """The calendar a department's clocks count: ``[calendar]`` of its config file with the
    department's own days on top."""
    return WorkCalendar.of(dept.working_calendar)


def add_working_days(start: date, days: int, calendar: WorkCalendar = DEFAULT_CALENDAR) -> date:
    return calendar.add_working_days(start, days)


def deadline_for(
    dept: DepartmentConfig,
    category: Category,
    start: datetime,
    *,
    calendar: WorkCalendar | None = None,
) -> datetime | None:
    """When the department must answer an inquiry of this category (None if no limit set),
    in the calendar's zone. ``Nwd`` is the same time of day N working days after the local day
    of ``start``."""
    limit = dept.sla.get(category.value)
    if limit is None:
        return None
    m = _SLA.match(limit)
    if m is None:
        return None
    cal = calendar or calendar_of(dept)
    local = cal.local(start)
    n, unit = int(m.group(1)), m.group(2)
    if unit == "wd":
        day = cal.add_working_days(local.date(), n)
        return local.replace(year=day.year, month=day.month, day=day.day)
    step = _STEPS[unit] * n
    return cal.local(start + step)


def format_deadline(when: datetime | None, tz: tzinfo | None = None) -> str:
    """A deadline as citizens read it: ``2026年2月24日``, the date in ``tz`` (else in the
    zone ``when`` carries, which ``deadline_for`` sets to the calendar's)."""
    if when is None:
        return "规定时限"
    if tz is not None:
        when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(tz)
    return when.strftime("%Y年%m月%d日").replace("年0", "年").replace("月0", "月")


class DeadlineClock:
    """``deadline_for`` for many starts: each department's calendar made once, and a limit
    of N working days looked up once per (department, N, local day) (it ends at the start's
    time of day on the day found). The same answers as ``deadline_for``."""

    def __init__(self) -> None:
        self._calendars: dict[str, WorkCalendar] = {}
        self._days: dict[tuple[str, int, date], date] = {}

    def deadline(
        self, dept: DepartmentConfig, category: Category, start: datetime
    ) -> datetime | None:
        limit = dept.sla.get(category.value)
        if limit is None:
            return None
        m = _SLA.match(limit)
        if m is None:
            return None
        cal = self._calendars.get(dept.id)
        if cal is None:
            cal = self._calendars[dept.id] = calendar_of(dept)
        local = cal.local(start)
        n, unit = int(m.group(1)), m.group(2)
        if unit == "wd":
            key = (dept.id, n, local.date())
            day = self._days.get(key)
            if day is None:
                day = self._days[key] = cal.add_working_days(local.date(), n)
            return local.replace(year=day.year, month=day.month, day=day.day)
        step = _STEPS[unit] * n
        return cal.local(start + step)
