"""Department performance computed from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.config import parse_config
from bridge.report import department_reports, render_table
from bridge.store import open_store

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
            inquiry_id=f"inq_{n}",
            thread_key=f"t{n}",
            state=state,
            department=None if state == "ignored" else "urban",
            category="complaint",
            reason="spam" if state == "ignored" else None,
            **common,
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
