"""The console's dashboard (``department_reports``), ranking (``rank_months``), inspection and
overdue list report the same on a seeded store as they did before they were made fast at
100,000 inquiries (issue 23, must-show 2): the dashboard against the implementation that read
every row into Python (kept here as the reference), the others against figures pinned from
the implementation before the change."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.config import parse_config
from bridge.deadlines import DeadlineClock, deadline_for
from bridge.inspect.inspection import inspect_accounts
from bridge.reports.performance import (
    BACKLOG_STATES,
    FINAL,
    DepartmentReport,
    _day,
    _days,
    _first_response_deadline,
    _ts,
    department_reports,
    rank_months,
)
from bridge.store import NewInquiry, Store, iso
from schemas.config import GovbridgeConfig
from schemas.vocab import (
    REPLY_AWAITING_STATES,
    REPLY_QUEUED_STATES,
    Category,
    CreateState,
    InquiryState,
    ReplyState,
)

NOW = datetime(2026, 12, 7, 9, 30, 12, 345678, tzinfo=UTC)
REST = {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}}
DEPARTMENTS = [
    {
        "id": "urban",
        "name": "市城管委",
        "sla": {"complaint": "5wd", "first_response": "1d", "consultation": "3d"},
        "ticketing": REST,
    },
    {
        "id": "water",
        "name": "市水务局",
        "sla": {"consultation": "2wd", "complaint": "36h", "other": "4wd"},
        "ticketing": REST,
    },
    {"id": "quiet", "name": "市园林局", "sla": {}, "ticketing": REST},
]
CFG = parse_config({"departments": DEPARTMENTS}, env={})
CATEGORIES = [c.value for c in Category]
STATES = ["ticketed"] * 6 + ["appended", "ignored", "survey_answer", "held_for_review"]
REASONS = ["spam", "ad", "", None]


async def seed(store: Store, n: int = 400, seed_value: int = 23) -> None:
    """``n`` inquiries over the 40 days before NOW (random microseconds, so no time falls on
    a period's edge), with tickets at every status, replies in every state and a department no
    longer configured."""
    rnd = random.Random(seed_value)

    def at(days_back: float) -> str:
        return (NOW - timedelta(seconds=days_back * 86400 + rnd.random())).isoformat(
            timespec="microseconds"
        )

    finals = ["resolved", "rejected", "closed"]
    for n_ in range(n):
        state = rnd.choice(STATES)
        dept = rnd.choice(["urban", "urban", "water", "gone", "quiet"])
        iid = f"inq_{n_:04d}"
        created = at(rnd.uniform(0, 40))
        await store.record_inquiry(
            NewInquiry(
                inquiry_id=iid,
                platform=rnd.choice(["weibo", "mastodon"]),
                account=rnd.choice(["a1", "a2", "a3"]),
                kind="comment",
                thread_key=f"t{n_}",
                state=state,
                department=None if state == "ignored" else dept,
                category=rnd.choice([*CATEGORIES, None, ""]),
                reason=rnd.choice(REASONS) if state == "ignored" else None,
                posted_at=rnd.choice([None, created]),
            )
        )
        await store.db.execute(
            "UPDATE inquiries SET created_at = ? WHERE inquiry_id = ?", (created, iid)
        )
        base = datetime.fromisoformat(created)
        if state == "ticketed" and rnd.random() < 0.9:
            tid = f"T{n_}"
            await store.record_ticket(
                department=dept,
                ticket_id=tid,
                reference=f"GB-{n_}",
                inquiry_id=iid,
                thread_key=f"t{n_}",
                status="received",
                status_rank=10,
                native_status="NEW",
                status_at=created,
            )
            await store.db.execute(
                "UPDATE tickets SET created_at = ? WHERE department = ? AND ticket_id = ?",
                (created, dept, tid),
            )
            if rnd.random() < 0.45:
                final = rnd.choice(finals)
                await store.apply_status(
                    department=dept,
                    ticket_id=tid,
                    event_id=f"e{n_}",
                    status=final,
                    status_rank=40 if final != "closed" else 90,
                    native_status="DONE",
                    occurred_at=created,
                )
                done = base + timedelta(seconds=rnd.uniform(600, 12 * 86400))
                await store.db.execute(
                    "UPDATE ticket_events SET recorded_at = ? WHERE event_id = ?",
                    (min(done, NOW).isoformat(timespec="microseconds"), f"e{n_}"),
                )
            elif rnd.random() < 0.3:
                await store.apply_status(
                    department=dept,
                    ticket_id=tid,
                    event_id=f"e{n_}",
                    status="in_progress",
                    status_rank=30,
                    native_status="DOING",
                    occurred_at=created,
                )
        for r_ in range(rnd.choice([0, 1, 1, 2])):
            rid = f"r{n_}_{r_}"
            rstate = rnd.choice(
                ["posted", "posted", "posted", "awaiting_approval", "approved", "rejected"]
            )
            await store.add_reply(
                reply_id=rid,
                inquiry_id=iid,
                platform="weibo",
                account="a1",
                department=dept,
                status=None,
                templated=True,
                state="approved" if rstate == "posted" else rstate,
                request_json="{}",
            )
            if rstate == "posted":
                await store.mark_reply(rid, "posted", external_ids=[f"c{rid}"])
                posted = base + timedelta(seconds=rnd.uniform(5, 3 * 86400))
                await store.db.execute(
                    "UPDATE replies SET posted_at = ? WHERE reply_id = ?",
                    (min(posted, NOW).isoformat(timespec="microseconds"), rid),
                )


# The dashboard as it was before issue 23's must-show 2: every inquiry, ticket and reply of
# the store read into Python (bridge/reports/performance.py at 61449a8), kept as the reference.
async def reference_reports(
    store: Store,
    cfg: GovbridgeConfig,
    now: datetime,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    department: str | None = None,
) -> tuple[list[DepartmentReport], dict[str, int]]:
    start = since or datetime.min.replace(tzinfo=UTC)

    def in_period(value: str | None) -> bool:
        when = _ts(value)
        if when is None or when < start:
            return False
        return when < until if until is not None else when <= now

    inquiries = await store.list_inquiries()
    tickets = await store.list_tickets()
    replies = await store.list_replies()
    resolved_at: dict[tuple[str, str], datetime] = {}
    for key, first in (await store.first_applied(FINAL)).items():
        at = _ts(first)
        if at is not None:
            resolved_at[key] = at
    flagged = await store.list_create_attempts(CreateState.NEEDS_RECONCILIATION)
    first_reply: dict[str, datetime] = {}
    in_backlog: set[str] = set()
    for r in replies:
        posted = _ts(r.posted_at)
        if r.state == ReplyState.POSTED and posted is not None:
            first_reply[r.inquiry_id] = min(first_reply.get(r.inquiry_id, posted), posted)
        elif r.state in BACKLOG_STATES:
            in_backlog.add(r.inquiry_id)
    by_id = {i.inquiry_id: i for i in inquiries}
    ignored: dict[str, int] = {}
    wanted = [d for d in cfg.departments if department is None or d.id == department]
    reports = {d.id: DepartmentReport(d.id, d.name) for d in wanted}
    last = now if until is None else min(now, until - timedelta(microseconds=1))
    days = _days(since or min((_ts(i.created_at) or now for i in inquiries), default=now), last)
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
        if i.state == InquiryState.SURVEY_ANSWER:
            continue
        rep = reports.get(i.department or "")
        if rep is None or received is None:
            continue
        answered = first_reply.get(i.inquiry_id)
        if answered is None and i.state != InquiryState.APPENDED and i.inquiry_id not in in_backlog:
            dept = cfg.department(rep.department)
            limit = _first_response_deadline(dept, i.category, received)
            if limit is not None and now > limit:
                rep.unanswered_overdue += 1
                account = cfg.key_on(i.platform, i.account)
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
        if t.status not in FINAL and deadline is not None:
            if now > deadline:
                rep.open_overdue += 1
            elif deadline - now <= cfg.sla.warn_before:
                rep.open_at_risk += 1
        if done is not None and in_period(done.isoformat()) and _day(done) in daily[rep.department]:
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


PERIODS = [
    {"since": NOW - timedelta(days=30)},
    {"since": NOW - timedelta(days=7)},
    {"since": NOW - timedelta(hours=20)},
    {"since": NOW - timedelta(days=20), "until": NOW - timedelta(days=9, hours=3)},
    {"since": NOW - timedelta(days=30), "department": "urban"},
    {"since": NOW - timedelta(days=10), "department": "water"},
    {},  # everything
]


async def test_dashboard_reports_what_it_did(store: Store) -> None:
    """On both engines, every period and two clocks."""
    await seed(store)
    for period in PERIODS:
        for now in (NOW, NOW + timedelta(days=3, hours=5)):
            want = await reference_reports(store, CFG, now, **period)
            got = await department_reports(store, CFG, now, **period)
            assert [r.as_dict() for r in got[0]] == [r.as_dict() for r in want[0]], period
            assert got[1] == want[1], period


async def test_the_seed_covers_what_the_dashboard_counts(sqlite_store: Store) -> None:
    """The comparison above is worth something only if the seeded store has every kind of
    figure in it."""
    seeded = sqlite_store
    await seed(seeded)
    reports, ignored = await reference_reports(seeded, CFG, NOW, since=NOW - timedelta(days=30))
    total = {
        f: sum(getattr(r, f) for r in reports)
        for f in (
            "inquiries", "appended", "tickets", "resolved", "resolved_in_time", "open_overdue",
            "open_at_risk", "replies_posted", "awaiting_approval", "unanswered_overdue",
        )
    }  # fmt: skip
    assert all(v > 0 for v in total.values()), total
    assert total["resolved_in_time"] < total["resolved"]
    assert len(ignored) >= 2
    assert any(r.zombie_accounts for r in reports)


async def test_ranking_reports_what_it_did(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twelve months' ranking with each department's working days looked up once
    (``DeadlineClock``) ranks as it did with ``deadline_for`` asked for every row."""
    await seed(sqlite_store)
    cfg = CFG
    for now in (NOW, NOW + timedelta(days=3, hours=5)):
        got = [r.as_dict() for r in await rank_months(sqlite_store, cfg, now)]
        with monkeypatch.context() as m:
            m.setattr(
                DeadlineClock,
                "deadline",
                lambda self, dept, category, start: deadline_for(dept, category, start),
            )
            want = [r.as_dict() for r in await rank_months(sqlite_store, cfg, now)]
        assert got == want
        counted = [s for month in got for s in month["departments"] if s["on_time_counted"]]
        assert counted and any(s["response_counted"] for month in got for s in month["departments"])


def _with_accounts() -> GovbridgeConfig:
    data = {
        "departments": DEPARTMENTS,
        "accounts": [
            {
                "adapter": "webhook",
                "handle": handle,
                "department": dept,
                "platform": platform,
                "secret": "s" * 16,
                "reply_url": "http://127.0.0.1:9/r",
            }
            for platform, handle, dept in (
                ("weibo", "a1", "urban"),
                ("weibo", "a2", "water"),
                ("mastodon", "a3", "quiet"),
            )
        ],
    }
    return parse_config(data, env={})


# The inspection's count as it was (bridge/inspect/inspection.py at 61449a8): every inquiry
# of the period read as a slim row, counted in Python.
async def reference_counts(
    store: Store, cfg: GovbridgeConfig, now: datetime, start: datetime
) -> dict[str, tuple[int, int, int, int, int, float | None]]:
    out: dict[str, list[int]] = {a.key: [0, 0, 0, 0, 0] for a in cfg.accounts}
    waits: dict[str, list[float]] = {a.key: [] for a in cfg.accounts}
    for i in await store.rate_inquiries(
        iso(start),
        iso(now + timedelta(microseconds=1)),
        ReplyState.POSTED,
        REPLY_AWAITING_STATES,
        REPLY_QUEUED_STATES,
    ):
        received = i.asked
        account = cfg.account_on(i.platform, i.account)
        if account is None or received is None:
            continue
        if i.state in (InquiryState.IGNORED, InquiryState.SURVEY_ANSWER):
            continue
        if not start <= received <= now:
            continue
        row = out[account.key]
        row[0] += 1
        first = _ts(i.first_reply_at)
        if first is not None:
            row[1] += 1
            waits[account.key].append((first - received).total_seconds())
        elif i.awaiting:
            row[2] += 1
        elif i.queued:
            row[3] += 1
        elif now - received > cfg.inspection.unanswered_after:
            row[4] += 1
    return {
        k: (*v, statistics.median(waits[k]) if waits[k] else None)  # type: ignore[misc]
        for k, v in out.items()
    }


async def test_inspection_reports_what_it_did(store: Store) -> None:
    """On both engines: each account's received, answered, awaiting, queued and unanswered
    inquiries and median first response, over three periods and two clocks."""
    await seed(store)
    cfg = _with_accounts()
    for now in (NOW, NOW + timedelta(days=3, hours=5)):
        for days in (30, 7, 1):
            start = now - timedelta(days=days)
            want = await reference_counts(store, cfg, now, start)
            rows = await inspect_accounts(store, cfg, {}, now, since=start)
            got = {
                r.account: (
                    r.received,
                    r.answered,
                    r.awaiting_approval,
                    r.waiting_to_post,
                    r.unanswered,
                    r.median_first_response_s,
                )
                for r in rows
            }
            assert got == want, (now, days)
            if days == 30:  # every count has something in it
                assert all(sum(w[k] for w in want.values()) for k in range(5)), want
