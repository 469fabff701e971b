"""The daemon: wires config, store, broker, the roles asked for, the HTTP server and the
watchdog; SIGTERM drains and exits 0, a consumer that stays lost exits non-zero.

Each role lives in ``bridge/stages/<role>.py`` and exposes ``create(ctx) -> Role``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import structlog
from aiohttp import web

from bridge.adapter_pool import AdapterPool
from bridge.api import OperatorApi
from bridge.console_api import ConsoleApi
from bridge.http import HttpServer, create_app, json_error, require_admin, start_server
from bridge.metrics import Metrics
from bridge.operators import OperatorsHttp
from bridge.polling import Leases, LocalLeases, leases_for
from bridge.push import PushPipeline
from bridge.redaction import register_config, sanitise_reason
from bridge.report import department_reports, parse_since
from bridge.runtime import Broker, Worker
from bridge.store import Store, open_store
from bridge.triage_review import TriageReviewApi
from schemas.config import GovbridgeConfig

log = structlog.get_logger("govbridge.daemon")

ALL_ROLES = ("ingest", "triage", "ticketing", "sync", "reply", "sla", "http")

CONSOLE_FILES = {
    "/": ("console.html", "text/html"),
    "/console.js": ("console.js", "text/javascript"),
    "/console.css": ("console.css", "text/css"),
}


class Role(Protocol):
    name: str
    workers: list[Worker[Any]]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Alerts:
    """Conditions that need an operator (expired token, ticketing auth failure...)."""

    metrics: Metrics
    active: dict[tuple[str, str], str] = field(default_factory=dict)

    def raise_(self, kind: str, name: str, reason: str) -> None:
        reason = sanitise_reason(reason)  # shown in /readyz and a metric label
        if self.active.get((kind, name)) != reason:
            log.error("ALERT: operator action needed", alert=kind, name=name, reason=reason)
        self.active[(kind, name)] = reason
        self.metrics.alerts.labels(kind, name, reason[:60]).set(1)

    def clear(self, kind: str, name: str) -> None:
        reason = self.active.pop((kind, name), None)
        if reason is not None:
            self.metrics.alerts.labels(kind, name, reason[:60]).set(0)
            log.info("alert cleared", alert=kind, name=name)

    def describe(self) -> list[dict[str, str]]:
        return [{"kind": k, "name": n, "reason": r} for (k, n), r in sorted(self.active.items())]


@dataclass
class BridgeContext:
    """What roles share. Roles add HTTP routes to ``app`` before it starts."""

    cfg: GovbridgeConfig
    broker: Broker
    store: Store
    metrics: Metrics
    alerts: Alerts
    app: web.Application
    adapters: AdapterPool
    push: PushPipeline
    roles: dict[str, Role] = field(default_factory=dict)
    # unreadable items skipped per account since start (the ingest_rejected alert says it)
    rejected_counts: dict[str, int] = field(default_factory=dict)
    # who polls what: exactly one process per account and per ticket system (bridge.polling)
    leases: Leases = field(default_factory=LocalLeases)
    # named readiness details a role adds to /readyz (they never make it "not ready")
    details: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = field(default_factory=dict)


class Daemon:
    def __init__(
        self,
        cfg: GovbridgeConfig,
        roles: Sequence[str] = ALL_ROLES,
        metrics: Metrics | None = None,
        watchdog_interval: float = 5.0,
        watchdog_grace: float = 60.0,
        role_factories: Mapping[str, Callable[[BridgeContext], Role]] | None = None,
    ) -> None:
        self.role_factories = dict(role_factories or {})
        unknown = [r for r in roles if r not in ALL_ROLES and r not in self.role_factories]
        if unknown:
            raise ValueError(f"unknown roles {unknown}; choose from {', '.join(ALL_ROLES)}")
        self.cfg = cfg
        register_config(cfg)  # its secrets are scrubbed from every log line
        self.role_names = list(roles)
        self.metrics = metrics or Metrics()
        self.broker = Broker(cfg.broker, self.metrics)
        self.alerts = Alerts(self.metrics)
        self.watchdog_interval = watchdog_interval
        self.watchdog_grace = watchdog_grace
        self.ctx: BridgeContext | None = None
        self.http_port: int | None = None
        self._server: HttpServer | None = None
        self._stop = asyncio.Event()
        self._exit_code = 0

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

    async def start(self) -> None:
        store = await open_store(self.cfg.store.url)
        await self.broker.connect()
        token = self.cfg.http.admin_token
        app = create_app(
            self.metrics,
            self.readiness,
            token.get_secret_value() if token else None,
            self.cfg.http.max_body_bytes,
        )
        self.ctx = BridgeContext(
            self.cfg,
            self.broker,
            store,
            self.metrics,
            self.alerts,
            app,
            AdapterPool(self.cfg),
            PushPipeline(self.cfg.http, self.broker),
            leases=leases_for(self.cfg.store.url),
        )
        app.router.add_get("/", self._console)
        app.router.add_get("/console.js", self._console)
        app.router.add_get("/console.css", self._console)
        app.router.add_get("/api/report", self._report)
        OperatorApi(self.ctx).register(app)
        TriageReviewApi(self.ctx).register(app)
        OperatorsHttp(store.db, self.cfg.http.session_ttl).install(app)
        ConsoleApi(self.ctx)
        for name in self.role_names:
            if name == "http":
                continue
            factory = self.role_factories.get(name)
            if factory is None:
                factory = importlib.import_module(f"bridge.stages.{name}").create
            role: Role = factory(self.ctx)
            self.ctx.roles[name] = role
        for role in self.ctx.roles.values():
            await role.start()
        if "http" in self.role_names:
            http = self.cfg.http
            self._server, self.http_port = await start_server(
                app,
                http.listen,
                header_timeout=http.header_timeout.total_seconds(),
                max_connections=http.max_connections,
            )
            log.info("http listening", port=self.http_port)
        log.info("govbridge started", roles=self.role_names)

    async def _console(self, request: web.Request) -> web.Response:
        """The operator console: readiness, alerts, approvals and department performance.
        Its script and style are files of their own, so the CSP can forbid inline code."""
        name, ctype = CONSOLE_FILES[request.path]
        text = resources.files("bridge.static").joinpath(name).read_text("utf-8")
        return web.Response(text=text, content_type=ctype)

    async def _report(self, request: web.Request) -> web.Response:
        require_admin(request)
        assert self.ctx is not None
        since_text, dept = request.query.get("since"), request.query.get("department") or None
        try:
            since = parse_since(since_text) if since_text else None
        except ValueError as exc:
            return json_error(400, str(exc))
        if dept is not None and dept not in {d.id for d in self.cfg.departments}:
            return json_error(404, f"no department {dept!r}")
        reports, ignored = await department_reports(
            self.ctx.store, self.cfg, since=since, department=dept
        )
        return web.json_response(
            {
                "since": since.isoformat() if since else None,
                "departments": [r.as_dict() for r in reports],
                "ignored": ignored,
            }
        )

    def request_stop(self) -> None:
        self._stop.set()

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
        if self.ctx is not None:
            for role in reversed(list(self.ctx.roles.values())):
                try:
                    await role.stop()
                except Exception as exc:
                    log.error("role stop failed", role=role.name, error=repr(exc))
        if self.ctx is not None:  # after the roles: none of them uses an adapter any more
            await self.ctx.adapters.close()
        if self._server is not None:
            await self._server.stop()
        await self.broker.close()
        if self.ctx is not None:
            await self.ctx.leases.close()
            await self.ctx.store.close()
        log.info("govbridge stopped")
