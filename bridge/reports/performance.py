"""Department performance from the store: how each account serves the public.

Per department: inquiries received and ignored, tickets, follow-ups, replies posted, median
time to the first reply, tickets resolved and within their SLA, open tickets past deadline,
replies awaiting approval and needing reconciliation.

A report reads every row of the store, so over HTTP it is bounded and kept off the event loop:
the period may be at most ``http.max_range`` (``parse_since`` says why a range is refused), and
``department_reports_apart`` computes it in a worker thread with a store connection of its own
(SQLite's queries run on the event loop otherwise), so ``/healthz`` and pushes are answered
while it runs.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import csv
import hashlib
import io
import json
import statistics
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from html import escape
from typing import Any, Generic, TypeVar

from bridge.deadlines import DeadlineClock, WorkCalendar, calendar_of, deadline_for
from bridge.store import Store, StoredInquiry, iso, open_store
from bridge.store.reports import RateInquiry, asked_time
from schemas.config import DepartmentConfig, GovbridgeConfig, RankWeights
from schemas.states import SurveyOutcome
from schemas.vocab import (
    FINAL_STATUSES,
    REPLY_AWAITING_STATES,
    REPLY_QUEUED_STATES,
    Category,
    CreateState,
    InquiryState,
    ReplyState,
)

T = TypeVar("T")
FINAL = tuple(sorted(FINAL_STATUSES))
BACKLOG_STATES = REPLY_AWAITING_STATES + REPLY_QUEUED_STATES
# Days are counted in China Standard Time: a department's day, not UTC's.
CST = timezone(timedelta(hours=8), "CST")


@dataclass
class DepartmentReport:
    """One department over a period: the work that arrived in it (inquiries received, tickets
    opened and what became of them, replies posted), and the backlog as of now (open tickets
    past or near their deadline, replies awaiting approval, creates to reconcile, inquiries
    unanswered beyond the first-response limit with no reply waiting for an approver or a
    posting slot: an approval backlog is a backlog, not a zombie)."""

    department: str
    name: str
    inquiries: int = 0
    appended: int = 0
    tickets: int = 0
    resolved: int = 0
    resolved_in_time: int = 0
    open_overdue: int = 0
    open_at_risk: int = 0
    replies_posted: int = 0
    awaiting_approval: int = 0
    needs_reconciliation: int = 0
    unanswered_overdue: int = 0
    zombie_accounts: list[str] = field(default_factory=list)  # platform:handle, unanswered
    median_first_reply_s: float | None = None
    median_resolution_s: float | None = None
    daily: list[dict[str, Any]] = field(default_factory=list)

    @property
    def in_time_rate(self) -> float | None:
        return self.resolved_in_time / self.resolved if self.resolved else None

    @property
    def zombie(self) -> bool:
        """Inquiries left unanswered beyond the limit: an account nobody looks after."""
        return self.unanswered_overdue > 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_time_rate": self.in_time_rate, "zombie": self.zombie}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def parse_since(
    text: str, now: datetime | None = None, max_window: timedelta | None = None
) -> datetime:
    """``7d``, ``24h``, ``2w`` before now, or a date / ISO time (read in CST when it has no
    offset). ``ValueError`` with the reason for text that is none of these, a time no
    calendar holds (``0001-01-01`` in CST is before year 1 in UTC), a time after ``now``, or
    a period longer than ``max_window``."""
    now = now or datetime.now(UTC)
    shown = repr(text[:40] + ("…" if len(text) > 40 else ""))
    units = {"h": 3600, "d": 86400, "w": 7 * 86400}
    try:
        if len(text) > 1 and text[:-1].isascii() and text[:-1].isdigit() and text[-1] in units:
            since = now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
        else:
            when = datetime.fromisoformat(text)
            since = (when if when.tzinfo else when.replace(tzinfo=CST)).astimezone(UTC)
    except ValueError:
        raise ValueError(f"since {shown}: give 7d, 24h, 2w, a date or an ISO time") from None
    except OverflowError:
        raise ValueError(f"since {shown}: out of the calendar's range") from None
    check_window(since, now, max_window, f"since {shown}")
    return since


def check_window(
    start: datetime, end: datetime, max_window: timedelta | None, what: str = "the period"
) -> None:
    """``ValueError`` when ``start`` is after ``end`` or the two are further apart than
    ``max_window`` (``http.max_range``)."""
    if start > end:
        raise ValueError(f"{what}: starts after it ends")
    if max_window is not None and end - start > max_window:
        raise ValueError(
            f"{what}: the period is longer than the longest allowed,"
            f" {_span(max_window)} (http.max_range)"
        )


def _span(window: timedelta) -> str:
    seconds = window.total_seconds()
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)} days"
    return f"{seconds / 3600:g} hours"


def _day(when: datetime) -> str:
    return when.astimezone(CST).date().isoformat()


def _days(since: datetime, now: datetime) -> list[str]:
    first, last = since.astimezone(CST).date(), now.astimezone(CST).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


async def department_reports(
    store: Store,
    cfg: GovbridgeConfig,
    now: datetime | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    department: str | None = None,
) -> tuple[list[DepartmentReport], dict[str, int]]:
    """Reports per configured department (or only ``department``) for the period from
    ``since`` (everything when None) to ``until`` (exclusive; None: to ``now``), plus ignored
    inquiries counted by reason. The backlog is always as of ``now``.

    The store counts what it can (tickets, replies, ignored inquiries, open tickets per hour
    of creation); only the period's inquiries (for the median first reply), its final
    tickets and the open tickets whose deadline falls in an hour near now are read row by
    row. Times are compared as stored (``iso``: fixed-width UTC)."""
    now = now or datetime.now(UTC)
    first = iso(since) if since is not None else "0000"
    through = until is None
    last_text = iso(now) if until is None else iso(until)
    clock = DeadlineClock()
    left_out = (InquiryState.IGNORED, InquiryState.SURVEY_ANSWER)
    wanted = [d for d in cfg.departments if department is None or d.id == department]
    reports = {d.id: DepartmentReport(d.id, d.name) for d in wanted}
    configured = {d.id: d for d in wanted}
    ignored: dict[str, int] = {}
    if department is None:
        for reason, n in (
            await store.ignored_reasons(first, last_text, through, InquiryState.IGNORED)
        ).items():
            ignored[reason or "?"] = ignored.get(reason or "?", 0) + n
    last = now if until is None else min(now, until - timedelta(microseconds=1))
    if since is None:
        oldest = await store.first_inquiry_at()
        days = _days(_ts(oldest) or now, last)
    else:
        days = _days(since, last)
    daily: dict[str, dict[str, dict[str, Any]]] = {
        d: {day: {"day": day, "received": 0, "resolved": 0} for day in days} for d in reports
    }
    hour_day: dict[str, str] = {}

    def day_of(stored: str) -> str:
        """The CST day of a stored time, found once per hour (CST is a whole hours' offset)."""
        hour = stored[:13]
        day = hour_day.get(hour)
        if day is None:
            day = hour_day[hour] = _day(datetime.fromisoformat(stored))
        return day

    # the backlog, as of now: inquiries unanswered beyond the first-response limit, counted
    # per hour of arrival; an account is listed by its first such inquiry
    skipped = (*left_out, InquiryState.APPENDED)
    first_late: dict[tuple[str, str], str] = {}  # (department, account key): created_at id
    # only the departments and categories with a limit: the others are never late
    answer_limited = [
        f"{d.id}/{c.value}"
        for d in wanted
        for c in Category
        if _first_response_rule(d, c.value)[1].value in _first_response_rule(d, c.value)[0].sla
    ]
    hour_bounds = _HourBounds(clock)

    for g in await store.unanswered_hours(
        skipped, ReplyState.POSTED, BACKLOG_STATES, answer_limited
    ):
        rep = reports.get(g["department"])
        if rep is None:
            continue
        dept, cat = _first_response_rule(configured[rep.department], g["category"])
        next_hour, earliest, latest, bounded = hour_bounds(dept, cat, g["hour"])
        if earliest is None or latest is None:
            continue
        late, earliest_late = 0, None
        if bounded and latest < now:
            late, earliest_late = int(g["n"]), g["first"]
        elif bounded and earliest >= now:
            continue
        else:
            for created_at, inquiry_id in await store.unanswered_in_hour(
                skipped, ReplyState.POSTED, BACKLOG_STATES, g, next_hour
            ):
                limit = clock.deadline(dept, cat, _ts(created_at) or now)
                if limit is not None and now > limit:
                    late += 1
                    mark = f"{created_at} {inquiry_id}"
                    earliest_late = mark if earliest_late is None else min(earliest_late, mark)
        if late and earliest_late is not None:
            rep.unanswered_overdue += late
            key = (rep.department, cfg.key_on(g["platform"], g["account"]))
            first_late[key] = min(first_late.get(key, earliest_late), earliest_late)
    for (dept_id, account), _ in sorted(first_late.items(), key=lambda kv: kv[1]):
        reports[dept_id].zombie_accounts.append(account)
    # the period's inquiries: counted per hour; the answered ones read for the median wait
    for dept_id, hour, appended, n in await store.period_inquiry_hours(
        first, last_text, through, left_out, InquiryState.APPENDED
    ):
        rep = reports.get(dept_id)
        if rep is None:
            continue
        rep.inquiries += n
        rep.appended += n if appended else 0
        daily[dept_id][day_of(hour + ":00:00+00:00")]["received"] += n
    waits: dict[str, list[float]] = {d: [] for d in reports}
    for dept_id, created_at, first_reply_at in await store.period_first_replies(
        first, last_text, through, left_out, ReplyState.POSTED
    ):
        if dept_id in waits:
            waits[dept_id].append(
                (
                    datetime.fromisoformat(first_reply_at) - datetime.fromisoformat(created_at)
                ).total_seconds()
            )
    # the backlog, as of now: open tickets past or near their deadline
    warn = cfg.sla.warn_before
    limited = [f"{d.id}/{c.value}" for d in wanted for c in Category if c.value in d.sla]
    for dept_id, category, hour, n in await store.open_ticket_hours(FINAL, limited):
        rep = reports.get(dept_id)
        if rep is None:
            continue
        dept, cat = configured[dept_id], Category(category)
        next_hour, earliest, latest, bounded = hour_bounds(dept, cat, hour)
        if earliest is None or latest is None:
            continue
        if bounded and latest < now:
            rep.open_overdue += n
        elif bounded and earliest >= now and latest - now <= warn:
            rep.open_at_risk += n
        elif bounded and earliest - now > warn:
            continue
        else:
            for created_at in await store.open_ticket_times(
                FINAL, dept_id, category, hour, next_hour
            ):
                deadline = clock.deadline(dept, cat, _ts(created_at) or now)
                assert deadline is not None
                if now > deadline:
                    rep.open_overdue += 1
                elif deadline - now <= warn:
                    rep.open_at_risk += 1
    # the period's tickets: resolved, in time, how long it took; resolved per day
    created_in, finals = await store.period_tickets(first, last_text, through, FINAL)
    for dept_id, n in created_in.items():
        if dept_id in reports:
            reports[dept_id].tickets += n
    durations: dict[str, list[float]] = {d: [] for d in reports}
    for t in finals:
        rep = reports.get(t.department)
        if rep is None:
            continue
        created = _ts(t.created_at) or now
        deadline = clock.deadline(
            configured[t.department], Category(t.category or "other"), created
        )
        done = _ts(t.final_at)
        rep.resolved += 1
        if deadline is None or (done is not None and done <= deadline):
            rep.resolved_in_time += 1
        if done is not None:
            durations[t.department].append((done - created).total_seconds())
    for dept_id, hour, n in await store.final_hours(first, last_text, through, FINAL):
        if dept_id in reports:
            day = day_of(hour + ":00:00+00:00")
            if day in daily[dept_id]:
                daily[dept_id][day]["resolved"] += n
    for dept_id, (posted, awaiting) in (
        await store.reply_counts(
            first, last_text, through, ReplyState.POSTED, ReplyState.AWAITING_APPROVAL
        )
    ).items():
        if dept_id in reports:
            reports[dept_id].replies_posted += posted
            reports[dept_id].awaiting_approval += awaiting
    for f in await store.list_create_attempts(CreateState.NEEDS_RECONCILIATION):
        if f.department in reports:
            reports[f.department].needs_reconciliation += 1
    for dept_id, rep in reports.items():
        if waits[dept_id]:
            rep.median_first_reply_s = statistics.median(waits[dept_id])
        if durations[dept_id]:
            rep.median_resolution_s = statistics.median(durations[dept_id])
        rep.daily = list(daily[dept_id].values())
    return list(reports.values()), ignored


async def department_reports_apart(
    cfg: GovbridgeConfig,
    now: datetime,
    *,
    since: datetime,
    department: str | None = None,
) -> tuple[list[DepartmentReport], dict[str, int]]:
    """``department_reports`` in a worker thread, on a connection of its own to the store
    (``cfg.store.url``): its queries and its arithmetic never hold the event loop. An
    in-memory SQLite store cannot be shared with another connection; it is read here."""
    return await _apart(
        cfg, lambda store: department_reports(store, cfg, now, since=since, department=department)
    )


async def rank_months_apart(
    cfg: GovbridgeConfig,
    now: datetime,
    months: int = 12,
    ending: datetime | None = None,
    cache: RankingCache | None = None,
    stale_current: bool = False,
) -> list[Ranking]:
    """``rank_months`` in a worker thread, on a connection of its own (as above)."""
    return await _apart(
        cfg, lambda store: rank_months(store, cfg, now, months, ending, cache, stale_current)
    )


async def _apart(cfg: GovbridgeConfig, work: Callable[[Store], Awaitable[T]]) -> T:
    url = cfg.store.url
    in_memory = url.removeprefix("sqlite://").lstrip("/") in ("", ":memory:")
    if url.startswith("sqlite://") and in_memory:
        store = await open_store(cfg.store.url)
        try:
            return await work(store)
        finally:
            await store.close()

    async def run() -> T:
        store = await open_store(cfg.store.url, migrate=False)
        try:
            return await work(store)
        finally:
            await store.close()

    return await asyncio.to_thread(asyncio.run, run())


def _first_response_deadline(
    dept: DepartmentConfig,
    category: str | None,
    received: datetime,
    clock: DeadlineClock | None = None,
) -> datetime | None:
    """The first-response limit (``sla.first_response``), else the category's limit."""
    probe, cat = _first_response_rule(dept, category)
    return (clock.deadline if clock is not None else deadline_for)(probe, cat, received)


_PROBES: dict[int, tuple[DepartmentConfig, DepartmentConfig]] = {}


def _first_response_rule(
    dept: DepartmentConfig, category: str | None
) -> tuple[DepartmentConfig, Category]:
    """What the first response is held to: the department's ``sla.first_response`` (as the
    limit of ``other``), else the category's limit."""
    if "first_response" not in dept.sla:
        return dept, Category(category or "other")
    known = _PROBES.get(id(dept))
    if known is None or known[0] is not dept:
        probe = dept.model_copy(update={"sla": {"other": dept.sla["first_response"]}})
        known = _PROBES[id(dept)] = (dept, probe)
    return known[1], Category.OTHER


class _HourBounds:
    """``_hour_bounds`` remembered per (working days, limit, hour): the deadlines of a start
    depend on nothing else, so departments with the same calendar and limit share them."""

    def __init__(self, clock: DeadlineClock) -> None:
        self.clock = clock
        self.calendars: dict[str, WorkCalendar] = {}
        self.known: dict[
            tuple[WorkCalendar, str, str], tuple[str, datetime | None, datetime | None, bool]
        ] = {}

    def __call__(
        self, dept: DepartmentConfig, cat: Category, hour: str
    ) -> tuple[str, datetime | None, datetime | None, bool]:
        cal = self.calendars.get(dept.id)
        if cal is None:
            cal = self.calendars[dept.id] = calendar_of(dept)
        key = (cal, dept.sla.get(cat.value) or "", hour)
        known = self.known.get(key)
        if known is None:
            known = self.known[key] = _hour_bounds(self.clock, dept, cat, hour)
        return known


def _hour_bounds(
    clock: DeadlineClock, dept: DepartmentConfig, category: Category, hour: str
) -> tuple[str, datetime | None, datetime | None, bool]:
    """For the starts within an hour as stored (``2026-12-07T09``): the next hour as stored,
    the deadlines of the hour's first and last microsecond, and whether these two bound every
    start's in between: when the hour is within one local day (a later start then has a later
    deadline: the same day found, or the same span added)."""
    opens = datetime.fromisoformat(hour + ":00:00+00:00")
    ends = opens + timedelta(hours=1, microseconds=-1)
    next_hour = iso(opens + timedelta(hours=1))[:13]
    earliest = clock.deadline(dept, category, opens)
    latest = clock.deadline(dept, category, ends)
    if earliest is None or latest is None:
        return next_hour, earliest, latest, False
    zone = earliest.tzinfo
    return (
        next_hour,
        earliest,
        latest,
        opens.astimezone(zone).date() == ends.astimezone(zone).date(),
    )


def render_table(reports: list[DepartmentReport], ignored: dict[str, int]) -> str:
    head = (
        f"{'department':<14}{'inquiries':>10}{'tickets':>8}{'resolved':>9}{'in SLA':>8}"
        f"{'overdue':>8}{'at risk':>8}{'replies':>8}{'awaiting':>9}{'first reply':>12}"
        f"{'resolution':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in reports:
        rate = f"{r.in_time_rate:.0%}" if r.in_time_rate is not None else "-"
        wait = "-" if r.median_first_reply_s is None else _human(r.median_first_reply_s)
        took = "-" if r.median_resolution_s is None else _human(r.median_resolution_s)
        lines.append(
            f"{pad(r.name, 14)}{r.inquiries:>10}{r.tickets:>8}{r.resolved:>9}{rate:>8}"
            f"{r.open_overdue:>8}{r.open_at_risk:>8}{r.replies_posted:>8}"
            f"{r.awaiting_approval:>9}{wait:>12}{took:>11}"
        )
    for r in reports:
        if r.zombie:
            lines.append(
                f"zombie: {r.name} has {r.unanswered_overdue} inquiries unanswered beyond the limit"
                f" ({', '.join(r.zombie_accounts)})"
            )
    if ignored:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(ignored.items()))
        lines.append(f"ignored as noise: {sum(ignored.values())} ({reasons})")
    return "\n".join(lines)


COLUMNS = (
    "department",
    "name",
    "inquiries",
    "appended",
    "tickets",
    "resolved",
    "resolved_in_time",
    "in_time_rate",
    "median_first_reply_s",
    "median_resolution_s",
    "replies_posted",
    "open_overdue",
    "open_at_risk",
    "awaiting_approval",
    "needs_reconciliation",
    "unanswered_overdue",
    "zombie",
)


def render_json(
    reports: list[DepartmentReport],
    ignored: dict[str, int],
    since: datetime | None = None,
    now: datetime | None = None,
) -> str:
    return json.dumps(
        {
            "since": since.isoformat() if since else None,
            "until": (now or datetime.now(UTC)).isoformat(),
            "departments": [r.as_dict() for r in reports],
            "ignored": ignored,
        },
        ensure_ascii=False,
        indent=2,
    )


def render_csv(reports: list[DepartmentReport]) -> str:
    """One row per department (the daily series is in the JSON and HTML forms)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in reports:
        row = r.as_dict()
        writer.writerow(
            [
                ("" if row[c] is None else f"{row[c]:.4f}" if isinstance(row[c], float) else row[c])
                for c in COLUMNS
            ]
        )
    return out.getvalue()


def chart_svg(rep: DepartmentReport, width: int = 640, height: int = 180) -> str:
    """Received and resolved per day as bars, inline SVG (no script, no CDN)."""
    days = rep.daily
    top = max([1] + [max(d["received"], d["resolved"]) for d in days])
    left, bottom, plot_h = 32, 24, height - 40
    slot = (width - left - 8) / max(1, len(days))
    bar = max(1.0, slot / 2 - 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-labelledby="c-{rep.department}">',
        f'<title id="c-{rep.department}">{escape(rep.name)}: 每日收到与办结 / received and'
        " resolved per day</title>",
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 4}" y2="{height - bottom}"'
        ' stroke="#444"/>',
        f'<text x="4" y="{height - bottom - plot_h + 10}" font-size="11">{top}</text>',
        f'<text x="4" y="{height - bottom}" font-size="11">0</text>',
    ]
    for n, d in enumerate(days):
        x = left + n * slot
        for k, (key, colour) in enumerate((("received", "#1f5fa8"), ("resolved", "#2e7d32"))):
            h = plot_h * d[key] / top
            parts.append(
                f'<rect class="{key}" x="{x + k * (bar + 1):.1f}" y="{height - bottom - h:.1f}"'
                f' width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{d['day']} {key} {d[key]}</title></rect>"
            )
        if len(days) <= 16 or n % max(1, len(days) // 8) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="10">{d["day"][5:]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(
    reports: list[DepartmentReport],
    ignored: dict[str, int],
    since: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """A standalone page: the table, then a chart per department."""
    now = now or datetime.now(UTC)
    period = f"{_day(since)} – {_day(now)}" if since else f"全部 / all – {_day(now)}"
    heads = [
        ("部门 department", "name"),
        ("收到 inquiries", "inquiries"),
        ("工单 tickets", "tickets"),
        ("办结 resolved", "resolved"),
        ("按时 in time", "in_time_rate"),
        ("首次答复中位 first reply", "median_first_reply_s"),
        ("办结中位 resolution", "median_resolution_s"),
        ("已发答复 replies", "replies_posted"),
        ("逾期 overdue", "open_overdue"),
        ("临期 at risk", "open_at_risk"),
        ("待审批 awaiting", "awaiting_approval"),
        ("未答复超时 unanswered", "unanswered_overdue"),
    ]

    def cell(r: DepartmentReport, key: str) -> str:
        value = r.as_dict()[key]
        if value is None:
            return "-"
        if key == "in_time_rate":
            return f"{value:.0%}"
        if key.endswith("_s"):
            return _human(value)
        if key == "name" and r.zombie:
            accounts = escape(", ".join(r.zombie_accounts))
            return f'{escape(r.name)} <strong class="zombie">僵尸账号 zombie</strong> ({accounts})'
        return escape(str(value))

    rows = "".join(
        "<tr>" + "".join(f"<td>{cell(r, k)}</td>" for _, k in heads) + "</tr>" for r in reports
    )
    charts = "".join(
        f"<section><h2>{escape(r.name)}</h2><figure>{chart_svg(r)}<figcaption>"
        '<span class="k-received">■ 收到 received</span> '
        '<span class="k-resolved">■ 办结 resolved</span></figcaption></figure></section>'
        for r in reports
    )
    noise = ", ".join(f"{escape(k)} {v}" for k, v in sorted(ignored.items())) or "0"
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>govbridge 报告 {escape(period)}</title><style>"
        "body{font-family:sans-serif;color:#111;margin:1.5em}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .5em}"
        "th{background:#eee}.zombie{color:#b00020}.k-received{color:#1f5fa8}"
        ".k-resolved{color:#2e7d32}</style></head><body>"
        f"<h1>部门办理情况 Department report</h1><p>期间 period: {escape(period)}</p>"
        "<table><thead><tr>"
        + "".join(f'<th scope="col">{h}</th>' for h, _ in heads)
        + f"</tr></thead><tbody>{rows}</tbody></table>"
        f"<p>作为噪声忽略 ignored as noise: {noise}</p>{charts}</body></html>\n"
    )


def pad(text: str, width: int) -> str:
    """Left-align for a terminal: CJK characters take two columns."""
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - used)


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------------------
# The three rates (响应率, 解决率, 满意率), the on-time rate and the ranking, per department and
# per account, for a month or any period. The formulas (README, "The three rates"):
#
# - 响应率: of the inquiries asked in the period (noise excluded), those whose first
#   acknowledgement was posted within the first-response limit (``sla.first_response``, else
#   ``[ranking].first_response``, 3 minutes) of the citizen's post (``asked_at``); an inquiry
#   not yet answered whose limit has not passed is not counted yet.
# - 解决率 / 满意率: of the 回访 results concluded in the period, the answers saying solved, and
#   the satisfaction answers weighted by ``[ranking].satisfaction`` (满意 1, 基本满意 1, 不满意
#   0); unrated answers are left out; no response as ``[ranking].no_response`` says.
# - 按时率: of the tickets opened in the period that are resolved, or still open past their
#   deadline, those resolved by their deadline: an open overdue ticket counts as late.
# - score: the weighted mean of the rates × 100 (``[ranking].weights``, 30/35/35/0 by default:
#   an example, not an official formula); no score when a weighted rate has nothing to count.
#   Ranked by score (to 0.01), equal scores share a rank.
# --------------------------------------------------------------------------------------------

RATE_NAMES = ("response", "resolution", "satisfaction", "on_time")
RATE_LABELS = {
    "response": "响应率",
    "resolution": "解决率",
    "satisfaction": "满意率",
    "on_time": "按时率",
}


@dataclass(frozen=True)
class Period:
    """From ``start`` (inclusive) to ``end`` (exclusive), both UTC; ``label`` as given."""

    start: datetime
    end: datetime
    label: str

    def as_dict(self) -> dict[str, str]:
        last = self.end - timedelta(microseconds=1)
        return {
            "label": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "first_day": _day(self.start),
            "last_day": _day(last),
        }


def month_period(year: int, month: int) -> Period:
    """A calendar month in China Standard Time."""
    start = datetime(year, month, 1, tzinfo=CST)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CST)
    return Period(start.astimezone(UTC), end.astimezone(UTC), f"{year:04d}-{month:02d}")


def last_months(now: datetime, count: int = 12) -> list[Period]:
    """The ``count`` months up to and including the month of ``now`` (CST), oldest first."""
    local = now.astimezone(CST)
    n = local.year * 12 + local.month - 1
    return [month_period(m // 12, m % 12 + 1) for m in range(n - count + 1, n + 1)]


def previous_month(now: datetime) -> Period:
    """The last whole month before ``now`` (CST): the default period of a ranking."""
    return last_months(now, 2)[0]


def parse_period(
    text: str, now: datetime | None = None, max_window: timedelta | None = None
) -> Period:
    """``2026-11`` (a month), ``2026-11-03`` (a day) or ``2026-11-01..2026-11-15`` (the days
    from one to the other, both included), in China Standard Time. ``ValueError`` with the
    reason for anything else, a period starting after ``now`` or longer than ``max_window``."""
    now = now or datetime.now(UTC)
    shown = repr(text[:40] + ("…" if len(text) > 40 else ""))
    try:
        if len(text) == 7 and text[4] == "-":
            year, month = int(text[:4]), int(text[5:])
            if not 1 <= month <= 12 or year < 1:
                raise ValueError
            period = month_period(year, month)
        else:
            first_text, _, last_text = text.partition("..")
            first = datetime.strptime(first_text.strip(), "%Y-%m-%d").replace(tzinfo=CST)
            last = (
                datetime.strptime(last_text.strip(), "%Y-%m-%d").replace(tzinfo=CST)
                if last_text
                else first
            )
            if last < first:
                raise ValueError(f"period {shown}: ends before it starts")
            period = Period(
                first.astimezone(UTC), (last + timedelta(days=1)).astimezone(UTC), text.strip()
            )
    except ValueError as exc:
        if str(exc).startswith("period"):
            raise
        raise ValueError(
            f"period {shown}: give a month (2026-11), a day (2026-11-03) or days"
            " (2026-11-01..2026-11-15)"
        ) from None
    except OverflowError:
        raise ValueError(f"period {shown}: out of the calendar's range") from None
    if period.start > now:
        raise ValueError(f"period {shown}: starts in the future")
    check_window(period.start, period.end, max_window, f"period {shown}")
    return period


@dataclass
class Rates:
    """The counts behind one department's or account's rates over a period."""

    responded_in_time: int = 0  # first acknowledgement posted within the limit
    response_counted: int = 0  # inquiries answered, or unanswered past the limit
    solved: float = 0  # 回访 answers saying solved (and no responses counted as solved)
    resolution_counted: int = 0  # answers saying solved or not (and counted no responses)
    satisfied: float = 0.0  # satisfaction answers, weighted
    satisfaction_counted: int = 0  # satisfaction answers (and counted no responses)
    on_time: int = 0  # tickets resolved by their deadline
    on_time_counted: int = 0  # tickets resolved, or open past their deadline
    answered: int = 0  # 回访 results by outcome
    unrated: int = 0
    no_response: int = 0

    def rate(self, name: str) -> float | None:
        part, whole = {
            "response": (self.responded_in_time, self.response_counted),
            "resolution": (self.solved, self.resolution_counted),
            "satisfaction": (self.satisfied, self.satisfaction_counted),
            "on_time": (self.on_time, self.on_time_counted),
        }[name]
        return part / whole if whole else None

    def score(self, weights: RankWeights) -> tuple[float | None, list[str]]:
        """The weighted mean of the rates × 100 (rounded to 0.01), or None and the weighted
        rates that have nothing to count."""
        total = sum(getattr(weights, n) for n in RATE_NAMES)
        missing = [n for n in RATE_NAMES if getattr(weights, n) > 0 and self.rate(n) is None]
        if missing:
            return None, missing
        value = sum(getattr(weights, n) * (self.rate(n) or 0.0) for n in RATE_NAMES)
        return round(100 * value / total, 2), []


@dataclass
class Standing:
    """One department's (``level`` "department") or account's place in a period's ranking."""

    level: str
    key: str  # the department id, or the account key (adapter:handle)
    name: str
    department: str | None
    rates: Rates = field(default_factory=Rates)
    score: float | None = None
    rank: int | None = None
    unranked: list[str] = field(default_factory=list)  # weighted rates with nothing to count

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "key": self.key,
            "name": self.name,
            "department": self.department,
            "rank": self.rank,
            "score": self.score,
            **{f"{n}_rate": self.rates.rate(n) for n in RATE_NAMES},
            **asdict(self.rates),
            "unranked": self.unranked,
        }


