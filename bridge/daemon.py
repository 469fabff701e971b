"""The daemon: wires config, store, broker, the roles asked for, the HTTP server and the
watchdog; SIGTERM drains and exits 0, a consumer that stays lost exits non-zero.

Each role lives in ``bridge/<role>/role.py`` and exposes ``create(ctx) -> Role``
(``bridge/runtime/context.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web

from bridge.config import ConfigError, load_config
from bridge.privacy.secrets import register_config, sanitise_reason
from bridge.reports.performance import DepartmentReport, department_reports_apart, parse_since
from bridge.runtime.adapters import AdapterPool
from bridge.runtime.alerts import Alerts
from bridge.runtime.broker import Broker, Unauthenticated
from bridge.runtime.context import BridgeContext, Role
from bridge.runtime.credentials import Credentials
from bridge.runtime.deadletters import body_ids
from bridge.runtime.held import HeldCommands
from bridge.runtime.http import json_error
from bridge.runtime.memory import release_free_heap
from bridge.runtime.push import PushPipeline
from bridge.runtime.worker import Worker
from bridge.security.keyring import Keyring
from bridge.store import Store, open_store, pool_size_for
from bridge.store.errors import StoreUnavailable
from bridge.store.leases import leases_for
from bridge.telemetry.metrics import Metrics
from bridge.web.api import OperatorApi
from bridge.web.console import ConsoleApi
from bridge.web.credentials import CredentialsApi
from bridge.web.kept import KeptAnswers
from bridge.web.kept_pages import report_shelf
from bridge.web.operators import OperatorsHttp
from bridge.web.server import HttpServer, create_app, require_admin, start_server
from bridge.web.triage_review import TriageReviewApi
from schemas.config import GovbridgeConfig

log = structlog.get_logger("govbridge.daemon")
T = TypeVar("T")

ALL_ROLES = ("ingest", "triage", "ticketing", "sync", "reply", "sla", "inspect", "http")
# queues each role consumes (the PostgreSQL pool is sized by them)
CONSUMING_STAGES = {"triage": 1, "ticketing": 1, "reply": 3}
# Reports computed at once per process (each reads the whole store in a thread); more wait.
REPORT_SLOTS = 2
# the dashboard's period when the console opens it (console.html's selected ``#period``)
DASHBOARD_PERIOD = "30d"

CONSOLE_FILES = {
    "/": ("console.html", "text/html"),
    "/console.js": ("console.js", "text/javascript"),
    "/console.css": ("console.css", "text/css"),
}


async def record_unauthenticated(store: Store, refused: Unauthenticated) -> None:
    """A message a stage refused, in the audit trail before it is dead-lettered: where it came
    in, why, and the ids it claims (never its body). It is not filed under the inquiry it
    names: a forger's claim does not belong in that inquiry's journey."""
    await store.record_audit(
        "message.unauthenticated",
        subject=sanitise_reason(refused.message_id or "-", 80),
        stage=refused.stage,
        routing_key=sanitise_reason(refused.routing_key, 120),
        type=sanitise_reason(refused.type, 40) if refused.type else None,
        reason=sanitise_reason(refused.reason),
        claims=body_ids(refused.body) or None,
    )


class Daemon:
    def __init__(
        self,
        cfg: GovbridgeConfig,
        roles: Sequence[str] = ALL_ROLES,
        metrics: Metrics | None = None,
        watchdog_interval: float = 5.0,
        watchdog_grace: float = 60.0,
        role_factories: Mapping[str, Callable[[BridgeContext], Role]] | None = None,
        config_path: str | Path | None = None,
        shared_sync_every: float = 2.0,
        broker: Broker | None = None,
    ) -> None:
        self.role_factories = dict(role_factories or {})
        unknown = [r for r in roles if r not in ALL_ROLES and r not in self.role_factories]
        if unknown:
            raise ValueError(f"unknown roles {unknown}; choose from {', '.join(ALL_ROLES)}")
        self.cfg = cfg
        register_config(cfg)  # its secrets are scrubbed from every log line
        self.role_names = list(roles)
        self.metrics = metrics or Metrics()
        self.metrics.known_platforms(
            {a.platform_name for a in cfg.accounts} | {a.adapter for a in cfg.accounts}
        )
        # another Broker (tests: an in-memory one routed by the same stage table)
        self.broker = broker or Broker(cfg.broker, self.metrics)
        self.alerts = Alerts(self.metrics)
        self.watchdog_interval = watchdog_interval
        self.watchdog_grace = watchdog_grace
        # SIGHUP re-reads this file and applies its credentials (None: nothing to re-read)
        self.config_path = config_path
        # how often alerts, replaced credentials and held counts are read from the store
        self.shared_sync_every = shared_sync_every
        self._shared: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ctx: BridgeContext | None = None
        self.http_port: int | None = None
        self._server: HttpServer | None = None
        self._console_api: ConsoleApi | None = None
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._report_slots = asyncio.Semaphore(REPORT_SLOTS)
        self._kept_reports: KeptAnswers[tuple[datetime, list[DepartmentReport], dict[str, int]]] = (
            KeptAnswers()
        )

    @property
    def workers(self) -> list[Worker[Any]]:
        if self.ctx is None:
            return []
        return [w for role in self.ctx.roles.values() for w in role.workers]

    async def readiness(self) -> dict[str, Any]:
        parts: dict[str, Any] = {"broker": self.broker.connected}
        parts["consumers"] = {w.name: await w.consuming() for w in self.workers}
        store_ok = False
        if self.ctx is not None:
            try:
                await asyncio.wait_for(self.ctx.store.ping(), 2)
                store_ok = True
            except Exception:
                store_ok = False
        parts["store"] = store_ok
        not_ready = [k for k in ("broker", "store") if not parts[k]]
        not_ready += [f"consumer:{n}" for n, ok in parts["consumers"].items() if not ok]
        report: dict[str, Any] = {
            "ready": not not_ready,
            "not_ready": not_ready,
            "checks": parts,
            "alerts": self.alerts.describe(),
        }
        if self.ctx is not None:
            for name, detail in self.ctx.details.items():
                try:
                    report[name] = await asyncio.wait_for(detail(), 2)
                except Exception as exc:
                    report[name] = {"error": type(exc).__name__}
        return report

    def _handlers_in_flight(self) -> int:
        """At most how many handlers this process runs at once: each consuming stage of its
        roles takes ``prefetch`` messages (the reply role has three: reply, holding and
        outbox)."""
        stages = sum(CONSUMING_STAGES.get(name, 0) for name in self.role_names)
        return stages * self.cfg.broker.prefetch

    async def _riding_out_store(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """Run a start-up ``step`` again while the store is unreachable, until
        ``[store] connect_timeout``: a store cut while the processes migrate (the chaos suite's
        store outage began while three were starting) ended every one of them."""
        deadline = time.monotonic() + self.cfg.store.connect_timeout.total_seconds()
        pause = 0.25
        while True:
            try:
                return await step()
            except (StoreUnavailable, OSError) as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("store unreachable while starting; again", step=what, error=str(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def start(self) -> None:
        store = await self._riding_out_store(
            lambda: open_store(
                self.cfg.store.url,
                Keyring("audit", self.cfg.audit.keys),
                pool_size=pool_size_for(self._handlers_in_flight(), self.cfg.store.pool_size),
            ),
            "open and migrate the store",
        )
        self.broker.on_unauthenticated = lambda refused: record_unauthenticated(store, refused)
        await self.broker.connect()
        token = self.cfg.http.admin_token
        app = create_app(
            self.metrics,
            self.readiness,
            token.get_secret_value() if token else None,
            self.cfg.http.max_body_bytes,
            self.cfg.http.trusted_proxies,
        )
        adapters = AdapterPool(self.cfg)
        self.ctx = BridgeContext(
            self.cfg,
            self.broker,
            store,
            self.metrics,
            self.alerts,
            app,
            adapters,
            PushPipeline(self.cfg.http, self.broker, store),
            Credentials(self.cfg, store, adapters),
            HeldCommands(store, self.broker),
            leases=leases_for(self.cfg.store.url),
        )
        # Replacements stored earlier (or by another process) before any adapter is used; the
        # alerts and held commands every process shares.
        await self._riding_out_store(self._sync_shared, "read the shared state")
        app.router.add_get("/", self._console)
        app.router.add_get("/console.js", self._console)
        app.router.add_get("/console.css", self._console)
        # counted by one process, kept in the store for the others and the next to start
        self._kept_reports.shelf = report_shelf(store)
        app.router.add_get("/api/report", self._report)
        OperatorApi(self.ctx).register(app)
        TriageReviewApi(self.ctx).register(app)
        OperatorsHttp(store, self.cfg.http).install(app)
        self._console_api = ConsoleApi(self.ctx)
        CredentialsApi(self.ctx)
        for name in self.role_names:
            if name == "http":
                continue
            factory = self.role_factories.get(name)
            if factory is None:
                factory = importlib.import_module(f"bridge.{name}.role").create
            role: Role = factory(self.ctx)
            self.ctx.roles[name] = role
        for role in self.ctx.roles.values():
            await role.start()
        # the start-up's loading (triage's dictionary and model, the incident index, the
        # migrations) is over: its free pages back to the system (docs/performance.md, Memory)
        release_free_heap()
        self._shared = asyncio.create_task(self._shared_loop(), name="shared-state")
        if "http" in self.role_names:
            http = self.cfg.http
            self._server, self.http_port = await start_server(
                app,
                http.listen,
                header_timeout=http.header_timeout.total_seconds(),
                max_connections=http.max_connections,
                max_connections_per_client=http.max_connections_per_client,
                trusted_proxies=http.trusted_proxies,
            )
            log.info("http listening", port=self.http_port)
            if http.warm_pages:  # after start, in the background: readiness does not wait
                task = asyncio.create_task(self._warm_pages(), name="warm-pages")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        log.info("govbridge started", roles=self.role_names)

    async def _console(self, request: web.Request) -> web.Response:
        """The operator console: readiness, alerts, approvals and department performance.
        Its script and style are files of their own, so the CSP can forbid inline code."""
        name, ctype = CONSOLE_FILES[request.path]
        text = resources.files("bridge.web.static").joinpath(name).read_text("utf-8")
        return web.Response(text=text, content_type=ctype)

    async def _warm_pages(self) -> None:
        """Count what the console's costly pages ask first (the dashboard's default period,
        the inspection; the ranking's 12 months beside them), so that their first visit finds
        it kept (``http.warm_pages``). Then nothing more: a page is counted again
        only when a visit finds it older than a minute."""
        started = time.monotonic()
        console = self._console_api
        assert console is not None

        async def dashboard_then_inspection() -> None:
            with contextlib.suppress(Exception):  # said in the log (``bridge.web.kept``)
                await self._kept_reports.warm(
                    (DASHBOARD_PERIOD, None), self._report_count(DASHBOARD_PERIOD, None)
                )
            await console.warm_inspection()

        # two at a time: the ranking, the longest, beside the other two
        await asyncio.gather(dashboard_then_inspection(), console.warm_ranking())
        log.info("console pages warmed", seconds=round(time.monotonic() - started, 2))

    def _report_count(
        self, since_text: str | None, dept: str | None
    ) -> Callable[[datetime], Awaitable[tuple[datetime, list[DepartmentReport], dict[str, int]]]]:
        """The dashboard of ``?since=since_text&department=dept``, counted as of a time."""
        longest = self.cfg.http.max_range

        async def count(
            at: datetime,
        ) -> tuple[datetime, list[DepartmentReport], dict[str, int]]:
            start = parse_since(since_text, at, longest) if since_text else at - longest
            async with self._report_slots:
                reports, ignored = await department_reports_apart(
                    self.cfg, at, since=start, department=dept
                )
            return start, reports, ignored

        return count

    async def _report(self, request: web.Request) -> web.Response:
        """``?since=`` (default: the longest period allowed, ``http.max_range``) and
        ``department``. A range that is unreadable or longer than ``http.max_range`` is 400
        with the reason; the report is computed off the event loop, two at a time, and kept
        for a minute (``bridge.web.kept``: ``until`` says when it was counted)."""
        require_admin(request)
        assert self.ctx is not None
        since_text, dept = request.query.get("since"), request.query.get("department") or None
        now = datetime.now(UTC)
        longest = self.cfg.http.max_range
        try:
            since = parse_since(since_text, now, longest) if since_text else now - longest
        except ValueError as exc:
            return json_error(400, str(exc))
        if dept is not None and dept not in {d.id for d in self.cfg.departments}:
            return json_error(404, f"no department {dept!r}")
        # kept as counted for a minute (then counted again in the background): "until" says
        # when, and the page shows it
        count = self._report_count(since_text, dept)
        (since, reports, ignored), at = await self._kept_reports.get((since_text, dept), now, count)
        return web.json_response(
            {
                "since": since.isoformat(),
                "until": at.isoformat(),
                "departments": [r.as_dict() for r in reports],
                "ignored": ignored,
            }
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def _sync_shared(self) -> None:
        """What processes share through the store: alerts (and the last success of each
        operation), replaced credentials, how many commands are held."""
        assert self.ctx is not None
        await self.alerts.sync(self.ctx.store)
        await self.ctx.credentials.refresh()
        await self.ctx.held.counts()

    async def _shared_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.shared_sync_every)
            if self._stop.is_set():
                return
            try:
                await self._sync_shared()
            except Exception as exc:  # the store is away: the next round tries again
                log.warning("shared state not synced", error=repr(exc))

    def request_reload(self) -> None:
        """SIGHUP: re-read the config file and apply its credentials."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> set[str]:
        """Re-read ``config_path``; apply changed credentials (a ticket system's key, an
        account's token) at once, releasing what waited for them. Other changes need a
        restart. An invalid file changes nothing (the problems are logged)."""
        if self.config_path is None or self.ctx is None:
            log.warning("reload asked for, but no config file to re-read")
            return set()
        try:
            cfg = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error("config reload refused; running on as before", problems=exc.problems)
            return set()
        register_config(cfg)
        changed = await self.ctx.credentials.reload(cfg, actor="config-reload")
        log.info("config reloaded", credentials_changed=sorted(changed))
        return changed

    async def _watchdog(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.watchdog_interval)
            if self._stop.is_set():
                return
            for worker in self.workers:
                if not await worker.watchdog_tick(self.watchdog_grace):
                    log.error(
                        "consumer lost beyond grace; exiting for the supervisor", stage=worker.name
                    )
                    self._exit_code = 3
                    self._stop.set()
                    return

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or a fatal watchdog), drain; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        await self.start()
        watchdog = asyncio.create_task(self._watchdog())
        await self._stop.wait()
        log.info("stopping: draining in-flight work")
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        await self.stop()
        return self._exit_code

    async def stop(self) -> None:
        self._stop.set()
        for task in [t for t in (self._shared, *self._tasks) if t is not None]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ctx is not None:
            with contextlib.suppress(Exception):  # this process's last events, for the others
                await asyncio.wait_for(self.alerts.sync(self.ctx.store), 2)
            for role in reversed(list(self.ctx.roles.values())):
                try:
                    await role.stop()
                except Exception as exc:
                    log.error("role stop failed", role=role.name, error=repr(exc))
        if self.ctx is not None:  # after the roles: none of them uses an adapter any more
            await self.ctx.adapters.close()
        if self._server is not None:
            await self._server.stop()
        if self.ctx is not None:  # pushes answered before their confirm: a last chance
            await self.ctx.push.close()
        await self.broker.close()
        if self.ctx is not None:
            await self.ctx.leases.close()
            await self.ctx.store.close()
        log.info("govbridge stopped")
