"""The three rates (响应率, 解决率, 满意率), the on-time rate, the score and the monthly ranking
(issue 22, must-show 4): a seeded November 2026 with known 回访 answers, every figure
computed by hand below, checked in ``govbridge report --period 2026-11 --rank`` in all four
formats; the 回访 results' store on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import bridge.reports.performance as performance
from bridge.cli.report import run_report
from bridge.reports.performance import (
    Period,
    RankingCache,
    Rates,
    Standing,
    _rank,
    last_months,
    parse_period,
    rank_months,
    rank_period,
)
from bridge.store import NewInquiry, SqlStore, open_store
from bridge.triage.role import _inquiry_row
from bridge.triage.survey import parse_answer
from schemas.config import RankWeights
from schemas.messages import Inquiry
from schemas.vocab import InquiryKind
from tests.conftest import bridge_config, config_toml, running_bridge
from tests.pg import pg_database

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)  # Monday 7 December, 12:00 in Beijing


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def month_config(tmp_path: Path, **ranking: Any) -> Any:
    rest = {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}}
    return bridge_config(
        tmp_path,
        departments=[
            {"id": "urban", "name": "市城管委", "sla": {"complaint": "5wd"}, "ticketing": rest},
            {
                "id": "water",
                "name": "市水务局",
                "sla": {"first_response": "10m", "consultation": "2wd"},
                "ticketing": rest,
            },
            {"id": "parks", "name": "市园林局", "ticketing": rest},
        ],
        accounts=[
            {
                "adapter": "weibo",
                "handle": "cg_weibo",
                "department": "urban",
                "base_url": "http://127.0.0.1:9/2/",
                "token": "t",
            },
            {
                "adapter": "webhook",
                "handle": "hotline",
                "department": "urban",
                "platform": "hotline12345",
                "secret": "s" * 16,
                "reply_url": "http://127.0.0.1:9/replies",
            },
            {
                "adapter": "mastodon",
                "handle": "sw_masto",
                "department": "water",
                "base_url": "http://127.0.0.1:9",
                "token": "t",
            },
        ],
        **({"ranking": ranking} if ranking else {}),
    )


ACCOUNTS = {"weibo": "cg_weibo", "hotline12345": "hotline", "mastodon": "sw_masto"}
PLATFORMS = {"wb": "weibo", "hl": "hotline12345", "md": "mastodon"}
DEPARTMENTS = {"u": ("urban", "complaint"), "w": ("water", "consultation")}

# November 2026 in Beijing is 2026-10-31 16:00 UTC to 2026-11-30 16:00 UTC; no holiday in it.
# (id: u… urban complaints, w… water consultations; platform: wb weibo, hl the 12345 webhook,
# md mastodon; received, first reply after (min), resolved, 回访 answer and when it concluded).
# "" = no response, None = no ticket or no 回访 yet.
MONTH: list[tuple[Any, ...]] = [
    # urban: complaints 5 working days, first response 3 minutes (the default)
    ("u1", "wb", at(11, 3, 2), 2, at(11, 5, 2), "已解决，满意", at(11, 9, 2)),
    ("u2", "wb", at(11, 5, 2), 3, at(11, 20, 2), "解决了，基本满意", at(11, 23, 2)),
    ("u3", "wb", at(11, 10, 2), 10, at(11, 13, 2), "没解决，不满意", at(11, 16, 2)),
    ("u4", "hl", at(11, 12, 2), None, None, None, None),
    ("u5", "hl", at(11, 30, 14), 1, None, None, None),
    ("u7", "wb", at(10, 31, 15), 1, None, None, None),
    ("u8", "wb", at(10, 31, 16, 30), 5, at(11, 5, 10), "呵呵，真满意", at(11, 9, 3)),
    ("u10", "hl", at(11, 16, 2), 2, at(11, 18, 2), "解决了", at(11, 20, 2)),
    ("u11", "hl", at(11, 17, 2), 4, at(11, 19, 2), "", at(11, 25, 2)),
    # water: consultations 2 working days, first response 10 minutes (its own)
    ("w0", "md", at(10, 20, 2), 1, at(10, 21, 2), "2", at(11, 2, 2)),
    ("w1", "md", at(11, 4, 2), 8, at(11, 5, 2), "1", at(11, 9, 2)),
    ("w2", "md", at(11, 16, 2), 9, at(11, 17, 2), "修好了，非常满意👍", at(11, 19, 2)),
    ("w3", "md", at(11, 25, 2), 12, at(11, 30, 2), "还没修，很差", at(11, 30, 10)),
    ("w4", "md", at(11, 30, 15, 55), 2, at(12, 1, 2), "1", at(12, 3, 2)),
    ("w5", "md", at(11, 30, 16, 5), 2, None, None, None),
]  # fmt: skip


async def seed_month(store: SqlStore) -> None:
    """The month above, plus u6 (noise: ignored, never counted)."""
    await store.record_inquiry(
        NewInquiry(
            inquiry_id="u6",
            platform="weibo",
            account="cg_weibo",
            kind="comment",
            thread_key="u6",
            state="ignored",
            reason="spam",
        )
    )
    await store.db.execute(
        "UPDATE inquiries SET created_at = ? WHERE inquiry_id = 'u6'", (at(11, 21, 2).isoformat(),)
    )
    for iid, code, received, reply_min, resolved, answer, concluded in MONTH:
        dept, category = DEPARTMENTS[iid[0]]
        platform = PLATFORMS[code]
        account = ACCOUNTS[platform]
        await store.record_inquiry(
            NewInquiry(
                inquiry_id=iid,
                platform=platform,
                account=account,
                kind="comment",
                thread_key=iid,
                state="ticketed",
                department=dept,
                category=category,
                ticket_id=f"T-{iid}",
            )
        )
        await store.db.execute(
            "UPDATE inquiries SET created_at = ? WHERE inquiry_id = ?", (received.isoformat(), iid)
        )
        if reply_min is not None:
            await store.add_reply(
                reply_id=f"r-{iid}",
                inquiry_id=iid,
                platform=platform,
                account=account,
                department=dept,
                status="received",
                templated=True,
                state="approved",
                request_json="{}",
            )
            await store.mark_reply(f"r-{iid}", "posted", external_ids=["x"])
            posted = received + timedelta(minutes=reply_min)
            await store.db.execute(
                "UPDATE replies SET posted_at = ? WHERE reply_id = ?",
                (posted.isoformat(), f"r-{iid}"),
            )
        if iid == "u7":
            continue  # answered, never ticketed
        await store.record_ticket(
            department=dept,
            ticket_id=f"T-{iid}",
            reference=f"GB-{iid}",
            inquiry_id=iid,
            thread_key=iid,
            status="received",
            status_rank=10,
            native_status="NEW",
            status_at=received.isoformat(),
        )
        await store.db.execute(
            "UPDATE tickets SET created_at = ? WHERE ticket_id = ?",
            (received.isoformat(), f"T-{iid}"),
        )
        if resolved is not None:
            await store.apply_status(
                department=dept,
                ticket_id=f"T-{iid}",
                event_id=f"e-{iid}",
                status="resolved",
                status_rank=40,
                native_status="DONE",
                occurred_at=resolved.isoformat(),
            )
            await store.db.execute(
                "UPDATE ticket_events SET recorded_at = ? WHERE event_id = ?",
                (resolved.isoformat(), f"e-{iid}"),
            )
        if answer is not None:
            await store.record_survey_result(
                department=dept,
                ticket_id=f"T-{iid}",
                cycle=0,
                inquiry_id=iid,
                platform=platform,
                account=account,
                answer=parse_answer(answer) if answer else None,
                asks=2 if not answer or parse_answer(answer).unclear else 1,
                asked_at=resolved + timedelta(days=1),
                concluded_at=concluded,
            )


# By hand, November 2026 (CST), the default [ranking]: 30 响应率 + 35 解决率 + 35 满意率.
#
# urban (first response 3 min): u1 2 min ✓, u2 3 min ✓ (the limit itself), u3 10 min ✗, u4
#   never ✗ (limit long past), u5 1 min ✓, u8 (00:30 on 1 Nov in Beijing) 5 min ✗, u10 2 min ✓,
#   u11 4 min ✗; u7 is October in Beijing, u6 noise → 响应率 4/8 = 50 %.
#   回访: u1 solved 满意, u2 solved 基本满意, u3 not solved 不满意, u10 solved (no rating),
#   u8 unrated (sarcasm), u11 no response (left out) → 解决率 3/4 = 75 %, 满意率 (1 + 1 + 0)/3.
#   On time (5 wd): u1 ✓, u2 ✗ (resolved 20 Nov, due 12 Nov), u3 ✓, u4 ✗ (open, due 19 Nov),
#   u8 ✓ (due 6 Nov 00:30 CST), u10 ✓, u11 ✓; u5 open and due 7 Dec 22:00 CST: not counted →
#   5/7.  Score 30 × 0.5 + 35 × 0.75 + 35 × 2/3 = 64.5833 → 64.58.
# water (first response 10 min): w1 8 ✓, w2 9 ✓, w3 12 ✗, w4 (23:55 on 30 Nov) 2 ✓; w5 is
#   December in Beijing → 响应率 3/4. 回访 concluded in November: w0 (an October ticket) solved
#   基本满意, w1 solved 满意, w2 solved 满意, w3 not solved 不满意; w4's concluded in December
#   → 解决率 3/4, 满意率 3/4. On time (2 wd): w1 ✓, w2 ✓, w3 ✗ (due 27 Nov), w4 ✓ → 3/4.
#   Score 75.00.
# parks: nothing at all → not ranked. Rank: water 1, urban 2.
# Accounts: weibo:cg_weibo (u1 u2 u3 u8): 响应率 2/4, 解决率 2/3, 满意率 2/3, on time 3/4,
#   score 15 + 35 × 2/3 × 2 = 61.67; webhook:hotline (u4 u5 u10 u11): 响应率 2/4, 解决率 1/1,
#   满意率 nothing to count → not ranked, on time 2/3; mastodon:sw_masto as water, 75.00.
#   Rank: mastodon 1, weibo 2.
EXPECTED = {
    "urban": {
        "rank": 2,
        "score": 64.58,
        "response_rate": 0.5,
        "resolution_rate": 0.75,
        "satisfaction_rate": 2 / 3,
        "on_time_rate": 5 / 7,
        "responded_in_time": 4,
        "response_counted": 8,
        "solved": 3,
        "resolution_counted": 4,
        "satisfied": 2.0,
        "satisfaction_counted": 3,
        "on_time": 5,
        "on_time_counted": 7,
        "answered": 4,
        "unrated": 1,
        "no_response": 1,
    },
    "water": {
        "rank": 1,
        "score": 75.0,
        "response_rate": 0.75,
        "resolution_rate": 0.75,
        "satisfaction_rate": 0.75,
        "on_time_rate": 0.75,
        "responded_in_time": 3,
        "response_counted": 4,
        "solved": 3,
        "resolution_counted": 4,
        "satisfied": 3.0,
        "satisfaction_counted": 4,
        "on_time": 3,
        "on_time_counted": 4,
        "answered": 4,
        "unrated": 0,
        "no_response": 0,
    },
}


def ranking_args(path: Path, fmt: str, period: str | None = "2026-11") -> argparse.Namespace:
    return argparse.Namespace(
        config=str(path),
        since=None,
        period=period,
        rank=True,
        department=None,
        format=fmt,
        json=False,
        output=None,
    )


@pytest.fixture
async def seeded(tmp_path: Path) -> Path:
    cfg = month_config(tmp_path)
    path = tmp_path / "govbridge.toml"
    path.write_text(config_toml(cfg))
    store = await open_store(cfg.store.url)
    await seed_month(store)
    await store.close()
    return path


async def report(path: Path, fmt: str, capsys: pytest.CaptureFixture[str], **kw: Any) -> str:
    assert await run_report(ranking_args(path, fmt, **kw), now=NOW) == 0
    return capsys.readouterr().out


async def test_a_seeded_month_ranked_in_json(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(await report(seeded, "json", capsys))
    assert doc["period"] == {
        "label": "2026-11",
        "start": "2026-10-31T16:00:00+00:00",
        "end": "2026-11-30T16:00:00+00:00",
        "first_day": "2026-11-01",
        "last_day": "2026-11-30",
    }
    assert doc["weights"] == {"response": 30, "resolution": 35, "satisfaction": 35, "on_time": 0}
    depts = {d["key"]: d for d in doc["departments"]}
    assert [d["key"] for d in doc["departments"]] == ["water", "urban", "parks"]
    for key, expected in EXPECTED.items():
        got = {k: depts[key][k] for k in expected}
        assert got == pytest.approx(expected), key
        assert depts[key]["unranked"] == []
    parks = depts["parks"]
    assert parks["rank"] is None and parks["score"] is None
    assert parks["unranked"] == ["response", "resolution", "satisfaction"]
    accounts = {a["key"]: a for a in doc["accounts"]}
    assert [a["key"] for a in doc["accounts"]] == [
        "mastodon:sw_masto",
        "weibo:cg_weibo",
        "webhook:hotline",
    ]
    weibo, hotline = accounts["weibo:cg_weibo"], accounts["webhook:hotline"]
    assert (weibo["rank"], weibo["score"]) == (2, 61.67)
    assert (weibo["response_rate"], weibo["on_time_rate"]) == (0.5, 0.75)
    assert weibo["resolution_rate"] == pytest.approx(2 / 3)
    assert weibo["satisfaction_rate"] == pytest.approx(2 / 3)
    assert (hotline["rank"], hotline["score"], hotline["unranked"]) == (
        None,
        None,
        ["satisfaction"],
    )
    assert (hotline["response_rate"], hotline["resolution_rate"]) == (0.5, 1.0)
    assert hotline["satisfaction_rate"] is None
    assert hotline["on_time_rate"] == pytest.approx(2 / 3)
    masto = accounts["mastodon:sw_masto"]
    assert (masto["rank"], masto["score"], masto["department"]) == (1, 75.0, "water")


async def test_a_seeded_month_ranked_in_table_csv_and_html(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = await report(seeded, "table", capsys)
    lines = table.splitlines()
    assert lines[0] == (
        "ranking 2026-11 (2026-11-01 – 2026-11-30, CST); score = 30 响应率 + 35 解决率 + 35 满意率"
        " (an example weighting, not an official formula)"
    )
    water = next(line for line in lines if "市水务局" in line)
    urban = next(line for line in lines if "市城管委" in line)
    assert water.split() == [
        "1", "市水务局", "75.0%", "(3/4)", "75.0%", "(3/4)", "75.0%", "(3/4)", "75.0%", "(3/4)",
        "75.00",
    ]  # fmt: skip
    assert urban.split() == [
        "2", "市城管委", "50.0%", "(4/8)", "75.0%", "(3/4)", "66.7%", "(2/3)", "71.4%", "(5/7)",
        "64.58",
    ]  # fmt: skip
    assert lines.index(water) < lines.index(urban)
    assert "not ranked: 市园林局: nothing to count for 响应率, 解决率, 满意率" in lines
    assert "not ranked: webhook:hotline: nothing to count for 满意率" in lines
    weibo = next(line for line in lines if line.split()[1:2] == ["weibo:cg_weibo"])
    assert weibo.split()[0] == "2" and weibo.split()[-1] == "61.67"

    rows = list(csv.DictReader(io.StringIO(await report(seeded, "csv", capsys))))
    assert [(r["level"], r["key"], r["rank"]) for r in rows] == [
        ("department", "water", "1"),
        ("department", "urban", "2"),
        ("department", "parks", ""),
        ("account", "mastodon:sw_masto", "1"),
        ("account", "weibo:cg_weibo", "2"),
        ("account", "webhook:hotline", ""),
    ]
    urban_row = rows[1]
    assert {
        k: urban_row[k]
        for k in (
            "score",
            "response_rate",
            "resolution_rate",
            "satisfaction_rate",
            "on_time_rate",
            "responded_in_time",
            "response_counted",
            "satisfied",
            "satisfaction_counted",
        )
    } == {
        "score": "64.58",
        "response_rate": "0.5000",
        "resolution_rate": "0.7500",
        "satisfaction_rate": "0.6667",
        "on_time_rate": "0.7143",
        "responded_in_time": "4",
        "response_counted": "8",
        "satisfied": "2",
        "satisfaction_counted": "3",
    }
    assert (
        rows[0]["score"] == "75" and rows[2]["score"] == "" and rows[5]["satisfaction_rate"] == ""
    )

    page = await report(seeded, "html", capsys)
    assert "<script" not in page and "2026-11 (2026-11-01 – 2026-11-30)" in page
    body = page.split("<h2>账号 accounts</h2>")[0]
    cells = [c.split("</td>")[0] for c in body.split("<td>")[1:]]
    assert cells[:7] == [
        "1",
        "市水务局",
        "75.0% <small>(3/4)</small>",
        "75.0% <small>(3/4)</small>",
        "75.0% <small>(3/4)</small>",
        "75.0% <small>(3/4)</small>",
        "75.00",
    ]
    assert cells[7:14] == [
        "2",
        "市城管委",
        "50.0% <small>(4/8)</small>",
        "75.0% <small>(3/4)</small>",
        "66.7% <small>(2/3)</small>",
        "71.4% <small>(5/7)</small>",
        "64.58",
    ]
    assert "30 响应率 + 35 解决率 + 35 满意率" in page


async def test_configured_weights_and_no_response(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """基本满意 worth half, no response counted as not solved and not satisfied, and the
    on-time rate weighted: every figure moves as computed by hand."""
    cfg = month_config(
        tmp_path,
        weights={"response": 25, "resolution": 25, "satisfaction": 25, "on_time": 25},
        satisfaction={"满意": 1.0, "基本满意": 0.5, "不满意": 0.0},
        no_response="dissatisfied",
    )
    path = tmp_path / "govbridge.toml"
    path.write_text(config_toml(cfg))
    store = await open_store(cfg.store.url)
    await seed_month(store)
    await store.close()
    doc = json.loads(await report(path, "json", capsys))
    urban, water = (
        next(d for d in doc["departments"] if d["key"] == k) for k in ("urban", "water")
    )
    # urban: 解决率 3/5 (u11's silence counts against), 满意率 (1 + 0.5 + 0)/4 = 0.375;
    # score 25 × (0.5 + 0.6 + 0.375 + 5/7) = 54.73
    assert (urban["resolution_rate"], urban["satisfaction_rate"]) == (0.6, 0.375)
    assert urban["score"] == 54.73
    # water: 满意率 (0.5 + 1 + 1 + 0)/4 = 0.625; score 25 × (0.75 × 3 + 0.625) = 71.88 (71.875)
    assert water["satisfaction_rate"] == 0.625 and water["score"] == pytest.approx(71.88)
    assert (water["rank"], urban["rank"]) == (1, 2)
    table = await report(path, "table", capsys)
    assert "score = 25 响应率 + 25 解决率 + 25 满意率 + 25 按时率" in table


async def test_response_counts_from_the_citizens_post(tmp_path: Path) -> None:
    """响应率's clock starts when the citizen posted (the platform's time the triage stage
    keeps), not when the bridge got round to it; a platform time later than the bridge's
    record (a skewed clock) or none at all counts from the record."""
    cfg = month_config(tmp_path)
    store = await open_store(cfg.store.url)
    # (id, posted on the platform, recorded by the bridge, first reply): limit 3 minutes
    cases = [
        ("late", at(11, 3, 2), at(11, 3, 2, 2), at(11, 3, 2, 4)),  # 4 min after the post
        ("quick", None, at(11, 4, 2), at(11, 4, 2, 2)),  # no platform time: 2 min
        ("skewed", at(11, 5, 2, 30), at(11, 5, 2), at(11, 5, 2, 3)),  # 3 min after the record
    ]
    try:
        for iid, posted, recorded, replied in cases:
            await store.record_inquiry(
                NewInquiry(
                    inquiry_id=iid,
                    platform="weibo",
                    account="cg_weibo",
                    kind="comment",
                    thread_key=iid,
                    state="ticketed",
                    department="urban",
                    category="complaint",
                    posted_at=posted.isoformat() if posted else None,
                )
            )
            await store.db.execute(
                "UPDATE inquiries SET created_at = ? WHERE inquiry_id = ?",
                (recorded.isoformat(), iid),
            )
            await store.add_reply(
                reply_id=f"r-{iid}",
                inquiry_id=iid,
                platform="weibo",
                account="cg_weibo",
                department="urban",
                status="received",
                templated=True,
                state="approved",
                request_json="{}",
            )
            await store.mark_reply(f"r-{iid}", "posted", external_ids=["x"])
            await store.db.execute(
                "UPDATE replies SET posted_at = ? WHERE reply_id = ?",
                (replied.isoformat(), f"r-{iid}"),
            )
        ranking = await rank_period(store, cfg, parse_period("2026-11", NOW), NOW)
    finally:
        await store.close()
    urban = next(s for s in ranking.departments if s.key == "urban")
    assert (urban.rates.responded_in_time, urban.rates.response_counted) == (2, 3)


def test_triage_keeps_when_the_citizen_posted() -> None:
    """The row triage records carries the platform's time of the post, in the store's UTC."""
    posted = datetime(2026, 11, 3, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    inq = Inquiry.create(
        platform="weibo",
        account="cg_weibo",
        kind=InquiryKind.COMMENT,
        external_id="c1",
        author={"id": "9", "handle": "citizen"},
        text="路灯坏了",
        created_at=posted,
        thread={"root_id": "post"},
    )
    assert _inquiry_row(inq, "路灯坏了")["posted_at"] == "2026-11-03T02:00:00.000000+00:00"


async def test_equal_scores_share_a_rank() -> None:
    def standing(key: str, in_time: int) -> Standing:
        rates = Rates(responded_in_time=in_time, response_counted=4)
        return Standing("department", key, key, key, rates)

    weights = RankWeights(response=100, resolution=0, satisfaction=0)
    ranked = _rank(
        [standing("d", 1), standing("b", 3), standing("a", 3), standing("c", 2)], weights
    )
    assert [(s.key, s.rank, s.score) for s in ranked] == [
        ("a", 1, 75.0),
        ("b", 1, 75.0),
        ("c", 3, 50.0),
        ("d", 4, 25.0),
    ]


def test_periods() -> None:
    assert parse_period("2026-11", NOW).label == "2026-11"
    days = parse_period("2026-11-01..2026-11-15", NOW)
    assert (days.start, days.end) == (at(10, 31, 16), at(11, 15, 16))
    assert parse_period("2026-12-07", NOW).end == at(12, 7, 16)
    for text, why in (
        ("2026-13", "give a month"),
        ("2027-01", "starts in the future"),
        ("2026-11-15..2026-11-01", "ends before it starts"),
        ("last month", "give a month"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_period(text, NOW)
    with pytest.raises(ValueError, match="longer than the longest allowed"):
        parse_period("2025-01-01..2026-12-01", NOW, timedelta(days=366))
    months = last_months(NOW, 12)
    assert [p.label for p in months][:2] == ["2026-01", "2026-02"] and months[-1].label == "2026-12"
    assert months[0] == Period(
        at(1, 1, 0) - timedelta(hours=8), at(2, 1, 0) - timedelta(hours=8), "2026-01"
    )


async def test_twelve_months_from_one_read(seeded: Path) -> None:
    cfg = month_config(seeded.parent)
    store = await open_store(cfg.store.url)
    try:
        months = await rank_months(store, cfg, NOW)
    finally:
        await store.close()
    assert [m.period.label for m in months][-3:] == ["2026-10", "2026-11", "2026-12"]
    november = {s.key: s.score for s in months[-2].departments}
    assert november == {"water": 75.0, "urban": 64.58, "parks": None}
    # December so far: w5 answered in 2 min (of 10), w4's 回访 (satisfied, solved); urban has
    # nothing → water alone has what its score needs
    december = {s.key: (s.rank, s.score) for s in months[-1].departments}
    assert december == {"water": (1, 100.0), "urban": (None, None), "parks": (None, None)}
    # October: u7 answered in 1 min, w0 in 1 min; no 回访 concluded in October
    assert all(s.rank is None for s in months[-3].departments)


async def test_the_console_ranking_page_and_its_api(seeded: Path) -> None:
    """``GET /api/ranking?until=2026-11``: twelve months, December 2025 to November 2026, each
    department's score and rank per month (the console's trend line); the page and its script
    name it."""
    cfg = month_config(seeded.parent)
    async with running_bridge(cfg, ["http"]) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with http.get(base + "/api/ranking") as resp:
            assert resp.status == 401
        auth = {"Authorization": "Bearer test-admin-token"}
        async with http.get(base + "/api/ranking?until=2026-11", headers=auth) as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.get(base + "/api/ranking?until=2026-13", headers=auth) as resp:
            assert resp.status == 400 and "give a month" in (await resp.json())["error"]
        async with http.get(base + "/") as resp:
            page = await resp.text()
        async with http.get(base + "/console.js") as resp:
            script = await resp.text()
    labels = [m["period"]["label"] for m in body["months"]]
    assert labels[0] == "2025-12" and labels[-1] == "2026-11" and len(labels) == 12
    trend = {
        d["key"]: [
            m_d["score"]
            for m in body["months"]
            for m_d in m["departments"]
            if m_d["key"] == d["key"]
        ]
        for d in body["months"][-1]["departments"]
    }
    assert trend["water"] == [None] * 11 + [75.0]
    assert trend["urban"] == [None] * 11 + [64.58]
    assert [(d["key"], d["rank"]) for d in body["months"][-1]["departments"]] == [
        ("water", 1),
        ("urban", 2),
        ("parks", None),
    ]
    assert body["weights"]["response"] == 30
    assert 'href="#ranking"' in page and 'id="rank-month"' in page
    assert "/api/ranking" in script and "function trend(" in script


async def test_cli_refuses_a_bad_period(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_report(ranking_args(seeded, "table", period="2026-13"), now=NOW) == 2
    assert "give a month (2026-11)" in capsys.readouterr().err
    both = ranking_args(seeded, "table")
    both.since = "7d"
    assert await run_report(both, now=NOW) == 2
    assert "not both" in capsys.readouterr().err


# ------------------------------------------------------------------- the 回访 results' store
@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        s = await open_store(f"sqlite:///{tmp_path}/store.db")
        yield s
        await s.close()
        return
    async with pg_database() as url:
        s = await open_store(url)
        yield s
        await s.close()


async def test_the_seeded_month_ranks_the_same_on_sqlite_and_postgresql(
    store: SqlStore, tmp_path: Path
) -> None:
    """The rates' queries (slim rows, first replies, backlog, final times) on both databases."""
    await seed_month(store)
    cfg = month_config(tmp_path)
    ranking = await rank_period(store, cfg, parse_period("2026-11", NOW), NOW)
    got = {s.key: (s.rank, s.score, asdict(s.rates)) for s in ranking.departments}
    for key in ("urban", "water"):
        expected = EXPECTED[key]
        rank, score, rates = got[key]
        assert (rank, score) == (expected["rank"], expected["score"])
        assert {k: rates[k] for k in rates} == pytest.approx({k: expected[k] for k in rates}), key
    assert got["parks"][:2] == (None, None)
    accounts = {s.key: (s.rank, s.score) for s in ranking.accounts}
    assert accounts == {
        "mastodon:sw_masto": (1, 75.0),
        "weibo:cg_weibo": (2, 61.67),
        "webhook:hotline": (None, None),
    }


