"""Fault injection against the real RabbitMQ: SIGTERM mid-batch, a cut connection, an
unreachable broker seen by ``/readyz``, a consumer cancelled by the server, and ``govbridge
check`` on bad configs. Every test uses its own exchange prefix and deletes its topology."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from structlog.testing import capture_logs

from bridge.daemon import Daemon
from bridge.runtime.broker import Broker
from bridge.runtime.context import BridgeContext
from bridge.runtime.topology import Topology
from bridge.runtime.worker import DeadLetter, Delivery, Handler, Retry, Stage, Worker
from bridge.store import MIGRATIONS
from schemas.config import BrokerConfig, GovbridgeConfig
from schemas.messages import TicketEvent
from schemas.vocab import TicketStatus
from tests.conftest import AMQP_URL, broker_config, delete_topology
from tests.pg import pg_database
from tests.slow_worker import STAGE, StageRole
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
KEY = "ticket.updated.transport"


def event(n: int) -> TicketEvent:
    return TicketEvent(
        event_id=f"ev-{n}",
        department="transport",
        ticket_id=f"T{n}",
        status=TicketStatus.RECEIVED,
        native_status="open",
        occurred_at=datetime.now(UTC),
    )


async def wait_until(predicate: Callable[[], bool], what: str, limit: float = 20) -> None:
    """Poll ``predicate``; ``limit`` only bounds a hang, it is not what the test measures."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


async def ready_count(queue: str) -> int:
    """Messages ready in a queue (passive declare: no management plugin needed)."""
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, passive=True)
        assert q.declaration_result.message_count is not None
        return q.declaration_result.message_count


async def delete_queue(name: str) -> None:
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        await ch.queue_delete(name, if_unused=False, if_empty=False)


async def redeclare(cfg: BrokerConfig) -> None:
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        await Topology(cfg).declare(await conn.channel())


@pytest.fixture
async def cfg() -> AsyncIterator[BrokerConfig]:
    """A unique topology, declared up front and deleted afterwards."""
    c = broker_config(prefetch=8)
    await redeclare(c)
    try:
        yield c
    finally:
        await delete_topology(c)


@pytest.fixture
async def publisher(cfg: BrokerConfig) -> AsyncIterator[Broker]:
    """A direct (never proxied) confirming publisher."""
    b = Broker(cfg)
    await b.connect(declare=False)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    host, _, port = AMQP_URL.split("@", 1)[1].split("/", 1)[0].rpartition(":")
    async with TcpProxy(host, int(port)) as p:
        yield p


TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}  # /readyz shows its details to the admin only


def daemon_for(
    broker: BrokerConfig,
    tmp_path: Path,
    handler: Handler[TicketEvent],
    *,
    http: bool = False,
    watchdog_interval: float = 0.3,
    watchdog_grace: float = 30.0,
) -> Daemon:
    cfg = GovbridgeConfig.model_validate(
        {
            "broker": broker,
            "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
            "http": {"listen": "127.0.0.1:0", "admin_token": TOKEN},
        }
    )

    def factory(ctx: BridgeContext) -> StageRole:
        return StageRole(ctx, handler)

    return Daemon(
        cfg,
        roles=["test", "http"] if http else ["test"],
        role_factories={"test": factory},
        watchdog_interval=watchdog_interval,
        watchdog_grace=watchdog_grace,
    )


async def start_running(daemon: Daemon) -> asyncio.Task[int]:
    """``Daemon.run()`` as a task, returned once its consumer is registered."""
    task = asyncio.create_task(daemon.run())
    await wait_until(lambda: bool(daemon.workers) or task.done(), "daemon started")
    assert not task.done(), task.result()
    worker = daemon.workers[0]
    for _ in range(200):
        if await worker.consuming():
            return task
        await asyncio.sleep(0.02)
    raise AssertionError("consumer never registered")


async def stop_running(daemon: Daemon, task: asyncio.Task[int]) -> int:
    daemon.request_stop()
    return await asyncio.wait_for(task, 20)


# --- 1. SIGTERM while messages are in flight -------------------------------------------------


