"""Department performance computed from the store, and ``govbridge report`` over a known week
in all four formats."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.cli.report import run_report
from bridge.config import parse_config
from bridge.reports.performance import COLUMNS, department_reports, render_table
from bridge.store import NewInquiry, open_store
from tests.conftest import bridge_config, config_toml

CFG = parse_config(
    {
        "departments": [
            {
                "id": "urban",
                "name": "市城管委",
                "sla": {"complaint": "2d"},
                "ticketing": {
                    "adapter": "rest",
                    "base_url": "http://127.0.0.1:9",
                    "auth": {"bearer": "t"},
                },
            }
        ]
    },
    env={},
)


async def test_report_counts_sla_and_first_reply(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    common = {"platform": "weibo", "account": "acc", "kind": "comment"}
    for n, state in enumerate(["ticketed", "ticketed", "appended", "ignored"]):
        await store.record_inquiry(
            NewInquiry(
                inquiry_id=f"inq_{n}",
                thread_key=f"t{n}",
                state=state,
                department=None if state == "ignored" else "urban",
                category="complaint",
                reason="spam" if state == "ignored" else None,
                **common,
            )
        )
    created = datetime.now(UTC) - timedelta(days=5)
    for n in (0, 1):
        await store.record_ticket(
            department="urban",
            ticket_id=f"T{n}",
            reference=f"GB-{n}",
            inquiry_id=f"inq_{n}",
            thread_key=f"t{n}",
            status="received",
            status_rank=10,
            native_status="NEW",
            status_at=created.isoformat(),
        )
    await store.db.execute("UPDATE tickets SET created_at = ?", (created.isoformat(),))
    # T0 resolved (recorded now: 5 days after creation, past its 2-day SLA); T1 still open
    await store.apply_status(
        department="urban",
        ticket_id="T0",
        event_id="e1",
        status="resolved",
        status_rank=40,
        native_status="DONE",
        occurred_at=datetime.now(UTC).isoformat(),
    )
    await store.add_reply(
        reply_id="r0",
        inquiry_id="inq_0",
        platform="weibo",
        account="acc",
        department="urban",
        status="received",
        templated=True,
        state="approved",
        request_json="{}",
    )
    await store.mark_reply("r0", "posted", external_ids=["c1"])
    await store.add_reply(
        reply_id="r1",
        inquiry_id="inq_1",
        platform="weibo",
        account="acc",
        department="urban",
        status=None,
        templated=False,
        state="awaiting_approval",
        request_json="{}",
    )
    (report,), ignored = await department_reports(store, CFG)
    await store.close()

    assert (report.inquiries, report.appended, report.tickets) == (3, 1, 2)
    assert (report.resolved, report.resolved_in_time, report.open_overdue) == (1, 0, 1)
    assert (report.replies_posted, report.awaiting_approval) == (1, 1)
    assert report.median_first_reply_s is not None and report.median_first_reply_s >= 0
    assert ignored == {"spam": 1}
    table = render_table([report], ignored)
    assert "市城管委" in table and "0%" in table and "spam 1" in table


# --------------------------------------------------------------------------- a known week
# now = 2026-11-30 12:00 CST; --since 7d = from 2026-11-23 04:00 UTC. Figures by hand below.
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def _at(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).isoformat()


def week_config(tmp_path: Path) -> Any:
    rest = {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}}
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "urban",
                "name": "市城管委",
                "sla": {"complaint": "2d", "first_response": "1d"},
                "ticketing": rest,
            },
            {"id": "water", "name": "市水务局", "sla": {"consultation": "3d"}, "ticketing": rest},
        ],
    )


async def known_week(store: Any) -> None:
    """urban: u1 (resolved in 1 day, in time; answered in 1 h), u2 (resolved in 3 days, late;
    answered in 30 min), u3 (open, due in 22 h: at risk; unanswered past the 1-day first
    response limit, but a reply awaits approval: backlog, not zombie), u4 (before the period,
    open and overdue, answered), u5 (spam, ignored), u6 (a follow-up, appended), u7 (its create
    to be reconciled, no reply at all past the first-response limit: zombie). water: w1 (open,
    due in 21 h: at risk; answered in 10 min)."""
    rows = [
        ("u1", "urban", "complaint", "ticketed", _at(25, 2)),
        ("u2", "urban", "complaint", "ticketed", _at(26, 2)),
        ("u3", "urban", "complaint", "ticketed", _at(29, 2)),
        ("u4", "urban", "complaint", "ticketed", _at(20, 2)),
        ("u5", None, None, "ignored", _at(27, 2)),
        ("u6", "urban", "complaint", "appended", _at(27, 2)),
        ("w1", "water", "consultation", "ticketed", _at(28, 1)),
        ("u7", "urban", "complaint", "needs_reconciliation", _at(28, 2)),
    ]
    for inquiry_id, dept, category, state, created in rows:
        await store.record_inquiry(
            NewInquiry(
                inquiry_id=inquiry_id,
                platform="weibo",
                account="acc",
                kind="comment",
                thread_key=inquiry_id,
                state=state,
                department=dept,
                category=category,
                reason="spam" if state == "ignored" else None,
            )
        )
        await store.db.execute(
            "UPDATE inquiries SET created_at = ? WHERE inquiry_id = ?", (created, inquiry_id)
        )
        if state != "ticketed":
            continue
        await store.record_ticket(
            department=dept,
            ticket_id=f"T-{inquiry_id}",
            reference=f"ref-{inquiry_id}",
            inquiry_id=inquiry_id,
            thread_key=inquiry_id,
            status="received",
            status_rank=10,
            native_status="NEW",
            status_at=created,
        )
        await store.db.execute(
            "UPDATE tickets SET created_at = ? WHERE ticket_id = ?", (created, f"T-{inquiry_id}")
        )
    for inquiry_id, resolved in (("u1", _at(26, 2)), ("u2", _at(29, 2))):
        await store.apply_status(
            department="urban",
            ticket_id=f"T-{inquiry_id}",
            event_id=f"e-{inquiry_id}",
            status="resolved",
            status_rank=40,
            native_status="DONE",
            occurred_at=resolved,
        )
        await store.db.execute(
            "UPDATE ticket_events SET recorded_at = ? WHERE event_id = ?",
            (resolved, f"e-{inquiry_id}"),
        )
    replies = [
        ("u1", "urban", _at(25, 3)),
        ("u2", "urban", _at(26, 2, 30)),
        ("u4", "urban", _at(20, 3)),
        ("w1", "water", _at(28, 1, 10)),
        ("u3", "urban", None),  # awaiting approval
    ]
    for inquiry_id, dept, posted in replies:
        await store.add_reply(
            reply_id=f"r-{inquiry_id}",
            inquiry_id=inquiry_id,
            platform="weibo",
            account="acc",
            department=dept,
            status="received",
            templated=True,
            state="approved" if posted else "awaiting_approval",
            request_json="{}",
        )
        if posted:
            await store.mark_reply(f"r-{inquiry_id}", "posted", external_ids=["x"])
            await store.db.execute(
                "UPDATE replies SET posted_at = ? WHERE reply_id = ?", (posted, f"r-{inquiry_id}")
            )


async def test_report_over_a_known_week_in_four_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = week_config(tmp_path)
    path = tmp_path / "govbridge.toml"
    path.write_text(config_toml(cfg))
    store = await open_store(cfg.store.url)
    await known_week(store)
    await store.close()

    def args(fmt: str, department: str | None = None) -> argparse.Namespace:
        return argparse.Namespace(
            config=str(path),
            since="7d",
            department=department,
            format=fmt,
            json=False,
            output=None,
        )

    async def report(fmt: str, department: str | None = None) -> str:
        assert await run_report(args(fmt, department), now=NOW) == 0
        return capsys.readouterr().out

    # By hand. urban: received u1 u2 u3 u6 u7 = 5 (u4 before the period, u5 noise), 1 appended;
    # tickets opened T-u1 T-u2 T-u3 = 3, resolved 2, in time 1 (T-u1; T-u2 took 3 days of 2)
    # = 50%; resolution median(1 d, 3 d) = 48 h; first reply median(1 h, 30 min) = 45 min;
    # replies posted in the period 2 (u4's was before it); backlog now: overdue 1 (T-u4),
    # at risk 1 (T-u3, due in 22 h, warn_before 1 d), awaiting approval 1 (u3's: a backlog),
    # unanswered past the first-response limit with nothing waiting 1 (u7) -> zombie.
    doc = json.loads(await report("json"))
    urban, water = doc["departments"]
    assert {k: urban[k] for k in COLUMNS} == {
        "department": "urban",
        "name": "市城管委",
        "inquiries": 5,
        "appended": 1,
        "tickets": 3,
        "resolved": 2,
        "resolved_in_time": 1,
        "in_time_rate": 0.5,
        "median_first_reply_s": 2700.0,
        "median_resolution_s": 172800.0,
        "replies_posted": 2,
        "open_overdue": 1,
        "open_at_risk": 1,
        "awaiting_approval": 1,
        "needs_reconciliation": 0,
        "unanswered_overdue": 1,
        "zombie": True,
    }
    # water: w1 received, its ticket open and due in 21 h (at risk), answered in 10 min.
    assert {k: water[k] for k in COLUMNS} == {
        "department": "water",
        "name": "市水务局",
        "inquiries": 1,
        "appended": 0,
        "tickets": 1,
        "resolved": 0,
        "resolved_in_time": 0,
        "in_time_rate": None,
        "median_first_reply_s": 600.0,
        "median_resolution_s": None,
        "replies_posted": 1,
        "open_overdue": 0,
        "open_at_risk": 1,
        "awaiting_approval": 0,
        "needs_reconciliation": 0,
        "unanswered_overdue": 0,
        "zombie": False,
    }
    assert urban["zombie_accounts"] == ["weibo:acc"] and water["zombie_accounts"] == []
    assert doc["ignored"] == {"spam": 1}
    assert doc["since"] == "2026-11-23T04:00:00+00:00"
    # days in CST, 23rd to 30th; received u1 25th, u2 26th, u6 27th, u7 28th, u3 29th; resolved T-u1
    # 26th, T-u2 29th
    assert [(d["day"][8:], d["received"], d["resolved"]) for d in urban["daily"]] == [
        ("23", 0, 0),
        ("24", 0, 0),
        ("25", 1, 0),
        ("26", 1, 1),
        ("27", 1, 0),
        ("28", 1, 0),
        ("29", 1, 1),
        ("30", 0, 0),
    ]

    rows = list(csv.DictReader(io.StringIO(await report("csv"))))
    assert [r["department"] for r in rows] == ["urban", "water"]
    assert rows[0]["inquiries"] == "5" and rows[0]["in_time_rate"] == "0.5000"
    assert rows[0]["median_first_reply_s"] == "2700.0000" and rows[0]["zombie"] == "True"
    assert rows[1]["in_time_rate"] == "" and rows[1]["open_at_risk"] == "1"

    table = await report("table")
    urban_line = next(line for line in table.splitlines() if line.startswith("市城管委"))
    assert " ".join(urban_line.split()[1:]) == "5 3 2 50% 1 1 2 1 45 min 48.0 h"
    assert "zombie: 市城管委 has 1 inquiries unanswered beyond the limit (weibo:acc)" in table
    assert "ignored as noise: 1 (spam 1)" in table

    page = await report("html")
    assert (
        page.count("<svg") == 2
        and "<script" not in page
        and "http" not in page.split("<body>")[1].replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert '<rect class="resolved"' in page and "<title>2026-11-29 resolved 1</title>" in page
    assert "<title>2026-11-25 received 1</title>" in page
    assert "僵尸账号 zombie" in page and "50%" in page and "45 min" in page

    only = json.loads(await report("json", "water"))
    assert [d["department"] for d in only["departments"]] == ["water"]
    assert await run_report(args("json", "nowhere"), now=NOW) == 2
    assert "no department 'nowhere'" in capsys.readouterr().err