async def test_survey_results_keep_the_reading_not_the_words(store: SqlStore) -> None:
    common: dict[str, Any] = {
        "department": "urban",
        "platform": "weibo",
        "account": "cg_weibo",
        "asked_at": at(11, 2, 2),
    }
    first = await store.record_survey_result(
        ticket_id="T1",
        cycle=0,
        inquiry_id="i1",
        answer=parse_answer("呵呵，真满意，修了三个月"),
        asks=1,
        concluded_at=at(11, 3, 2),
        **common,
    )
    assert (first.outcome, first.unclear, first.solved, first.satisfaction) == (
        "unrated",
        "sarcasm",
        None,
        None,
    )
    # the answer to the re-ask replaces the cycle's row
    await store.record_survey_result(
        ticket_id="T1",
        cycle=0,
        inquiry_id="i1",
        answer=parse_answer("解决了，基本满意，电话13912345678"),
        asks=2,
        concluded_at=at(11, 4, 2),
        **common,
    )
    await store.record_survey_result(
        ticket_id="T1",
        cycle=1,
        inquiry_id="i1",
        answer=None,
        asks=2,
        concluded_at=at(11, 30, 17),
        **common,
    )
    await store.record_survey_result(
        ticket_id="T2",
        cycle=0,
        inquiry_id="i2",
        answer=parse_answer("没解决"),
        asks=1,
        concluded_at=at(11, 10, 2),
        **{**common, "department": "water"},
    )
    rows = await store.survey_results(at(10, 31, 16), at(11, 30, 16))
    assert [(r.ticket_id, r.cycle, r.outcome, r.solved, r.satisfaction, r.asks) for r in rows] == [
        ("T1", 0, "answered", True, "基本满意", 2),
        ("T2", 0, "answered", False, None, 1),
    ]  # T1's second cycle (no response) concluded on 1 December in Beijing
    assert [r.ticket_id for r in await store.survey_results(at(1, 1, 0), NOW, "water")] == ["T2"]
    [late] = await store.survey_results(at(11, 30, 16), NOW)
    assert (late.outcome, late.solved, late.unclear) == ("no_response", None, None)
    records = [r for r in await store.recent_audit(limit=10) if r["action"] == "survey.recorded"]
    assert len(records) == 4
    assert all("13912345678" not in json.dumps(r, ensure_ascii=False) for r in records)
    assert all("解决了" not in json.dumps(r, ensure_ascii=False) for r in records)
    assert (await store.verify_audit()).ok