@dataclass
class Ranking:
    period: Period
    weights: RankWeights
    departments: list[Standing]
    accounts: list[Standing]
    # when its responses and tickets were counted, if earlier than now: a month that is over,
    # kept as computed (``RankingCache``); its 回访 results are always counted afresh
    as_of: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.as_dict(),
            "weights": self.weights.model_dump(),
            "departments": [s.as_dict() for s in self.departments],
            "accounts": [s.as_dict() for s in self.accounts],
        }


class _Timed(Generic[T]):
    """Rows in the order of a time of theirs, parsed once; ``between`` slices a period."""

    def __init__(self, rows: list[tuple[datetime, T]]) -> None:
        rows.sort(key=lambda pair: pair[0])
        self.times = [when for when, _ in rows]
        self.rows = [row for _, row in rows]

    def timed_between(self, start: datetime, end: datetime) -> list[tuple[datetime, T]]:
        """``between`` with each row's time."""
        first, last = bisect.bisect_left(self.times, start), bisect.bisect_left(self.times, end)
        return list(zip(self.times[first:last], self.rows[first:last], strict=True))

    def between(self, start: datetime, end: datetime) -> list[T]:
        return self.rows[
            bisect.bisect_left(self.times, start) : bisect.bisect_left(self.times, end)
        ]


