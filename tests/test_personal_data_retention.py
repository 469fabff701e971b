"""Where raw personal data may rest (issue 10): dead letters expire after ``dead_letter_ttl``,
unroutable messages after ``unroutable_ttl``; departments get masked text unless they opt in
with ``keep_personal_data``."""

from __future__ import annotations

from datetime import timedelta

import aio_pika
import structlog

from adapters.rest import command_fields
from bridge.runtime.topology import Topology
from schemas.config import BrokerConfig, DepartmentConfig
from tests.conftest import AMQP_URL, broker_config, delete_topology, eventually
from tests.test_ticketing import command


def test_departments_get_masked_text_unless_they_opt_in() -> None:
    dept = DepartmentConfig.model_validate(
        {"id": "d", "name": "部门", "ticketing": {"adapter": "x"}}
    )
    assert dept.keep_personal_data is False


async def test_dead_letters_expire_after_the_ttl() -> None:
    """The same dead letter in a bridge with a short ``dead_letter_ttl`` goes; in one with the
    default (14 days) it stays: the TTL is what removes it."""
    short = broker_config(dead_letter_ttl=timedelta(milliseconds=300))
    default = broker_config()
    conn = await aio_pika.connect(AMQP_URL)
    try:
        async with conn:
            channel = await conn.channel()  # publisher confirms: published means queued
            for cfg in (short, default):
                topology = Topology(cfg)
                await topology.declare(channel)
                await channel.default_exchange.publish(
                    aio_pika.Message(b'{"text": "my phone 13812345678"}'),
                    routing_key=topology.queues("triage").dead,
                )

            async def count(cfg: BrokerConfig) -> int:
                q = await channel.declare_queue(Topology(cfg).queues("triage").dead, passive=True)
                return int(q.declaration_result.message_count or 0)

            async def expired() -> bool:
                return await count(short) == 0

            await eventually(expired, 30)
            assert await count(default) == 1
            assert Topology(short).dead_letter_queue_arguments()["x-message-ttl"] == 300
            assert "each kept 300ms" in "\n".join(Topology(short).describe())
            assert "each kept 336h" in "\n".join(Topology(default).describe())
    finally:
        await delete_topology(short)
        await delete_topology(default)


async def test_an_earlier_versions_dead_letter_queue_without_ttl_still_works() -> None:
    """Declared without a TTL by an earlier version: the bridge keeps working and says which
    policy bounds it (queue arguments cannot change in place)."""
    cfg: BrokerConfig = broker_config()
    topology = Topology(cfg)
    conn = await aio_pika.connect(AMQP_URL)
    try:
        async with conn:
            channel = await conn.channel()
            await channel.declare_queue(
                topology.ingest_dead, durable=True, arguments=topology.holding_queue_arguments()
            )
            with structlog.testing.capture_logs() as logs:
                await topology.declare(channel)
            warned = [e for e in logs if e.get("queue") == topology.ingest_dead]
            assert warned and "no TTL" in warned[0]["event"]
            assert "message-ttl" in warned[0]["policy"]
            # and the rest of the topology is declared: the stages' dead-letter queues too
            await channel.declare_queue(topology.queues("triage").dead, passive=True)
    finally:
        await delete_topology(cfg)


def test_rest_templates_see_the_text_as_the_department_may() -> None:
    """``{text}`` in a REST body template is the text the department may see (the masked one
    unless keep_personal_data), not the raw inquiry."""
    raw = command(1, "pii")
    text = "我的电话13812345678，路灯坏了"
    inquiry = raw.inquiry.model_copy(update={"text": text})
    masked = raw.model_copy(
        update={"inquiry": inquiry, "description": "我的电话[手机号]，路灯坏了"}
    )
    assert command_fields(masked)["text"] == "我的电话[手机号]，路灯坏了"
    kept = masked.model_copy(update={"description": text})
    assert command_fields(kept)["text"] == text
