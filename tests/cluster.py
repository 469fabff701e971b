"""Several real bridge processes (``govbridge run``) sharing one PostgreSQL store and one
RabbitMQ exchange, against simulators that keep their own records: Weibo accounts (polled) and
an Open311 ticket system. Used by the multi-process and chaos tests.

Everything counted at the end comes from the simulators, never from the bridge: tickets in the
Open311 server (by the bridge's reference), replies posted on each Weibo account (by the post they
answer), and each simulator's request log with the User-Agent of the process that asked (the
adapters' HTTP client names its pid), which shows who polled an account when.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govbridge_tools.bench.pipeline import TEXTS
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators.open311 import Open311Server, Open311State
from govbridge_tools.simulators.weibo import Limits, WeiboState
from govbridge_tools.simulators.weibo import create_app as weibo_app

from bridge.store import open_store
from schemas.config import GovbridgeConfig
from tests.conftest import bridge_config, config_toml, delete_topology

PG_ADMIN = os.environ.get("GOVBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROLES = "ingest,triage,ticketing,sync,reply,sla"
TIMELINES = {"statuses/mentions.json", "comments/to_me.json", "comments/mentions.json"}
PID = re.compile(r"pid (\d+)")


@dataclass
class Account:
    handle: str
    state: WeiboState
    server: AppServer
    posts: list[int] = field(default_factory=list)  # the citizens' mentions, in order


@dataclass
class Cluster:
    """Simulators in this process, bridge processes beside it."""

    workdir: Path
    accounts_n: int = 3
    amqp_url: str | None = None  # default: the tests' broker
    pg_port: int | None = None  # the bridges reach PostgreSQL here (a TCP proxy), if set
    rate_window: float = 10.0  # the platform's rate-limit window (Weibo's is an hour)
    poll: str = "200ms"
    sync_poll: str = "300ms"
    extra_config: dict[str, Any] = field(default_factory=dict)
    ticketing: dict[str, Any] = field(default_factory=dict)  # the department's, on top
    accounts: list[Account] = field(default_factory=list)
    open311: Open311State = field(default_factory=lambda: Open311State(agency="市交通委"))
    posts: list[tuple[str, int]] = field(default_factory=list)  # every inquiry, in order
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    database: str | None = None
    cfg: GovbridgeConfig | None = None
    _open311_server: Open311Server | None = None
    _n: int = 0
    _counted: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ set-up
    async def start(self) -> None:
        import asyncpg

        for i in range(self.accounts_n):
            state = WeiboState(
                official_name=f"市交通委{i}",
                official_uid=1_900_000_001 + i,
                first_id=4_900_000_000_000_000 + i * 10_000_000,
                limits=Limits(
                    calls=10_000_000,
                    posts=10_000_000,
                    comments=10_000_000,
                    window=self.rate_window,
                ),
            )
            server = await AppServer(weibo_app(state)).start()
            self.accounts.append(Account(f"jtw{i}", state, server))
        self._open311_server = await Open311Server(self.open311).start()
        self.database = f"gbcluster_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f"CREATE DATABASE {self.database}")
        finally:
            await admin.close()
        store_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{self.database}"
        if self.pg_port is not None:
            store_url = f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.database}"
        broker: dict[str, Any] = {"prefetch": 32}
        if self.amqp_url is not None:
            broker["url"] = self.amqp_url
        broker.update(self.extra_config.pop("broker", {}))
        self.cfg = bridge_config(
            self.workdir,
            broker=broker,
            store={"url": store_url},
            departments=[
                {
                    "id": "transport",
                    "name": "市交通委",
                    "approval": "none",
                    "ticketing": {
                        "adapter": "open311",
                        "base_url": self._open311_server.base_url,
                        "api_key": "sim-open311-key",
                        "service_codes": {
                            "complaint": "TR-01",
                            "consultation": "TR-02",
                            "other": "TR-09",
                        },
                        "attributes": {"urgency": "normal"},
                        "lat": 39.9,
                        "long": 116.4,
                        "searchable": True,
                        "poll": self.sync_poll,
                        # a create cut off by a fault is looked up by reference after this
                        "create_lease": "20s",
                        **self.ticketing,
                    },
                }
            ],
            accounts=[
                {
                    "adapter": "weibo",
                    "handle": a.handle,
                    "department": "transport",
                    "token": a.state.token,
                    "base_url": a.server.url + "/2/",
                    "poll": self.poll,
                    "page_size": 200,
                    "streams": ["statuses_mentions"],
                    "reply_limit": {"max_calls": 100_000, "period": "1s"},
                }
                for a in self.accounts
            ],
            **self.extra_config,
        )
        (self.workdir / "bridge.toml").write_text(config_toml(self.cfg), encoding="utf-8")
        # Migrate once before the processes start together (they would race to create tables).
        store = await open_store(PG_ADMIN.rsplit("/", 1)[0] + f"/{self.database}")
        await store.close()

    async def spawn(self, amqp_url: str | None = None) -> asyncio.subprocess.Process:
        """A bridge process (every role but HTTP); ``amqp_url``: its own broker node
        (``GOVBRIDGE_AMQP_URL`` overrides the config's, as in the compose cluster profile)."""
        k = len(self.procs)
        env = dict(os.environ)
        if amqp_url is not None:
            env["GOVBRIDGE_AMQP_URL"] = amqp_url
        else:
            env.pop("GOVBRIDGE_AMQP_URL", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "--log-json", "run",
            "-c", str(self.workdir / "bridge.toml"), "--roles", ROLES,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=(self.workdir / f"bridge{k}.log").open("wb"), env=env,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every bridge process's log, for a failure's message."""
        parts = []
        for k in range(len(self.procs)):
            log = self.workdir / f"bridge{k}.log"
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- bridge{k} (exit {self.procs[k].returncode}):\n{tail}")
        return "\n".join(parts)

    def alive(self) -> list[asyncio.subprocess.Process]:
        return [p for p in self.procs if p.returncode is None]

    async def sigkill(self, proc: asyncio.subprocess.Process) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        self.killed.append(proc.pid)

    async def close(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 30)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for a in self.accounts:
            await a.server.stop()
        if self._open311_server is not None:
            await self._open311_server.close()
        if self.cfg is not None:
            with contextlib.suppress(Exception):
                await delete_topology(self.cfg.broker)
        if self.database is not None:
            import asyncpg

            admin = await asyncpg.connect(PG_ADMIN)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            finally:
                await admin.close()

    # ------------------------------------------------------------------ load
    def add_inquiries(self, n: int) -> None:
        """``n`` citizens' mentions, spread over the accounts in turn."""
        for _ in range(n):
            k = self._n
            self._n += 1
            account = self.accounts[k % len(self.accounts)]
            text = TEXTS[k % len(TEXTS)].format(n=k)
            post = account.state.add_mention_post(text, citizen=f"市民{k:05d}")
            account.posts.append(post.id)
            self.posts.append((account.handle, post.id))

    @property
    def inquiries(self) -> int:
        return self._n

    # ------------------------------------------------------------------ the simulators' records
    def replies_by_post(self) -> Counter[tuple[str, int]]:
        """(account, post answered) -> replies posted there."""
        found: Counter[tuple[str, int]] = Counter()
        for a in self.accounts:
            for r in a.state.posted_replies():
                found[(a.handle, int(r["status_id"]))] += 1
        return found

    def reply_texts(self) -> dict[tuple[str, int], list[str]]:
        found: dict[tuple[str, int], list[str]] = defaultdict(list)
        for a in self.accounts:
            for r in a.state.posted_replies():
                found[(a.handle, int(r["status_id"]))].append(str(r["text"]))
        return found

    def tickets_by_reference(self) -> Counter[str]:
        return Counter(self.open311.reference_of(t) or "" for t in self.open311.tickets.values())

    def close_all_tickets(self) -> int:
        """An official resolves every open ticket (an update the bridge's sync will see)."""
        n = 0
        for ticket_id, ticket in list(self.open311.tickets.items()):
            if ticket.status != "closed":
                self.open311.set_status(ticket_id, "closed", "已处理完毕")
                n += 1
        return n

    def accounting(
        self, replies_each: int, posts: list[tuple[str, int]] | None = None
    ) -> dict[str, int]:
        """Inquiries in, tickets, replies, lost, duplicated, unanswered: all from the
        simulators. ``replies_each``: replies every inquiry is owed by now; ``posts``: the
        inquiries to count (default all; tickets are then those not counted before)."""
        tickets = self.tickets_by_reference()
        replies = self.replies_by_post()
        everything = posts is None
        posts = self.posts if posts is None else posts
        owed = {p: replies.get(p, 0) for p in posts}
        if not everything:
            tickets = Counter({r: n for r, n in tickets.items() if r not in self._counted})
        return {
            "inquiries": len(posts),
            "tickets": len(tickets),
            "tickets_duplicated": sum(n - 1 for n in tickets.values() if n > 1),
            "replies": sum(owed.values()),
            "replies_duplicated": sum(max(0, n - replies_each) for n in owed.values()),
            "unanswered": sum(1 for n in owed.values() if n == 0),
            "lost": max(0, len(posts) - len(tickets)),
            "short_of_replies": sum(1 for n in owed.values() if n < replies_each),
            "stray_replies": sum(n for p, n in replies.items() if p not in set(self.posts)),
        }

    def seal(self) -> None:
        """Tickets counted so far belong to earlier scenarios."""
        self._counted.update(self.tickets_by_reference())

    def pollers(self, handle: str) -> list[tuple[float, int]]:
        """(time, pid) of every timeline read of an account, from its simulator's log."""
        account = next(a for a in self.accounts if a.handle == handle)
        out = []
        for at, method, endpoint, agent in account.state.request_log:
            m = PID.search(agent)
            if method == "GET" and endpoint in TIMELINES and m:
                out.append((at, int(m.group(1))))
        return sorted(out)


def turns(reads: list[tuple[float, int]]) -> list[int]:
    """The pids that polled, one entry per uninterrupted turn: [a, a, b, b, a] -> [a, b, a]."""
    out: list[int] = []
    for _, pid in reads:
        if not out or out[-1] != pid:
            out.append(pid)
    return out
