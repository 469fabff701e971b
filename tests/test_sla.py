"""The deadline watcher: holding replies, warnings and breaches, each once per ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from govbridge_tools.testing import BusTap

from bridge.reply.role import ReplyRole
from bridge.runtime.worker import Delivery
from bridge.sla.role import SlaRole
from bridge.store import NewInquiry
from schemas.messages import ThreadRef
from tests.conftest import bridge_config, eventually, memory_of, running_bridge

DEPT = {
    "id": "urban",
    "name": "市城管委",
    "approval": "templated-auto",
    "sla": {"complaint": "10d", "consultation": "2d"},
    "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}},
}
ACCOUNT = {
    "adapter": "webhook",
    "handle": "hotline",
    "department": "urban",
    "secret": "s",
    "reply_url": "http://127.0.0.1:9/replies",
}


async def seed(store: Any, n: int, category: str, status: str, age: timedelta) -> None:
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=f"inq_{n}",
            platform="webhook",
            account="hotline",
            kind="mention",
            thread_key=f"t{n}",
            state="ticketed",
            department="urban",
            category=category,
            citizen_handle=f"citizen{n}",
            visibility="public",
            thread_json=ThreadRef(root_id=f"m{n}").model_dump_json(),
        )
    )
    await store.record_ticket(
        department="urban",
        ticket_id=f"T{n}",
        reference=f"GB-{n}",
        inquiry_id=f"inq_{n}",
        thread_key=f"t{n}",
        status=status,
        status_rank=10,
        native_status=status,
        status_at=datetime.now(UTC).isoformat(),
    )
    created = (datetime.now(UTC) - age).isoformat()
    await store.db.execute(
        "UPDATE tickets SET created_at = ? WHERE ticket_id = ?", (created, f"T{n}")
    )


async def test_holding_reply_warning_and_breach_each_once(tmp_path: Path) -> None:
    cfg = bridge_config(tmp_path, departments=[DEPT], accounts=[ACCOUNT], sla={"check_every": "1h"})
    # The sla role publishes the events; the reply role answers sla.holding_reply.<dept>.
    async with running_bridge(cfg, ["sla", "reply"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        watch = BusTap(memory_of(daemon), ("sla.#", "reply.requested.#"))
        async with watch:
            await seed(store, 1, "complaint", "received", timedelta(days=6))  # past half
            await seed(store, 2, "complaint", "received", timedelta(days=9, hours=12))  # warn
            await seed(store, 3, "consultation", "received", timedelta(days=3))  # breached
            await seed(store, 4, "complaint", "received", timedelta(days=1))  # nothing yet
            await seed(store, 5, "consultation", "resolved", timedelta(days=30))  # done
            role = daemon.ctx.roles["sla"]
            assert isinstance(role, SlaRole)
            first = await role.scan()
            second = await role.scan()  # nothing happens twice
            await watch.wait_for(3, "reply.requested.webhook")
        got = [(seen.routing_key, json.loads(seen.body)) for seen in watch.seen]

    kinds = sorted((e.event, e.ticket_id) for e in first)
    assert kinds == [
        ("breached", "T3"),
        ("holding_reply", "T1"),
        ("holding_reply", "T2"),
        ("holding_reply", "T3"),
        ("warning", "T2"),
    ]
    assert second == []
    sla_keys = sorted(k for k, _ in got if k.startswith("sla."))
    assert sla_keys == sorted(f"sla.{e.event}.urban" for e in first)
    holding = [body for k, body in got if k == "reply.requested.webhook"]
    assert sorted(b["ticket_id"] for b in holding) == ["T1", "T2", "T3"]
    assert all("仍在办理中" in b["text"] and b["templated"] for b in holding)
    assert daemon.metrics.sla_events.labels("urban", "breached")._value.get() == 1


async def waiting(store: Any, n: int, dept: str, posted_ago: timedelta, **extra: Any) -> None:
    """An inquiry routed to ``dept`` and still without a ticket, posted ``posted_ago``."""
    posted = datetime.now(UTC) - posted_ago
    inquiry_id = f"inq_w{n}"
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=inquiry_id,
            platform="webhook",
            account="hotline",
            kind="mention",
            thread_key=f"w{n}",
            state=extra.pop("state", "routed"),
            department=dept,
            category="complaint",
            citizen_handle=f"市民{n}",
            visibility="public",
            thread_json=ThreadRef(root_id=f"w{n}").model_dump_json(),
            conversation=extra.pop("conversation", inquiry_id),
            posted_at=posted.isoformat(),
        )
    )
    await store.db.execute(
        "UPDATE inquiries SET created_at = ? WHERE inquiry_id = ?",
        ((posted + timedelta(seconds=1)).isoformat(), inquiry_id),
    )


async def test_inquiry_without_a_ticket_is_acknowledged_once_before_its_first_response_limit(
    tmp_path: Path,
) -> None:
    """Half-way to the first-response limit (2 minutes here) an inquiry with no ticket and no
    reply gets the holding acknowledgement without a number, once, through its department's
    approval mode; one not due yet, one already answered, a follow-up and noise get none."""
    quick = {**DEPT, "sla": {"first_response": "2m"}}
    manual = {**DEPT, "id": "water", "name": "市水务局", "approval": "all-manual"}
    cfg = bridge_config(
        tmp_path,
        departments=[quick, manual],
        accounts=[ACCOUNT],
        sla={"check_every": "1h", "acknowledge_every": "1h"},
        ranking={"first_response": "4m"},  # water's limit: acknowledged after 2 minutes
    )
    async with running_bridge(cfg, ["sla", "reply"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        watch = BusTap(memory_of(daemon), ("sla.#", "reply.requested.#"))
        async with watch:
            await waiting(store, 1, "urban", timedelta(seconds=70))  # due (60 s)
            await waiting(store, 2, "urban", timedelta(seconds=30))  # not yet
            await waiting(store, 3, "urban", timedelta(seconds=70), state="triaged")  # due
            await waiting(store, 4, "urban", timedelta(seconds=70), conversation="inq_w1")
            await waiting(store, 5, "urban", timedelta(seconds=70), state="ignored")  # noise
            await waiting(store, 6, "urban", timedelta(seconds=70))  # answered already
            await store.add_reply(
                reply_id="rep-6",
                inquiry_id="inq_w6",
                platform="webhook",
                account="hotline",
                department="urban",
                status="received",
                templated=True,
                state="posted",
                request_json="{}",
            )
            await waiting(store, 7, "water", timedelta(seconds=70))  # its limit is 4 m
            await waiting(store, 8, "water", timedelta(seconds=130))  # due, all-manual
            role = daemon.ctx.roles["sla"]
            assert isinstance(role, SlaRole)
            first = await role.acknowledgements.scan()
            second = await role.acknowledgements.scan()  # nothing happens twice
            await watch.wait_for(2, "reply.requested.webhook")

            async def composed() -> bool:
                return len(await store.list_replies()) == 4  # rep-6 and the three new

            await eventually(composed)
            # A replay of an acknowledgement (two SLA processes published it) adds nothing.
            reply_role = daemon.ctx.roles["reply"]
            assert isinstance(reply_role, ReplyRole)
            await reply_role.hold(first[0], Delivery(attempt=0))
        replies = {r.inquiry_id: r for r in await store.list_replies()}

    assert sorted(e.inquiry_id for e in first) == ["inq_w1", "inq_w3", "inq_w8"]
    assert all(e.event == "holding_reply" and e.ticket_id is None for e in first)
    assert second == []
    assert sorted(replies) == ["inq_w1", "inq_w3", "inq_w6", "inq_w8"]
    assert replies["inq_w1"].text == "您好，您的诉求已收到，正在登记转办，办理编号稍后告知。"
    assert (replies["inq_w1"].state, replies["inq_w3"].state) == ("approved", "approved")
    assert replies["inq_w8"].state == "awaiting_approval"  # all-manual: an official decides
    assert replies["inq_w1"].status is None
    requested = [json.loads(s.body) for s in watch.seen if s.routing_key.startswith("reply.")]
    assert {b["inquiry_id"] for b in requested} == {"inq_w1", "inq_w3"}
    assert all(b["ticket_id"] is None for b in requested)


async def test_the_scan_reads_the_open_tickets_page_by_page(tmp_path: Path) -> None:
    """The scan reads open tickets a page at a time (here 3): across pages every open
    ticket due is found once, final ones and tickets whose inquiry is not stored are passed
    over, and the second scan finds nothing."""
    cfg = bridge_config(tmp_path, departments=[DEPT], accounts=[ACCOUNT], sla={"check_every": "1h"})
    async with running_bridge(cfg, ["sla"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        for n in range(10, 21):  # eleven breached consultations, three of them final
            status = "resolved" if n % 4 == 0 else "received"
            await seed(store, n, "consultation", status, timedelta(days=3))
        await seed(store, 30, "complaint", "received", timedelta(days=1))  # nothing due yet
        await store.db.execute("DELETE FROM inquiries WHERE inquiry_id = ?", ("inq_19",))
        role = daemon.ctx.roles["sla"]
        assert isinstance(role, SlaRole)
        role.SCAN_PAGE = 3
        pages: list[int] = []
        read = store.open_tickets_after

        async def counted(*args: Any) -> Any:
            page = await read(*args)
            pages.append(len(page))
            return page

        store.open_tickets_after = counted  # type: ignore[method-assign]
        first = await role.scan()
        second = await role.scan()
    breached = sorted(e.ticket_id for e in first if e.event == "breached")
    assert breached == [f"T{n}" for n in range(10, 21) if n % 4 and n != 19]
    assert second == []
    assert pages[:4] == [3, 3, 2, 0]  # eight open tickets with their inquiry, then the end


async def test_open_tickets_are_paged_in_key_order_on_both_engines(store: Any) -> None:
    for n in (3, 1, 4, 2, 5):
        await seed(
            store,
            n,
            "complaint" if n % 2 else "",
            "closed" if n == 4 else "received",
            timedelta(hours=n),
        )
    final = ["closed", "rejected", "resolved"]
    first = await store.open_tickets_after(None, 2, final)
    rest = await store.open_tickets_after(
        (first[-1][0].department, first[-1][0].ticket_id), 2, final
    )
    last = await store.open_tickets_after(("urban", "T5"), 2, final)
    assert [(t.ticket_id, c) for t, c in first] == [("T1", "complaint"), ("T2", "")]
    assert [(t.ticket_id, c) for t, c in rest] == [("T3", "complaint"), ("T5", "complaint")]
    assert last == []


async def test_a_watching_ticket_system_is_told_the_open_tickets_only(store: Any) -> None:
    """What sync tells a ticket system that watches tickets by id: the open ones of the
    department with the native status the bridge knows, not the final ones."""
    for n, status in ((1, "received"), (2, "closed"), (3, "in_progress")):
        await seed(store, n, "complaint", status, timedelta(hours=n))
    final = ["closed", "rejected", "resolved"]
    assert await store.open_native_statuses("urban", final) == {
        "T1": "received",
        "T3": "in_progress",
    }
    assert await store.open_native_statuses("transport", final) == {}
