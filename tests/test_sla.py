"""The deadline watcher: holding replies, warnings and breaches, each once per ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from govbridge_tools.testing import BusTap

from bridge.sla.role import SlaRole
from bridge.store import NewInquiry
from schemas.messages import ThreadRef
from tests.conftest import bridge_config, memory_of, running_bridge

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