async def test_a_kept_month_is_counted_again_when_it_changes(
    store: SqlStore, tmp_path: Path
) -> None:
    """The console keeps the months that are over as counted (``RankingCache``): November,
    counted at NOW, is used again while nothing in it changes; a late 回访 answer for one of
    its tickets shows at once (the results are counted afresh on every ask), a ticket of it
    reopened has the month counted again, and so does any change the marks cannot see once
    ``max_age`` has passed (u5's deadline, 7 December 14:00 UTC); the month of now is kept
    for a minute only (for up to ``max_age`` while the console counts it again). Each time
    the ranking is the one counted without the cache (nothing changed within the minute).
    On both engines."""
    await seed_month(store)
    cfg = month_config(tmp_path)
    cache = RankingCache()

    async def both(now: datetime) -> list[Any]:
        kept = await rank_months(store, cfg, now, cache=cache)
        fresh = await rank_months(store, cfg, now)
        assert [r.as_dict() for r in kept] == [r.as_dict() for r in fresh], now
        return kept

    def urban(months: list[Any]) -> Any:
        return next(s for s in months[-2].departments if s.key == "urban")

    first = await both(NOW)
    assert first[-2].period.label == "2026-11" and first[-2].as_of == NOW
    assert first[-1].as_of == NOW
    soon = await both(NOW + timedelta(seconds=50))
    assert soon[-1].as_of == NOW  # the month of now: kept for a minute
    later = NOW + timedelta(minutes=5)
    # the console counts the month of now again in the background and shows what it has
    shown = await rank_months(store, cfg, later, cache=cache, stale_current=True)
    assert shown[-1].as_of == NOW and shown[-2].as_of == NOW
    again = await both(later)
    assert again[-2].as_of == NOW  # kept: nothing in November changed
    assert again[-1].as_of == later  # the month of now: counted again
    # a late 回访 answer for u4's ticket (concluded in November): shown at once
    before = urban(again).rates
    await store.record_survey_result(
        department="urban",
        ticket_id="T-u4",
        cycle=0,
        inquiry_id="u4",
        platform="hotline12345",
        account="hotline",
        answer=parse_answer("已解决，满意"),
        asks=1,
        asked_at=at(11, 28, 2),
        concluded_at=at(11, 29, 2),
    )
    answered = await both(later)
    assert answered[-2].as_of == NOW  # its responses and tickets still as kept
    assert urban(answered).rates.answered == before.answered + 1
    # u10's ticket (resolved in time on 18 November) reopened: November counted again,
    # the ticket now open past its deadline
    await reopen_u10(store, later)
    reopened = await both(later + timedelta(minutes=1))
    assert reopened[-2].as_of == later + timedelta(minutes=1)
    assert urban(reopened).rates.on_time == urban(answered).rates.on_time - 1
    # within max_age u5's deadline passing is not seen; after it, it is
    u5_due = datetime(2026, 12, 7, 14, 0, 1, tzinfo=UTC)
    kept = await rank_months(store, cfg, later + timedelta(minutes=9), cache=cache)
    assert kept[-2].as_of == later + timedelta(minutes=1)
    counted = await both(u5_due)
    assert counted[-2].as_of == u5_due
    assert urban(counted).rates.on_time_counted == urban(reopened).rates.on_time_counted + 1