# Of the inquiries asked in a period, these are not ranked: noise, and 回访 answers.
RANK_LEFT_OUT = (InquiryState.IGNORED, InquiryState.SURVEY_ANSWER)
InquiryGroup = tuple[str, str, str, str, str | None, int]
TicketGroup = tuple[str, str, str, str, str, str | None, bool, int]


@dataclass
class _Facts:
    """What the rates are computed from, read once for any number of periods, counted by
    the store where it can (``ranked_inquiries``, ``ranked_tickets``, ``survey_counts``):
    the inquiries by when they were asked (the unanswered ones per hour), the tickets by
    creation (the open ones per hour); and the window they were read for (``first``,
    ``last``), to read an hour again row by row. The 回访 results are counted per period
    (``survey_counts``)."""

    inquiries: _Timed[InquiryGroup]
    tickets: _Timed[TicketGroup]
    first: str
    last: str


def _stored_time(text: str) -> datetime:
    """A time as stored, or an hour as stored (``2026-12-07T09``: its first microsecond)."""
    if len(text) == 13:
        return datetime.fromisoformat(text + ":00:00+00:00")
    return datetime.fromisoformat(text).astimezone(UTC)


async def _read_facts(store: Store, since: datetime, until: datetime) -> _Facts:
    first, last = iso(since), iso(until)
    inquiries = await store.ranked_inquiries(first, last, RANK_LEFT_OUT, ReplyState.POSTED)
    tickets = await store.ranked_tickets(first, last, FINAL)
    return _Facts(
        _Timed([(_stored_time(g[3]), g) for g in inquiries]),
        _Timed([(_stored_time(g[4]), g) for g in tickets]),
        first,
        last,
    )


