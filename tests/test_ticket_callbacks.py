"""Signed ticket-system callbacks through the real RabbitMQ (issue 4, must-show 5).

``POST /hooks/tickets/{department}`` (roles ``sync`` + ``http``): forged, stale, oversized and
malformed callbacks are answered with a clear 4xx and publish nothing (a queue of our own bound
to ``ticket.updated.#`` stays empty until a valid control message arrives); valid ones become
``TicketEvent``s. With the ``reply`` role too, events delivered out of order, twice, or replayed
never move a ticket's status backwards: only forward transitions are applied.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from aio_pika.abc import AbstractQueue
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.testing import SignedHook

from adapters import signing
from bridge.store import NewInquiry, SqlStore
from schemas.config import GovbridgeConfig
from schemas.messages import TicketEvent
from schemas.vocab import TicketStatus
from tests.conftest import AMQP_URL, bridge_config, eventually, running_bridge

DEPT = "urban"
SECRET = "callback-secret-for-tests"
MAX_BODY = 64 * 1024


def config(tmp_path: Path, base_url: str = "http://127.0.0.1:9") -> GovbridgeConfig:
    ticketing = {**demo_ticketing_config(base_url), "poll": "0s", "callback_secret": SECRET}
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": DEPT,
                "name": "市城管委",
                "approval": "all-manual",  # replies wait in the store: no account needed
                "sla": {"complaint": "13wd"},
                "ticketing": ticketing,
            }
        ],
    )


def item(event_id: str, ticket_id: str, status: str, at: datetime) -> dict[str, Any]:
    return {"id": event_id, "ticket_id": ticket_id, "status": status, "time": at.isoformat()}


def body_of(*items: dict[str, Any]) -> bytes:
    return json.dumps({"items": list(items)}).encode()


@asynccontextmanager
async def own_queue(cfg: GovbridgeConfig) -> AsyncIterator[AbstractQueue]:
    """A third party's queue bound to the public ``ticket.updated.#`` routing keys."""
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        queue = await ch.declare_queue(
            f"{cfg.broker.exchange}.observer.{uuid.uuid4().hex[:6]}", exclusive=True
        )
        await queue.bind(cfg.broker.exchange, "ticket.updated.#")
        yield queue


async def drain(queue: AbstractQueue) -> list[tuple[str, TicketEvent]]:
    got = []
    while (msg := await queue.get(no_ack=True, fail=False)) is not None:
        got.append((msg.routing_key or "", TicketEvent.model_validate_json(msg.body)))
    return got


def hook_for(http: aiohttp.ClientSession, port: int, dept: str = DEPT) -> SignedHook:
    """The department's ticket callback hook, signed with its callback secret."""
    return SignedHook(http, f"http://127.0.0.1:{port}/hooks/tickets/{dept}", SECRET)


async def test_invalid_callbacks_are_rejected_and_publish_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    now = datetime.now(UTC)
    good = body_of(item("chg-1", "T-000001", "ASSIGNED", now))
    async with (
        running_bridge(cfg, ["sync", "http"]) as daemon,
        own_queue(cfg) as queue,
        aiohttp.ClientSession() as http,
    ):
        assert daemon.http_port is not None
        hook = hook_for(http, daemon.http_port)

        # Forged: another secret; a body swapped under a valid signature; no signature at all.
        status, doc = await hook.post(good, signed_with="not-the-secret")
        assert (status, doc["error"]) == (401, "signature does not match")
        tampered = body_of(item("chg-1", "T-000001", "DONE", now))
        status, doc = await hook.post(tampered, signing.sign(SECRET, good))
        assert (status, doc["error"]) == (401, "signature does not match")
        status, doc = await hook.post(good, {})
        assert status == 401 and "missing" in doc["error"]

        # Stale (and from the future): outside the 5-minute replay window, even if signed well.
        for skew in (-301, 600):
            headers = signing.sign(SECRET, good, int(time.time()) + skew)
            status, doc = await hook.post(good, headers)
            assert status == 401 and "replay window" in doc["error"], doc

        # Oversized: one byte over 64 KiB, correctly signed; with and without Content-Length.
        big = body_of({**item("chg-2", "T-000001", "DONE", now), "note": "x" * MAX_BODY})
        assert len(big) > MAX_BODY
        status, doc = await hook.post(big)
        assert status == 413 and str(MAX_BODY) in doc["error"]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        status, doc = await hook.post(chunks(), signing.sign(SECRET, big))
        assert status == 413

        # Malformed but authentic: 400 with the reason.
        malformed = {
            b"{not json": "callback: body is not JSON",
            b'"just a string"': "callback: body must be a JSON object or list",
            json.dumps(
                {"items": {"id": "x"}}
            ).encode(): "callback.items: must be a list of changes",
            body_of({"id": "chg-3", "ticket_id": "T-1", "time": now.isoformat()}): (
                "callback.items[0].status: required status is missing"
            ),
            body_of({**item("chg-4", "T-1", "DONE", now), "time": "yesterday"}): (
                "callback.items[0].time: not an ISO 8601 time"
            ),
        }
        for body, reason in malformed.items():
            status, doc = await hook.post(body)
            assert (status, doc["error"]) == (400, reason)

        # Unknown department, or one without a callback secret: answered exactly like a
        # correctly formed callback with a wrong signature (no enumeration of departments).
        wrong = signing.sign("not-the-secret", good)
        assert await hook.post(good, wrong) == (401, {"error": "signature does not match"})
        assert await hook_for(http, daemon.http_port, "nobody").post(good) == (
            401,
            {"error": "signature does not match"},
        )

        assert await drain(queue) == []  # nothing published so far …
        status, doc = await hook.post(good)  # … and the binding does work:
        assert (status, doc) == (202, {"accepted": 1})
        got = await drain(queue)
        assert [(key, e.event_id, e.status, e.source) for key, e in got] == [
            (f"ticket.updated.{DEPT}", "chg-1", TicketStatus.REFERRED, "callback")
        ]


