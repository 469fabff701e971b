"""Department performance from the store: how each account serves the public.

Per department: inquiries received and ignored, tickets, follow-ups, replies posted, median
time to the first reply, tickets resolved and within their SLA, open tickets past deadline,
replies awaiting approval and needing reconciliation.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from html import escape
from typing import Any

from bridge.store import Store, StoredInquiry
from bridge.templates import deadline_for
from schemas.config import DepartmentConfig, GovbridgeConfig
from schemas.vocab import FINAL_STATUSES, Category, CreateState, InquiryState, ReplyState

FINAL = tuple(sorted(FINAL_STATUSES))
# Days are counted in China Standard Time: a department's day, not UTC's.
CST = timezone(timedelta(hours=8), "CST")


@dataclass
class DepartmentReport:
    """One department over a period: the work that arrived in it (inquiries received, tickets
    opened and what became of them, replies posted), and the backlog as of now (open tickets
    past or near their deadline, replies awaiting approval, creates to reconcile, inquiries
    unanswered beyond the first-response limit)."""

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


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``24h``, ``2w`` before now, or a date / ISO time (read in CST when it has no
    offset)."""
    now = now or datetime.now(UTC)
    units = {"h": 3600, "d": 86400, "w": 7 * 86400}
    if len(text) > 1 and text[:-1].isdigit() and text[-1] in units:
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: give 7d, 24h, 2w, a date or an ISO time") from None
    return (when if when.tzinfo else when.replace(tzinfo=CST)).astimezone(UTC)


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
    department: str | None = None,
) -> tuple[list[DepartmentReport], dict[str, int]]:
    """Reports per configured department (or only ``department``) for the period from
    ``since`` (everything when None) to ``now``, plus ignored inquiries counted by reason."""
    now = now or datetime.now(UTC)
    start = since or datetime.min.replace(tzinfo=UTC)

    def in_period(value: str | None) -> bool:
        when = _ts(value)
        return when is not None and start <= when <= now

    inquiries = await store.list_inquiries()
    tickets = await store.list_tickets()
    replies = await store.list_replies()
    resolved_at: dict[tuple[str, str], datetime] = {}
    for row in await store.db.fetchall(
        "SELECT department, ticket_id, MIN(recorded_at) AS at FROM ticket_events"
        " WHERE applied = 1 AND status IN (?, ?, ?) GROUP BY department, ticket_id",
        FINAL,
    ):
        at = _ts(row["at"])
        if at is not None:
            resolved_at[(row["department"], row["ticket_id"])] = at
    flagged = await store.list_create_attempts(CreateState.NEEDS_RECONCILIATION)
    first_reply: dict[str, datetime] = {}
    for r in replies:
        posted = _ts(r.posted_at)
        if r.state == ReplyState.POSTED and posted is not None:
            first_reply[r.inquiry_id] = min(first_reply.get(r.inquiry_id, posted), posted)
    by_id = {i.inquiry_id: i for i in inquiries}
    ignored: dict[str, int] = {}
    wanted = [d for d in cfg.departments if department is None or d.id == department]
    reports = {d.id: DepartmentReport(d.id, d.name) for d in wanted}
    days = _days(since or min((_ts(i.created_at) or now for i in inquiries), default=now), now)
    daily: dict[str, dict[str, dict[str, Any]]] = {
        d: {day: {"day": day, "received": 0, "resolved": 0} for day in days} for d in reports
    }
    waits: dict[str, list[float]] = {d: [] for d in reports}
    durations: dict[str, list[float]] = {d: [] for d in reports}
    for i in inquiries:
        received = _ts(i.created_at)
        if i.state == InquiryState.IGNORED:
            if in_period(i.created_at) and department is None:
                ignored[i.reason or "?"] = ignored.get(i.reason or "?", 0) + 1
            continue
        rep = reports.get(i.department or "")
        if rep is None or received is None:
            continue
        answered = first_reply.get(i.inquiry_id)
        if answered is None and i.state != InquiryState.APPENDED:
            dept = cfg.department(rep.department)
            limit = _first_response_deadline(dept, i, received)
            if limit is not None and now > limit:
                rep.unanswered_overdue += 1
                account = f"{i.platform}:{i.account}"
                if account not in rep.zombie_accounts:
                    rep.zombie_accounts.append(account)
        if not in_period(i.created_at):
            continue
        rep.inquiries += 1
        rep.appended += i.state == InquiryState.APPENDED
        daily[rep.department][_day(received)]["received"] += 1
        if answered:
            waits[rep.department].append((answered - received).total_seconds())
    for t in tickets:
        rep = reports.get(t.department)
        if rep is None:
            continue
        dept = cfg.department(t.department)
        inquiry = by_id.get(t.inquiry_id)
        category = Category((inquiry.category if inquiry else None) or "other")
        created = _ts(t.created_at) or now
        deadline = deadline_for(dept, category, created)
        done = resolved_at.get((t.department, t.ticket_id))
        if t.status not in FINAL and deadline is not None:  # the backlog, as of now
            if now > deadline:
                rep.open_overdue += 1
            elif deadline - now <= cfg.sla.warn_before:
                rep.open_at_risk += 1
        if done is not None and start <= done <= now and _day(done) in daily[rep.department]:
            daily[rep.department][_day(done)]["resolved"] += 1
        if not in_period(t.created_at):
            continue
        rep.tickets += 1
        if t.status in FINAL:
            rep.resolved += 1
            if deadline is None or (done is not None and done <= deadline):
                rep.resolved_in_time += 1
            if done is not None:
                durations[rep.department].append((done - created).total_seconds())
    for r in replies:
        rep = reports.get(r.department)
        if rep is None:
            continue
        rep.replies_posted += r.state == ReplyState.POSTED and in_period(r.posted_at)
        rep.awaiting_approval += r.state == ReplyState.AWAITING_APPROVAL
    for f in flagged:
        if f.department in reports:
            reports[f.department].needs_reconciliation += 1
    for dept_id, rep in reports.items():
        if waits[dept_id]:
            rep.median_first_reply_s = statistics.median(waits[dept_id])
        if durations[dept_id]:
            rep.median_resolution_s = statistics.median(durations[dept_id])
        rep.daily = list(daily[dept_id].values())
    return list(reports.values()), ignored


def _first_response_deadline(
    dept: DepartmentConfig, inquiry: StoredInquiry, received: datetime
) -> datetime | None:
    """The first-response limit (``sla.first_response``), else the category's limit."""
    if "first_response" in dept.sla:
        probe = dept.model_copy(update={"sla": {"other": dept.sla["first_response"]}})
        return deadline_for(probe, Category.OTHER, received)
    return deadline_for(dept, Category(inquiry.category or "other"), received)


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