def asked_at(inquiry: StoredInquiry | RateInquiry) -> datetime | None:
    """When the citizen asked (``bridge.store.reports.asked_time``)."""
    return asked_time(inquiry.created_at, inquiry.posted_at)


def _rank(standings: list[Standing], weights: RankWeights) -> list[Standing]:
    """Scores and ranks (equal scores share one); ranked first, best first, then unranked."""
    for s in standings:
        s.score, s.unranked = s.rates.score(weights)
    scores = [s.score for s in standings if s.score is not None]
    for s in standings:
        if s.score is not None:
            s.rank = 1 + sum(1 for other in scores if other > s.score)
    return sorted(standings, key=lambda s: (s.rank is None, s.rank or 0, s.key))


async def _compute_ranking(
    store: Store,
    facts: _Facts | None,
    cfg: GovbridgeConfig,
    period: Period,
    now: datetime,
    department: str | None = None,
    clock: DeadlineClock | None = None,
    *,
    surveys: bool = True,
    start_from: Ranking | None = None,
) -> Ranking:
    """The ranking of ``period`` (whole hours of UTC: local days): the responses and tickets
    of ``facts`` (None: none), then its 回访 results (``surveys``), added to the counts of
    ``start_from`` (a ranking of the same period without them). A group of an hour
    (unanswered inquiries, open tickets) is counted as a whole when every deadline of the
    hour has passed, or none has (``_hour_bounds``); an hour that straddles now is read
    again from the store row by row."""
    ranking_cfg = cfg.ranking
    wanted = [d for d in cfg.departments if department is None or d.id == department]
    depts = {d.id: Standing("department", d.id, d.name, d.id) for d in wanted}
    accounts: dict[str, Standing] = {}
    for acc in cfg.accounts:
        if department is None or acc.department == department:
            accounts[acc.key] = Standing("account", acc.key, acc.key, acc.department)
    if start_from is not None:
        for s in start_from.departments:
            depts[s.key] = Standing(s.level, s.key, s.name, s.department, replace(s.rates))
        for s in start_from.accounts:
            accounts[s.key] = Standing(s.level, s.key, s.name, s.department, replace(s.rates))
    dept_cfg = {d.id: d for d in wanted}
    probes = {
        d.id: d.model_copy(
            update={"sla": {"other": d.sla.get("first_response", ranking_cfg.first_response)}}
        )
        for d in wanted
    }

    clock = clock or DeadlineClock()
    keys: dict[tuple[str, str], str] = {}
    hour_bounds = _HourBounds(clock)

    def sheets(dept: str | None, platform: str, account: str) -> list[Rates]:
        """The department's and the account's counts a row adds to."""
        out = []
        if dept in depts:
            out.append(depts[dept].rates)
        key = keys.get((platform, account))
        if key is None:
            key = keys[(platform, account)] = cfg.key_on(platform, account)
        if key in accounts:
            out.append(accounts[key].rates)
        elif department is None or dept == department:
            known = cfg.account_on(platform, account)
            accounts[key] = Standing("account", key, key, known.department if known else dept)
            out.append(accounts[key].rates)
        return out

    start, end = period.start, period.end
    # 响应率: an unanswered inquiry counts (as late) once its limit has passed
    inquiry_rows = facts.inquiries.timed_between(start, end) if facts is not None else []
    for received, (dept_id, platform, account, asked, replied, n) in inquiry_rows:
        probe = probes.get(dept_id)
        if probe is None:
            continue
        if replied is not None:
            limit = clock.deadline(probe, Category.OTHER, received)
            answered = _ts(replied)
            in_time = answered is not None and (limit is None or answered <= limit)
            counted, in_time_n = n, n if in_time else 0
        else:
            next_hour, earliest, latest, bounded = hour_bounds(probe, Category.OTHER, asked)
            if earliest is None or latest is None:
                continue  # no limit: an unanswered inquiry is never late
            if bounded and latest < now:
                counted, in_time_n = n, 0
            elif bounded and earliest >= now:
                continue  # not answered yet, still within the limit
            else:
                counted, in_time_n = 0, 0
                assert facts is not None
                for text in await store.unanswered_asked(
                    facts.first,
                    facts.last,
                    RANK_LEFT_OUT,
                    ReplyState.POSTED,
                    (dept_id, platform, account),
                    asked,
                    next_hour,
                ):
                    limit = clock.deadline(probe, Category.OTHER, _stored_time(text))
                    counted += limit is not None and now > limit
                if not counted:
                    continue
        for rates in sheets(dept_id, platform, account):
            rates.response_counted += counted
            rates.responded_in_time += in_time_n
    shares: dict[str, float] = dict(ranking_cfg.satisfaction.items())
    for dept_id, platform, account, outcome, solved, satisfaction, n in (
        await store.survey_counts(start, end) if surveys else []  # 解决率, 满意率
    ):
        for rates in sheets(dept_id, platform, account):
            for _ in range(n):  # one by one: the satisfied shares added as they always were
                if outcome == SurveyOutcome.UNRATED:
                    rates.unrated += 1
                elif outcome == SurveyOutcome.NO_RESPONSE:
                    rates.no_response += 1
                    if ranking_cfg.no_response != "exclude":
                        counted_as = ranking_cfg.no_response == "satisfied"
                        rates.resolution_counted += 1
                        rates.satisfaction_counted += 1
                        rates.solved += counted_as
                        rates.satisfied += float(counted_as)
                else:
                    rates.answered += 1
                    if solved is not None:
                        rates.resolution_counted += 1
                        rates.solved += solved
                    if satisfaction is not None:
                        rates.satisfaction_counted += 1
                        rates.satisfied += shares.get(satisfaction, 0.0)
    # 按时率: an open ticket counts (as late) once its deadline has passed
    ticket_rows = facts.tickets.timed_between(start, end) if facts is not None else []
    for created, (dept_id, category, platform, account, at, final_at, done, n) in ticket_rows:
        if dept_id not in depts:
            continue
        cat = Category(category)
        if done:
            deadline = clock.deadline(dept_cfg[dept_id], cat, created)
            finished = _ts(final_at)
            in_time = deadline is None or (finished is not None and finished <= deadline)
            counted, on_time = n, n if in_time else 0
        else:
            next_hour, earliest, latest, bounded = hour_bounds(dept_cfg[dept_id], cat, at)
            if earliest is None or latest is None:
                continue  # no deadline: an open ticket is never late
            if bounded and latest < now:
                counted, on_time = n, 0
            elif bounded and earliest >= now:
                continue  # open and not yet due
            else:
                counted, on_time = 0, 0
                for text in await store.open_created(
                    FINAL, (dept_id, category, platform, account), at, next_hour
                ):
                    deadline = clock.deadline(dept_cfg[dept_id], cat, _stored_time(text))
                    counted += deadline is not None and now > deadline
                if not counted:
                    continue
        for rates in sheets(dept_id, platform, account):
            rates.on_time_counted += counted
            rates.on_time += on_time
    return Ranking(
        period,
        ranking_cfg.weights,
        _rank(list(depts.values()), ranking_cfg.weights),
        _rank(list(accounts.values()), ranking_cfg.weights),
        start_from.as_of if start_from is not None else None,
    )