async def test_the_months_over_are_shared_through_the_store(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RankingCache(shared=True)`` (the console's): the months that are over, as one process
    counted them, are used by another (or the next one to start) under the same rules, their
    marks as they were and younger than ``max_age``; the month of now is counted; the
    rankings are the ones counted without a cache. A month changed, too old or unreadable is
    counted again. On both engines."""
    await seed_month(store)
    cfg = month_config(tmp_path)
    reads: list[tuple[datetime, datetime]] = []
    real = performance._read_facts

    async def spy(s: Any, start: datetime, end: datetime) -> Any:
        reads.append((start, end))
        return await real(s, start, end)

    monkeypatch.setattr(performance, "_read_facts", spy)

    async def process(now: datetime) -> list[Any]:
        """A process of its own: nothing in memory."""
        kept = await rank_months(store, cfg, now, cache=RankingCache(shared=True))
        mine = list(reads)
        fresh = await rank_months(store, cfg, now)
        reads[:] = mine  # the cache's reads alone
        assert [r.as_dict() for r in kept] == [r.as_dict() for r in fresh], now
        return kept

    current = last_months(NOW, 1)[0]
    first = await process(NOW)
    assert all(r.as_of == NOW for r in first)
    reads.clear()
    soon = NOW + timedelta(seconds=30)
    second = await process(soon)
    assert all(r.as_of == NOW for r in second)  # the first process's, the month of now too
    assert reads == []  # nothing counted
    # the month of now older than a minute: counted, unless the caller counts it again in
    # the background meanwhile (the console's visit), then shown as kept up to max_age
    later = NOW + timedelta(minutes=5)
    shown = await rank_months(
        store, cfg, later, cache=RankingCache(shared=True), stale_current=True
    )
    assert all(r.as_of == NOW for r in shown) and reads == []
    recounted = await process(later)
    assert all(r.as_of == NOW for r in recounted[:-1]) and recounted[-1].as_of == later
    assert reads == [(current.start, current.end)]  # the month of now alone, read
    # each month read back exactly as it was counted
    cache = RankingCache(shared=True)
    await rank_months(store, cfg, soon, cache=cache)
    for k in cache.kept.values():
        assert performance.decode_month(json.loads(json.dumps(performance.encode_month(k)))) == k
    # older than max_age: counted again
    late = later + timedelta(minutes=11)
    assert all(r.as_of == late for r in await process(late))
    # a month changed (u10's ticket reopened): that month counted again, the others kept
    await reopen_u10(store, late)
    changed = await process(late + timedelta(minutes=1))
    assert changed[-2].as_of == late + timedelta(minutes=1)  # November
    assert all(r.as_of == late for r in changed[:-2])
    # unreadable rows: counted again, no error
    await store.db.execute("UPDATE kept_answers SET body = ?", ('{"marks": 1}',))
    broken = await process(late + timedelta(minutes=2))
    assert all(r.as_of == late + timedelta(minutes=2) for r in broken)


async def reopen_u10(store: Any, at: datetime) -> None:
    """u10's ticket (resolved in time on 18 November) reopened at ``at``."""
    await store.apply_status(
        department="urban",
        ticket_id="T-u10",
        event_id="e-u10-reopen",
        status="reopened",
        status_rank=50,
        native_status="REOPENED",
        occurred_at=at.isoformat(),
    )
