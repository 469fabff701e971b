"""``govbridge bench --scenario first-response``: the citizen's wait from post to the bridge's
first acknowledgement (issue 25, must-show 5), per channel, on the real bridge.

One district department, three official accounts on the simulators, the platforms' real quotas:

- **poll**: a Weibo account read by polling (``comments/to_me``, ``comments/mentions``,
  ``statuses/mentions``) under the test tier's budget (150 calls and 60 comments an hour), paced
  by activity (``call_budget``; its quiet pace ``poll = "60s"``); citizens @-mention it;
- **push**: a Weibo account in fan-service push mode; citizens write it private messages,
  which Weibo pushes to ``/hooks/sources/{account}``;
- **stream**: a Mastodon account (mastodon-mock) with ``streaming = "auto"``; citizens mention it.

Each account gets the same load: inquiries at ``--rate`` an hour (Poisson) plus a burst of
``--burst`` within a minute every ``--burst-every`` seconds (the first at the middle of the
first period), for ``--duration`` seconds, each from a citizen of its own, in real time (the
quotas and the bridge's own clocks are real). The default, 30 an hour and a burst of 10 every
20 minutes, keeps the polled account within the 60 comments an hour Weibo lets it post: a busy
district account, not a measured figure of the 12345 hotline. The wait of each inquiry runs
from the moment the bench posted it to the moment the bench first saw the official account's
reply to it on the simulator (looked at every 0.25 s; Mastodon every 1 s): the ticket's
acknowledgement (已受理 with its number), approval ``none``, ticketing on an Open311 simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.telemetry.logging import configure_logging
from govbridge_tools.kit import AppServer, amqp_url, broker_reachable

APPSECRET = "bench-fan-service-appsecret"
WITHIN = 180.0  # GB/T 33358-2016: answer within 3 minutes
CHANNELS = ("poll", "push", "stream")
TEXTS = [
    "小区门口的路灯坏了一个星期，晚上很黑，请尽快维修",
    "公交站台的顶棚漏雨，候车的老人都淋湿了，请处理",
    "楼下餐馆油烟直排，家里窗户都不敢开，请管一管",
    "人行道上的井盖松动，踩上去咣当响，怕有人摔倒",
    "地铁口共享单车堆成山，轮椅过不去，请清理",
    "工地夜里施工噪音很大，已经连续三天了，请查处",
    "想咨询一下老旧小区加装电梯的补贴怎么申请",
    "路口红绿灯时间太短，老人过马路来不及，建议调整",
]


@dataclass
class Load:
    rate: float = 30.0  # inquiries an hour per account, besides the bursts
    burst: int = 10
    burst_every: float = 1200.0
    burst_span: float = 60.0
    duration: float = 1200.0
    seed: int = 12345
    poll: str = "60s"  # the polled accounts' quiet pace
    calls_per_hour: int = 150  # Weibo's test tier

    def schedule(self, channel: str) -> list[float]:
        """Seconds from the start at which this channel's citizens post."""
        rng = random.Random(f"{self.seed}:{channel}")
        times: list[float] = []
        t = rng.expovariate(self.rate / 3600.0) if self.rate > 0 else math.inf
        while t < self.duration:
            times.append(t)
            t += rng.expovariate(self.rate / 3600.0)
        start = self.burst_every / 2
        while start < self.duration:
            times += [start + rng.uniform(0, self.burst_span) for _ in range(self.burst)]
            start += self.burst_every
        return sorted(t for t in times if t < self.duration)