async def rank_period(
    store: Store,
    cfg: GovbridgeConfig,
    period: Period,
    now: datetime | None = None,
    *,
    department: str | None = None,
) -> Ranking:
    """The rates, scores and ranks of every department and account over ``period``."""
    now = now or datetime.now(UTC)
    facts = await _read_facts(store, period.start, period.end)
    return await _compute_ranking(store, facts, cfg, period, now, department)


@dataclass
class _Kept:
    marks: tuple[int, ...] | None
    at: datetime
    partial: Ranking  # its responses and tickets, no 回访 results


class RankingCache:
    """The monthly rankings kept as computed (the console's; with ``shared``, in the store
    too, for its other processes and the next one to start, under the same rules): each
    department's and account's responses and tickets counted (the 回访 results are counted
    afresh on every ask: a late answer shows at once). A month that is over is used again
    while

    - the store's marks of it are what they were (``month_marks``: its inquiries counted per
      state and per department, its tickets per status: a ticket that reached a final
      status or was reopened, an inquiry ignored or sent to another department, one added
      or removed),
    - and it is younger than ``max_age``: what the marks do not see (a deadline passing for
      an open ticket or an unanswered inquiry of a month just over, a reply posted late, a
      category changed, an inquiry recorded after its month with an earlier platform time)
      shows at most that late.

    The current month changes all the time: it is used again for ``current_max_age`` only,
    or, when the caller counts it again in the background meanwhile (``stale_current``), for
    up to ``max_age``. The page says when each month was counted (``as_of``).
    """

    def __init__(
        self,
        max_age: timedelta = timedelta(minutes=10),
        current_max_age: timedelta = timedelta(minutes=1),
        shared: bool = False,
    ) -> None:
        self.max_age = max_age
        self.current_max_age = current_max_age
        self.kept: dict[tuple[int, str], _Kept] = {}
        # ``shared``: the months kept in the store too (``kept_answers``), for the other
        # processes and the next one: used under the same rules (a month over while its marks
        # are as they were and younger than ``max_age``; the month of now for
        # ``current_max_age``, or ``max_age`` with ``stale_current``), by a process of the
        # same configuration
        self.shared = shared

    def covers(
        self,
        cfg: GovbridgeConfig,
        now: datetime,
        months: int = 12,
        ending: datetime | None = None,
        stale_current: bool = False,
    ) -> bool:
        """Whether every month ``rank_months`` would be asked for is kept and young enough
        to be used again (by age alone: a month that is over whose marks changed is
        counted again all the same)."""
        current = last_months(now, 1)[0]
        for p in last_months(min(ending or now, now), months):
            k = self.kept.get((id(cfg), p.label))
            if k is None or not k.at <= now:
                return False
            over = p.end <= current.start
            if now > k.at + (self.max_age if over or stale_current else self.current_max_age):
                return False
        return True


