"""The whole pipeline, measured from outside, beside the raw aio-pika relay hop in the same run.

Bridge processes (``govbridge run``, every role) take signed webhook pushes; an Open311
simulator and a reply sink run in a process of their own (``govbridge_tools.bench.backends``), so
only
the bridge's CPU is the bridge's. The bench notes when each push was sent, when its ticket was
created (``ticket.created.*``, the public routing key) and when its first reply reached the
sink, and reads each process's ``/metrics`` for where the stages spent their time.

``rate`` > 0 offers that many inquiries per second (latency at a load); 0 sends as fast as the
bridge accepts them (saturation throughput).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from adapters.signing import sign
from schemas.messages import TicketEvent, inquiry_id_for, reference_for

PUSH_SECRET = "bench-push-secret-0123456789abcdef"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
PLATFORM, ACCOUNT = "bench", "bench"
TEXTS = (
    "第{n}号：小区门口的路灯坏了一个星期，晚上很黑，请尽快维修",
    "{n}路公交车早高峰总是晚点，等了四十分钟，到底有没有人管",
    "请问第{n}期老旧小区改造什么时候开始报名？需要什么材料？",
    "建议在{n}号路口增设一个过街天桥，老人孩子过马路太危险",
    "楼下饭店油烟直排{n}个月了，投诉多次没人处理",
)


@dataclass
class Options:
    messages: int = 1000
    rate: float = 0.0
    processes: int = 1
    store: str = "sqlite"
    prefetch: int = 64
    timeout: float = 600.0
    profile: Path | None = None  # py-spy flame graphs of each bridge process, during the load
    profile_format: str = "flamegraph"  # or "raw" (folded stacks, for counting)
    # Run the bridge processes from another checkout (same config format) while this harness
    # measures: before/after comparisons of an optimisation in one run, on one machine.
    bridge_src: Path | None = None
    postgres_admin_url: str = field(
        default_factory=lambda: os.environ.get(
            "GOVBRIDGE_BENCH_POSTGRES", "postgresql://127.0.0.1:5432/postgres"
        )
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)

    return {"p50": round(statistics.median(ordered) * 1000, 1), "p95": at(0.95), "p99": at(0.99)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml(value: Any) -> str:
    """Enough TOML for the bench's own config (JSON strings are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def config_text(
    opts: Options, run: str, url: str, store_url: str, port: int, backends: dict[str, str]
) -> str:
    department = {
        "id": "bench",
        "name": "测试局",
        "approval": "none",
        "sla": {"complaint": "15wd", "consultation": "2wd", "other": "10wd"},
    }
    ticketing = {
        "adapter": "open311",
        "base_url": backends["open311"],
        "api_key": "sim-open311-key",
        "service_codes": {"complaint": "TR-01", "consultation": "TR-02", "other": "TR-09"},
        "attributes": {"urgency": "normal"},
        "lat": 39.9,
        "long": 116.4,
        "searchable": True,
        "poll": "0s",  # the bench measures ingest -> ticket -> first reply
    }
    account = {
        "adapter": "webhook",
        "handle": ACCOUNT,
        "department": "bench",
        "secret": PUSH_SECRET,
        "reply_url": backends["sink"] + "/replies",
        "platform": PLATFORM,
    }
    lines = [
        "[broker]",
        f"url = {_toml(url)}",
        f"exchange = {_toml('gbbench-' + run)}",
        f"prefetch = {opts.prefetch}",
        "[store]",
        f"url = {_toml(store_url)}",
        "[http]",
        f'listen = "127.0.0.1:{port}"',
        f"admin_token = {_toml(ADMIN_TOKEN)}",
        "[outbox]",
        "concurrency = 32",
        'scan_every = "1s"',
        "[[departments]]",
        *(f"{k} = {_toml(v)}" for k, v in department.items()),
        "[departments.ticketing]",
        *(f"{k} = {_toml(v)}" for k, v in ticketing.items()),
        "[[accounts]]",
        *(f"{k} = {_toml(v)}" for k, v in account.items()),
    ]
    return "\n".join(lines) + "\n"