@dataclass
class Channel:
    name: str
    posted: dict[str, float] = field(default_factory=dict)  # key -> monotonic post time
    acked: dict[str, float] = field(default_factory=dict)  # key -> first reply seen

    def waits(self) -> list[float]:
        return sorted(self.acked[k] - self.posted[k] for k in self.posted if k in self.acked)

    def summary(self) -> dict[str, Any]:
        waits = self.waits()
        n = len(self.posted)
        return {
            "channel": self.name,
            "inquiries": n,
            "acknowledged": len(waits),
            "p50_s": _quantile(waits, 0.50),
            "p95_s": _quantile(waits, 0.95),
            "p99_s": _quantile(waits, 0.99),
            "max_s": round(waits[-1], 2) if waits else None,
            "within_3_min": round(sum(w <= WITHIN for w in waits) / n, 4) if n else None,
        }


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (with few samples the p99 is the slowest)."""
    if not values:
        return None
    return round(values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))], 2)


class Bench:
    def __init__(self, load: Load, workdir: Path) -> None:
        self.load = load
        self.workdir = workdir
        self.channels = {c: Channel(c) for c in CHANNELS}
        self.servers: list[Any] = []
        self.daemon: Daemon | None = None
        self.sims: dict[str, Any] = {}
        self.exchange = f"govbridge-bench-fr-{uuid.uuid4().hex[:8]}"

    async def start(self) -> None:
        from govbridge_tools.simulators import open311 as open311_sim
        from govbridge_tools.simulators.mastodon import MastodonSimState
        from govbridge_tools.simulators.weibo import Limits, WeiboState
        from govbridge_tools.simulators.weibo import create_app as weibo_app

        for key, name, uid, first in (
            ("poll", "朝阳发布", 1_900_000_021, 4_920_000_000_000_000),
            ("push", "朝阳服务", 1_900_000_022, 4_930_000_000_000_000),
        ):
            state = WeiboState(
                official_name=name,
                official_uid=uid,
                first_id=first,
                # the test tier: 150 calls, 30 posts, 60 comments an hour
                limits=Limits(calls=self.load.calls_per_hour),
                appsecret=APPSECRET,
            )
            server = await AppServer(weibo_app(state)).start()
            self.servers.append(server)
            self.sims[key], self.sims[f"{key}-url"] = state, server.url
        mastodon = await MastodonSimState(official="chaoyang").start()
        self.servers.append(mastodon)
        self.sims["stream"] = mastodon
        o311 = await open311_sim.Open311Server(open311_sim.Open311State(agency="朝阳区")).start()
        self.servers.append(o311)
        budget = {"max_calls": self.load.calls_per_hour, "period": "1h"}
        weibo = {"adapter": "weibo", "department": "district", "poll": self.load.poll}
        cfg = {
            "broker": {"url": amqp_url(), "exchange": self.exchange, "prefetch": 16},
            "store": {"url": f"sqlite:///{self.workdir}/bench.db"},
            "http": {"listen": "127.0.0.1:0", "admin_token": uuid.uuid4().hex},
            "departments": [
                {
                    "id": "district",
                    "name": "朝阳区政府",
                    "approval": "none",
                    "ticketing": {
                        **open311_sim.demo_ticketing_config(o311.base_url),
                        "poll": "5s",
                    },
                }
            ],
            "accounts": [
                {
                    **weibo,
                    "handle": "朝阳发布",
                    "token": self.sims["poll"].token,
                    "base_url": self.sims["poll-url"] + "/2/",
                    "call_budget": budget,
                },
                {
                    **weibo,
                    "handle": "朝阳服务",
                    "token": self.sims["push"].token,
                    "base_url": self.sims["push-url"] + "/2/",
                    "call_budget": budget,
                    "fan_service": {
                        "appsecret": APPSECRET,
                        "uid": str(self.sims["push"].official_uid),
                    },
                },
                {**mastodon.account_config("district"), "streaming": "auto", "poll": "60s"},
            ],
        }
        self.daemon = Daemon(parse_config(cfg, "<bench first-response>"))
        await self.daemon.start()
        self.sims[
            "push"
        ].hook_url = f"http://127.0.0.1:{self.daemon.http_port}/hooks/sources/朝阳服务"

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()
            import aio_pika

            from bridge.runtime.topology import Topology

            conn = await aio_pika.connect(amqp_url())
            async with conn:
                await Topology(self.daemon.cfg.broker).delete(await conn.channel())
        for server in reversed(self.servers):
            await (server.stop() if hasattr(server, "stop") else server.close())

    # ------------------------------------------------------------------ citizens
    async def drive(self, channel: str, started: float) -> None:
        tasks = []
        for n, at in enumerate(self.load.schedule(channel)):
            delay = started + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            text = f"{TEXTS[n % len(TEXTS)]}（{channel}第{n}条）"
            tasks.append(asyncio.create_task(self._post(channel, n, text)))
        await asyncio.gather(*tasks)

    async def _post(self, channel: str, n: int, text: str) -> None:
        record = self.channels[channel]
        if channel == "poll":
            state = self.sims["poll"]
            posted = time.monotonic()
            status = state.add_mention_post(text, citizen=f"市民P{n}")
            record.posted[str(status.id)] = posted
        elif channel == "push":
            state = self.sims["push"]
            uid = state.citizen(f"市民D{n}")
            record.posted[str(uid)] = time.monotonic()
            await state.push_message(uid, text)  # retried by "Weibo" while not answered
        else:
            sim = self.sims["stream"]
            citizen = await sim.create_citizen(f"citizen_s{n}")
            posted = time.monotonic()
            status = await sim.mention(citizen, text)
            record.posted[str(status["id"])] = posted

    async def watch(self, stop: asyncio.Event) -> None:
        """Note when each inquiry's first reply appears on its platform."""
        ticks = 0
        while not stop.is_set():
            now = time.monotonic()
            poll, push = self.channels["poll"], self.channels["push"]
            for r in self.sims["poll"].posted_replies():
                poll.acked.setdefault(r["status_id"], now)
            for r in self.sims["push"].dm_replies:
                push.acked.setdefault(str(r["receiver_id"]), now)
            if ticks % 4 == 0:
                stream = self.channels["stream"]
                replies = await self.sims["stream"].official_replies()
                seen = time.monotonic()
                for r in replies:
                    if r["in_reply_to_id"]:
                        stream.acked.setdefault(str(r["in_reply_to_id"]), seen)
            ticks += 1
            await asyncio.sleep(0.25)

    def done(self) -> bool:
        return all(set(c.posted) <= set(c.acked) for c in self.channels.values())


