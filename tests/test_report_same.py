"""The console's dashboard (``department_reports``), ranking (``rank_months``), inspection and
overdue list report the same on a seeded store as they did before they were made fast at
100,000 inquiries (issue 23, must-show 2): the dashboard against the implementation that read
every row into Python (kept here as the reference), the others against figures pinned from
the implementation before the change."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from bridge.config import parse_config
from bridge.deadlines import deadline_for
from bridge.inspect.inspection import inspect_accounts
from bridge.reports.performance import (
    BACKLOG_STATES,
    FINAL,
    DepartmentReport,
    Period,
    Ranking,
    Rates,
    Standing,
    _day,
    _days,
    _first_response_deadline,
    _rank,
    _ts,
    asked_at,
    department_reports,
    last_months,
    rank_months,
)
from bridge.store import NewInquiry, Store, iso
from bridge.store.reports import RateInquiry, RateTicket
from bridge.store.surveys import SurveyResult
from schemas.config import GovbridgeConfig
from schemas.states import SurveyOutcome
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
T = TypeVar("T")
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


# The ranking as it was before issue 23's must-show 2 was finished (bridge/reports/performance.py
# at 9b0c3e8): every inquiry, ticket and 回访 result of the months read as a row, each counted
# in Python; kept as the reference.
@dataclass
class RefFacts:
    inquiries: list[tuple[datetime, RateInquiry]]
    tickets: list[tuple[datetime, RateTicket]]
    results: list[tuple[datetime, SurveyResult]]

    @staticmethod
    def between(
        rows: list[tuple[datetime, T]], start: datetime, end: datetime
    ) -> list[tuple[datetime, T]]:
        return sorted((p for p in rows if start <= p[0] < end), key=lambda p: p[0])

    def inquiries_between(
        self, start: datetime, end: datetime
    ) -> list[tuple[datetime, RateInquiry]]:
        return self.between(self.inquiries, start, end)


async def reference_rank_months(store: Store, cfg: GovbridgeConfig, now: datetime) -> list[Ranking]:
    periods = last_months(now, 12)
    since, until = periods[0].start, periods[-1].end
    first, last = iso(since), iso(until)
    inquiries = await store.rate_inquiries(
        first, last, ReplyState.POSTED, REPLY_AWAITING_STATES, REPLY_QUEUED_STATES
    )
    tickets = await store.rate_tickets(first, last, FINAL)
    results = await store.survey_results(since, until)
    facts = RefFacts(
        [(when, i) for i in inquiries if (when := asked_at(i)) is not None],
        [(when, t) for t in tickets if (when := _ts(t.created_at)) is not None],
        [(when, r) for r in results if (when := _ts(r.concluded_at)) is not None],
    )
    return [reference_ranking(facts, cfg, p, now) for p in periods]


def reference_ranking(
    facts: RefFacts,
    cfg: GovbridgeConfig,
    period: Period,
    now: datetime,
    department: str | None = None,
) -> Ranking:
    ranking_cfg = cfg.ranking
    wanted = [d for d in cfg.departments if department is None or d.id == department]
    depts = {d.id: Standing("department", d.id, d.name, d.id) for d in wanted}
    accounts: dict[str, Standing] = {}
    for acc in cfg.accounts:
        if department is None or acc.department == department:
            accounts[acc.key] = Standing("account", acc.key, acc.key, acc.department)
    dept_cfg = {d.id: d for d in wanted}
    probes = {
        d.id: d.model_copy(
            update={"sla": {"other": d.sla.get("first_response", ranking_cfg.first_response)}}
        )
        for d in wanted
    }

    keys: dict[tuple[str, str], str] = {}

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
    for received, i in facts.inquiries_between(start, end):  # 响应率
        if (
            i.state in (InquiryState.IGNORED, InquiryState.SURVEY_ANSWER)  # 回访 answers too
            or i.department not in probes
            or received is None
        ):
            continue
        limit = deadline_for(probes[i.department], Category.OTHER, received)
        answered = _ts(i.first_reply_at)
        if answered is None and (limit is None or now <= limit):
            continue  # not answered yet, still within the limit
        in_time = answered is not None and (limit is None or answered <= limit)
        for rates in sheets(i.department, i.platform, i.account):
            rates.response_counted += 1
            rates.responded_in_time += in_time
    shares: dict[str, float] = dict(ranking_cfg.satisfaction.items())
    for res in [r for _, r in facts.between(facts.results, start, end)]:  # 解决率, 满意率
        for rates in sheets(res.department, res.platform, res.account):
            if res.outcome == SurveyOutcome.UNRATED:
                rates.unrated += 1
            elif res.outcome == SurveyOutcome.NO_RESPONSE:
                rates.no_response += 1
                if ranking_cfg.no_response != "exclude":
                    counted = ranking_cfg.no_response == "satisfied"
                    rates.resolution_counted += 1
                    rates.satisfaction_counted += 1
                    rates.solved += counted
                    rates.satisfied += float(counted)
            else:
                rates.answered += 1
                if res.solved is not None:
                    rates.resolution_counted += 1
                    rates.solved += res.solved
                if res.satisfaction is not None:
                    rates.satisfaction_counted += 1
                    rates.satisfied += shares.get(res.satisfaction, 0.0)
    for t in [t for _, t in facts.between(facts.tickets, start, end)]:  # 按时率
        created = _ts(t.created_at)
        if t.department not in depts or created is None:
            continue
        assert created is not None
        category = Category(t.category or "other")
        deadline = deadline_for(dept_cfg[t.department], category, created)
        done = _ts(t.final_at)
        if t.status in FINAL:
            in_time = deadline is None or (done is not None and done <= deadline)
        elif deadline is not None and now > deadline:
            in_time = False
        else:
            continue  # open and not yet due
        for rates in sheets(t.department, t.platform or "?", t.account or "?"):
            rates.on_time_counted += 1
            rates.on_time += in_time
    return Ranking(
        period,
        ranking_cfg.weights,
        _rank(list(depts.values()), ranking_cfg.weights),
        _rank(list(accounts.values()), ranking_cfg.weights),
    )


async def test_ranking_reports_what_it_did(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """On both engines: the twelve months' ranking, counted per hour by the store, ranks as
    the reference that read every row (``deadline_for`` asked per row) did: at two clocks,
    and at clocks just before the deadline of an open ticket and the first-response limit
    of an unanswered inquiry (hours that straddle now: read again row by row)."""
    await seed(store)
    cfg = _with_accounts()
    periods = last_months(NOW, 12)
    first, last = iso(periods[0].start), iso(periods[-1].end)
    depts = {d.id: d for d in cfg.departments}
    nows = [NOW, NOW + timedelta(days=3, hours=5)]
    for t in await store.rate_tickets(first, last, FINAL):
        dept = depts.get(t.department)
        if dept is None or t.status in FINAL:
            continue
        due = deadline_for(dept, Category(t.category or "other"), _ts(t.created_at) or NOW)
        if due is not None and NOW - timedelta(days=20) < due < NOW and len(nows) < 5:
            nows.append(due - timedelta(microseconds=1))
    for i in await store.rate_inquiries(
        first, last, ReplyState.POSTED, REPLY_AWAITING_STATES, REPLY_QUEUED_STATES
    ):
        dept = depts.get(i.department or "")
        if dept is None or i.first_reply_at or i.state in ("ignored", "survey_answer"):
            continue
        probe = dept.model_copy(
            update={"sla": {"other": dept.sla.get("first_response", cfg.ranking.first_response)}}
        )
        limit = deadline_for(probe, Category.OTHER, asked_at(i) or NOW)
        if limit is not None and NOW - timedelta(days=20) < limit < NOW and len(nows) < 8:
            nows.append(limit - timedelta(microseconds=1))
    assert len(nows) == 8
    again: dict[str, int] = {"open_created": 0, "unanswered_asked": 0}
    for name in again:
        read = getattr(store, name)

        async def counted(*args: Any, _read: Any = read, _name: str = name) -> Any:
            again[_name] += 1
            return await _read(*args)

        monkeypatch.setattr(store, name, counted)
    for now in nows:
        got = [r.as_dict() for r in await rank_months(store, cfg, now)]
        want = [r.as_dict() for r in await reference_rank_months(store, cfg, now)]
        assert got == want, now
        counted_in = [s for month in got for s in month["departments"] if s["on_time_counted"]]
        assert counted_in and any(
            s["response_counted"] for month in got for s in month["departments"]
        )
    assert again["open_created"] and again["unanswered_asked"], again


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
