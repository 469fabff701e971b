"""A crash between applying a ticket event and requesting its reply loses no reply."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika

from bridge.runtime import PublishError
from schemas.messages import Message, TicketEvent
from schemas.vocab import TicketStatus
from tests.conftest import AMQP_URL, bridge_config, eventually, running_bridge
from tests.test_sla import ACCOUNT, DEPT, seed


async def test_redelivered_event_completes_its_reply_after_a_failed_publish(
    tmp_path: Path,
) -> None:
    cfg = bridge_config(tmp_path, departments=[{**DEPT, "approval": "none"}], accounts=[ACCOUNT])
    async with running_bridge(cfg, ["reply"]) as daemon:
        assert daemon.ctx is not None
        broker = daemon.ctx.broker
        await seed(daemon.ctx.store, 1, "complaint", "received", age=timedelta(0))
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            ch = await conn.channel()
            watch = await ch.declare_queue(exclusive=True)
            await watch.bind(await ch.get_exchange(cfg.broker.exchange), "reply.requested.#")

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

            got: list[dict[str, Any]] = []

            async def requested() -> bool:
                while (msg := await watch.get(fail=False, no_ack=True)) is not None:
                    got.append(json.loads(msg.body))
                return bool(got)

            await eventually(requested)
        assert failures == ["reply.requested.webhook"]  # the first attempt did fail
        assert [(r["ticket_id"], r["status"]) for r in got] == [("T1", "in_progress")]
        ticket = await daemon.ctx.store.get_ticket("urban", "T1")
        assert ticket is not None and ticket["status"] == "in_progress"
        assert daemon.metrics.crashed.labels("reply")._value.get() == 1