def push_body(run: str, n: int) -> bytes:
    item = {
        "external_id": f"{run}-{n}",
        "kind": "mention",
        "author": {"id": str(7_000_000 + n), "handle": f"citizen{n}"},
        "text": TEXTS[n % len(TEXTS)].format(n=n),
        "created_at": datetime.now(UTC).isoformat(),
        "thread": {"root_id": f"{run}-{n}"},
    }
    return json.dumps(item, ensure_ascii=False).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux ``/proc``): how much work it did,
    whatever else the machine was doing meanwhile."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def broker_pid(url: str) -> int | None:
    """The local process listening on the broker's port (``ss``), or None (a remote broker,
    or no permission): its CPU per inquiry says how much of the machine the broker takes."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{parts.port or 5672}"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    marker = "pid="
    at = out.find(marker)
    if at < 0:
        return None
    digits = out[at + len(marker) :].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None


def rss_peak_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def rss_over_run(samples: list[tuple[float, float]]) -> dict[str, float]:
    """The largest process's RSS at each quarter of the run: flat over the second half, or not."""
    if not samples:
        return {}
    start, end = samples[0][0], samples[-1][0]
    out = {}
    for q in (25, 50, 75, 100):
        at = start + (end - start) * q / 100
        out[f"{q}%"] = next((mb for t, mb in samples if t >= at), samples[-1][1])
    return out


