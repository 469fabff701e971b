"""Named operators with roles, signed in by sessions, and who may do what on ``/api/``.

Roles: a ``viewer`` reads; an ``approver`` also decides replies and checks held categories; an
``admin`` also replays dead letters, settles reconciliation and replaces tokens. ``POLICY`` is the
one place that says which request needs which role; the middleware applies it to every
``/api/`` request before its handler runs.

Passwords are hashed with Argon2id (argon2-cffi). A sign-in gives a session: a random id in an
HttpOnly, SameSite=Strict cookie (only its sha256 is stored; ``Secure`` over TLS or when
``http.public_url`` is https) that expires after ``http.session_ttl``, and a CSRF token that
every state-changing request must send back in ``X-CSRF-Token``. The single
``http.admin_token`` (``Authorization: Bearer``) keeps working for automation, as an admin named
``admin-token``, with no cookie and no CSRF token. A signed-in operator acts under their own
name: the ``actor`` of a decision is theirs, whatever the body says.

Guessing is slow and loud (``SignInThrottle``): failed sign-ins are counted per name and per
client address in the store (so every process of a cluster sees them), each is logged and
audited, further attempts wait a growing delay and then get 429 until the window has passed.
Argon2 takes 64 MiB per verification, so at most ``ARGON2_SLOTS`` run at once, whatever
arrives in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bridge.runtime.http import json_error
from bridge.store.operators import OperatorChange, OperatorRow
from bridge.web.bodies import SignIn, parse
from bridge.web.server import (
    ADMIN_TOKEN_ACTOR,
    IDENTITY,
    SESSION_CHECK_KEY,
    Identity,
    check_bearer,
    client_address,
)
from schemas.config import HttpConfig

if TYPE_CHECKING:
    from bridge.store import Store

log = structlog.get_logger("govbridge.operators")

ROLES = ("viewer", "approver", "admin")
RANK = {role: n for n, role in enumerate(ROLES)}
COOKIE = "govbridge_session"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD = 10
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# (method, path prefix) -> the least role it needs. Reading needs "viewer"; anything else not
# listed needs "admin", so a new state-changing route is closed until someone opens it here.
POLICY: list[tuple[str, str, str]] = [
    ("POST", "/api/approvals/", "approver"),
    ("POST", "/api/triage/review/", "approver"),
    # case actions an operator takes (转派): the acting role, as for held categories
    ("POST", "/api/cases/", "approver"),
]

_hasher = PasswordHasher()
# Argon2 verifications at once per process: each takes the hasher's memory cost (64 MiB), so
# 64 parallel sign-ins cost 2 x 64 MiB, not 64 x 64 MiB; the rest wait their turn.
ARGON2_SLOTS = 2


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name takes as long as a wrong
    password (made at the first sign-in, not when the module loads: 0.14 s of CPU and 64 MiB
    that a process without a console never needs)."""
    return _hasher.hash(secrets.token_hex(16))


