"""Shared fixtures: a real RabbitMQ (``GOVBRIDGE_AMQP_URL`` or localhost) with names unique to
each test, deleted afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import pytest

from bridge.runtime import Broker
from bridge.topology import Topology
from schemas.config import BrokerConfig

AMQP_URL = os.environ.get("GOVBRIDGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def broker_config(**overrides: object) -> BrokerConfig:
    """Config with a unique exchange prefix and short delay tiers (tests only)."""
    values: dict[str, object] = {
        "url": AMQP_URL,
        "exchange": f"gbtest-{uuid.uuid4().hex[:10]}",
        "retry_delays": [
            timedelta(milliseconds=200),
            timedelta(milliseconds=500),
            timedelta(seconds=1),
        ],
        "delivery_limit": 3,
        "confirm_timeout": timedelta(seconds=5),
        "connect_timeout": timedelta(seconds=10),
        "drain_timeout": timedelta(seconds=10),
        "prefetch": 16,
    }
    values.update(overrides)
    return BrokerConfig.model_validate(values)


@pytest.fixture
def broker_cfg() -> BrokerConfig:
    return broker_config()


async def delete_topology(cfg: BrokerConfig) -> None:
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        await Topology(cfg).delete(ch)


@pytest.fixture
async def broker(broker_cfg: BrokerConfig) -> AsyncIterator[Broker]:
    b = Broker(broker_cfg)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()
        await delete_topology(broker_cfg)
