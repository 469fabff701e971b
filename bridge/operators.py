"""Named operators with roles, signed in by sessions, and who may do what on ``/api/``.

Roles: a ``viewer`` reads; an ``approver`` also decides replies and checks held categories; an
``admin`` also replays dead letters, settles reconciliation and replaces tokens. ``POLICY`` is the
one place that says which request needs which role; the middleware applies it to every
``/api/`` request before its handler runs.

Passwords are hashed with Argon2id (argon2-cffi). A sign-in gives a session: a random id in an
HttpOnly, SameSite=Strict cookie (only its sha256 is stored) that expires after
``http.session_ttl``, and a CSRF token that every state-changing request must send back in
``X-CSRF-Token``. The single ``http.admin_token`` (``Authorization: Bearer``) keeps working for
automation, as an admin, with no cookie and no CSRF token. A signed-in operator acts under
their own name: the ``actor`` of a decision is theirs, whatever the body says.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bridge import audit
from bridge.http import IDENTITY, Identity, check_bearer, json_error, read_json

if TYPE_CHECKING:
    from bridge.store import Executor

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
]

_hasher = PasswordHasher()
# verified against when the name is unknown, so a wrong name takes as long as a wrong password
_DUMMY = _hasher.hash(secrets.token_hex(16))


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


async def add_operator(db: Executor, name: str, role: str, password: str, actor: str) -> None:
    name, role = check_name(name), check_role(role)
    hashed = await asyncio.to_thread(_hasher.hash, check_password(password))
    async with db.transaction() as tx:
        n = await tx.execute(
            "INSERT INTO operators (name, role, password_hash, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (name, role, hashed, _iso(_now()), _iso(_now())),
        )
        if n == 0:
            raise OperatorError(f"operator {name!r} exists already")
        await audit.append(tx, "operator.added", actor=actor, subject=name, role=role)


async def change_operator(
    db: Executor,
    name: str,
    actor: str,
    *,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
) -> None:
    """Change a role, a password or the disabled flag; the operator's sessions end."""
    sets: dict[str, Any] = {}
    if role is not None:
        sets["role"] = check_role(role)
    if password is not None:
        sets["password_hash"] = await asyncio.to_thread(_hasher.hash, check_password(password))
    if disabled is not None:
        sets["disabled"] = int(disabled)
    async with db.transaction() as tx:
        n = await tx.execute(
            f"UPDATE operators SET {', '.join(f'{k} = ?' for k in sets)}, updated_at = ?"
            " WHERE name = ?",
            (*sets.values(), _iso(_now()), name),
        )
        if n == 0:
            raise OperatorError(f"no operator {name!r}")
        await tx.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
        changed = {k: v for k, v in sets.items() if k != "password_hash"}
        await audit.append(
            tx,
            "operator.changed",
            actor=actor,
            subject=name,
            password_changed=password is not None or None,
            **changed,
        )


async def list_operators(db: Executor) -> list[dict[str, Any]]:
    return await db.fetchall(
        "SELECT name, role, disabled, created_at, updated_at FROM operators ORDER BY name"
    )


@dataclass(frozen=True)
class Session:
    session_id: str
    csrf_token: str
    expires_at: datetime
    identity: Identity


async def sign_in(db: Executor, name: str, password: str, ttl: timedelta) -> Session | None:
    """A new session for a right name and password of an enabled operator, else None."""
    rows = await db.fetchall(
        "SELECT name, role, password_hash, disabled FROM operators WHERE name = ?", (name,)
    )
    stored = rows[0]["password_hash"] if rows else _DUMMY
    ok: bool
    try:
        ok = await asyncio.to_thread(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or not rows or rows[0]["disabled"]:
        return None
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    expires = _now() + ttl
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM operator_sessions WHERE expires_at < ?", (_iso(_now()),))
        await tx.execute(
            "INSERT INTO operator_sessions (session_hash, operator, csrf_token, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?)",
            (_digest(session_id), name, csrf, _iso(_now()), _iso(expires)),
        )
        await audit.append(tx, "operator.signed_in", actor=name, subject=name)
    return Session(session_id, csrf, expires, Identity(name, rows[0]["role"], "session"))


async def session_for(db: Executor, session_id: str) -> tuple[Identity, str, datetime] | None:
    """The identity, CSRF token and expiry of a live session of an enabled operator."""
    rows = await db.fetchall(
        "SELECT s.operator, s.csrf_token, s.expires_at, o.role, o.disabled"
        " FROM operator_sessions s JOIN operators o ON o.name = s.operator"
        " WHERE s.session_hash = ?",
        (_digest(session_id),),
    )
    if not rows or rows[0]["disabled"]:
        return None
    expires = datetime.fromisoformat(rows[0]["expires_at"])
    if expires <= _now():
        return None
    row = rows[0]
    return Identity(row["operator"], row["role"], "session"), row["csrf_token"], expires


async def sign_out(db: Executor, session_id: str) -> None:
    await db.execute("DELETE FROM operator_sessions WHERE session_hash = ?", (_digest(session_id),))


# ------------------------------------------------------------------------------------ HTTP
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OperatorsHttp:
    """The session endpoints and the middleware that authorises every ``/api/`` request."""

    def __init__(self, db: Executor, ttl: timedelta) -> None:
        self.db = db
        self.ttl = ttl

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
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
            return Identity("admin_token", "admin", "token")
        found = await session_for(self.db, session_id)
        if found is None:
            raise _error(web.HTTPUnauthorized, "session expired or signed out: sign in again")
        identity, csrf, _ = found
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(errors="replace"), csrf.encode()):
                raise _error(web.HTTPForbidden, f"missing or wrong {CSRF_HEADER}")
            if _foreign(request):
                raise _error(web.HTTPForbidden, "request from another origin")
        return identity

    async def create_session(self, request: web.Request) -> web.Response:
        """Body ``{"name": "…", "password": "…"}``: a session cookie and the CSRF token."""
        if _foreign(request):  # no signing a visitor in from another site
            return json_error(403, "request from another origin")
        body = await read_json(request, limit=4096)
        name = body.get("name") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(name, str) or not isinstance(password, str):
            return json_error(400, 'body must be {"name": "...", "password": "..."}')
        session = await sign_in(self.db, name.strip(), password, self.ttl)
        if session is None:
            return json_error(401, "wrong name or password, or the operator is disabled")
        resp = web.json_response(
            _describe(session.identity, session.csrf_token, session.expires_at)
        )
        resp.set_cookie(
            COOKIE,
            session.session_id,
            max_age=int(self.ttl.total_seconds()),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        return resp

    async def current_session(self, request: web.Request) -> web.Response:
        session_id = request.cookies.get(COOKIE)
        found = await session_for(self.db, session_id) if session_id else None
        if found is None:
            return json_error(401, "not signed in")
        return web.json_response(_describe(*found))

    async def end_session(self, request: web.Request) -> web.Response:
        session_id = request.cookies.get(COOKIE)
        found = await session_for(self.db, session_id) if session_id else None
        if found is not None and session_id:
            if not hmac.compare_digest(
                request.headers.get(CSRF_HEADER, "").encode(errors="replace"), found[1].encode()
            ):
                return json_error(403, f"missing or wrong {CSRF_HEADER}")
            await sign_out(self.db, session_id)
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


def _foreign(request: web.Request) -> bool:
    """The browser says the request comes from a page of another origin."""
    origin = request.headers.get("Origin")
    return origin is not None and origin.split("://", 1)[-1] != request.host


def _error(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": reason}), content_type="application/json")
