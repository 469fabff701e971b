"""The admin API for credentials and ticket systems, served by every process with ``http``
(whatever roles it runs: what it changes is shared through the store):

- ``PUT /api/accounts/{adapter}/{handle}/token`` with ``{"token": "…"}``: an account's token;
- ``PUT /api/ticket-systems/{department}/credentials`` with ``{"api_key": "…"}`` (or whichever
  secret fields the department's ticketing block has, by dotted path: ``{"auth.bearer": "…"}``);
- ``POST /api/ticket-systems/{department}/retry``: "retry now", the held commands go again;
- ``GET /api/ticket-systems``: each department's ticket system: its state (``ok``,
  ``paused: auth``, ``down``), alerts, last success per operation, held commands.

Replacements are kept encrypted and taken up by every process (``bridge/runtime/credentials.py``); a
replaced ticket-system key releases the commands held for it (``bridge/ticketing/held.py``). Each
is in
the audit trail under the operator's name (or ``admin-token``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from adapters.circuit import ReportsHealth
from bridge.runtime.credentials import CredentialError, account_subject, ticketing_subject
from bridge.runtime.http import json_error
from bridge.store.errors import StoreUnavailable
from bridge.web.bodies import NewCredentials, NewToken, parse
from bridge.web.server import operator_name, read_json, require_admin
from schemas.config import account_key

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.credentials")

AUTH_KIND = "ticketing_auth"
# an alert of these operations means commands are (or will be) held
HOLDING_OPERATIONS = ("create", "append")


class CredentialsApi:
    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        r = ctx.app.router
        r.add_put("/api/accounts/{adapter}/{handle}/token", self.replace_token)
        r.add_put("/api/ticket-systems/{department}/credentials", self.replace_ticketing)
        r.add_post("/api/ticket-systems/{department}/retry", self.retry)
        r.add_get("/api/ticket-systems", self.list_systems)
        ctx.credentials.on_change(self._changed)
        ctx.details["ticket_systems"] = self._readiness

    async def _readiness(self) -> dict[str, Any]:
        """``/readyz``'s ``ticket_systems``: each department's row (never "not ready": a
        refused key holds work, the bridge itself is fine)."""
        return {row["department"]: row for row in await ticket_system_rows(self.ctx)}

    async def _changed(self, subject: str, actor: str) -> None:
        """New credentials for a ticket system: what waited for them goes again, now."""
        kind, _, dept = subject.partition(":")
        if kind == "ticketing":
            await self.ctx.held.release(dept, why="credentials changed", actor=actor)

    async def replace_token(self, request: web.Request) -> web.Response:
        """An operator replaces an expired token; the account resumes from its cursor."""
        require_admin(request)
        adapter, handle = request.match_info["adapter"], request.match_info["handle"]
        try:
            self.ctx.cfg.account(handle, adapter)
        except KeyError:
            return json_error(404, f"no account {account_key(adapter, handle)}")
        token = (await parse(request, NewToken)).token
        subject = account_subject(adapter, handle)
        actor = operator_name(request)
        try:  # recorded first: a replacement that cannot be recorded is not made
            done = await self.ctx.credentials.replace(subject, {"token": token}, actor)
        except CredentialError as exc:
            return json_error(400, f'body must be {{"token": "<new token>"}}: {exc}')
        except StoreUnavailable as exc:
            return json_error(503, f"token not replaced: the store cannot be written now ({exc})")
        account = self.ctx.cfg.account(handle, adapter)
        waiting = sum(
            row.waiting
            for row in await self.ctx.store.outbox_backlog()
            if row.account == handle and row.platform in (adapter, account.platform_name)
        )
        if not waiting:  # no reply left to prove the token with: the operator's word ends it
            self.ctx.alerts.clear("account_auth", account_key(adapter, handle), "post", by=actor)
        return web.json_response(
            {
                "account": account_key(adapter, handle),
                "status": "token replaced",
                "persisted": done.persisted,
                **_not_kept(done.persisted),
            }
        )

    async def replace_ticketing(self, request: web.Request) -> web.Response:
        """An operator replaces a ticket system's key: held commands go again at once."""
        require_admin(request)
        dept = request.match_info["department"]
        if dept not in {d.id for d in self.ctx.cfg.departments}:
            return json_error(404, f"no department {dept!r}")
        subject = ticketing_subject(dept)
        fields = self.ctx.credentials.fields(subject)
        doc = await read_json(request)
        if not isinstance(doc, dict) or not doc:
            example = ", ".join(f'"{f}": "…"' for f in fields)
            return json_error(400, f"body must be {{{example}}}")
        body = NewCredentials.model_validate(doc)  # each field is checked by credentials
        try:  # recorded first: a replacement that cannot be recorded is not made
            done = await self.ctx.credentials.replace(subject, body.root, operator_name(request))
        except CredentialError as exc:
            return json_error(400, str(exc))
        except StoreUnavailable as exc:
            return json_error(503, f"not replaced: the store cannot be written now ({exc})")
        return web.json_response(
            {
                "department": dept,
                "status": "credentials replaced",
                "fields": done.fields,
                "persisted": done.persisted,
                "held": self.ctx.held.waiting(dept),
                **_not_kept(done.persisted),
            }
        )

    async def retry(self, request: web.Request) -> web.Response:
        """Retry now: the department's held commands go again. With none held, the
        operator's word clears its auth alerts for creates and follow-ups (nothing is left
        to prove the key with; the next refusal raises them again)."""
        require_admin(request)
        dept = request.match_info["department"]
        if dept not in {d.id for d in self.ctx.cfg.departments}:
            return json_error(404, f"no department {dept!r}")
        actor = operator_name(request)
        try:
            await self.ctx.held.counts()
            waiting = self.ctx.held.waiting(dept)
            released = await self.ctx.held.release(dept, why="retry now", actor=actor)
        except StoreUnavailable as exc:
            return json_error(503, f"nothing released: the store cannot be reached now ({exc})")
        cleared = False
        if waiting == 0:
            for op in HOLDING_OPERATIONS:
                self.ctx.alerts.clear(AUTH_KIND, dept, op, by=actor)
            await self.ctx.alerts.sync(self.ctx.store)
            cleared = True
        return web.json_response(
            {"department": dept, "released": released, "alerts_cleared": cleared}
        )

    async def list_systems(self, request: web.Request) -> web.Response:
        require_admin(request)
        return web.json_response({"ticket_systems": await ticket_system_rows(self.ctx)})