def write_toml(path: Path, broker: BrokerConfig, store: Path, prefetch: int) -> None:
    delays = ", ".join(f'"{int(d.total_seconds() * 1000)}ms"' for d in broker.retry_delays)
    path.write_text(
        f"""
[broker]
url = "{broker.url.get_secret_value()}"
exchange = "{broker.exchange}"
prefetch = {prefetch}
retry_delays = [{delays}]
delivery_limit = {broker.delivery_limit}
drain_timeout = "15s"

[store]
url = "sqlite:///{store}"
""",
        encoding="utf-8",
    )


def read_journal(path: Path) -> tuple[list[str], list[str]]:
    started: list[str] = []
    done: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # a line being written right now
            kind, event_id, _pid = line.split()
            (started if kind == "start" else done).append(event_id)
    return started, done


async def spawn_worker(config: Path, journal: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "GOVBRIDGE_AMQP_URL": AMQP_URL}
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            PYTHON, "-m", "tests.slow_worker", str(config), str(journal), "0.4",
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


async def test_sigterm_drains_in_flight_and_restart_processes_each_message_once(
    cfg: BrokerConfig, publisher: Broker, tmp_path: Path
) -> None:
    n, prefetch = 40, 5
    await publisher.publish_many([(KEY, event(i)) for i in range(n)])
    work_queue = publisher.topology.queues(STAGE).work
    config, journal, log = tmp_path / "gb.toml", tmp_path / "journal", tmp_path / "worker.log"
    write_toml(config, cfg, tmp_path / "store.db", prefetch)

    proc = await spawn_worker(config, journal, log)
    try:

        def busy() -> bool:
            started, done = read_journal(journal)
            return len(done) >= prefetch and len(started) > len(done)

        await wait_until(busy, "a full batch done and the next one in flight")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, log.read_text()[-2000:]
    started, done = read_journal(journal)
    assert len(done) < n, "the worker finished everything before SIGTERM: nothing was tested"
    assert sorted(started) == sorted(done), "an in-flight message was abandoned on SIGTERM"
    assert len(set(done)) == len(done)
    assert "draining in-flight messages" in log.read_text()
    # everything that ran was acked; everything else is still waiting in the queue
    assert await ready_count(work_queue) == n - len(done)

    proc = await spawn_worker(config, journal, log)
    try:
        await wait_until(lambda: len(read_journal(journal)[1]) >= n, "all messages done", 40)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, log.read_text()[-2000:]
    _, done = read_journal(journal)
    counts = Counter(done)
    assert set(counts) == {f"ev-{i}" for i in range(n)}, "a message was lost"
    assert [k for k, c in counts.items() if c > 1] == [], "a message was processed twice"
    assert await ready_count(work_queue) == 0


# --- 2. the broker connection is cut mid-run --------------------------------------------------