async def run(args: argparse.Namespace) -> int:
    url = amqp_url()
    if not broker_reachable(url):
        print("RabbitMQ is not reachable; see `govbridge demo` for how to start it")
        return 1
    load = Load(
        rate=args.per_hour,
        burst=args.burst,
        burst_every=args.burst_every,
        duration=args.duration,
        poll=args.poll,
        calls_per_hour=args.calls_per_hour,
    )
    workdir = Path(tempfile.mkdtemp(prefix="govbridge-bench-fr-"))
    log_path = workdir / "govbridge.log"
    log_file = log_path.open("w", encoding="utf-8")
    configure_logging("info", json=True)  # the bridge's log lines go to a file, not stdout
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log_file))
    bench = Bench(load, workdir)
    stop = asyncio.Event()
    print(f"first-response bench: logs in {log_path}", flush=True)
    try:
        await bench.start()
        started = time.monotonic()
        watcher = asyncio.create_task(bench.watch(stop))
        await asyncio.gather(*(bench.drive(c, started) for c in CHANNELS))
        for _ in range(int(args.timeout * 2)):  # the last answers, at most --timeout s
            if bench.done():
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        stop.set()
        await watcher
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        await bench.stop()
        log_file.close()
    rows = [bench.channels[c].summary() for c in CHANNELS]
    result = {
        "scenario": "first-response",
        "load": load.__dict__,
        "elapsed_s": round(elapsed, 1),
        "channels": rows,
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(
        f"first response, {load.duration:.0f} s of citizens: {load.rate:g} an hour per account"
        f" + a burst of {load.burst} every {load.burst_every:.0f} s ({elapsed:.0f} s in all)"
    )
    print("| channel | inquiries | acknowledged | p50 | p95 | p99 | max | within 3 min |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = "-" if r["within_3_min"] is None else f"{r['within_3_min']:.1%}"
        print(
            f"| {r['channel']} | {r['inquiries']} | {r['acknowledged']} | {_s(r['p50_s'])} |"
            f" {_s(r['p95_s'])} | {_s(r['p99_s'])} | {_s(r['max_s'])} | {share} |"
        )
    return 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
