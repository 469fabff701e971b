"""``govbridge simulate``: the platform and ticket-system simulators as standalone servers.

``govbridge simulate all`` runs every simulator on consecutive ports from a base port (default
8101) with the fixed credentials that ``examples/govbridge.toml`` names, so a separate
``govbridge run -c examples/govbridge.toml`` (or ``docker compose up``) talks to them:

=====  ============================  ==========================================
port   simulator                     credentials (config key)
=====  ============================  ==========================================
8101   weibo (official 北京交通)       token ``sim-weibo-token``
8102   mastodon (official @shengtai)  token ``sim-official-token``
8103   open311 (JSON, 市交通委)        api_key ``sim-open311-key``
8104   open311 XML-only (市生态环境局)  api_key ``sim-open311-key``
8105   rest (市城管委)                 bearer ``sim-rest-token``, callback secret
8106   webhook platform (12345 app)  push secret ``sim-webhook-secret``
=====  ============================  ==========================================

The REST system posts signed status callbacks and the webhook platform pushes citizens' items
to the bridge at ``--bridge-url`` (default ``http://127.0.0.1:8080``). Each simulator has
operator controls under ``/_sim/...`` (new posts, outages, token expiry, moving tickets).
Runs until SIGTERM or Ctrl-C, then exits 0.

The two secrets the bridge checks on what is pushed to it are read from the environment when
set, under the names the example configs use (``URBAN_CALLBACK_SECRET``, ``HOTLINE_SECRET``):
docker compose makes the operator choose them, since a bridge listening beyond loopback
refuses the published defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

DEFAULT_BASE_PORT = 8101
DEFAULT_BRIDGE_URL = "http://127.0.0.1:8080"

# Fixed credentials: examples/govbridge.toml and examples/compose.toml name these.
WEIBO_TOKEN = "sim-weibo-token"
WEIBO_OFFICIAL = "北京交通"
MASTODON_OFFICIAL = "shengtai"
MASTODON_TOKEN = "sim-official-token"
OPEN311_KEY = "sim-open311-key"
REST_TOKEN = "sim-rest-token"
REST_CALLBACK_SECRET = "sim-callback-secret"
REST_CALLBACK_DEPARTMENT = "urban"
WEBHOOK_SECRET = "sim-webhook-secret"
WEBHOOK_HANDLE = "hotline12345"

CALLBACK_SECRET_ENV = "URBAN_CALLBACK_SECRET"
WEBHOOK_SECRET_ENV = "HOTLINE_SECRET"


def _secret(env_name: str, default: str) -> str:
    return os.environ.get(env_name) or default


CHOICES = ("weibo", "mastodon", "open311", "rest", "webhook", "all")


@dataclass(frozen=True)
class Sim:
    """One simulator of ``simulate all``: its name, port offset and how to run it."""

    name: str
    offset: int
    what: str
    run: Callable[[str, int, str], Coroutine[Any, Any, None]]  # (host, port, bridge_url)


async def _weibo(host: str, port: int, bridge_url: str) -> None:
    from govbridge_tools.simulators.weibo import Limits, serve

    # Generous limits: a bridge polling three streams every few seconds stays well inside.
    await serve(
        host,
        port,
        token=WEIBO_TOKEN,
        official_name=WEIBO_OFFICIAL,
        limits=Limits(calls=100_000, posts=1000, comments=1000),
    )


async def _mastodon(host: str, port: int, bridge_url: str) -> None:
    from govbridge_tools.simulators.mastodon import serve

    await serve(host, port, official=MASTODON_OFFICIAL, token=MASTODON_TOKEN)


async def _open311(host: str, port: int, bridge_url: str) -> None:
    from govbridge_tools.simulators.open311 import serve

    await serve(host, port, api_key=OPEN311_KEY, agency="市交通委")


async def _open311_xml(host: str, port: int, bridge_url: str) -> None:
    from govbridge_tools.simulators.open311 import serve

    await serve(host, port, api_key=OPEN311_KEY, agency="市生态环境局", xml_only=True)


async def _rest(host: str, port: int, bridge_url: str) -> None:
    from govbridge_tools.simulators.rest import serve

    await serve(
        host,
        port,
        token=REST_TOKEN,
        callback_secret=_secret(CALLBACK_SECRET_ENV, REST_CALLBACK_SECRET),
        callback_url=f"{bridge_url.rstrip('/')}/hooks/tickets/{REST_CALLBACK_DEPARTMENT}",
    )


async def _webhook(host: str, port: int, bridge_url: str) -> None:
    from govbridge_tools.simulators.webhook import serve

    await serve(
        host,
        port,
        secret=_secret(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET),
        account_handle=WEBHOOK_HANDLE,
        push_url=f"{bridge_url.rstrip('/')}/hooks/sources/{WEBHOOK_HANDLE}",
    )


SIMS: tuple[Sim, ...] = (
    Sim("weibo", 0, f"Weibo API at /2/, official {WEIBO_OFFICIAL}", _weibo),
    Sim("mastodon", 1, f"Mastodon (mastodon-mock), official @{MASTODON_OFFICIAL}", _mastodon),
    Sim("open311", 2, "Open311 GeoReport v2, JSON and XML", _open311),
    Sim("open311-xml", 3, "Open311 GeoReport v2, XML only", _open311_xml),
    Sim("rest", 4, "REST ticket system with signed callbacks", _rest),
    Sim("webhook", 5, "webhook platform (12345 app) pushing to the bridge", _webhook),
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="run platform / ticket-system simulators as servers",
        description="Run simulators until SIGTERM or Ctrl-C. 'all' uses consecutive ports from "
        f"--port (default {DEFAULT_BASE_PORT}): "
        + ", ".join(f"{s.name} +{s.offset}" for s in SIMS),
    )
    p.add_argument("simulator", choices=CHOICES)
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port (for 'all': the base port; default {DEFAULT_BASE_PORT} + the slot)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    p.add_argument(
        "--xml", action="store_true", help="open311 only: the XML-only variant of the backend"
    )
    p.add_argument(
        "--bridge-url",
        default=DEFAULT_BRIDGE_URL,
        help="where the REST system sends callbacks and the webhook platform pushes",
    )
    p.set_defaults(func=cmd_simulate)


def selected(args: argparse.Namespace) -> list[tuple[Sim, int]]:
    """The simulators to run with their ports."""
    if args.simulator == "all":
        base = DEFAULT_BASE_PORT if args.port is None else args.port
        return [(s, base + s.offset) for s in SIMS]
    name = "open311-xml" if args.simulator == "open311" and args.xml else args.simulator
    sim = next(s for s in SIMS if s.name == name)
    return [(sim, DEFAULT_BASE_PORT + sim.offset if args.port is None else args.port)]


def cmd_simulate(args: argparse.Namespace) -> int:
    plan = selected(args)
    for _, port in plan:
        if not 0 < port < 65536:
            print(f"govbridge simulate: port {port} out of range", file=sys.stderr)
            return 2
    return asyncio.run(run_simulators(plan, args.host, args.bridge_url))


async def _listening(host: str, port: int) -> bool:
    probe = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    try:
        _, writer = await asyncio.open_connection(probe, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def run_simulators(plan: list[tuple[Sim, int]], host: str, bridge_url: str) -> int:
    """Start every simulator of ``plan``, say where each listens, serve until a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks: dict[asyncio.Task[None], tuple[Sim, int]] = {
        asyncio.create_task(sim.run(host, port, bridge_url), name=sim.name): (sim, port)
        for sim, port in plan
    }
    stopper = asyncio.create_task(stop.wait())
    code = 0
    try:
        # Ready when every port accepts connections (mastodon-mock takes a moment to seed).
        pending = dict(tasks)
        deadline = loop.time() + 30
        while pending and loop.time() < deadline and not stop.is_set():
            for task, (sim, port) in list(pending.items()):
                if task.done():
                    raise _Failed(sim, port, task)
                if await _listening(host, port):
                    del pending[task]
            if pending:
                await asyncio.sleep(0.1)
        # A bind error surfaces a moment later when another process already holds a port.
        await asyncio.sleep(0.2)
        for task, (sim, port) in tasks.items():
            if task.done():
                raise _Failed(sim, port, task)
        if pending and not stop.is_set():
            names = ", ".join(f"{s.name}:{p}" for s, p in pending.values())
            print(f"govbridge simulate: not listening after 30 s: {names}", file=sys.stderr)
            return 1
        shown = host if host not in ("", "::") else "127.0.0.1"
        for sim, port in plan:
            print(f"{sim.name:<12} http://{shown}:{port}/  {sim.what}", flush=True)
        print(
            f"callbacks and pushes go to {bridge_url}; operator controls under /_sim/ on each;"
            " Ctrl-C or SIGTERM stops",
            flush=True,
        )
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task, (sim, port) in tasks.items():
            if task.done() and not stop.is_set():
                raise _Failed(sim, port, task)
    except _Failed as failed:
        print(f"govbridge simulate: {failed}", file=sys.stderr)
        code = 1
    finally:
        stopper.cancel()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
    return code


class _Failed(Exception):
    def __init__(self, sim: Sim, port: int, task: asyncio.Task[None]) -> None:
        exc = task.exception() if not task.cancelled() else None
        super().__init__(f"{sim.name} on port {port} stopped: {exc!r}")
