"""The one aiohttp server: health, readiness, Prometheus metrics, pushed hooks, the admin API
and the operator console. Routes are added by the roles that own them.

The edge is hostile ground, so this module also holds what keeps it safe: bodies read whole
under a running size cap and a time limit, a header timeout, a connection cap and a cap per
client address (so slow clients cannot hold the server, and one address cannot take every
connection), the client's address (from ``X-Forwarded-For`` only when a trusted proxy sends
it), control characters refused in paths and queries, JSON bodies of the admin API parsed
strictly, ``/readyz`` details only for those who may see them, and security headers on every
response.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.runtime.http import (
    DEFAULT_BODY_TIMEOUT,
    BodyError,
    json_error,
    loads_strict,
    read_limited_body,
)
from bridge.telemetry.metrics import Metrics

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]

READINESS_KEY = web.AppKey("readiness", object)
METRICS_KEY = web.AppKey("metrics", Metrics)
TOKEN_KEY = web.AppKey("admin_token", object)
PROXIES_KEY = web.AppKey("trusted_proxies", list)
# Set by the operators' middleware (bridge/web/operators.py): is this request's session cookie a
# live session? /readyz shows its details to a signed-in operator too.
SESSION_CHECK_KEY = web.AppKey("session_check", object)

# Who acts when a request carries the bearer admin token: the token, never a name it claims.
ADMIN_TOKEN_ACTOR = "admin-token"

# C0 and C1 control characters, DEL: never part of an id, a path or a query.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

LINGER_SECONDS = 1.0

# The console loads its script and style from this origin only; no inline code runs, so data
# that reaches the page (citizens' text, handles) can never become script.
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def create_app(
    metrics: Metrics,
    readiness: ReadinessCheck,
    admin_token: str | None,
    max_body_bytes: int = 64 * 1024,
    trusted_proxies: Sequence[str] = (),
) -> web.Application:
    # client_max_size is the hard cap; hook handlers check their own (smaller) limits.
    app = web.Application(
        client_max_size=max(max_body_bytes, 1024 * 1024),
        middlewares=[_server_timing, _refuse_control],
    )
    app[METRICS_KEY] = metrics
    app[READINESS_KEY] = readiness
    app[TOKEN_KEY] = admin_token
    app[PROXIES_KEY] = networks(trusted_proxies)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.on_response_prepare.append(_security_headers)
    return app


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(entries: Iterable[str]) -> list[Network]:
    """``http.trusted_proxies`` as networks (a single address is a /32 or /128)."""
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries]


def _in(address: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


def client_address(request: web.Request) -> str:
    """The client's address: the connection's own, unless it comes from a trusted proxy
    (``http.trusted_proxies``); then the nearest address in ``X-Forwarded-For`` that is not a
    trusted proxy itself (entries further left are whatever the client chose to send)."""
    peer = request.remote or ""
    nets: list[Network] = request.app.get(PROXIES_KEY) or []
    if not nets or not _in(peer, nets):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # an unreadable entry: nothing to the left of it can be trusted
        if not _in(hop, nets):
            return hop
    return peer


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


@web.middleware
async def _server_timing(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """``Server-Timing: app;dur=<ms>`` on every ``/api/`` answer: the server's share of the
    request (the session check, the handler, the store), which a browser reads in its resource
    timings (``scripts/bench_console_pages.py``) apart from the network and its own drawing.
    Not on a stream, whose headers leave before its work."""
    start = time.perf_counter()
    response = await handler(request)
    if request.path.startswith("/api/") and not response.prepared:
        took = (time.perf_counter() - start) * 1000
        response.headers["Server-Timing"] = f"app;dur={took:.1f}"
    return response


@web.middleware
async def _refuse_control(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A control character (NUL, ESC, …) in the path or the query is never part of an id or a
    search: 400 at the edge, before any handler or database sees it."""
    if has_control(request.path):
        return json_error(400, "control character in the path")
    for key, value in request.query.items():
        if has_control(key) or has_control(value):
            return json_error(400, f"control character in the query ({_printable(key)})")
    return await handler(request)


