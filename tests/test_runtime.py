"""The runtime's contract with the bus: retry tiers, dead letters, delivery limit, unroutable;
each test against the real RabbitMQ and against the in-memory broker
(``govbridge_tools.testing.MemoryBroker``), so that the stage tests that run on the latter
rely only on what RabbitMQ does too."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from govbridge_tools.testing import MemoryBroker

from bridge.runtime.broker import REASON_HEADER, Broker, PublishError
from bridge.runtime.worker import DeadLetter, Delivery, Retry, Stage, Worker
from schemas.config import BrokerConfig
from schemas.messages import TicketEvent
from schemas.vocab import TicketStatus
from tests.bus import publish_signed
from tests.conftest import AMQP_URL, delete_topology


@pytest.fixture(params=["rabbitmq", "memory"])
async def broker(request: pytest.FixtureRequest, broker_cfg: BrokerConfig) -> AsyncIterator[Broker]:
    b = MemoryBroker(broker_cfg) if request.param == "memory" else Broker(broker_cfg)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()
        if request.param == "rabbitmq":
            await delete_topology(broker_cfg)


def event(n: int, dept: str = "transport") -> TicketEvent:
    return TicketEvent(
        event_id=f"ev-{n}",
        department=dept,
        ticket_id=f"T{n}",
        status=TicketStatus.RECEIVED,
        native_status="open",
        occurred_at=datetime.now(UTC),
    )


async def drain_queue(broker: Broker, name: str, expect: int, timeout: float = 10) -> list[Any]:
    """Collect ``expect`` messages from a queue (acked), waiting up to ``timeout``."""
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    if isinstance(broker, MemoryBroker):
        deadline = loop.time() + timeout
        queue = broker.queues[name].messages
        while len(got) < expect and loop.time() < deadline:
            if queue:
                got.append(queue.popleft())
            else:
                await asyncio.sleep(0.02)
        return got
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.get_queue(name, ensure=False)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < expect and asyncio.get_running_loop().time() < deadline:
            msg = await q.get(fail=False, no_ack=True)
            if msg is None:
                await asyncio.sleep(0.05)
                continue
            got.append(msg)
    return got


async def wait_for(predicate: object, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_transient_failure_retried_with_growing_delays_then_succeeds(broker: Broker) -> None:
    seen: list[tuple[int, float]] = []
    done: list[str] = []

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        attempt = msg.attempt
        seen.append((attempt, asyncio.get_running_loop().time()))
        if attempt < 2:
            raise Retry("backend timeout")
        done.append(ev.event_id)

    worker = Worker(broker, Stage("reply", TicketEvent, handler))
    await worker.start()
    await broker.publish("ticket.updated.transport", event(1))
    await wait_for(lambda: done)
    await worker.stop()

    assert done == ["ev-1"]  # succeeded exactly once
    assert [a for a, _ in seen] == [0, 1, 2]
    gap1 = seen[1][1] - seen[0][1]
    gap2 = seen[2][1] - seen[1][1]
    assert gap1 >= 0.18 and gap2 >= 0.45  # tiers 200 ms then 500 ms (broker TTLs)
    assert gap2 > gap1
    assert broker.metrics.retried.labels("reply", "200ms")._value.get() == 1
    assert broker.metrics.retried.labels("reply", "500ms")._value.get() == 1


async def test_permanent_failure_dead_lettered_with_reason(broker: Broker) -> None:
    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        raise DeadLetter("unknown department: transport")

    worker = Worker(broker, Stage("reply", TicketEvent, handler))
    await worker.start()
    await broker.publish("ticket.updated.transport", event(2))
    dead = await drain_queue(broker, broker.topology.queues("reply").dead, 1)
    await worker.stop()
    assert len(dead) == 1
    assert dead[0].headers[REASON_HEADER] == "unknown department: transport"
    assert TicketEvent.model_validate_json(dead[0].body).event_id == "ev-2"


async def test_attempts_exhausted_dead_letters(broker: Broker) -> None:
    calls = Counter[str]()

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        calls[ev.event_id] += 1
        raise Retry("still down")

    worker = Worker(broker, Stage("reply", TicketEvent, handler))
    await worker.start()
    await broker.publish("ticket.updated.transport", event(3))
    dead = await drain_queue(broker, broker.topology.queues("reply").dead, 1)
    await worker.stop()
    assert calls["ev-3"] == 4  # first try + one per tier (3 tiers)
    assert str(dead[0].headers[REASON_HEADER]).startswith("attempts exhausted after 4 tries")


async def test_malformed_message_dead_lettered_with_reason(broker: Broker) -> None:
    handled: list[str] = []

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        handled.append(ev.event_id)

    worker = Worker(broker, Stage("reply", TicketEvent, handler))
    await worker.start()
    # signed as the bridge signs (the check comes first): the body is what is wrong here
    await publish_signed(broker, "ticket.updated.x", b'{"event_id": 1}', "TicketEvent")
    dead = await drain_queue(broker, broker.topology.queues("reply").dead, 1)
    await worker.stop()
    assert handled == []
    assert str(dead[0].headers[REASON_HEADER]).startswith("malformed TicketEvent:")


async def test_crashing_handler_reaches_dead_letters_through_delivery_limit(
    broker: Broker,
) -> None:
    crashes = Counter[str]()

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        crashes[ev.event_id] += 1
        raise ZeroDivisionError("bug")

    worker = Worker(broker, Stage("reply", TicketEvent, handler))
    await worker.start()
    await broker.publish("ticket.updated.transport", event(4))
    dead = await drain_queue(broker, broker.topology.queues("reply").dead, 1, timeout=20)
    await worker.stop()
    assert len(dead) == 1
    assert TicketEvent.model_validate_json(dead[0].body).event_id == "ev-4"
    # delivery limit 3: the broker dead-letters after the limit is exceeded
    assert crashes["ev-4"] == broker.cfg.delivery_limit + 1
    assert dead[0].headers.get("x-death") or dead[0].headers.get("x-first-death-reason")


async def test_unroutable_publish_is_caught(broker: Broker) -> None:
    # no queue binds "nobody.listens": the alternate exchange keeps it
    await broker.publish("nobody.listens.here", event(5))
    kept = await drain_queue(broker, broker.topology.unroutable_queue, 1)
    assert TicketEvent.model_validate_json(kept[0].body).event_id == "ev-5"


async def test_publish_to_exchange_without_alternate_raises(broker: Broker) -> None:
    # the dead-letter exchange has no alternate: an unroutable mandatory publish is returned
    with pytest.raises(PublishError, match="unroutable"):
        await broker.publish_raw(broker.topology.dead_letter_exchange, "no-such-stage", b"{}")
    assert broker.metrics.unroutable._value.get() == 1


async def test_store_unavailable_waits_in_a_delay_tier_and_never_dead_letters(
    broker: Broker,
) -> None:
    """A store outage is not the message's fault: more failures than tiers and than the
    delivery limit, yet the message is delayed each time (attempts not used up) and handled
    once the store is back."""
    from bridge.store.errors import StoreUnavailable

    tries: list[int] = []
    done: list[str] = []
    outage = len(broker.topology.queues("reply").retry) + broker.cfg.delivery_limit + 1

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        tries.append(msg.attempt)
        if len(tries) <= outage:
            raise StoreUnavailable("ConnectionRefusedError: connect call failed")
        done.append(ev.event_id)

    worker = Worker(broker, Stage("reply", TicketEvent, handler))
    await worker.start()
    await broker.publish("ticket.updated.transport", event(9))
    await wait_for(lambda: done, timeout=30)
    await worker.stop()
    assert done == ["ev-9"]
    assert tries == [0] * (outage + 1)  # never counted as an attempt
    assert broker.metrics.retried.labels("reply", "200ms")._value.get() == outage
    assert await drain_queue(broker, broker.topology.queues("reply").dead, 1, timeout=0.5) == []


async def test_memory_broker_routes_every_key_as_the_stage_table_binds_it(
    broker_cfg: BrokerConfig,
) -> None:
    """Each public routing key reaches the work queues of the stages that bind it (from
    ``schemas/stages.py``) and nothing else; a key no stage binds is kept as unroutable."""
    memory = MemoryBroker(broker_cfg)
    await memory.connect()
    try:
        keys = {
            "inquiry.received.weibo": {"triage"},
            "inquiry.routed.transport": {"ticketing"},
            "ticket.created.transport": {"reply"},
            "ticket.updated.transport": {"reply"},
            "reply.requested.weibo": {"outbox"},
            "sla.holding_reply.transport": {"holding"},
            "sla.breached.transport": set(),
            "reply.posted.weibo": set(),
        }
        for key in keys:
            await memory.publish_raw(broker_cfg.exchange, key, b"{}", sign_as=key)
        for key, stages in keys.items():
            got = {
                stage
                for stage in memory.topology.stages
                if any(
                    m.routing_key == key
                    for m in memory.queues[memory.topology.queues(stage).work].messages
                )
            }
            assert got == stages, key
        assert [m.routing_key for m in memory.unroutable()] == [
            "sla.breached.transport",
            "reply.posted.weibo",
        ]
        assert [p.routing_key for p in memory.published] == list(keys)
    finally:
        await memory.close()
