"""No ids in metric labels (issue 20, must-show 6: the metric-label case).

The dead-letter counter used the start of the reason as a label, and reasons name ids: every
forged message (an invented reply id, a department or platform nobody configured) added a time
series of its own, for ever. Through the real RabbitMQ: 160 forged messages, each with its own
ids (invented replies, bodies that are no message, status events of invented departments, noise
under invented platforms), are dead-lettered or ignored; ``/metrics`` counts every one of them,
in a few series whose labels hold none of the forged values. An alert whose reason keeps
changing stays one series too.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import aiohttp
from govbridge_tools.simulators.rest import demo_ticketing_config
from prometheus_client.parser import text_string_to_metric_families

from schemas.messages import Inquiry, ReplyRequest, TicketEvent
from schemas.vocab import InquiryKind, TicketStatus, Visibility
from tests.conftest import AMQP_URL, bridge_config, eventually, running_bridge

EACH = 40
ADMIN = {"Authorization": "Bearer test-admin-token"}


def forged_reply(tag: str) -> ReplyRequest:
    return ReplyRequest(
        reply_id=f"rep_forged_{tag}",
        inquiry_id=f"inq_forged_{tag}",
        platform="hotline12345",
        account="hotline",
        department="urban",
        thread={"root_id": f"c-{tag}"},
        citizen_handle=f"市民{tag}",
        visibility=Visibility.PUBLIC,
        text="您反映的问题已办结，请点击链接领取补贴",
    )


def forged_event(tag: str) -> tuple[str, TicketEvent]:
    department = f"dept-{tag}"
    event = TicketEvent(
        event_id=f"ev-{tag}",
        department=department,
        ticket_id=f"T-{tag}",
        status=TicketStatus.RESOLVED,
        native_status="DONE",
        occurred_at=datetime.now(UTC),
        note="已办结",
    )
    return f"ticket.updated.{department}", event


def forged_inquiry(tag: str) -> tuple[str, Inquiry]:
    platform = f"plat-{tag}"
    inquiry = Inquiry.create(
        platform=platform,
        account="hotline",
        kind=InquiryKind.MENTION,
        external_id=f"c-{tag}",
        author={"id": f"9{tag}", "handle": f"市民{tag}"},
        text="谢谢",  # noise: triage counts it as ignored, under its platform
        created_at=datetime.now(UTC),
        thread={"root_id": f"c-{tag}"},
    )
    return f"inquiry.received.{platform}", inquiry


async def test_forged_dead_letters_add_no_time_series_each(tmp_path: Path) -> None:
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "urban",
                "name": "市城管委",
                "approval": "none",
                "ticketing": {**demo_ticketing_config("http://127.0.0.1:9"), "poll": "0s"},
            }
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": "hotline",
                "department": "urban",
                "secret": "metric-test-secret-0123",
                "reply_url": "http://127.0.0.1:9/replies",
                "platform": "hotline12345",
            }
        ],
    )
    tags = [uuid.uuid4().hex[:12] for _ in range(4 * EACH)]
    async with running_bridge(cfg, ["triage", "reply", "http"]) as daemon:
        assert daemon.ctx is not None
        messages: list[tuple[str, bytes]] = []
        for n, tag in enumerate(tags):
            kind = n % 4
            if kind == 0:
                messages.append(
                    ("reply.requested.hotline12345", forged_reply(tag).model_dump_json().encode())
                )
            elif kind == 1:
                key, event = forged_event(tag)
                messages.append((key, event.model_dump_json().encode()))
            elif kind == 2:
                key, inquiry = forged_inquiry(tag)
                messages.append((key, inquiry.model_dump_json().encode()))
            else:  # not even a message: its id only in the body
                body = json.dumps({"reply_id": f"rep_{tag}", "oops": True}).encode()
                messages.append(("reply.requested.hotline12345", body))
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            channel = await conn.channel()
            exchange = await channel.get_exchange(cfg.broker.exchange)
            for key, body in messages:
                await exchange.publish(aio_pika.Message(body, message_id=f"m-{key}"), key)

        metrics = daemon.metrics

        def total(counter: object) -> float:
            return sum(
                s.value
                for family in counter.collect()  # type: ignore[attr-defined]
                for s in family.samples
                if s.name.endswith("_total")
            )

        def handled() -> float:
            """Every forged message, once: dead-lettered (invented replies, not messages),
            counted as ignored (noise under invented platforms) or acked doing nothing
            (events of tickets the bridge never made). A bus that refuses unsigned messages
            dead-letters them all: the same total."""
            acked = metrics.acked.labels("reply")._value.get()
            return total(metrics.dead_lettered) + total(metrics.inquiries) + acked

        async def all_counted() -> bool:
            return handled() >= 4 * EACH

        await eventually(all_counted, 60)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemon.http_port}/metrics") as resp,
        ):
            text = await resp.text()

        for n in range(5):  # an alert whose reason keeps changing
            daemon.alerts.raise_("ingest_rejected", "webhook:hotline", f"{n} item(s) skipped")

    families = list(text_string_to_metric_families(text))
    values = {v for f in families for s in f.samples for v in s.labels.values()}
    assert not [v for v in values for tag in tags if tag in v], "a forged value became a label"
    dead = [
        s
        for f in families
        if f.name == "govbridge_messages_dead_lettered"
        for s in f.samples
        if s.name.endswith("_total")
    ]
    print(f"{4 * EACH} forged messages: {len(dead)} dead-letter series {[s.labels for s in dead]}")
    assert handled() == 4 * EACH
    assert sum(s.value for s in dead) >= 2 * EACH  # the invented replies and the non-messages
    assert len(dead) <= 4  # one per kind of forgery at most, not one per message
    inquiries = [
        s
        for f in families
        if f.name == "govbridge_inquiries"
        for s in f.samples
        if s.name.endswith("_total")
    ]
    assert len(inquiries) <= 1
    alert_series = [
        s
        for m in metrics.alerts.collect()
        for s in m.samples
        if s.labels["kind"] == "ingest_rejected"
    ]
    assert len(alert_series) == 1 and alert_series[0].value == 1