async def test_connection_cut_mid_run_reconnects_and_processes_every_message(
    cfg: BrokerConfig, publisher: Broker, proxy: TcpProxy, tmp_path: Path
) -> None:
    n = 300
    processed: list[str] = []
    hold = asyncio.Event()  # set: handlers wait for the reconnect before returning
    reconnected = asyncio.Event()
    held: set[str] = set()
    cancelled: list[str] = []

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        try:
            await asyncio.sleep(0.003)
            if hold.is_set() and not reconnected.is_set():
                held.add(ev.event_id)
                await reconnected.wait()  # returns (and acks) on the dead channel
        except asyncio.CancelledError:
            cancelled.append(ev.event_id)
            raise
        processed.append(ev.event_id)

    proxied = cfg.model_copy(update={"url": SecretStr(proxy.url())})
    daemon = daemon_for(proxied, tmp_path, handler)
    with capture_logs() as logs:
        task = await start_running(daemon)
        assert daemon.broker.connection is not None
        daemon.broker.connection.reconnect_callbacks.add(lambda *_: reconnected.set())
        worker = daemon.workers[0]
        await publisher.publish_many([(KEY, event(i)) for i in range(n)])

        await wait_until(lambda: len(processed) >= n // 5, "a fifth processed")
        hold.set()
        await wait_until(lambda: len(held) >= 3, "handlers in flight at the cut")
        assert proxy.cut() >= 1
        await wait_until(reconnected.is_set, "runtime reconnected through the proxy")
        await wait_until(lambda: set(processed) >= {f"ev-{i}" for i in range(n)}, "all done", 40)

        assert not task.done(), "the daemon died"
        assert daemon.workers[0] is worker
        assert await worker.consuming()
        code = await stop_running(daemon, task)
    assert code == 0
    assert set(processed) == {f"ev-{i}" for i in range(n)}
    assert cancelled == [], "the lost connection cut handlers off mid-way"
    # the messages held across the cut were acked on the dead channel: that failed without
    # harm and the broker redelivered them (at least once)
    failed_acks = [e for e in logs if e["event"].startswith("could not settle message")]
    assert failed_acks, "no ack failed after the reconnect: the cut was not exercised"
    counts = Counter(processed)
    assert all(counts[i] >= 2 for i in held)
    assert proxy.accepted >= 2


# --- 3. /readyz and /metrics ----------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric_values(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(values: Samples, name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


async def test_readyz_follows_broker_reachability_and_metrics_count_per_stage(
    cfg: BrokerConfig, publisher: Broker, proxy: TcpProxy, tmp_path: Path
) -> None:
    done: list[str] = []

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        n = int(ev.event_id.split("-")[1])
        attempt = msg.attempt
        if n in (6, 7) and attempt == 0:
            raise Retry("backend busy")
        if n in (8, 9):
            raise DeadLetter("bad: no such department", "bad")
        await asyncio.sleep(0.03)
        done.append(ev.event_id)

    proxied = cfg.model_copy(update={"url": SecretStr(proxy.url())})
    daemon = daemon_for(proxied, tmp_path, handler, http=True)
    task = await start_running(daemon)
    base = f"http://127.0.0.1:{daemon.http_port}"
    m = daemon.metrics
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def get(path: str) -> tuple[int, Any]:
                async with http.get(base + path, headers=ADMIN) as resp:
                    body = await resp.json() if path == "/readyz" else await resp.text()
                    return resp.status, body

            await publisher.publish_many([(KEY, event(i)) for i in range(10)])
            await wait_until(
                lambda: (
                    len(done) == 8
                    and m.acked.labels(STAGE)._value.get() == 8  # acked after the handler
                    and m.dead_lettered.labels(STAGE, "bad")._value.get() == 2
                ),
                "traffic handled",
            )
            status, text = await get("/metrics")
            assert status == 200
            v = metric_values(text)
            stage = {"stage": STAGE}
            assert sample(v, "govbridge_messages_consumed_total", **stage) == 12  # 10 + 2 retries
            assert sample(v, "govbridge_messages_acked_total", **stage) == 8
            assert sample(v, "govbridge_messages_retried_total", tier="200ms", **stage) == 2
            assert sample(v, "govbridge_messages_dead_lettered_total", reason="bad", **stage) == 2
            assert sample(v, "govbridge_handler_seconds_count", **stage) == 12
            assert sample(v, "govbridge_handler_seconds_bucket", le="+Inf", **stage) == 12
            # the 8 successes slept 30 ms each: the histogram saw the real handler time
            assert sample(v, "govbridge_handler_seconds_bucket", le="0.025", **stage) <= 4
            assert sample(v, "govbridge_handler_seconds_sum", **stage) >= 8 * 0.03
            assert sample(v, "govbridge_consumers_active", **stage) == 1
            assert sample(v, "govbridge_broker_connected") == 1

            status, body = await get("/readyz")
            assert (status, body["ready"]) == (200, True)
            assert body["checks"]["consumers"] == {STAGE: True}

            proxy.refuse(True)
            proxy.cut()
            await wait_until(lambda: proxy.refused >= 1, "a reconnect attempt was refused")
            status, body = await get("/readyz")
            assert status == 503
            assert body["ready"] is False
            assert "broker" in body["not_ready"]
            assert body["checks"]["broker"] is False
            status, text = await get("/metrics")
            assert sample(metric_values(text), "govbridge_broker_connected") == 0
            refused = proxy.refused
            await wait_until(lambda: proxy.refused > refused, "still refusing, still retrying")
            status, body = await get("/readyz")
            assert status == 503 and "broker" in body["not_ready"]

            proxy.refuse(False)
            for _ in range(300):
                status, body = await get("/readyz")
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert (status, body["ready"], body["not_ready"]) == (200, True, [])
            status, text = await get("/metrics")
            assert sample(metric_values(text), "govbridge_broker_connected") == 1
            await publisher.publish(KEY, event(100))
            await wait_until(lambda: "ev-100" in done, "consumption resumed")
    finally:
        code = await stop_running(daemon, task)
    assert code == 0


# --- 4. the watchdog ------------------------------------------------------------------------


async def test_watchdog_restores_a_consumer_the_server_cancelled(
    cfg: BrokerConfig, publisher: Broker, tmp_path: Path
) -> None:
    done: list[str] = []

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        done.append(ev.event_id)

    daemon = daemon_for(cfg, tmp_path, handler, watchdog_interval=0.2)
    with capture_logs() as logs:
        task = await start_running(daemon)
        worker: Worker[Any] = daemon.workers[0]
        first_channel = worker._channel
        # deleting the queue makes RabbitMQ cancel our consumer (basic.cancel to the client)
        await delete_queue(worker.broker.topology.queues(STAGE).work)
        await wait_until(lambda: worker.lost_since is not None, "watchdog saw the consumer lost")
        assert daemon.metrics.consumers.labels(STAGE)._value.get() == 0
        await redeclare(cfg)  # the queue is back (e.g. an operator fixed it)
        await wait_until(lambda: worker.lost_since is None, "watchdog restored the consumer")
        assert await worker.consuming()
        assert worker._channel is not first_channel
        await publisher.publish(KEY, event(1))
        await wait_until(lambda: done == ["ev-1"], "message consumed after the restore")
        assert not task.done()
        code = await stop_running(daemon, task)
    assert code == 0
    events = [e["event"] for e in logs]
    assert "consumer lost; restarting it" in events
    assert "consumer lost beyond grace; exiting for the supervisor" not in events


async def test_consumer_lost_beyond_grace_makes_run_exit_non_zero(
    cfg: BrokerConfig, tmp_path: Path
) -> None:
    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        return None

    daemon = daemon_for(cfg, tmp_path, handler, watchdog_interval=0.2, watchdog_grace=1.0)
    task = await start_running(daemon)
    await delete_queue(daemon.broker.topology.queues(STAGE).work)  # and it stays gone
    code = await asyncio.wait_for(task, 20)
    assert code != 0
    assert daemon.workers[0].lost_since is not None


# --- 5. govbridge check ---------------------------------------------------------------------


def run_check(config: Path, env_drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``govbridge check`` on a config with no accounts/departments: no adapter is contacted."""
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    return subprocess.run(
        [PYTHON, "-m", "bridge.cli", "--log-level", "error", "check", "-c", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("broker_toml", "expected"),
    [
        ("prefetchh = 4", "broker.prefetchh: unknown key; did you mean 'prefetch'?"),
        ('prefetch = "lots"', "broker.prefetch: Input should be a valid integer"),
        (
            'url = "${GB_TEST_SURELY_UNSET_VAR}"',
            "broker.url: environment variable ${GB_TEST_SURELY_UNSET_VAR} is not set",
        ),
    ],
    ids=["misspelt-key", "wrong-type", "unset-env-var"],
)
def test_check_reports_config_errors_with_file_key_and_reason(
    tmp_path: Path, broker_toml: str, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"[broker]\n{broker_toml}\n", encoding="utf-8")
    result = run_check(config, env_drop=("GB_TEST_SURELY_UNSET_VAR",))
    assert result.returncode != 0
    assert f"{config}: {expected}" in result.stderr


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused, and nobody else can take it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def test_check_with_unreachable_broker_says_so_and_fails(tmp_path: Path, closed_port: int) -> None:
    config = tmp_path / "gb.toml"
    config.write_text(
        f'[broker]\nurl = "amqp://guest:s3cret@127.0.0.1:{closed_port}/"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n',
        encoding="utf-8",
    )
    # default connect_timeout is 30 s: check caps it, the subprocess timeout only guards a hang
    result = run_check(config, env_drop=("GOVBRIDGE_AMQP_URL",))
    assert result.returncode == 1
    assert f"broker   FAILED: amqp://guest:***@127.0.0.1:{closed_port}/" in result.stderr
    assert "RabbitMQ not reachable" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert "store    ok" in result.stdout


@pytest.mark.parametrize("cut_after", [0.05, 0.15, 0.3, 0.6])
async def test_a_connection_cut_while_starting_is_ridden_out(
    proxy: TcpProxy, cut_after: float
) -> None:
    """The chaos suite cut the broker connection while three processes were declaring their
    topology on a loaded machine, and every one of them exited. Start-up (the topology and a
    consumer) now carries on once the robust connection is back: with 20 ms added to every
    chunk through the proxy, a cut after 50-600 ms lands in the middle of the declarations."""
    cfg = broker_config(url=SecretStr(proxy.url()), connect_timeout="30s")
    proxy.latency = 0.02
    broker = Broker(cfg)
    handled: list[str] = []

    async def handle(event: TicketEvent, _: Delivery) -> None:
        handled.append(event.event_id)

    worker = Worker(broker, Stage("reply", TicketEvent, handle))

    async def start() -> None:
        await broker.connect()
        await worker.start()

    try:
        starting = asyncio.create_task(start())
        await asyncio.sleep(cut_after)
        mid_start = not starting.done()
        cut = proxy.cut()
        await asyncio.wait_for(starting, 60)  # raised AMQPConnectionError here before
        assert mid_start, f"start-up was over before the cut ({cut} cut): it tested nothing"
        proxy.latency = 0.0
        await broker.publish("ticket.updated.transport", event(1))
        await wait_until(lambda: handled == ["ev-1"], "the consumer started after the cut")
    finally:
        await worker.stop()
        await broker.close()
        await delete_topology(cfg)


async def test_a_consumer_started_while_the_connection_is_down_waits_for_it(
    proxy: TcpProxy,
) -> None:
    """A cut just before a consumer starts: the robust connection is down, and opening a
    channel raises aiormq's bare ``RuntimeError("... closed")``. A bridge starting under the
    chaos suite's cuts exited on it (exit 1, two citizens unanswered); now it waits for the
    connection and starts the consumer."""
    cfg = broker_config(url=SecretStr(proxy.url()), connect_timeout="30s")
    broker = Broker(cfg)
    handled: list[str] = []

    async def handle(event: TicketEvent, _: Delivery) -> None:
        handled.append(event.event_id)

    worker = Worker(broker, Stage("reply", TicketEvent, handle))
    try:
        await broker.connect()
        proxy.refuse(True)
        assert proxy.cut() >= 1
        await wait_until(lambda: not broker.connected, "the connection noticed the cut")
        starting = asyncio.create_task(worker.start())
        await asyncio.sleep(1.0)
        assert not starting.done()  # waiting for the connection, not failed
        proxy.refuse(False)
        await asyncio.wait_for(starting, 30)
        await broker.publish("ticket.updated.transport", event(2))
        await wait_until(lambda: handled == ["ev-2"], "the consumer started after the cut")
    finally:
        proxy.refuse(False)
        await worker.stop()
        await broker.close()
        await delete_topology(cfg)


@pytest.mark.parametrize("cut_after", [0.2, 0.6])
async def test_a_store_cut_while_migrating_is_ridden_out(
    cfg: BrokerConfig, cut_after: float
) -> None:
    """The chaos suite's store outage began while three processes were migrating a fresh
    PostgreSQL database (20 ms added per packet), and all three exited on "connection was closed
    in the middle of operation". A store cut and refused for 2 s while a process opens and
    migrates it is now tried again (``[store] connect_timeout``): the process starts on a
    store that answers (the migrations are one transaction: none half-applied)."""
    async with pg_database() as url, TcpProxy("127.0.0.1", 5432) as pg:
        behind = url.replace("127.0.0.1:5432", f"127.0.0.1:{pg.port}")
        config = GovbridgeConfig.model_validate(
            {"broker": cfg, "store": {"url": behind, "connect_timeout": "30s"}}
        )
        daemon = Daemon(
            config, roles=["test"], role_factories={"test": lambda ctx: StageRole(ctx, _nothing)}
        )
        pg.latency = 0.02
        starting = asyncio.create_task(daemon.start())
        try:
            await asyncio.sleep(cut_after)
            mid_start = not starting.done()
            pg.refuse(True)
            cut = pg.cut()
            await asyncio.sleep(2.0)
            pg.refuse(False)
            pg.latency = 0.0
            await asyncio.wait_for(starting, 60)  # StoreUnavailable ended the start before
            assert mid_start and cut >= 1, f"the start was over before the cut ({cut} cut)"
            assert daemon.ctx is not None
            assert await daemon.ctx.store.migrate() == len(MIGRATIONS)  # current: nothing to do
            assert await daemon.ctx.store.list_inquiries() == []
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting
            await daemon.stop()


async def _nothing(event: TicketEvent, delivery: Delivery) -> None:
    return None
