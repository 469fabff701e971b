"""The one aiohttp server: health, readiness, Prometheus metrics, pushed hooks, the admin API
and the operator console. Routes are added by the roles that own them."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.metrics import Metrics

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]

READINESS_KEY = web.AppKey("readiness", object)
METRICS_KEY = web.AppKey("metrics", Metrics)
TOKEN_KEY = web.AppKey("admin_token", object)


def create_app(
    metrics: Metrics,
    readiness: ReadinessCheck,
    admin_token: str | None,
    max_body_bytes: int = 64 * 1024,
) -> web.Application:
    # client_max_size is the hard cap; hook handlers check their own (smaller) limits.
    app = web.Application(client_max_size=max(max_body_bytes, 1024 * 1024))
    app[METRICS_KEY] = metrics
    app[READINESS_KEY] = readiness
    app[TOKEN_KEY] = admin_token
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    check: ReadinessCheck = request.app[READINESS_KEY]  # type: ignore[assignment]
    report = await check()
    return web.json_response(report, status=200 if report.get("ready") else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def require_admin(request: web.Request) -> None:
    """Bearer admin token check for ``/api/...``; raises 401/403 with a JSON reason."""
    token = request.app[TOKEN_KEY]
    if not token:
        raise web.HTTPForbidden(
            text='{"error": "admin API disabled: set http.admin_token"}',
            content_type="application/json",
        )
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not hmac.compare_digest(
        auth.removeprefix("Bearer ").encode(), str(token).encode()
    ):
        raise web.HTTPUnauthorized(
            text='{"error": "missing or wrong bearer token"}', content_type="application/json"
        )


def json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def read_limited_body(request: web.Request, limit: int) -> bytes:
    """The request body, or a 413 if it exceeds ``limit`` bytes (checked before reading all)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return body


async def start_server(app: web.Application, listen: str) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the bound port (``listen`` may use port 0)."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or "127.0.0.1", int(port))
    await site.start()
    bound = int(port)
    for address in runner.addresses:  # the real port when listen asked for port 0
        bound = int(address[1])
        break
    return runner, bound
