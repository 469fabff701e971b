"""Department performance from the store: how each account serves the public.

Per department: inquiries received and ignored, tickets, follow-ups, replies posted, median
time to the first reply, tickets resolved and within their SLA, open tickets past deadline,
replies awaiting approval and needing reconciliation.
"""

from __future__ import annotations

import statistics
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.store import SqlStore
from bridge.templates import deadline_for
from schemas.config import GovbridgeConfig
from schemas.vocab import Category

FINAL = ("resolved", "rejected", "closed")


@dataclass
class DepartmentReport:
    department: str
    name: str
    inquiries: int = 0
    appended: int = 0
    tickets: int = 0
    resolved: int = 0
    resolved_in_time: int = 0
    open_overdue: int = 0
    replies_posted: int = 0
    awaiting_approval: int = 0
    needs_reconciliation: int = 0
    median_first_reply_s: float | None = None

    @property
    def in_time_rate(self) -> float | None:
        return self.resolved_in_time / self.resolved if self.resolved else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_time_rate": self.in_time_rate}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


async def department_reports(
    store: SqlStore, cfg: GovbridgeConfig, now: datetime | None = None
) -> tuple[list[DepartmentReport], dict[str, int]]:
    """Reports per configured department, plus ignored inquiries counted by reason."""
    now = now or datetime.now(UTC)
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
    flagged = await store.list_create_attempts("needs_reconciliation")
    first_reply: dict[str, datetime] = {}
    for r in replies:
        posted = _ts(r.posted_at)
        if r.state == "posted" and posted is not None:
            first_reply[r.inquiry_id] = min(first_reply.get(r.inquiry_id, posted), posted)
    by_id = {i["inquiry_id"]: i for i in inquiries}
    ignored: dict[str, int] = {}
    reports = {d.id: DepartmentReport(d.id, d.name) for d in cfg.departments}
    waits: dict[str, list[float]] = {d: [] for d in reports}
    for i in inquiries:
        if i["state"] == "ignored":
            ignored[i["reason"] or "?"] = ignored.get(i["reason"] or "?", 0) + 1
            continue
        rep = reports.get(i["department"] or "")
        if rep is None:
            continue
        rep.inquiries += 1
        rep.appended += i["state"] == "appended"
        received, answered = _ts(i["created_at"]), first_reply.get(i["inquiry_id"])
        if received and answered:
            waits[rep.department].append((answered - received).total_seconds())
    for t in tickets:
        rep = reports.get(t["department"])
        if rep is None:
            continue
        rep.tickets += 1
        dept = cfg.department(t["department"])
        inquiry = by_id.get(t["inquiry_id"])
        category = Category((inquiry or {}).get("category") or "other")
        created = _ts(t["created_at"]) or now
        deadline = deadline_for(dept, category, created)
        done = resolved_at.get((t["department"], t["ticket_id"]))
        if t["status"] in FINAL:
            rep.resolved += 1
            if deadline is None or (done is not None and done <= deadline):
                rep.resolved_in_time += 1
        elif deadline is not None and now > deadline:
            rep.open_overdue += 1
    for r in replies:
        rep = reports.get(r.department)
        if rep is None:
            continue
        rep.replies_posted += r.state == "posted"
        rep.awaiting_approval += r.state == "awaiting_approval"
    for f in flagged:
        if f["department"] in reports:
            reports[f["department"]].needs_reconciliation += 1
    for dept_id, values in waits.items():
        if values:
            reports[dept_id].median_first_reply_s = statistics.median(values)
    return list(reports.values()), ignored


def render_table(reports: list[DepartmentReport], ignored: dict[str, int]) -> str:
    head = (
        f"{'department':<14}{'inquiries':>10}{'tickets':>8}{'resolved':>9}{'in SLA':>8}"
        f"{'overdue':>8}{'replies':>8}{'awaiting':>9}{'first reply':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in reports:
        rate = f"{r.in_time_rate:.0%}" if r.in_time_rate is not None else "-"
        wait = "-" if r.median_first_reply_s is None else _human(r.median_first_reply_s)
        lines.append(
            f"{pad(r.name, 14)}{r.inquiries:>10}{r.tickets:>8}{r.resolved:>9}{rate:>8}"
            f"{r.open_overdue:>8}{r.replies_posted:>8}{r.awaiting_approval:>9}{wait:>12}"
        )
    if ignored:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(ignored.items()))
        lines.append(f"ignored as noise: {sum(ignored.values())} ({reasons})")
    return "\n".join(lines)


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
