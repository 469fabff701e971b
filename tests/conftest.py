"""Shared fixtures: a real RabbitMQ (``GOVBRIDGE_AMQP_URL`` or localhost) with names unique to
each test, deleted afterwards (one worker at a time: see ``delete_topology``), or the in-memory
broker for a stage's logic (``running_bridge(..., in_memory=True)``); stores on SQLite and
PostgreSQL; the simulators; and the one list of slow suites (``SLOW_SUITES``).

The helpers themselves are in ``govbridge_tools.testing`` (the tools distribution): a manual
clock, a bus tap, the simulators, signed webhooks and the in-memory broker."""

from __future__ import annotations

import asyncio
import fcntl
import os
import tempfile
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
from govbridge_tools.testing import MemoryBroker, Simulators
from pydantic import SecretStr

from bridge.config import parse_config
from bridge.daemon import ALL_ROLES, Daemon
from bridge.runtime.broker import Broker
from bridge.runtime.topology import Topology
from bridge.store import SqlStore, open_store
from bridge.telemetry.metrics import Metrics
from schemas.config import BrokerConfig, GovbridgeConfig
from tests.pg import pg_database

pytest_plugins = ["tests.broker_health"]

AMQP_URL = os.environ.get("GOVBRIDGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

# Suites that take more than a few seconds each: marked ``slow`` here, in one place (``-m "not
# slow"`` leaves them out of a quick run; ``make test`` runs them all, and starts them first so
# that no worker begins one when the others are done).
SLOW_SUITES = (
    "test_bench.py",
    "test_browser.py",
    "test_browser_ticket_systems.py",
    "test_chaos.py",
    "test_cli_ops.py",
    "test_delivery.py",
    "test_e2e.py",
    "test_fuzz_http.py",
    "test_first_response_outages.py",
    "test_fuzz_parsers.py",
    "test_late_commits.py",
    "test_many_processes.py",
    "test_mastodon_streaming.py",
    "test_no_leaks.py",
    "test_packaging.py",
    "test_pii_corpus.py",
    "test_source_contract.py",  # tests/contract/: draining a backlog from each source
    "test_ticketing.py",
    "test_triage_corpus.py",
)
# The tests that take longest under make test (its --durations list): started first.
LONGEST = (
    "tests/test_chaos.py::test_chaos[reduced",
    "tests/test_mastodon_streaming.py::test_a_burst_over_a_dropping_stream",
    "tests/test_e2e.py::test_520_inquiries",
    "tests/test_ticketing.py::test_backend_down_a_minute",
    "tests/test_no_leaks.py",
    "tests/test_many_processes.py",
    "tests/test_first_response_outages.py",
)
# Suites with module-scoped fixtures (a browser, a RabbitMQ node of their own, simulators in a
# process, a parser's npm install): kept on one xdist worker (``--dist loadgroup``) so that the
# fixture starts once.
ONE_WORKER_SUITES = ("test_asyncapi.py", "test_browser.py", "test_cli_ops.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_SUITES:
            item.add_marker(pytest.mark.slow)
        if item.path.name in ONE_WORKER_SUITES:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
    # stable: the longest first (a worker that starts one when the others are done makes the
    # run as long as that test), then the rest of the slow suites, then everything else
    items.sort(
        key=lambda item: (
            not any(item.nodeid.startswith(p) for p in LONGEST),
            item.path.name not in SLOW_SUITES,
        )
    )


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


# RabbitMQ 3.10's supervisor of at-least-once dead-letter workers allows one crash in five
# seconds, and deleting many quorum queues at once can cost two (tests/broker_health.py): with
# xdist workers deleting their topologies at the same moment it did. So a test's topology is
# deleted by one process at a time on this machine, whichever worker or subprocess asks.
TOPOLOGY_LOCK = Path(tempfile.gettempdir()) / "govbridge-tests-topology.lock"


@asynccontextmanager
async def topology_lock() -> AsyncIterator[None]:
    with TOPOLOGY_LOCK.open("a") as handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def delete_topology(cfg: BrokerConfig) -> None:
    async with topology_lock():
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


@pytest.fixture
async def memory_broker(broker_cfg: BrokerConfig) -> AsyncIterator[MemoryBroker]:
    """A connected in-memory broker (``govbridge_tools.testing.MemoryBroker``)."""
    b = MemoryBroker(broker_cfg)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()


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
    # warm_pages off: a started bridge does not count the console's pages (the suite's time)
    http = {"listen": "127.0.0.1:0", "admin_token": "test-admin-token", "warm_pages": False}
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
    cfg: GovbridgeConfig,
    roles: Sequence[str] = ALL_ROLES,
    *,
    in_memory: bool = False,
    **daemon_opts: Any,
) -> AsyncIterator[Daemon]:
    """Start a Daemon with those roles; stop it and delete its topology afterwards.

    ``in_memory``: on a ``MemoryBroker`` (``daemon.broker``) instead of RabbitMQ, for tests of
    a stage's logic; the real worker, signatures, tiers and dead letters, no network."""
    if in_memory:
        metrics = daemon_opts.setdefault("metrics", Metrics())
        daemon_opts["broker"] = MemoryBroker(cfg.broker, metrics)
    daemon = Daemon(cfg, roles, **daemon_opts)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()
        if not in_memory:
            await delete_topology(cfg.broker)


def memory_of(daemon: Daemon) -> MemoryBroker:
    """The in-memory broker of a bridge started with ``in_memory=True``."""
    assert isinstance(daemon.broker, MemoryBroker), "start it with running_bridge(in_memory=True)"
    return daemon.broker


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    """Wait until ``await predicate()`` is true (a bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- stores


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database on each engine: SQLite in ``tmp_path``, PostgreSQL a database of the
    test's own (skipped when PostgreSQL does not answer; tests/pg.py)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    async with pg_database() as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """An opened, migrated store on each engine."""
    s = await open_store(store_url)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """An opened, migrated SQLite store (for what does not depend on the engine)."""
    s = await open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        yield s
    finally:
        await s.close()


# --------------------------------------------------------------------------- simulators


@pytest.fixture
async def sims() -> AsyncIterator[Simulators]:
    """Simulators as their contracts document them, started on demand, stopped afterwards."""
    async with Simulators() as s:
        yield s


@pytest.fixture
async def quirky_sims() -> AsyncIterator[Simulators]:
    """The same simulators behaving like other servers of their kind (``quirks``)."""
    async with Simulators(quirks=True) as s:
        yield s