async def test_valid_callbacks_from_the_backend_become_ticket_events(tmp_path: Path) -> None:
    sim = RestSimServer(RestTicketState(callback_secret=SECRET))
    await sim.start()
    cfg = config(tmp_path, sim.url)
    try:
        async with (
            running_bridge(cfg, ["sync", "http"]) as daemon,
            own_queue(cfg) as queue,
        ):
            state = sim.state
            state.callback_url = f"http://127.0.0.1:{daemon.http_port}/hooks/tickets/{DEPT}"
            created = state.create_ticket(
                {"title": "路灯", "body": "路灯坏了", "external_ref": "GB-REF1"}, None
            )
            assert created.status == 201
            ticket_id = next(iter(state.tickets))
            for status, note in (("ASSIGNED", None), ("DRAFT", None), ("DONE", "已修复")):
                await state.move(ticket_id, status, note)
            # Every callback was signed by the backend and accepted after the broker confirmed.
            assert [code for _, code in state.callbacks] == [202, 202, 202]

            got = await drain(queue)
            assert [
                (e.event_id, e.ticket_id, e.status, e.native_status, e.reference, e.note)
                for _, e in got
            ] == [
                ("chg-1", ticket_id, TicketStatus.REFERRED, "ASSIGNED", "GB-REF1", None),
                # chg-2 (DRAFT) is mapped to IGNORE: accepted, no event.
                ("chg-3", ticket_id, TicketStatus.RESOLVED, "DONE", "GB-REF1", "已修复"),
            ]
            assert all(e.source == "callback" and e.department == DEPT for _, e in got)
    finally:
        await sim.close()


async def record_ticket(store: SqlStore, ticket_id: str, created: datetime) -> str:
    inquiry_id = f"inq_{uuid.uuid4().hex[:12]}"
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=inquiry_id,
            platform="weibo",
            account="bjcg",
            kind="mention",
            thread_key=f"weibo:bjcg:{inquiry_id}",
            state="ticketed",
            department=DEPT,
            category="complaint",
            ticket_id=ticket_id,
            public_text="小区北门路灯坏了",
            citizen_handle="citizen",
            visibility="public",
            thread_json=json.dumps({"root_id": "s1", "reply_to": {}}),
        )
    )
    await store.record_ticket(
        department=DEPT,
        ticket_id=ticket_id,
        reference="GB-OOO",
        inquiry_id=inquiry_id,
        thread_key=f"weibo:bjcg:{inquiry_id}",
        status=TicketStatus.RECEIVED.value,
        status_rank=TicketStatus.RECEIVED.rank,
        native_status="NEW",
        status_at=created.isoformat(),
    )
    return inquiry_id


async def test_out_of_order_events_never_move_a_status_backwards(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    ticket_id = "T-000042"
    assigned = item("chg-1", ticket_id, "ASSIGNED", t0 + timedelta(minutes=1))
    in_progress = item("chg-2", ticket_id, "IN_PROGRESS", t0 + timedelta(minutes=2))
    done = item("chg-3", ticket_id, "DONE", t0 + timedelta(minutes=3))
    closed = item("chg-4", ticket_id, "CLOSED", t0 + timedelta(minutes=4))
    # Delivery order: referred, then resolved before in_progress, a duplicate of resolved, a
    # replay of the oldest change, then the genuine next step.
    deliveries = [assigned, done, in_progress, done, assigned, closed]

    async with (
        running_bridge(cfg, ["sync", "http", "reply"]) as daemon,
        aiohttp.ClientSession() as http,
    ):
        assert daemon.ctx is not None and daemon.http_port is not None
        store = daemon.ctx.store
        inquiry_id = await record_ticket(store, ticket_id, t0)
        hook = hook_for(http, daemon.http_port)
        acked = daemon.metrics.acked.labels("reply")
        history: list[tuple[str, str]] = []
        for n, change in enumerate(deliveries, start=1):
            status, doc = await hook.post(body_of(change))
            assert (status, doc) == (202, {"accepted": 1})

            async def handled(n: int = n) -> bool:
                return acked._value.get() >= n

            await eventually(handled)
            row = await store.get_ticket(DEPT, ticket_id)
            assert row is not None
            history.append((row.status, row.native_status))

        assert history == [
            ("referred", "ASSIGNED"),
            ("resolved", "DONE"),
            ("resolved", "DONE"),  # in_progress arrived late: recorded, not applied
            ("resolved", "DONE"),  # duplicate of chg-3
            ("resolved", "DONE"),  # replay of chg-1
            ("closed", "CLOSED"),
        ]
        ranks = [TicketStatus(s).rank for s, _ in history]
        assert ranks == sorted(ranks)

        events = await store.db.fetchall(
            "SELECT event_id, status, applied FROM ticket_events WHERE ticket_id = ?"
            " ORDER BY event_id",
            (ticket_id,),
        )
        assert [(e["event_id"], e["status"], e["applied"]) for e in events] == [
            ("chg-1", "referred", 1),
            ("chg-2", "in_progress", 0),
            ("chg-3", "resolved", 1),
            ("chg-4", "closed", 1),
        ]
        # Only the forward transitions said anything to the citizen.
        replies = await store.list_replies(inquiry_id=inquiry_id)
        assert sorted(r.status for r in replies if r.status is not None) == [
            "closed",
            "referred",
            "resolved",
        ]
        assert len(replies) == 3
        dead = [s for m in daemon.metrics.dead_lettered.collect() for s in m.samples]
        assert dead == []
