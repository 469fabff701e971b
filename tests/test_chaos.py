"""Fault injection: three bridge processes sharing PostgreSQL and a RabbitMQ node of the test's
own, Weibo accounts and an Open311 system as simulators, and one fault after another:

- ``broker_cuts``: the broker connection cut 10 times (a TCP proxy between bridges and RabbitMQ)
- ``rabbitmq_restart``: ``rabbitmqctl stop_app`` / ``start_app`` mid-run
- ``sigkill``: a bridge process SIGKILLed and restarted, 3 times
- ``ticket_system_down``: Open311 answers 503 for the outage
- ``rate_limited``: every Weibo account answers rate-limit errors for the outage
- ``store_slow_then_down``: latency on every PostgreSQL packet, then PostgreSQL unreachable

Each scenario sends its own inquiries while its fault is on, waits for every one to be
answered, resolves their tickets and waits for the closing replies, then counts from the
simulators' own records: inquiries = tickets, three replies each (received; closed; the
official's note), zero lost, duplicated or unanswered.

Two sizes (marker ``chaos``): ``reduced`` runs in the default suite (30 inquiries a scenario,
8 s outages; in two halves that run side by side); ``full`` runs with ``make chaos``
(``GOVBRIDGE_CHAOS=full``: 350 inquiries a scenario, over 2,000 in all, the ticket system and
the platform down 60 s, the store 20 s) and
writes its table to ``GOVBRIDGE_CHAOS_REPORT`` when set. A run that restarts RabbitMQ starts a
node of its own (``scripts/rabbitmq-node.sh``, a free port) so restarting it touches nothing
else; the others go through a proxy to the local broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import PG_ADMIN, Cluster
from tests.conftest import eventually
from tests.pg import pg_available as _pg_available
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.chaos  # slow: tests/conftest.py SLOW_SUITES

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "scripts" / "rabbitmq-node.sh"
# Unique per test run: two suites may run side by side on one machine.
NODE = f"gbchaos{os.getpid()}"
SHARED_BROKER_PORT = 5672  # the local RabbitMQ every other suite uses (guest/guest)


def free_node_port() -> int:
    """A free AMQP port whose distribution port (port + 20000) is free too."""
    for _ in range(100):
        port = random.randint(20000, 29999)
        ok = True
        for p in (port, port + 20000):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair for a RabbitMQ node")


NODE_PORT = int(os.environ.get("GOVBRIDGE_CHAOS_RABBIT_PORT", "0")) or free_node_port()


@dataclass(frozen=True)
class Scale:
    per_scenario: int
    outage: float  # ticket system down, platform rate-limited
    store_outage: float
    answer_within: float  # bound on waiting for every reply after a fault
    # the ticket system's circuit stays open this long before a probe (30 s by default): the
    # reduced run's 8 s outage with the default waited 30-40 s after the system was back
    breaker_cooldown: str


SCALES = {
    "reduced": Scale(
        per_scenario=30, outage=8, store_outage=5, answer_within=240, breaker_cooldown="5s"
    ),
    "full": Scale(
        per_scenario=350, outage=60, store_outage=20, answer_within=900, breaker_cooldown="30s"
    ),
}


def rabbitmqctl(*args: str) -> None:
    subprocess.run(
        ["bash", str(NODE_SCRIPT), "ctl", NODE, *args], check=True, capture_output=True, timeout=120
    )


@pytest.fixture(scope="module")
def rabbit_node() -> Any:
    """A RabbitMQ node of the chaos suite's own (restarting it disturbs no one else)."""
    if shutil.which("rabbitmqctl") is None or not Path("/usr/lib/rabbitmq/bin").exists():
        pytest.skip("rabbitmq-server is not installed: the chaos suite starts a node of its own")
    subprocess.run(["bash", str(NODE_SCRIPT), "stop", NODE], capture_output=True, timeout=120)
    started = subprocess.run(
        ["bash", str(NODE_SCRIPT), "start", NODE, str(NODE_PORT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    yield f"amqp://guest:guest@127.0.0.1:{NODE_PORT}/"
    subprocess.run(["bash", str(NODE_SCRIPT), "stop", NODE], capture_output=True, timeout=120)


class Run:
    """One chaos run: the cluster, the proxies in front of RabbitMQ and PostgreSQL, the table."""

    def __init__(self, cluster: Cluster, amqp: TcpProxy, pg: TcpProxy, scale: Scale) -> None:
        self.cluster, self.amqp, self.pg, self.scale = cluster, amqp, pg, scale
        self.rows: list[dict[str, Any]] = []

    async def feed(self, n: int, over: float) -> None:
        """``n`` inquiries in batches spread over ``over`` seconds."""
        batches = max(1, min(n, int(over / 0.5)))
        for b in range(batches):
            self.cluster.add_inquiries(n // batches + (1 if b < n % batches else 0))
            await asyncio.sleep(over / batches)

    async def scenario(self, name: str, fault: Callable[[], Awaitable[str]]) -> None:
        began = time.monotonic()
        first = len(self.cluster.posts)
        detail = await fault()
        posts = self.cluster.posts[first:]
        assert len(posts) == self.scale.per_scenario, name

        async def owed(replies: int) -> bool:
            return self.cluster.accounting(replies, posts)["short_of_replies"] == 0

        try:
            await eventually(lambda: owed(1), timeout=self.scale.answer_within)
            self.cluster.close_all_tickets()
            await eventually(lambda: owed(3), timeout=self.scale.answer_within)
            await asyncio.sleep(2.0)  # a late duplicate would land now
        except AssertionError as exc:  # say what the bridges said (their logs hold no PII)
            raise AssertionError(f"{name}: {exc}\n{self.cluster.log_tails()}") from None
        finally:
            figures = self.cluster.accounting(3, posts)
            self.cluster.seal()
            row = {"scenario": name, "fault": detail, **figures}
            row["duration_s"] = round(time.monotonic() - began, 1)
            self.rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)

    # ------------------------------------------------------------------ the faults
    async def broker_cuts(self) -> str:
        n = self.scale.per_scenario
        cuts = 0
        for _ in range(10):
            await self.feed(n // 10, 1.0)
            await asyncio.sleep(1.0)
            # On a loaded machine the bridges may still be reconnecting from the last cut:
            # cut once they are back (or after 30 s, when the assertion below says why).
            for _ in range(300):
                if self.amqp.live_connections > 0:
                    break
                await asyncio.sleep(0.1)
            cuts += self.amqp.cut()
        # Each bridge process connected through the proxy, and the cuts hit live connections.
        # Not "a connection in every round": on a loaded machine (load 9-12, four test workers)
        # the bridges were seen to take over 30 s to come back after some cuts (3 and 7 of 10
        # rounds found one); what this scenario promises is counted below, in every case.
        assert self.amqp.accepted >= 3 and cuts >= 1, "the bridges do not go through the proxy"
        return f"10 cuts of every broker connection ({cuts} connections cut)"

    async def rabbitmq_restart(self) -> str:
        n = self.scale.per_scenario
        await self.feed(n // 2, 2.0)
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        down = time.monotonic()
        await asyncio.sleep(3.0)
        await asyncio.to_thread(rabbitmqctl, "start_app")
        took = time.monotonic() - down
        await self.feed(n - n // 2, 2.0)
        return f"stop_app / start_app, broker away {took:.0f} s"

    async def sigkill(self) -> str:
        n = self.scale.per_scenario
        for k in range(3):
            await self.feed(n // 3 + (1 if k < n % 3 else 0), 2.0)
            victim = random.choice(self.cluster.alive())
            await self.cluster.sigkill(victim)
            await asyncio.sleep(1.0)
            await self.cluster.spawn()
        return "3 processes SIGKILLed, each restarted"

    async def ticket_system_down(self) -> str:
        await self.cluster.open311.set_outage("503")
        try:
            await self.feed(self.scale.per_scenario, self.scale.outage)
        finally:
            await self.cluster.open311.set_outage(None)
        return f"Open311 answers 503 for {self.scale.outage:.0f} s"

    async def rate_limited(self) -> str:
        """The accounts' quotas are spent for the whole outage (spent again each time a
        window rolls over), so every call answers the platform's rate-limit error."""
        stop = asyncio.Event()

        async def keep_spent() -> None:
            while not stop.is_set():
                for account in self.cluster.accounts:
                    account.state.exhaust_rate_limit()
                await asyncio.sleep(0.2)

        spender = asyncio.create_task(keep_spent())
        try:
            await self.feed(self.scale.per_scenario, self.scale.outage)
        finally:
            stop.set()
            await spender
            for account in self.cluster.accounts:
                account.state.reset_rate_limits()
        return (
            f"every account rate-limited for {self.scale.outage:.0f} s"
            f" (windows of {self.cluster.rate_window:.0f} s)"
        )

    async def store_slow_then_down(self) -> str:
        n = self.scale.per_scenario
        self.pg.latency = 0.02
        try:
            await self.feed(n // 2, self.scale.store_outage)
        finally:
            self.pg.latency = 0.0
        self.pg.refuse(True)
        self.pg.cut()
        try:
            await self.feed(n - n // 2, self.scale.store_outage)
        finally:
            self.pg.refuse(False)
        return (
            f"20 ms per PostgreSQL packet for {self.scale.store_outage:.0f} s,"
            f" then PostgreSQL unreachable for {self.scale.store_outage:.0f} s"
        )


def write_report(table: dict[str, Any]) -> None:
    report = os.environ.get("GOVBRIDGE_CHAOS_REPORT")
    if report:
        Path(report).write_text(json.dumps(table, ensure_ascii=False, indent=2), encoding="utf-8")


SCENARIOS = (
    "broker_cuts",
    "rabbitmq_restart",
    "sigkill",
    "ticket_system_down",
    "rate_limited",
    "store_slow_then_down",
)


@pytest.mark.parametrize(
    ("size", "scenarios"),
    [
        # the reduced run in two halves of about equal length (80-100 s each here), so that
        # make test's workers run them side by side; each half has its own bridges
        pytest.param(
            "reduced",
            ("broker_cuts", "rabbitmq_restart", "sigkill", "rate_limited"),
            marks=pytest.mark.timeout(900),
            id="reduced-broker-processes-platform",
        ),
        pytest.param(
            "reduced",
            ("ticket_system_down", "store_slow_then_down"),
            marks=pytest.mark.timeout(900),
            id="reduced-ticket-system-store",
        ),
        pytest.param("full", SCENARIOS, marks=pytest.mark.timeout(7200), id="full"),
    ],
)
async def test_chaos(
    size: str, scenarios: tuple[str, ...], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if size == "full" and os.environ.get("GOVBRIDGE_CHAOS") != "full":
        pytest.skip("the full chaos run: make chaos (GOVBRIDGE_CHAOS=full)")
    if not await _pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    scale = SCALES[size]
    # A node of the test's own only where a scenario restarts it; the other runs use the shared
    # broker (their topology has names of their own, deleted at the end, like every suite's):
    # a node's start and stop were about 17 s of a loaded machine and several s of CPU.
    if "rabbitmq_restart" in scenarios:
        request.getfixturevalue("rabbit_node")
        broker_port = NODE_PORT
    else:
        broker_port = SHARED_BROKER_PORT
    amqp = await TcpProxy("127.0.0.1", broker_port).start()
    pg = await TcpProxy("127.0.0.1", 5432).start()
    cluster = Cluster(
        tmp_path,
        amqp_url=amqp.url(),
        pg_port=pg.port,
        ticketing={"breaker_cooldown": scale.breaker_cooldown},
        extra_config={
            "broker": {
                "retry_delays": ["1s", "3s", "10s", "15s"],
                "delivery_limit": 10,
                "connect_timeout": "60s",
            }
        },
    )
    await cluster.start()
    run = Run(cluster, amqp, pg, scale)
    began = time.monotonic()
    try:
        for _ in range(3):
            await cluster.spawn()
        for name in scenarios:
            await run.scenario(name, getattr(run, name))
    finally:
        total = round(time.monotonic() - began, 1)
        write_report({"size": size, "duration_s": total, "rows": run.rows})
        await cluster.close()
        await amqp.close()
        await pg.close()
    expected = {"lost": 0, "tickets_duplicated": 0, "replies_duplicated": 0, "unanswered": 0}
    for row in run.rows:
        assert {k: row[k] for k in expected} == expected, row
        assert row["tickets"] == row["inquiries"] == scale.per_scenario, row
        assert row["replies"] == 3 * row["inquiries"], row
        assert row["stray_replies"] == 0, row


@pytest.fixture(scope="module")
def rabbit_cluster() -> Any:
    """Three RabbitMQ nodes of the test's own, joined into one cluster (what the compose
    ``cluster`` profile runs, with ``rabbitmqctl join_cluster`` instead of peer discovery)."""
    if os.environ.get("GOVBRIDGE_CHAOS") not in ("full", "cluster"):
        pytest.skip("three RabbitMQ nodes: make chaos (or GOVBRIDGE_CHAOS=cluster)")
    if shutil.which("rabbitmqctl") is None or not Path("/usr/lib/rabbitmq/bin").exists():
        pytest.skip("rabbitmq-server is not installed: the cluster test starts nodes of its own")
    names = [f"gbcl{os.getpid()}n{i}" for i in range(3)]
    ports = []
    try:
        for name in names:
            port = free_node_port()
            started = subprocess.run(
                ["bash", str(NODE_SCRIPT), "start", name, str(port)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert started.returncode == 0, started.stderr[-2000:]
            ports.append(port)
        for name in names[1:]:
            for args in (["stop_app"], ["join_cluster", f"{names[0]}@localhost"], ["start_app"]):
                subprocess.run(
                    ["bash", str(NODE_SCRIPT), "ctl", name, *args],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
        yield names, [f"amqp://guest:guest@127.0.0.1:{p}/" for p in ports]
    finally:
        for name in reversed(names):
            subprocess.run(
                ["bash", str(NODE_SCRIPT), "stop", name], capture_output=True, timeout=120
            )


@pytest.mark.timeout(900)
async def test_a_rabbitmq_cluster_node_fails(tmp_path: Path, rabbit_cluster: Any) -> None:
    """Three nodes, one bridge process on each; the third node's RabbitMQ stops mid-run and
    comes back. Quorum queues (declared once the cluster stands: a replica on every node) keep
    every confirmed message; the process on the stopped node reconnects when it returns (its
    polls are handed over meanwhile); every inquiry one ticket, its replies once."""
    if not await _pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    names, urls = rabbit_cluster
    per_phase = 40 if os.environ.get("GOVBRIDGE_CHAOS") == "full" else 15
    cluster = Cluster(
        tmp_path,
        amqp_url=urls[0],
        extra_config={"broker": {"retry_delays": ["1s", "3s", "10s", "15s"]}},
    )
    await cluster.start()
    try:
        for url in urls:
            await cluster.spawn(amqp_url=url)
        cluster.add_inquiries(per_phase)

        async def started() -> bool:
            return len(cluster.open311.tickets) >= 5

        await eventually(started, timeout=120)
        listing = await asyncio.to_thread(
            rabbitmqctl_on, names[0], "list_queues", "name", "members", "--formatter", "json"
        )
        queues = {q["name"]: q["members"] for q in json.loads(listing)}
        work = [q for q in queues if q.endswith((".triage", ".ticketing", ".reply", ".outbox"))]
        assert len(work) == 4 and all(len(queues[q]) == 3 for q in work), queues
        await asyncio.to_thread(rabbitmqctl_on, names[2], "stop_app")
        cluster.add_inquiries(per_phase)
        await asyncio.sleep(5.0)
        await asyncio.to_thread(rabbitmqctl_on, names[2], "start_app")
        cluster.add_inquiries(per_phase)

        async def owed(replies: int) -> bool:
            return cluster.accounting(replies)["short_of_replies"] == 0

        await eventually(lambda: owed(1), timeout=300)
        cluster.close_all_tickets()
        await eventually(lambda: owed(3), timeout=300)
        await asyncio.sleep(2.0)
        figures = cluster.accounting(3)
        print(json.dumps({"scenario": "cluster_node_down", **figures}), flush=True)
        assert figures["inquiries"] == figures["tickets"] == 3 * per_phase
        assert figures["replies"] == 9 * per_phase
        for key in ("lost", "tickets_duplicated", "replies_duplicated", "unanswered"):
            assert figures[key] == 0, figures
    finally:
        await cluster.close()


def rabbitmqctl_on(node: str, *args: str) -> str:
    done = subprocess.run(
        ["bash", str(NODE_SCRIPT), "ctl", node, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout
