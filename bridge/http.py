"""The one aiohttp server: health, readiness, Prometheus metrics, pushed hooks, the admin API
and the operator console. Routes are added by the roles that own them.

The edge is hostile ground, so this module also holds what keeps it safe: bodies read whole
under a running size cap and a time limit, a header timeout and a connection cap (so slow
clients cannot hold the server), JSON bodies of the admin API parsed strictly, and security
headers on every response.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.metrics import Metrics

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]

READINESS_KEY = web.AppKey("readiness", object)
METRICS_KEY = web.AppKey("metrics", Metrics)
TOKEN_KEY = web.AppKey("admin_token", object)

DEFAULT_BODY_TIMEOUT = 30.0
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
) -> web.Application:
    # client_max_size is the hard cap; hook handlers check their own (smaller) limits.
    app = web.Application(client_max_size=max(max_body_bytes, 1024 * 1024))
    app[METRICS_KEY] = metrics
    app[READINESS_KEY] = readiness
    app[TOKEN_KEY] = admin_token
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.on_response_prepare.append(_security_headers)
    return app


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
    check: ReadinessCheck = request.app[READINESS_KEY]  # type: ignore[assignment]
    report = await check()
    return web.json_response(report, status=200 if report.get("ready") else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json_exception(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
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
    """The request is authorised: by the operators middleware (``bridge/operators.py``, which
    checked the role this route needs), or else by the bearer admin token; raises 401/403
    with a JSON reason."""
    if request.get(IDENTITY) is not None:
        return
    check_bearer(request)


def actor_of(request: web.Request, body: Any) -> str | None:
    """Who decides: a signed-in operator's own name (whatever the body says); with the admin
    token, the body's non-empty ``actor``."""
    identity = request.get(IDENTITY)
    if identity is not None and identity.via == "session":
        return identity.name
    actor = body.get("actor") if isinstance(body, dict) else None
    return actor.strip() if isinstance(actor, str) and actor.strip() else None


def operator_name(request: web.Request) -> str:
    """Who acts, for the audit trail: the signed-in operator, else the admin token."""
    identity = request.get(IDENTITY)
    return identity.name if identity is not None else "admin_token"


def check_bearer(request: web.Request) -> None:
    """Bearer admin token check; raises 401/403 with a JSON reason."""
    token = request.app[TOKEN_KEY]
    if not token:
        raise _json_exception(web.HTTPForbidden, "admin API disabled: set http.admin_token")
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        raise _json_exception(web.HTTPUnauthorized, "missing or wrong bearer token")
    try:
        # Header bytes that are not UTF-8 arrive surrogate-escaped; they never match a token.
        given = auth.removeprefix("Bearer ").encode("utf-8")
    except UnicodeEncodeError:
        given = b""
    if not hmac.compare_digest(given, str(token).encode()):
        raise _json_exception(web.HTTPUnauthorized, "missing or wrong bearer token")


def json_error(status: int, reason: str, **headers: str) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers or None)


class BodyError(Exception):
    """The request body cannot be accepted; ``status`` and ``reason`` are for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def response(self) -> web.Response:
        resp = json_error(self.status, self.reason)
        # The rest of the body may still be on its way; nothing more is read from this client.
        resp.force_close()
        return resp


async def read_limited_body(
    request: web.Request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT
) -> bytes:
    """The whole request body, read to its end however it was segmented or chunked.

    ``Content-Length`` is checked first; chunked bodies are counted as they arrive, so a body
    over ``limit`` is refused (413) without being buffered. A body that does not arrive within
    ``timeout`` seconds is refused (408), so a slow client cannot hold a handler.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(408, f"body not received within {timeout:g} s") from None
    except HttpProcessingError as exc:  # broken chunked encoding, short Content-Length body
        raise BodyError(400, f"body not readable: {exc.message or type(exc).__name__}") from None
    return b"".join(chunks)


def loads_strict(body: bytes) -> Any:
    """JSON from ``body``, or ``ValueError`` with a reason: not UTF-8, not JSON, nested too
    deep, an integer too long, or text that is not valid Unicode (a lone surrogate)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    except RecursionError:
        raise ValueError("body is nested too deeply") from None
    except json.JSONDecodeError:
        raise ValueError("body is not JSON") from None
    except ValueError:  # an integer longer than Python converts
        raise ValueError("body has a number that is too large") from None
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("body has text that is not valid Unicode") from None
    except (RecursionError, ValueError):
        raise ValueError("body is nested too deeply") from None
    return doc


async def read_json(
    request: web.Request, limit: int = 64 * 1024, timeout: float = DEFAULT_BODY_TIMEOUT
) -> Any:
    """The request's JSON body for the admin API; a 4xx with the reason otherwise."""
    try:
        body = await read_limited_body(request, limit, timeout)
    except BodyError as exc:
        raise _json_exception(_STATUS[exc.status], exc.reason) from None
    try:
        return loads_strict(body)
    except ValueError as exc:
        raise _json_exception(web.HTTPBadRequest, str(exc)) from None


_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    408: web.HTTPRequestTimeout,
    413: web.HTTPRequestEntityTooLarge,
}


def is_loopback(listen: str) -> bool:
    """True when ``listen`` (``host:port``) binds only this machine."""
    import ipaddress

    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "localhost"):  # an empty host binds 127.0.0.1 (see HttpServer.start)
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 46\r\n\r\n"
    b'{"error": "too many connections; retry later"}'
)


class _Busy(asyncio.Protocol):
    """Answers a connection over the cap with 503 and closes it, reading nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


class HttpServer:
    """The aiohttp app on a TCP socket, with limits aiohttp's own sites do not have.

    * ``header_timeout``: a connection must send a complete request head within this time (and
      an idle keep-alive connection is closed after it). aiohttp's keep-alive timer starts when
      the connection opens and only a complete head stops it, so slow-header clients are cut.
    * ``max_connections``: connections beyond it are answered 503 and closed at once.
    """

    def __init__(
        self, app: web.Application, *, header_timeout: float, max_connections: int
    ) -> None:
        self.app = app
        self.header_timeout = header_timeout
        self.max_connections = max_connections
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

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self.runner.server
        assert server is not None
        if len(server.connections) >= self.max_connections:
            return _Busy()
        return server()

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
) -> tuple[HttpServer, int]:
    """Start serving; returns the server and the bound port (``listen`` may use port 0)."""
    server = HttpServer(app, header_timeout=header_timeout, max_connections=max_connections)
    port = await server.start(listen)
    return server, port
