"""A crash between applying a ticket event and requesting its reply loses no reply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from govbridge_tools.testing import BusTap

from bridge.runtime.broker import PublishError
from schemas.messages import Message, TicketEvent
from schemas.vocab import TicketStatus
from tests.conftest import bridge_config, eventually, memory_of, running_bridge
from tests.test_sla import ACCOUNT, DEPT, seed


async def test_redelivered_event_completes_its_reply_after_a_failed_publish(
    tmp_path: Path,
) -> None:
    cfg = bridge_config(tmp_path, departments=[{**DEPT, "approval": "none"}], accounts=[ACCOUNT])
    async with running_bridge(cfg, ["reply"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        broker = daemon.ctx.broker
        await seed(daemon.ctx.store, 1, "complaint", "received", age=timedelta(0))
        async with BusTap(memory_of(daemon), "reply.requested.#") as watch:
            real_publish = broker.publish
            failures: list[str] = []

            async def flaky(routing_key: str, message: Message, **kw: Any) -> None:
                if routing_key.startswith("reply.requested") and not failures:
                    failures.append(routing_key)  # the process "dies" right here, once
                    raise PublishError("broker connection lost")
                await real_publish(routing_key, message, **kw)

            broker.publish = flaky  # type: ignore[method-assign]
            event = TicketEvent(
                event_id="chg-1",
                department="urban",
                ticket_id="T1",
                status=TicketStatus.IN_PROGRESS,
                native_status="IN_PROGRESS",
                occurred_at=datetime.now(UTC),
            )
            await real_publish("ticket.updated.urban", event)

            await watch.wait_for(1)
            got = watch.bodies()
        assert failures == ["reply.requested.webhook"]  # the first attempt did fail
        assert [(r["ticket_id"], r["status"]) for r in got] == [("T1", "in_progress")]
        ticket = await daemon.ctx.store.get_ticket("urban", "T1")
        assert ticket is not None and ticket.status == "in_progress"
        assert daemon.metrics.crashed.labels("reply")._value.get() == 1


async def test_reopened_ticket_replies_again_in_its_new_cycle(tmp_path: Path) -> None:
    """重办: after a dissatisfied follow-up reopens a resolved ticket, the citizen hears each
    status of the new handling cycle once; a late event of the first cycle says nothing."""
    cfg = bridge_config(tmp_path, departments=[{**DEPT, "approval": "none"}], accounts=[ACCOUNT])
    async with running_bridge(cfg, ["reply"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store, broker = daemon.ctx.store, daemon.ctx.broker
        await seed(store, 1, "complaint", "received", age=timedelta(0))
        async with BusTap(memory_of(daemon), "reply.requested.#") as watch:
            start = datetime.now(UTC)
            steps = [
                ("e1", TicketStatus.IN_PROGRESS, 1),
                ("e2", TicketStatus.RESOLVED, 2),
                ("e3", TicketStatus.REOPENED, 3),
                ("e1-late", TicketStatus.RESOLVED, 2),  # cycle 0's, delivered late
                ("e4", TicketStatus.IN_PROGRESS, 4),
                ("e5", TicketStatus.RESOLVED, 5),
                ("e3", TicketStatus.REOPENED, 3),  # replay
            ]
            for event_id, status, minutes in steps:
                event = TicketEvent(
                    event_id=event_id,
                    department="urban",
                    ticket_id="T1",
                    status=status,
                    native_status=status.value,
                    occurred_at=start + timedelta(minutes=minutes),
                )
                await broker.publish("ticket.updated.urban", event)

                async def recorded(eid: str = event_id) -> bool:
                    rows = await store.db.fetchall(
                        "SELECT 1 FROM ticket_events WHERE event_id = ?", (eid,)
                    )
                    return bool(rows)

                await eventually(recorded)
            await eventually(lambda: _consumed(daemon, len(steps)))
            got = watch.bodies()
    # A replayed event re-requests its (stable-id) reply while it is not posted yet — the
    # outbox posts each reply id once — so compare distinct replies in order of appearance.
    distinct: list[dict[str, Any]] = []
    for r in got:
        if all(d["reply_id"] != r["reply_id"] for d in distinct):
            distinct.append(r)
    assert [(r["status"], r["cycle"]) for r in distinct] == [
        ("in_progress", 0),
        ("resolved", 0),
        ("reopened", 1),
        ("in_progress", 1),
        ("resolved", 1),
    ]
    assert "重新办理" in distinct[2]["text"]


async def _consumed(daemon: Any, n: int) -> bool:
    return bool(daemon.metrics.acked.labels("reply")._value.get() >= n)