def required_role(method: str, path: str) -> str:
    if method in SAFE_METHODS:
        return "viewer"
    for m, prefix, role in POLICY:
        if method == m and path.startswith(prefix):
            return role
    return "admin"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class OperatorError(ValueError):
    """A bad operator command: the message says what is wrong."""


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise OperatorError("operator name: 1 to 64 printable characters")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise OperatorError(f"role must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"password: at least {MIN_PASSWORD} characters")
    return password


async def add_operator(store: Store, name: str, role: str, password: str, actor: str) -> None:
    name, role = check_name(name), check_role(role)
    hashed = await asyncio.to_thread(_hasher.hash, check_password(password))
    if not await store.add_operator(name, role, hashed, actor=actor, now=_now()):
        raise OperatorError(f"operator {name!r} exists already")


async def change_operator(
    store: Store,
    name: str,
    actor: str,
    *,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
) -> None:
    """Change a role, a password or the disabled flag; the operator's sessions end."""
    change = OperatorChange(
        role=check_role(role) if role is not None else None,
        password_hash=(
            await asyncio.to_thread(_hasher.hash, check_password(password))
            if password is not None
            else None
        ),
        disabled=disabled,
    )
    if not await store.change_operator(name, change, actor=actor, now=_now()):
        raise OperatorError(f"no operator {name!r}")


async def list_operators(store: Store) -> list[OperatorRow]:
    return await store.list_operators()


@dataclass(frozen=True)
class Session:
    session_id: str
    csrf_token: str
    expires_at: datetime
    identity: Identity


async def sign_in(
    store: Store,
    name: str,
    password: str,
    ttl: timedelta,
    *,
    slots: asyncio.Semaphore | None = None,
    client: str | None = None,
) -> Session | None:
    """A new session for a right name and password of an enabled operator, else None.
    ``slots`` bounds the Argon2 verifications running at once."""
    found = await store.operator_credentials(name)
    stored = found.password_hash if found is not None else _dummy_hash()
    ok: bool
    async with slots if slots is not None else contextlib.nullcontext():
        try:
            ok = await asyncio.to_thread(_hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok or found is None or found.disabled:
        return None
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    expires = _now() + ttl
    await store.open_session(
        _digest(session_id), name, csrf, now=_now(), expires=expires, client=client
    )
    return Session(session_id, csrf, expires, Identity(name, found.role, "session"))


async def session_for(store: Store, session_id: str) -> tuple[Identity, str, datetime] | None:
    """The identity, CSRF token and expiry of a live session of an enabled operator."""
    row = await store.session(_digest(session_id))
    if row is None or row.disabled:
        return None
    expires = datetime.fromisoformat(row.expires_at)
    if expires <= _now():
        return None
    return Identity(row.operator, row.role, "session"), row.csrf_token, expires


async def sign_out(store: Store, session_id: str) -> None:
    await store.close_session(_digest(session_id))


# ------------------------------------------------------------------------ sign-in throttle
@dataclass(frozen=True)
class Standing:
    """Failed sign-ins that count against one attempt (the worse of its name and its client
    address, attempts in flight included) and when the last of them was."""

    failures: int
    last: datetime | None


class SignInThrottle:
    """Failed sign-ins per name and per client address, within ``http.signin_window``.

    After ``signin_delay_after`` failures each attempt waits ``signin_delay``, doubling per
    further failure up to ``signin_max_delay``, before its password is even checked; after
    ``signin_lockout_after`` every attempt is answered 429 until the window has passed since
    the last failure (a right password too: the name is being guessed). The failures are rows
    of the store (``signin_failures``), so every process of a cluster counts the same ones;
    attempts being checked right now count as well, so a burst in parallel cannot slip past.
    A success forgets the name's failures (not the address's).
    """

    def __init__(self, store: Store, http: HttpConfig) -> None:
        self.store = store
        self.http = http
        self.in_flight: Counter[str] = Counter()

    @staticmethod
    def keys(name: str, address: str) -> tuple[str, str]:
        return f"name:{name[:64]}", f"addr:{address}"

    async def standing(self, name: str, address: str) -> Standing:
        keys = self.keys(name, address)
        stored = await self.store.signin_failures(keys, _now() - self.http.signin_window)
        failures = max(stored.get(k, (0, None))[0] + self.in_flight[k] for k in keys)
        lasts = [datetime.fromisoformat(v[1]) for v in stored.values() if v[1]]
        return Standing(failures, max(lasts) if lasts else None)

    def locked(self, standing: Standing) -> bool:
        return standing.failures >= self.http.signin_lockout_after

    def retry_after(self, standing: Standing) -> int:
        """Seconds until the last failure leaves the window (at least 1)."""
        last = standing.last or _now()
        left = (last + self.http.signin_window - _now()).total_seconds()
        return max(1, math.ceil(left))

    def delay(self, standing: Standing) -> float:
        over = standing.failures - self.http.signin_delay_after
        if over < 0:
            return 0.0
        first, most = self.http.signin_delay, self.http.signin_max_delay
        return min(first.total_seconds() * 2 ** min(over, 30), most.total_seconds())

    @contextlib.contextmanager
    def attempt(self, name: str, address: str) -> Iterator[None]:
        """An attempt being checked: it counts until it is done."""
        keys = self.keys(name, address)
        for k in keys:
            self.in_flight[k] += 1
        try:
            yield
        finally:
            for k in keys:
                self.in_flight[k] -= 1
                if self.in_flight[k] <= 0:
                    del self.in_flight[k]

    async def failed(self, name: str, address: str, failures: int) -> None:
        """Record a failure, in the store and in the audit trail (never the password)."""
        now = _now()
        locked = failures >= self.http.signin_lockout_after
        await self.store.record_signin_failure(
            self.keys(name, address),
            now=now,
            forget_before=now - self.http.signin_window,
            name=name[:64],
            client=address,
            failures=failures,
            locked=locked,
        )

    async def succeeded(self, name: str) -> None:
        await self.store.forget_signin_failures(self.keys(name, "")[0])


# ------------------------------------------------------------------------------------ HTTP
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OperatorsHttp:
    """The session endpoints and the middleware that authorises every ``/api/`` request."""

    def __init__(self, store: Store, http: HttpConfig) -> None:
        self.store = store
        self.http = http
        self.ttl = http.session_ttl
        self.throttle = SignInThrottle(store, http)
        self.argon2_slots = asyncio.Semaphore(ARGON2_SLOTS)
        self.origin = _origin(http.public_url) if http.public_url else None

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        app[SESSION_CHECK_KEY] = self.has_session
        app.router.add_post("/api/session", self.create_session)
        app.router.add_get("/api/session", self.current_session)
        app.router.add_delete("/api/session", self.end_session)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/") or request.path == "/api/session":
            return await handler(request)
        identity = await self.identify(request)  # raises 401/403 with the reason
        need = required_role(request.method, request.path)
        if RANK.get(identity.role, -1) < RANK[need]:
            return json_error(
                403, f"{identity.name} is {identity.role}: this needs the {need} role"
            )
        request[IDENTITY] = identity
        return await handler(request)

    async def identify(self, request: web.Request) -> Identity:
        """The bearer admin token, else a session cookie (with its CSRF token when the
        request changes anything); raises 401/403 otherwise."""
        session_id = request.cookies.get(COOKIE)
        if request.headers.get("Authorization") or not session_id:
            check_bearer(request)  # raises when missing or wrong
            return Identity(ADMIN_TOKEN_ACTOR, "admin", "token")
        found = await session_for(self.store, session_id)
        if found is None:
            raise _error(web.HTTPUnauthorized, "session expired or signed out: sign in again")
        identity, csrf, _ = found
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(errors="replace"), csrf.encode()):
                raise _error(web.HTTPForbidden, f"missing or wrong {CSRF_HEADER}")
            if self.foreign(request):
                raise _error(web.HTTPForbidden, "request from another origin")
        return identity

    async def has_session(self, request: web.Request) -> bool:
        """The request carries the cookie of a live session (``/readyz`` details)."""
        session_id = request.cookies.get(COOKIE)
        return session_id is not None and await session_for(self.store, session_id) is not None

    def foreign(self, request: web.Request) -> bool:
        """The browser says the request comes from a page of another origin. With
        ``http.public_url`` the origin must be exactly that one (scheme, host and port: an
        http page cannot act on an https console); without it, the host must be this one."""
        origin = request.headers.get("Origin")
        if origin is None:
            return False
        if self.origin is not None:
            return _origin(origin) != self.origin
        return origin.split("://", 1)[-1] != request.host

    async def create_session(self, request: web.Request) -> web.Response:
        """Body ``{"name": "…", "password": "…"}``: a session cookie and the CSRF token.
        Throttled per name and per client address (``SignInThrottle``)."""
        if self.foreign(request):  # no signing a visitor in from another site
            return json_error(403, "request from another origin")
        body = await parse(request, SignIn, limit=4096)
        name, password, address = body.name.strip(), body.password, client_address(request)
        throttle = self.throttle
        standing = await throttle.standing(name, address)
        if throttle.locked(standing):
            wait = throttle.retry_after(standing)
            log.warning(
                "sign-in refused: too many failures",
                operator=name[:64],
                client=address,
                failures=standing.failures,
                retry_after_s=wait,
            )
            return json_error(
                429,
                f"too many failed sign-ins for this name or from this address; try again in"
                f" {wait} s",
                **{"Retry-After": str(wait)},
            )
        with throttle.attempt(name, address):
            delay = throttle.delay(standing)
            if delay:
                await asyncio.sleep(delay)
            session = await sign_in(
                self.store, name, password, self.ttl, slots=self.argon2_slots, client=address
            )
            failures = standing.failures + (session is None)
            if session is None:
                await throttle.failed(name, address, failures)
        if session is None:
            log.warning(
                "sign-in failed",
                operator=name[:64],
                client=address,
                failures=failures,
                delayed_s=delay or None,
                locked=throttle.locked(Standing(failures, None)) or None,
            )
            return json_error(401, "wrong name or password, or the operator is disabled")
        await throttle.succeeded(name)
        resp = web.json_response(
            _describe(session.identity, session.csrf_token, session.expires_at)
        )
        resp.set_cookie(
            COOKIE,
            session.session_id,
            max_age=int(self.ttl.total_seconds()),
            httponly=True,
            samesite="Strict",
            secure=request.secure or (self.origin or "").startswith("https://"),
            path="/",
        )
        return resp

    async def current_session(self, request: web.Request) -> web.Response:
        session_id = request.cookies.get(COOKIE)
        found = await session_for(self.store, session_id) if session_id else None
        if found is None:
            return json_error(401, "not signed in")
        return web.json_response(_describe(*found))

    async def end_session(self, request: web.Request) -> web.Response:
        session_id = request.cookies.get(COOKIE)
        found = await session_for(self.store, session_id) if session_id else None
        if found is not None and session_id:
            if not hmac.compare_digest(
                request.headers.get(CSRF_HEADER, "").encode(errors="replace"), found[1].encode()
            ):
                return json_error(403, f"missing or wrong {CSRF_HEADER}")
            await sign_out(self.store, session_id)
        resp = web.json_response({"signed_out": True})
        resp.del_cookie(COOKIE, path="/")
        return resp


def _describe(identity: Identity, csrf: str, expires: datetime) -> dict[str, Any]:
    return {
        "operator": identity.name,
        "role": identity.role,
        "csrf_token": csrf,
        "expires_at": _iso(expires),
        "may": {
            "approve": RANK[identity.role] >= RANK["approver"],
            "admin": RANK[identity.role] >= RANK["admin"],
        },
    }


def _origin(url: str) -> str:
    """``scheme://host[:port]``, lower case, the default port left out (how browsers send
    ``Origin``); an unreadable URL gives a value no origin equals."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "\x00unreadable"
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _error(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": reason}), content_type="application/json")