async def rank_months(
    store: Store,
    cfg: GovbridgeConfig,
    now: datetime | None = None,
    months: int = 12,
    ending: datetime | None = None,
    cache: RankingCache | None = None,
    stale_current: bool = False,
) -> list[Ranking]:
    """The ranking of each of the ``months`` months up to the month of ``ending`` (default:
    the current month, so far), oldest first, from one read of the store (of the months not
    kept in ``cache``, as ``RankingCache`` says; ``stale_current``: the caller counts the
    current month again in the background)."""
    now = now or datetime.now(UTC)
    periods = last_months(min(ending or now, now), months)
    current = last_months(now, 1)[0]
    past = [p for p in periods if p.end <= current.start]
    marks: dict[int, tuple[int, ...]] = {}
    kept: dict[int, _Kept] = {}
    if cache is not None and past:
        marks = await store.month_marks(
            [iso(p.start) for p in past] + [iso(past[-1].end)],
            [d.id for d in cfg.departments],
        )

    def usable(n: int, k: _Kept | None) -> bool:
        """A month that is over: its marks as they were and younger than ``max_age``; the
        current month: counted less than a minute ago (``max_age``, ``stale_current``)."""
        assert cache is not None
        if k is None or not k.at <= now:
            return False
        if n < len(past):
            return k.marks == marks.get(n) and now <= k.at + cache.max_age
        age = cache.max_age if stale_current else cache.current_max_age
        return k.marks is None and now <= k.at + age

    if cache is not None:
        for n, p in enumerate(periods):
            k = cache.kept.get((id(cfg), p.label))
            if usable(n, k):
                assert k is not None
                kept[n] = k
    if cache is not None and cache.shared:  # months counted by another process: same rules
        for n, p in enumerate(periods):
            if n not in kept and usable(n, k := await _stored_month(store, cfg, p)):
                assert k is not None
                kept[n] = cache.kept[(id(cfg), p.label)] = k
    todo = [p for n, p in enumerate(periods) if n not in kept]
    facts = await _read_facts(store, todo[0].start, todo[-1].end) if todo else None
    clock = DeadlineClock()  # one for the months: each working day looked up once
    out = []
    for n, p in enumerate(periods):
        if cache is None:
            out.append(await _compute_ranking(store, facts, cfg, p, now, clock=clock))
            continue
        if n not in kept:
            partial = await _compute_ranking(store, facts, cfg, p, now, clock=clock, surveys=False)
            partial.as_of = now
            kept[n] = cache.kept[(id(cfg), p.label)] = _Kept(
                marks.get(n) if n < len(past) else None, now, partial
            )
            if cache.shared and (n in marks or n >= len(past)):
                await _store_month(store, cfg, kept[n])
        out.append(await _compute_ranking(store, None, cfg, p, now, start_from=kept[n].partial))
    return out