@dataclass
class BridgeProcess:
    port: int
    config: Path
    proc: asyncio.subprocess.Process

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class PipelineBench:
    def __init__(self, opts: Options, url: str) -> None:
        self.opts, self.url = opts, url
        self.run = uuid.uuid4().hex[:8]
        self.workdir = Path(tempfile.mkdtemp(prefix="govbridge-bench-"))
        self.published = 0.0  # confirmed publishes over every bridge process
        self.reconnects = 0  # pushes sent again after the connection closed under them
        self.busy = 0  # 503 answers (the bridge shedding load), each followed by a retry
        self.backends_proc: asyncio.subprocess.Process | None = None
        self.bridges: list[BridgeProcess] = []
        self.ticket_seen: dict[str, float] = {}
        self.sent: dict[int, float] = {}
        self.database: str | None = None

    # ------------------------------------------------------------------ set-up
    async def start_backends(self) -> dict[str, str]:
        self.backends_proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "govbridge_tools.bench.backends",
            stdout=subprocess.PIPE, stderr=(self.workdir / "backends.log").open("wb"),
        )  # fmt: skip
        assert self.backends_proc.stdout is not None
        line = await asyncio.wait_for(self.backends_proc.stdout.readline(), 30)
        backends: dict[str, str] = json.loads(line)
        return backends

    async def store_url(self) -> str:
        if self.opts.store == "sqlite":
            return f"sqlite:///{self.workdir}/bench.db"
        import asyncpg

        self.database = f"gbbench_{self.run}"
        conn = await asyncpg.connect(self.opts.postgres_admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()
        base = self.opts.postgres_admin_url.rsplit("/", 1)[0]
        url = f"{base}/{self.database}"
        # Migrated once here: N processes starting together on a fresh database would race
        # to create the same tables.
        from bridge.store import open_store

        store = await open_store(url)
        await store.close()
        return url

    async def start_bridges(self, backends: dict[str, str], store_url: str) -> None:
        env = {**os.environ, "GOVBRIDGE_AMQP_URL": self.url}
        if self.opts.bridge_src is not None:
            env["PYTHONPATH"] = str(self.opts.bridge_src.resolve())
        for k in range(self.opts.processes):
            port = free_port()
            config = self.workdir / f"bridge{k}.toml"
            config.write_text(
                config_text(self.opts, self.run, self.url, store_url, port, backends),
                encoding="utf-8",
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(config),
                env=env, cwd=self.opts.bridge_src,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=(self.workdir / f"bridge{k}.log").open("wb"),
            )  # fmt: skip
            self.bridges.append(BridgeProcess(port, config, proc))
        # all at once: migrations take a lock, so N processes on a fresh store all start
        async with aiohttp.ClientSession() as http:
            for bridge in self.bridges:
                await self._ready(http, bridge)

    async def _ready(self, http: aiohttp.ClientSession, bridge: BridgeProcess) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if bridge.proc.returncode is not None:
                log = bridge.config.with_suffix(".log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bridge process exited: {log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(bridge.base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError("bridge process not ready within 60 s")

    async def watch_tickets(self) -> aio_pika.abc.AbstractConnection:
        """Note when each ticket was created, from the public routing key."""
        conn = await aio_pika.connect(self.url)
        ch = await conn.channel()
        exchange = await ch.get_exchange(f"gbbench-{self.run}")
        queue = await ch.declare_queue(exclusive=True)
        await queue.bind(exchange, "ticket.created.#")

        async def seen(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            event = TicketEvent.model_validate_json(msg.body)
            if event.reference is not None:
                self.ticket_seen.setdefault(event.reference, time.time())
            await msg.ack()

        await queue.consume(seen)
        return conn

    # ------------------------------------------------------------------ profiling
    async def start_profilers(self) -> list[asyncio.subprocess.Process]:
        """``py-spy record`` attached to each bridge process (pip install py-spy)."""
        if self.opts.profile is None:
            return []
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.opts.profile.mkdir(parents=True, exist_ok=True)
        tag = f"{self.opts.store}-p{self.opts.processes}-r{int(self.opts.rate)}"
        procs = []
        for k, bridge in enumerate(self.bridges):
            suffix = "svg" if self.opts.profile_format == "flamegraph" else "txt"
            out = self.opts.profile / f"bridge-{tag}-{k}.{suffix}"
            argv = [py_spy, "record", "--pid", str(bridge.proc.pid), "--rate", "100"]
            argv += ["--format", self.opts.profile_format, "--output", str(out)]
            procs.append(
                await asyncio.create_subprocess_exec(
                    *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        await asyncio.sleep(1.0)  # attached before the load starts
        return procs

    @staticmethod
    async def stop_profilers(procs: list[asyncio.subprocess.Process]) -> None:
        for proc in procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes the flame graph on SIGINT
        for proc in procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 60)

    # ------------------------------------------------------------------ load
    async def offer(self) -> None:
        n, rate = self.opts.messages, self.opts.rate
        in_flight = asyncio.Semaphore(512 if rate > 0 else 64)
        failures: list[int] = []
        connector = aiohttp.TCPConnector(limit=512)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def push(i: int) -> None:
                body = push_body(self.run, i)
                headers = {"Content-Type": "application/json", **sign(PUSH_SECRET, body)}
                bridge = self.bridges[i % len(self.bridges)]
                url = f"{bridge.base}/hooks/sources/{ACCOUNT}"
                try:
                    # 503 (busy / broker) means "later": back off as a webhook sender does,
                    # for up to two minutes (an overloaded bridge sheds load this way)
                    for attempt in range(40):
                        if attempt:
                            await asyncio.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
                        self.sent[i] = time.time()
                        try:
                            async with http.post(url, data=body, headers=headers) as resp:
                                if resp.status == 202:
                                    return
                                if resp.status != 503:
                                    failures.append(resp.status)
                                    return
                                self.busy += 1
                        except aiohttp.ClientConnectionError:
                            # a kept-alive connection the server closed as it was reused: send
                            # again, as a webhook sender does (the bridge drops the duplicate)
                            self.reconnects += 1
                    failures.append(503)
                finally:
                    in_flight.release()

            tasks = []
            started = time.monotonic()
            for i in range(n):
                if rate > 0:
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await in_flight.acquire()
                tasks.append(asyncio.create_task(push(i)))
            await asyncio.gather(*tasks)
        if failures:
            raise RuntimeError(f"{len(failures)} pushes refused: {sorted(set(failures))}")

    async def wait_answered(self, sink: str) -> dict[str, float]:
        deadline = time.monotonic() + self.opts.timeout
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(sink + "/_bench/count") as resp:
                    count = (await resp.json())["inquiries"]
                if count >= self.opts.messages:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {count} of {self.opts.messages} inquiries answered in time"
                    )
                await asyncio.sleep(0.2)
            async with http.get(sink + "/_bench/first_replies") as resp:
                first: dict[str, float] = await resp.json()
        return first

    async def stage_metrics(self) -> dict[str, dict[str, float]]:
        """Per stage over every process: messages handled, handler seconds and the parts."""
        stages: dict[str, dict[str, float]] = {}
        async with aiohttp.ClientSession() as http:
            for bridge in self.bridges:
                async with http.get(bridge.base + "/metrics") as resp:
                    text = await resp.text()
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name == "govbridge_messages_published_total":
                            self.published += sample.value
                        stage = sample.labels.get("stage")
                        if stage is None:
                            continue
                        row = stages.setdefault(stage, {})
                        if sample.name == "govbridge_messages_acked_total":
                            row["messages"] = row.get("messages", 0) + sample.value
                        elif sample.name == "govbridge_handler_seconds_sum":
                            row["handler_s"] = row.get("handler_s", 0) + sample.value
                        elif sample.name == "govbridge_time_spent_seconds_total":
                            key = f"{sample.labels['part']}_s"
                            row[key] = row.get(key, 0) + sample.value
        return {
            name: {k: round(v, 3) for k, v in sorted(row.items())}
            for name, row in sorted(stages.items())
        }

    # ------------------------------------------------------------------ tear-down
    async def close(self) -> None:
        for bridge in self.bridges:
            if bridge.proc.returncode is None:
                bridge.proc.send_signal(signal.SIGTERM)
        for bridge in self.bridges:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bridge.proc.wait(), 30)
            if bridge.proc.returncode is None:
                bridge.proc.kill()
        if self.backends_proc is not None and self.backends_proc.returncode is None:
            self.backends_proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.backends_proc.wait(), 10)
        await delete_exchange_topology(self.url, f"gbbench-{self.run}")
        if self.database is not None:
            import asyncpg

            conn = await asyncpg.connect(self.opts.postgres_admin_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await conn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ the run
    async def sample_rss(self, samples: list[tuple[float, float]]) -> None:
        while True:
            samples.append((time.time(), max(rss_mb(b.proc.pid) for b in self.bridges)))
            await asyncio.sleep(1.0)

    async def measure(self) -> dict[str, Any]:
        backends = await self.start_backends()
        await self.start_bridges(backends, await self.store_url())
        watcher = await self.watch_tickets()
        profilers = await self.start_profilers()
        samples: list[tuple[float, float]] = []
        sampler = asyncio.create_task(self.sample_rss(samples))
        try:
            cpu_before = [cpu_seconds(b.proc.pid) for b in self.bridges]
            broker = broker_pid(self.url)
            broker_before = cpu_seconds(broker) if broker else 0.0
            began = time.time()
            await self.offer()
            first = await self.wait_answered(backends["sink"])
            await self.stop_profilers(profilers)
            await asyncio.sleep(0.5)  # the last ticket.created notes arrive
            cpu = sum(cpu_seconds(b.proc.pid) for b in self.bridges) - sum(cpu_before)
            broker_cpu = cpu_seconds(broker) - broker_before if broker else None
            stages = await self.stage_metrics()
            published = self.published
            rss = [rss_peak_mb(b.proc.pid) for b in self.bridges]
        finally:
            sampler.cancel()
            await watcher.close()
        to_ticket, to_reply = [], []
        for i, sent in self.sent.items():
            inquiry = inquiry_id_for(PLATFORM, ACCOUNT, "mention", f"{self.run}-{i}")
            created = self.ticket_seen.get(reference_for(inquiry))
            if created is not None:
                to_ticket.append(created - sent)
            if inquiry in first:
                to_reply.append(first[inquiry] - sent)
        elapsed = max(first.values()) - began
        for row in stages.values():
            row["msgs_per_s"] = round(row.get("messages", 0) / elapsed, 1)
        return {
            "e2e_inquiries_per_s": round(len(first) / elapsed, 1),
            "elapsed_s": round(elapsed, 2),
            "latency_ms": {
                "offered_rate": self.opts.rate,
                "ingest_to_ticket": percentiles(to_ticket),
                "ingest_to_first_reply": percentiles(to_reply),
            },
            "cpu_ms_per_inquiry": round(cpu * 1000 / max(1, len(first)), 2),
            # the local RabbitMQ's CPU over the same span (other users of the broker count too)
            "broker_cpu_ms_per_inquiry": round(broker_cpu * 1000 / max(1, len(first)), 2)
            if broker_cpu is not None
            else None,
            "publishes_per_inquiry": round(published / max(1, len(first)), 2),
            "push_reconnects": self.reconnects,
            "push_busy_answers": self.busy,
            "rss_mb_peak": max(rss, default=0.0),
            "rss_mb_peak_per_process": rss,
            "rss_mb_over_run": rss_over_run(samples),
            "stages": stages,
        }


async def delete_exchange_topology(url: str, exchange: str) -> None:
    from bridge.runtime.topology import Topology
    from schemas.config import BrokerConfig

    conn = await aio_pika.connect(url)
    async with conn:
        with contextlib.suppress(Exception):
            await Topology(BrokerConfig(url=url, exchange=exchange)).delete(await conn.channel())


async def run_pipeline(opts: Options, url: str) -> dict[str, Any]:
    bench = PipelineBench(opts, url)
    try:
        return await bench.measure()
    finally:
        await bench.close()
