"""Shared fixtures: a real RabbitMQ (``GOVBRIDGE_AMQP_URL`` or localhost) with names unique to
each test, deleted afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import tomli_w
from pydantic import SecretStr

from bridge.config import parse_config
from bridge.daemon import ALL_ROLES, Daemon
from bridge.runtime import Broker
from bridge.topology import Topology
from schemas.config import BrokerConfig, GovbridgeConfig

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


def config_toml(cfg: GovbridgeConfig) -> str:
    """A config as the TOML file an operator would write (secrets in clear, durations in
    milliseconds), for tests that run ``govbridge`` commands or daemons as processes."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, timedelta):
            return f"{round(value.total_seconds() * 1000)}ms"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, Enum):
            return value.value
        return value

    dumped = cfg.model_dump(mode="python", exclude_none=True, serialize_as_any=True)
    return tomli_w.dumps(plain(dumped))


def bridge_config(tmp_path: Path, **sections: Any) -> GovbridgeConfig:
    """A full config for an in-process bridge: unique exchange, short delay tiers, SQLite in
    ``tmp_path``, HTTP on a free port. ``sections`` (departments, accounts, routes, broker,
    http…) are merged over these defaults and validated like a real config file."""
    broker = broker_config().model_dump()
    broker["url"] = AMQP_URL
    broker.update(sections.pop("broker", {}))
    http = {"listen": "127.0.0.1:0", "admin_token": "test-admin-token"}
    http.update(sections.pop("http", {}))
    data: dict[str, Any] = {
        "broker": broker,
        "store": {"url": f"sqlite:///{tmp_path}/govbridge.db"},
        "http": http,
        **sections,
    }
    return parse_config(data, "<test>", env={})


@asynccontextmanager
async def running_bridge(
    cfg: GovbridgeConfig, roles: Sequence[str] = ALL_ROLES, **daemon_opts: Any
) -> AsyncIterator[Daemon]:
    """Start a Daemon with those roles; stop it and delete its topology afterwards."""
    daemon = Daemon(cfg, roles, **daemon_opts)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()
        await delete_topology(cfg.broker)


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    """Wait until ``await predicate()`` is true (a bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.05)