def _printable(text: str) -> str:
    return _CONTROL.sub("?", text)[:40]


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer: no MIME sniffing, never framed, no referrer; a CSP by content type."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    html = response.content_type == "text/html"
    headers.setdefault("Content-Security-Policy", CONSOLE_CSP if html else API_CSP)
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready or not, for anyone (a load balancer's probe); what is not ready, the consumers,
    alerts and accounts only with the admin token or a signed-in operator's session."""
    check: ReadinessCheck = request.app[READINESS_KEY]  # type: ignore[assignment]
    report = await check()
    status = 200 if report.get("ready") else 503
    if not await _may_see_details(request):
        report = {"ready": bool(report.get("ready"))}
    return web.json_response(report, status=status)


async def _may_see_details(request: web.Request) -> bool:
    if _bearer_matches(request):
        return True
    check = request.app.get(SESSION_CHECK_KEY)
    return callable(check) and bool(await check(request))


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def json_exception(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    text, ctype = json.dumps({"error": reason}), "application/json"
    if cls is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(0, 0, text=text, content_type=ctype)
    return cls(text=text, content_type=ctype)


@dataclass(frozen=True)
class Identity:
    """Who makes an ``/api/`` request: an operator signed in (``via`` "session") or the
    automation holding the admin token (``via`` "token")."""

    name: str
    role: str
    via: str


IDENTITY = web.RequestKey("identity", Identity)


def require_admin(request: web.Request) -> None:
    """The request is authorised: by the operators middleware (``bridge/web/operators.py``, which
    checked the role this route needs), or else by the bearer admin token; raises 401/403
    with a JSON reason."""
    if request.get(IDENTITY) is not None:
        return
    check_bearer(request)


def actor_of(request: web.Request, body: Any) -> str:
    """Who decides: a signed-in operator's own name (whatever the body says); with the admin
    token, ``admin-token``. The token cannot name anyone else: a body whose ``actor`` is
    another name is refused (403), since the token proves nobody's identity; an operator
    signs in to act under their own name."""
    identity = request.get(IDENTITY)
    if identity is not None and identity.via == "session":
        return identity.name
    actor = body.get("actor") if isinstance(body, dict) else None
    if actor is not None and (not isinstance(actor, str) or actor.strip() != ADMIN_TOKEN_ACTOR):
        raise json_exception(
            web.HTTPForbidden,
            f"the admin token acts as {ADMIN_TOKEN_ACTOR!r} and cannot name another actor:"
            " leave out 'actor', or sign in as the operator",
        )
    return ADMIN_TOKEN_ACTOR


def operator_name(request: web.Request) -> str:
    """Who acts, for the audit trail: the signed-in operator, else the admin token."""
    identity = request.get(IDENTITY)
    return identity.name if identity is not None else ADMIN_TOKEN_ACTOR


def check_bearer(request: web.Request) -> None:
    """Bearer admin token check; raises 401/403 with a JSON reason."""
    if not request.app[TOKEN_KEY]:
        raise json_exception(web.HTTPForbidden, "admin API disabled: set http.admin_token")
    if not _bearer_matches(request):
        raise json_exception(web.HTTPUnauthorized, "missing or wrong bearer token")


def _bearer_matches(request: web.Request) -> bool:
    token = request.app[TOKEN_KEY]
    auth = request.headers.get("Authorization", "")
    if not token or not auth.startswith("Bearer "):
        return False
    try:
        # Header bytes that are not UTF-8 arrive surrogate-escaped; they never match a token.
        given = auth.removeprefix("Bearer ").encode("utf-8")
    except UnicodeEncodeError:
        given = b""
    return hmac.compare_digest(given, str(token).encode())


async def read_json(
    request: web.Request, limit: int = 64 * 1024, timeout: float = DEFAULT_BODY_TIMEOUT
) -> Any:
    """The request's JSON body for the admin API; a 4xx with the reason otherwise."""
    try:
        body = await read_limited_body(request, limit, timeout)
    except BodyError as exc:
        raise json_exception(_STATUS[exc.status], exc.reason) from None
    try:
        return loads_strict(body)
    except ValueError as exc:
        raise json_exception(web.HTTPBadRequest, str(exc)) from None


_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    408: web.HTTPRequestTimeout,
    413: web.HTTPRequestEntityTooLarge,
}


def is_loopback(listen: str) -> bool:
    """True when ``listen`` (``host:port``) binds only this machine."""
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "localhost"):  # an empty host binds 127.0.0.1 (see HttpServer.start)
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(status: str, reason: str) -> bytes:
    body = json.dumps({"error": reason}).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