def _not_kept(persisted: bool) -> dict[str, str]:
    if persisted:
        return {}
    return {"warning": "kept in this process only until it stops: set credentials.keys"}


async def ticket_system_rows(ctx: BridgeContext) -> list[dict[str, Any]]:
    """One row per department's ticket system (the accounts page, ``/readyz``).

    ``state``: ``paused: auth`` while it refuses the credentials for any operation or commands
    are held; ``down`` while this process's circuit breaker for it is open; else ``ok``.
    Alerts, last successes and held commands are every process's (the store's); the breaker
    is this process's (``unknown`` where it never used the system)."""
    counts = await ctx.held.counts()
    alerts = [a for a in ctx.alerts.describe() if a["kind"] == AUTH_KIND]
    rows = []
    for dept in ctx.cfg.departments:
        mine = [a for a in alerts if a["name"] == dept.id]
        held = counts.get(dept.id, {})
        system = ctx.adapters.existing_ticket_system(dept.id)
        breaker = system.breaker.state if isinstance(system, ReportsHealth) else None
        if mine or sum(held.values()):
            state = "paused: auth"
        elif breaker in ("open", "half_open"):
            state = "down"
        else:
            state = "ok"
        status = ctx.alerts.status(AUTH_KIND, dept.id)
        rows.append(
            {
                "department": dept.id,
                "name": dept.name,
                "adapter": dept.ticketing.adapter,
                "state": state,
                "alerts": mine,
                "last_success": {op: s.last_ok_at for op, s in sorted(status.items())},
                "held": sum(held.values()),
                "held_by_operation": held,
                "circuit": breaker if system is not None else "unknown",
                "credential_fields": ctx.credentials.fields(ticketing_subject(dept.id)),
            }
        )
    return rows