def _month_key(cfg: GovbridgeConfig, label: str) -> str:
    """A month's row in ``kept_answers``: of this configuration only (what a ranking counts
    depends on its departments, accounts, weights, deadlines and calendar)."""
    digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]
    return f"ranking {digest} {label}"


def _exact(cls: type[Any], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
        raise ValueError(f"not a {cls.__name__}")
    return data


def _stamp(text: Any) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("a time without a time zone")
    return at.astimezone(UTC)


def encode_month(k: _Kept) -> dict[str, Any]:
    """A month's counted responses and tickets (no 回访 results), its marks and when."""
    r = k.partial
    return {
        "marks": list(k.marks) if k.marks is not None else None,
        "at": k.at.isoformat(),
        "period": {
            "start": r.period.start.isoformat(),
            "end": r.period.end.isoformat(),
            "label": r.period.label,
        },
        "weights": r.weights.model_dump(),
        "departments": [asdict(x) for x in r.departments],
        "accounts": [asdict(x) for x in r.accounts],
        "as_of": r.as_of.isoformat() if r.as_of is not None else None,
    }


def decode_month(data: Any) -> _Kept:
    """``encode_month`` read back exactly; ``ValueError``/``TypeError``/``KeyError`` for a
    row of another shape."""

    def standing(x: Any) -> Standing:
        x = _exact(Standing, x)
        return Standing(**{**x, "rates": Rates(**_exact(Rates, x["rates"]))})

    marks = data["marks"]
    period = data["period"]
    partial = Ranking(
        Period(_stamp(period["start"]), _stamp(period["end"]), str(period["label"])),
        RankWeights.model_validate(data["weights"]),
        [standing(x) for x in data["departments"]],
        [standing(x) for x in data["accounts"]],
        _stamp(data["as_of"]) if data["as_of"] is not None else None,
    )
    return _Kept(
        tuple(int(m) for m in marks) if marks is not None else None, _stamp(data["at"]), partial
    )


async def _stored_month(store: Store, cfg: GovbridgeConfig, p: Period) -> _Kept | None:
    """The month ``p`` as another process counted it, if one is kept and readable."""
    try:
        row = await store.kept_answer(_month_key(cfg, p.label))
        if row is None:
            return None
        k = decode_month(json.loads(row[1]))
        return k if k.partial.period == p else None
    except Exception:  # a cache: what cannot be read is counted again
        return None


async def _store_month(store: Store, cfg: GovbridgeConfig, k: _Kept) -> None:
    with contextlib.suppress(Exception):  # a cache: not written, counted again elsewhere
        await store.keep_answer(
            _month_key(cfg, k.partial.period.label), k.at, json.dumps(encode_month(k))
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _fraction(rates: Rates, name: str) -> str:
    part, whole = {
        "response": (rates.responded_in_time, rates.response_counted),
        "resolution": (rates.solved, rates.resolution_counted),
        "satisfaction": (rates.satisfied, rates.satisfaction_counted),
        "on_time": (rates.on_time, rates.on_time_counted),
    }[name]
    return f"{part:g}/{whole}"


def formula(weights: RankWeights) -> str:
    """The score's formula as configured, e.g. ``30 响应率 + 35 解决率 + 35 满意率``."""
    terms = [f"{getattr(weights, n):g} {RATE_LABELS[n]}" for n in RATE_NAMES if getattr(weights, n)]
    total = sum(getattr(weights, n) for n in RATE_NAMES)
    text = " + ".join(terms)
    return text if total == 100 else f"({text}) × 100 / {total:g}"


def render_rank_table(ranking: Ranking) -> str:
    p = ranking.period.as_dict()
    lines = [
        f"ranking {p['label']} ({p['first_day']} – {p['last_day']}, CST);"
        f" score = {formula(ranking.weights)} (an example weighting, not an official formula)"
    ]
    for title, standings in (("department", ranking.departments), ("account", ranking.accounts)):
        head = (
            f"{'rank':>4}  {pad(title, 22)}"
            + "".join(f"{pad(RATE_LABELS[n], 8)}{'':>10}" for n in RATE_NAMES)
            + f"{'score':>7}"
        )
        lines += ["", head, "-" * len(head)]
        for s in standings:
            cells = "".join(
                f"{_pct(s.rates.rate(n)):>7} {('(' + _fraction(s.rates, n) + ')'):<10}"
                for n in RATE_NAMES
            )
            rank = "-" if s.rank is None else str(s.rank)
            score = "-" if s.score is None else f"{s.score:.2f}"
            lines.append(f"{rank:>4}  {pad(s.name, 22)}{cells}{score:>7}")
        for s in standings:
            if s.rank is None:
                nothing = ", ".join(RATE_LABELS[n] for n in s.unranked)
                lines.append(f"not ranked: {s.name}: nothing to count for {nothing}")
    return "\n".join(lines)


def render_rank_json(ranking: Ranking) -> str:
    return json.dumps(ranking.as_dict(), ensure_ascii=False, indent=2)


RANK_COLUMNS = (
    "level",
    "rank",
    "key",
    "name",
    "department",
    "score",
    *(f"{n}_rate" for n in RATE_NAMES),
    *(f.name for f in fields(Rates)),
)


def render_rank_csv(ranking: Ranking) -> str:
    """One row per department, then one per account, ranked."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RANK_COLUMNS)
    for s in [*ranking.departments, *ranking.accounts]:
        row = s.as_dict()
        writer.writerow(
            [
                ""
                if row[c] is None
                else f"{row[c]:.4f}"
                if isinstance(row[c], float) and c.endswith("_rate")
                else f"{row[c]:g}"
                if isinstance(row[c], float)
                else row[c]
                for c in RANK_COLUMNS
            ]
        )
    return out.getvalue()


def render_rank_html(ranking: Ranking) -> str:
    """A standalone page: the departments' ranking, then the accounts', with the formula."""
    p = ranking.period.as_dict()

    def table(title: str, standings: list[Standing]) -> str:
        heads = ["名次 rank", title, *(RATE_LABELS[n] for n in RATE_NAMES), "得分 score"]
        rows = []
        for s in standings:
            cells = [
                "-" if s.rank is None else str(s.rank),
                escape(s.name),
                *(
                    f"{_pct(s.rates.rate(n))} <small>({_fraction(s.rates, n)})</small>"
                    for n in RATE_NAMES
                ),
                "-" if s.score is None else f"{s.score:.2f}",
            ]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return (
            "<table><thead><tr>"
            + "".join(f'<th scope="col">{h}</th>' for h in heads)
            + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )

    period = f"{p['label']} ({p['first_day']} – {p['last_day']})"
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>govbridge 排名 ranking {escape(period)}</title><style>"
        "body{font-family:sans-serif;color:#111;margin:1.5em}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #999;padding:.3em .5em}th{background:#eee}"
        "small{color:#555}</style></head><body>"
        f"<h1>月度排名 Ranking</h1><p>期间 period: {escape(period)}, CST</p>"
        f"<p>得分 score = {escape(formula(ranking.weights))}"
        " (示例权重，非官方公式 / an example weighting, not an official formula)</p>"
        f"<h2>部门 departments</h2>{table('部门 department', ranking.departments)}"
        f"<h2>账号 accounts</h2>{table('账号 account', ranking.accounts)}"
        "</body></html>\n"
    )