_BUSY = _refusal("503 Service Unavailable", "too many connections; retry later")
_TOO_MANY_FROM_YOU = _refusal(
    "429 Too Many Requests", "too many connections from your address; retry later"
)


class _Refuse(asyncio.Protocol):
    """Answers a connection over a cap with ``answer`` and closes it, reading nothing."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.answer)
        transport.close()


class _PerClient(asyncio.Protocol):
    """One connection counted against its client address (``max_connections_per_client``).

    The address is known only once the connection is made, so aiohttp's own protocol is
    created then, and every call is passed on to it; a connection over its address's cap is
    answered 429 and closed instead, before a byte of it is read."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.inner: asyncio.Protocol | None = None
        self.address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.server.admit(address):
            _Refuse(_TOO_MANY_FROM_YOU).connection_made(transport)
            return
        self.address = address
        aiohttp_server = self.server.runner.server
        assert aiohttp_server is not None
        self.inner = aiohttp_server()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.address is not None:
            self.server.release(self.address)
            self.address = None
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class HttpServer:
    """The aiohttp app on a TCP socket, with limits aiohttp's own sites do not have.

    * ``header_timeout``: a connection must send a complete request head within this time (and
      an idle keep-alive connection is closed after it). aiohttp's keep-alive timer starts when
      the connection opens and only a complete head stops it, so slow-header clients are cut.
    * ``max_connections``: connections beyond it are answered 503 and closed at once.
    * ``max_connections_per_client``: one address holding this many, its next connection is
      answered 429 and closed at once, so a single client (1,000 half-sent requests) cannot
      take the connections everyone else needs. ``trusted_proxies`` are exempt: many clients
      share their address (the global cap still holds).
    """

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float,
        max_connections: int,
        max_connections_per_client: int | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.max_per_client = max_connections_per_client or max_connections
        self.proxies = networks(trusted_proxies)
        self.per_client: Counter[str] = Counter()
        # lingering_time: after refusing a body (413/408) the rest of it is read and dropped
        # for at most this long, so the client can read the answer, then the socket closes.
        self.runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=header_timeout,
            lingering_time=LINGER_SECONDS,
        )
        self._server: asyncio.AbstractServer | None = None
        self.port: int | None = None

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``; False when it is over its cap."""
        if self.per_client[address] >= self.max_per_client and not _in(address, self.proxies):
            return False
        self.per_client[address] += 1
        return True

    def release(self, address: str) -> None:
        self.per_client[address] -= 1
        if self.per_client[address] <= 0:
            del self.per_client[address]

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self.runner.server
        assert server is not None
        if len(server.connections) >= self.max_connections:
            return _Refuse(_BUSY)
        return _PerClient(self)

    async def start(self, listen: str) -> int:
        """Start serving; returns the bound port (``listen`` may use port 0)."""
        host, _, port = listen.rpartition(":")
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host.strip("[]") or "127.0.0.1", int(port), backlog=512
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.runner.cleanup()


async def start_server(
    app: web.Application,
    listen: str,
    *,
    header_timeout: float = 10.0,
    max_connections: int = 1000,
    max_connections_per_client: int | None = None,
    trusted_proxies: Sequence[str] = (),
) -> tuple[HttpServer, int]:
    """Start serving; returns the server and the bound port (``listen`` may use port 0)."""
    server = HttpServer(
        app,
        header_timeout=header_timeout,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        trusted_proxies=trusted_proxies,
    )
    port = await server.start(listen)
    return server, port
