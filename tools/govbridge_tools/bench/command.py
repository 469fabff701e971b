"""``govbridge bench``: the bridge's throughput and latency beside a raw aio-pika relay hop
measured in the same run, on the same broker.

The baseline does one relay hop per message — consume from a quorum queue, publish the next
message with a publisher confirm, ack — the ceiling any pipeline stage can approach.

``--stage pipeline`` (the default) measures the whole bridge from outside (``govbridge_tools.bench.
pipeline``): signed webhook pushes → triage → ticketing (an Open311 simulator in another
process) → reply → outbox (a reply sink), with ``--rate``, ``--processes`` and ``--store``.
``--stage relay`` runs the runtime alone (``Worker``: validation, log context, metrics,
confirmed publish, ack); ``--stage triage`` the triage stage alone; ``--stage incidents`` the
incident engine alone (``govbridge_tools.bench.incidents``: the cost of one ``add()`` with
100,000 inquiries in the window, and the memory the index takes; no broker). Results are
reported as a ratio to the baseline: absolute numbers depend on the machine.

``--scenario first-response`` measures something else: the citizen's wait from post to the
first acknowledgement, per channel (polled, pushed, streamed), on the simulators under the
platforms' quotas (``govbridge_tools.bench.first_response``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.runtime.broker import Broker
from bridge.runtime.context import BridgeContext
from bridge.runtime.topology import Topology
from bridge.runtime.worker import Delivery, Stage, Worker
from bridge.security.bus import BusAuth
from bridge.triage.role import TriageRole
from govbridge_tools.bench.pipeline import Options, broker_pid, cpu_seconds, run_pipeline
from govbridge_tools.kit import amqp_url, broker_reachable
from schemas.config import BrokerConfig
from schemas.messages import Author, Inquiry, ThreadRef
from schemas.vocab import InquiryKind


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="bridge throughput beside a raw aio-pika baseline")
    p.add_argument("--messages", type=int, default=2000, help="inquiries (or messages) to send")
    p.add_argument("--prefetch", type=int, default=None, help="per stage (default 64; 256 alone)")
    p.add_argument(
        "--stage",
        choices=["pipeline", "relay", "triage", "incidents"],
        default="pipeline",
        help="pipeline: the whole bridge from outside; relay: the runtime alone; triage: the"
        " triage stage alone; incidents: the incident engine alone (no broker)",
    )
    p.add_argument(
        "--in-window",
        type=int,
        default=100_000,
        help="inquiries the incident index holds while add() is timed (incidents)",
    )
    p.add_argument("--measure", type=int, default=10_000, help="adds timed one by one (incidents)")
    p.add_argument(
        "--rate", type=float, default=0.0, help="inquiries offered per second (0: saturation)"
    )
    p.add_argument("--processes", type=int, default=1, help="bridge processes (pipeline)")
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--incidents",
        choices=["off", "suggest", "merge"],
        default="off",
        help="the bench department's incidents mode (triage; default: the product's default)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="write py-spy flame graphs of each bridge process to DIR (pipeline)",
    )
    p.add_argument("--profile-format", choices=["flamegraph", "raw"], default="flamegraph")
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to wait for the last answers after the last push (pipeline)",
    )
    p.add_argument(
        "--bridge-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the bridge processes from another checkout (before/after comparisons)",
    )
    p.add_argument(
        "--scenario",
        choices=["throughput", "first-response"],
        default="throughput",
        help="throughput: the --stage measurements; first-response: the citizen's wait from"
        " post to first acknowledgement per channel (poll, push, stream) on the simulators"
        " (govbridge_tools.bench.first_response)",
    )
    p.add_argument(
        "--duration", type=float, default=1200.0, help="seconds of citizens (first-response)"
    )
    p.add_argument(
        "--per-hour",
        type=float,
        default=30.0,
        help="inquiries an hour per account besides the bursts (first-response)",
    )
    p.add_argument("--burst", type=int, default=10, help="inquiries a burst (first-response)")
    p.add_argument("--poll", default="60s", help="the polled accounts' quiet pace (first-response)")
    p.add_argument(
        "--calls-per-hour",
        type=int,
        default=150,
        help="the Weibo accounts' call budget (first-response; 150: the test tier)",
    )
    p.add_argument(
        "--burst-every", type=float, default=1200.0, help="seconds between bursts (first-response)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=lambda args: asyncio.run(run_bench(args)))


def inquiry(n: int, run: str) -> Inquiry:
    return Inquiry.create(
        platform="webhook",  # the platform of the bench's configured account
        account="bench",
        kind=InquiryKind.COMMENT,
        external_id=f"{run}-{n}",
        author=Author(id=str(5_000_000_000 + n), handle=f"citizen{n}"),
        text=f"第{n}号：小区门口的路灯坏了一个星期，晚上很黑，请尽快维修，电话13812345678",
        created_at=datetime.now(UTC),
        thread=ThreadRef(root_id=f"{run}-post-{n}"),
    )


class Result:
    def __init__(self, name: str, n: int, seconds: float, latencies: list[float]) -> None:
        self.name, self.n, self.seconds = name, n, seconds
        self.cpu_ms = 0.0  # client CPU per message, where measured
        self.broker_cpu_ms: float | None = None  # the local broker's CPU per message
        lat = sorted(latencies)
        self.rate = n / seconds if seconds else 0.0
        self.p50 = statistics.median(lat) * 1000 if lat else 0.0
        self.p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0

    def row(self) -> str:
        return (
            f"{self.name:<28} {self.n:>7} msgs {self.seconds:>7.2f} s {self.rate:>9.0f} msg/s"
            f"   p50 {self.p50:>7.1f} ms   p99 {self.p99:>7.1f} ms"
        )


BENCH_KEY = "inquiry.received.bench"  # what the relay's input is signed for (triage binds it)


async def _fill(url: str, queue: str, bodies: list[bytes], sign: BusAuth | None = None) -> None:
    """Put the input messages in place first (confirmed), so only the hop is timed; signed
    (as ``inquiry.received.bench``) for a bridge stage, which checks every message."""
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        sem = asyncio.Semaphore(256)

        async def one(body: bytes) -> None:
            async with sem:
                headers = sign.headers(BENCH_KEY, body, "Inquiry") if sign is not None else None
                await ch.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        timestamp=datetime.now(UTC),
                        type="Inquiry",
                        headers=headers,
                    ),
                    routing_key=queue,
                )

        await asyncio.gather(*(one(b) for b in bodies))


async def baseline(url: str, n: int, prefetch: int, bodies: list[bytes]) -> Result:
    """Raw aio-pika: consume → confirmed publish → ack, quorum queues, same prefetch."""
    src, dst = f"bench-{uuid.uuid4().hex[:8]}-in", f"bench-{uuid.uuid4().hex[:8]}-out"
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        for name in (src, dst):
            await ch.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await _fill(url, src, bodies)
        consume_ch = await conn.channel(publisher_confirms=True)
        await consume_ch.set_qos(prefetch_count=prefetch)
        queue = await consume_ch.get_queue(src)
        done = asyncio.Event()
        latencies: list[float] = []
        count = 0

        async def on_message(msg: AbstractIncomingMessage) -> None:
            nonlocal count
            started = time.perf_counter()
            await consume_ch.default_exchange.publish(
                aio_pika.Message(msg.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=dst,
            )
            await msg.ack()
            latencies.append(time.perf_counter() - started)
            count += 1
            if count >= n:
                done.set()

        broker = broker_pid(url)
        broker0 = cpu_seconds(broker) if broker else 0.0
        t0, cpu0 = time.perf_counter(), time.process_time()
        await queue.consume(on_message)
        await done.wait()
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        broker_cpu = cpu_seconds(broker) - broker0 if broker else None
        for name in (src, dst):
            await ch.queue_delete(name, if_unused=False, if_empty=False)
    result = Result("raw aio-pika relay hop", n, seconds, latencies)
    result.cpu_ms = cpu * 1000 / n
    if broker_cpu is not None:
        result.broker_cpu_ms = broker_cpu * 1000 / n
    return result


async def bridge_relay(url: str, n: int, prefetch: int, bodies: list[bytes]) -> Result:
    """The runtime: Worker validates the schema, binds log context, counts metrics, publishes
    the next message with a bounded confirm and acks."""
    cfg = BrokerConfig(url=url, exchange=f"gbbench-{uuid.uuid4().hex[:8]}", prefetch=prefetch)
    broker = Broker(cfg)
    await broker.connect()
    latencies: list[float] = []
    done = asyncio.Event()
    count = 0

    async def handler(item: Inquiry, _: Delivery) -> None:
        nonlocal count
        started = time.perf_counter()
        await broker.publish("bench.relayed", item)  # caught by the alternate exchange
        latencies.append(time.perf_counter() - started)
        count += 1
        if count >= n:
            done.set()

    try:
        await _fill(url, broker.topology.queues("triage").work, bodies, broker.bus)
        worker = Worker(broker, Stage("triage", Inquiry, handler))
        t0 = time.perf_counter()
        await worker.start()
        await done.wait()
        seconds = time.perf_counter() - t0
        await worker.stop()
    finally:
        await broker.close()
        await _delete(url, cfg)
    return Result("govbridge runtime relay hop", n, seconds, latencies)


async def bridge_triage(
    url: str, n: int, prefetch: int, bodies: list[bytes], incidents: str = "off"
) -> Result:
    """The real triage stage with its SQLite store, one department (its ``incidents`` mode as
    given), no content routes."""
    workdir = tempfile.mkdtemp(prefix="govbridge-bench-")
    cfg = parse_config(
        {
            "broker": {
                "url": url,
                "exchange": f"gbbench-{uuid.uuid4().hex[:8]}",
                "prefetch": prefetch,
            },
            "store": {"url": f"sqlite:///{workdir}/bench.db"},
            "departments": [
                {
                    "id": "bench",
                    "name": "测试局",
                    "incidents": incidents,
                    "ticketing": {
                        "adapter": "rest",
                        "base_url": "http://127.0.0.1:9",
                        "auth": {"bearer": "x"},
                    },
                }
            ],
            "accounts": [
                {
                    "adapter": "webhook",
                    "handle": "bench",
                    "department": "bench",
                    "secret": "s",
                    "reply_url": "http://127.0.0.1:9/",
                }
            ],
        },
        "<bench>",
        env={},
    )
    latencies: list[float] = []

    def timed_triage(ctx: BridgeContext) -> TriageRole:
        role = TriageRole(ctx)
        handle = role.worker.stage.handler

        async def timed(item: Inquiry, delivery: Delivery) -> None:
            started = time.perf_counter()
            await handle(item, delivery)
            latencies.append(time.perf_counter() - started)

        role.worker.stage.handler = timed
        return role

    daemon = Daemon(cfg, roles=["triage"], role_factories={"triage": timed_triage})
    await daemon.start()
    try:
        t0 = time.perf_counter()
        await daemon.broker.publish_many(
            [("inquiry.received.weibo", Inquiry.model_validate_json(b)) for b in bodies]
        )
        while len(latencies) < n:  # noqa: ASYNC110 - handlers report through the list
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - t0
    finally:
        await daemon.stop()
        await _delete(url, cfg.broker)
    return Result("govbridge triage stage", n, seconds, latencies)


async def _delete(url: str, cfg: BrokerConfig) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        await Topology(cfg).delete(await conn.channel())


async def run_bench(args: argparse.Namespace) -> int:
    if args.scenario == "first-response":
        from govbridge_tools.bench import first_response

        return await first_response.run(args)
    if args.stage == "incidents":
        from govbridge_tools.bench import incidents

        report = incidents.run(args.in_window, args.measure)
        print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
        return 0
    url = amqp_url()
    if not broker_reachable(url):
        print("RabbitMQ is not reachable; see `govbridge demo` for how to start it")
        return 1
    run = uuid.uuid4().hex[:6]
    n_base = min(args.messages, 5000) if args.stage == "pipeline" else args.messages
    bodies = [inquiry(i, run).model_dump_json().encode() for i in range(n_base)]
    prefetch = args.prefetch or (64 if args.stage == "pipeline" else 256)
    base = await baseline(url, n_base, 256, bodies)
    if args.stage == "pipeline":
        opts = Options(
            messages=args.messages,
            rate=args.rate,
            processes=args.processes,
            store=args.store,
            prefetch=prefetch,
            profile=args.profile,
            profile_format=args.profile_format,
            bridge_src=args.bridge_src,
            timeout=args.timeout,
        )
        result = await run_pipeline(opts, url)
        ratio = result["e2e_inquiries_per_s"] / base.rate if base.rate else 0.0
        report = {
            "stage": "pipeline",
            "messages": args.messages,
            "processes": args.processes,
            "store": args.store,
            "raw_relay_msgs_per_s": round(base.rate, 1),
            "e2e_inquiries_per_s": result["e2e_inquiries_per_s"],
            "ratio": round(ratio, 4),
            # CPU per unit of work, immune to what else the machine runs: the relay hop's
            # client CPU per message over the bridge's CPU per inquiry
            "raw_relay_cpu_ms_per_msg": round(base.cpu_ms, 3),
            "raw_relay_broker_cpu_ms_per_msg": None
            if base.broker_cpu_ms is None
            else round(base.broker_cpu_ms, 3),
            "cpu_ratio": round(base.cpu_ms / result["cpu_ms_per_inquiry"], 4)
            if result["cpu_ms_per_inquiry"]
            else 0.0,
            **{k: v for k, v in result.items() if k != "e2e_inquiries_per_s"},
        }
        print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
        return 0
    if args.stage == "relay":
        ours = await bridge_relay(url, args.messages, prefetch, bodies)
    else:
        ours = await bridge_triage(url, args.messages, prefetch, bodies, args.incidents)
    ratio = ours.rate / base.rate if base.rate else 0.0
    if args.json:
        print(
            json.dumps(
                {
                    "messages": args.messages,
                    "prefetch": prefetch,
                    "stage": args.stage,
                    **({"incidents": args.incidents} if args.stage == "triage" else {}),
                    "raw_relay_msgs_per_s": round(base.rate, 1),
                    "bridge_msgs_per_s": round(ours.rate, 1),
                    "ratio": round(ratio, 4),
                    "bridge_p50_ms": round(ours.p50, 2),
                    "bridge_p99_ms": round(ours.p99, 2),
                }
            )
        )
    else:
        print(base.row())
        print(ours.row())
        print(f"ratio to the raw aio-pika baseline: {ratio:.2f}")
    return 0
