"""A generic JSON ticket system, the backend ``adapters.rest.RestTicketSystem`` talks to by default.

Wire format (the adapter's default config matches it):

- ``POST /tickets`` ``{"title", "body", "external_ref", ...}`` with ``Idempotency-Key`` →
  201 ticket ``{"id", "status", "title", "body", "external_ref", "created_at", "comments"}``.
  The same key with the same body again → 409 with the existing ticket (its fields at the top
  level, plus ``"error"``); the same key with another body → 422.
- ``GET /tickets?external_ref=R`` → ``{"tickets": [...]}`` · ``GET /tickets/{id}`` → the ticket.
- ``POST /tickets/{id}/comments`` ``{"body"}`` → 201 ``{"id"}`` (deduped on ``Idempotency-Key``).
- ``GET /changes?since=<cursor>&limit=N`` → ``{"items": [{"id", "ticket_id", "external_ref",
  "status", "time", "note"}], "next_cursor"}``; the cursor is opaque (a sequence number).
- Auth: ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``; otherwise 401.

Native statuses: ``NEW ASSIGNED IN_PROGRESS DONE REJECTED RETURNED REOPENED CLOSED`` and the
internal ``DRAFT`` (a department maps it to IGNORE).

``quirks``: what ticket systems written by others do beside this contract: an outage answered
by a proxy's HTML page with ``Retry-After`` as an HTTP date, refused credentials as plain text,
and a malformed change in the feed (no ticket id) among the good ones.

Operator controls (Python methods on :class:`RestTicketState`, and HTTP under ``/_sim/``):
``move`` a ticket (status + note; optionally POST a signed callback ``{"items": [change]}`` to
``callback_url``), outages ``"503"`` / ``"refuse"`` (stop listening; recovering listens again on
the same port) / ``None``, a request counter, token revocation.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from adapters import signing
from govbridge_tools.simulators.outage import change_outage

NATIVE_STATUSES = (
    "NEW",
    "ASSIGNED",
    "IN_PROGRESS",
    "DONE",
    "REJECTED",
    "RETURNED",
    "REOPENED",
    "CLOSED",
    "DRAFT",
)
OUTAGE_MODES = ("503", "refuse")


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RestTicketState:
    """The backend's data and its operator controls."""

    token: str = "sim-rest-token"
    callback_url: str | None = None
    callback_secret: str | None = None
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, tuple[str, str]] = field(default_factory=dict)  # key → (body, id)
    comment_keys: dict[str, str] = field(default_factory=dict)
    reopen_keys: dict[str, str] = field(default_factory=dict)  # Idempotency-Key → change id
    reopens: list[dict[str, Any]] = field(default_factory=list)  # the reopen calls taken
    requests: Counter[str] = field(default_factory=Counter)
    callbacks: list[tuple[str, int | None]] = field(default_factory=list)  # (change id, status)
    outage: str | None = None
    server: RestSimServer | None = None
    quirks: bool = False

    @property
    def request_count(self) -> int:
        """API requests answered (operator ``/_sim`` calls excluded)."""
        return sum(self.requests.values())

    # ----------------------------------------------------------------- operator controls

    async def move(
        self, ticket_id: str, status: str, note: str | None = None, *, callback: bool = True
    ) -> dict[str, Any]:
        """An official moves a ticket; POST a signed callback if a callback URL is set."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise KeyError(ticket_id)
        if status not in NATIVE_STATUSES:
            raise ValueError(f"unknown status {status!r}; use one of {NATIVE_STATUSES}")
        ticket["status"] = status
        ticket["updated_at"] = _now()
        seq = len(self.changes) + 1
        change = {
            "id": f"chg-{seq}",
            "seq": seq,
            "ticket_id": ticket_id,
            "external_ref": ticket.get("external_ref"),
            "status": status,
            "time": ticket["updated_at"],
            "note": note,
        }
        self.changes.append(change)
        if callback and self.callback_url:
            self.callbacks.append((change["id"], await self.send_callback([change])))
        return change

    async def send_callback(self, items: list[dict[str, Any]]) -> int | None:
        """POST ``{"items": [...]}`` signed with ``callback_secret``; the HTTP status or None."""
        assert self.callback_url is not None
        body = json.dumps({"items": items}, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self.callback_secret:
            headers.update(signing.sign(self.callback_secret, body))
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.post(self.callback_url, data=body, headers=headers) as resp,
            ):
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def set_outage(self, mode: str | None) -> None:
        """``"503"``: answer every API call 503; ``"refuse"``: stop listening; ``None``: recover."""
        if mode is not None and mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES} or None")
        await change_outage(self, self.server, mode)

    def revoke_token(self) -> None:
        self.token = "revoked-" + self.token

    def ticket_list(self) -> list[dict[str, Any]]:
        return [{**t, "reference": t.get("external_ref")} for t in self.tickets.values()]

    # ----------------------------------------------------------------- API

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        key = request.headers.get("X-API-Key", "")
        return auth == f"Bearer {self.token}" or key == self.token

    def create_ticket(self, body: dict[str, Any], key: str | None) -> web.Response:
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
        if key and key in self.idempotency:
            seen_body, ticket_id = self.idempotency[key]
            if seen_body != canonical:
                return _error(422, "Idempotency-Key reused with a different request")
            ticket = self.tickets[ticket_id]
            return web.json_response({**ticket, "error": "duplicate Idempotency-Key"}, status=409)
        for name in ("title", "body"):
            if not isinstance(body.get(name), str) or not body[name].strip():
                return _error(422, f"{name} is required")
        ticket_id = f"T-{len(self.tickets) + 1:06d}"
        ticket = {
            **{k: v for k, v in body.items() if k not in ("id", "status")},
            "id": ticket_id,
            "status": "NEW",
            "created_at": _now(),
            "updated_at": _now(),
            "comments": [],
        }
        self.tickets[ticket_id] = ticket
        if key:
            self.idempotency[key] = (canonical, ticket_id)
        return web.json_response(ticket, status=201)

    def add_comment(self, ticket_id: str, body: dict[str, Any], key: str | None) -> web.Response:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return _error(404, f"no ticket {ticket_id}")
        if key and key in self.comment_keys:
            return web.json_response({"id": self.comment_keys[key], "duplicate": True})
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            return _error(422, "body is required")
        comment_id = f"cm-{sum(len(t['comments']) for t in self.tickets.values()) + 1}"
        ticket["comments"].append({"id": comment_id, "body": text, "at": _now()})
        if key:
            self.comment_keys[key] = comment_id
        return web.json_response({"id": comment_id}, status=201)

    async def reopen(self, ticket_id: str, body: dict[str, Any], key: str | None) -> web.Response:
        """``POST /tickets/{id}/reopen``: a final ticket (DONE, REJECTED, CLOSED) goes back to
        REOPENED (a change on the feed and a callback, as an official's move); 409 for a ticket
        still open; the same ``Idempotency-Key`` twice is one reopen."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return _error(404, f"no ticket {ticket_id}")
        if key and key in self.reopen_keys:
            return web.json_response({"change_id": self.reopen_keys[key], "duplicate": True})
        if ticket["status"] not in ("DONE", "REJECTED", "CLOSED"):
            return _error(409, f"ticket {ticket_id} is {ticket['status']}, not closed")
        reason = body.get("reason")
        change = await self.move(ticket_id, "REOPENED", None)
        self.reopens.append({"ticket_id": ticket_id, "change_id": change["id"], "reason": reason})
        if key:
            self.reopen_keys[key] = change["id"]
        return web.json_response({"change_id": change["id"]}, status=201)

    def changes_page(self, since: str | None, limit: int) -> web.Response:
        try:
            start = int(since) if since else 0
        except ValueError:
            return _error(400, "since must be a cursor returned by this API")
        page = [c for c in self.changes if c["seq"] > start][:limit]
        next_cursor = str(page[-1]["seq"]) if page else str(start)
        if self.quirks and page:  # a change some other system wrote wrong, among the good
            page = [*page[:1], {"id": f"bad-{page[0]['seq']}", "status": "DONE"}, *page[1:]]
        return web.json_response({"items": page, "next_cursor": next_cursor})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        doc = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def create_app(state: RestTicketState) -> web.Application:
    """The API plus ``/_sim`` operator routes."""

    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        route = request.match_info.route.resource
        state.requests[f"{request.method} {route.canonical if route else request.path}"] += 1
        if state.outage == "503":
            if state.quirks:  # a proxy's page, and a date instead of seconds
                return web.Response(
                    status=503,
                    text="<html><head><title>503 Service Temporarily Unavailable</title></head>"
                    "<body><center><h1>503 Service Temporarily Unavailable</h1></center></body>"
                    "</html>",
                    content_type="text/html",
                    headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
                )
            return _error(503, "service unavailable")
        if not state._authorised(request):
            if state.quirks:
                return web.Response(status=401, text="Unauthorized", content_type="text/plain")
            return _error(401, "invalid or missing credentials")
        return await handler(request)

    app = web.Application(middlewares=[gate])

    async def create(request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None:
            return _error(400, "body must be a JSON object")
        return state.create_ticket(body, request.headers.get("Idempotency-Key"))

    async def search(request: web.Request) -> web.Response:
        ref = request.query.get("external_ref")
        found = [t for t in state.tickets.values() if ref is None or t.get("external_ref") == ref]
        return web.json_response({"tickets": found})

    async def get_ticket(request: web.Request) -> web.Response:
        ticket = state.tickets.get(request.match_info["id"])
        return web.json_response(ticket) if ticket else _error(404, "no such ticket")

    async def comment(request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None:
            return _error(400, "body must be a JSON object")
        return state.add_comment(
            request.match_info["id"], body, request.headers.get("Idempotency-Key")
        )

    async def reopen(request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None:
            return _error(400, "body must be a JSON object")
        return await state.reopen(
            request.match_info["id"], body, request.headers.get("Idempotency-Key")
        )

    async def changes(request: web.Request) -> web.Response:
        try:
            limit = max(1, min(500, int(request.query.get("limit", "100"))))
        except ValueError:
            return _error(400, "limit must be an integer")
        return state.changes_page(request.query.get("since"), limit)

    async def sim_tickets(request: web.Request) -> web.Response:
        return web.json_response({"tickets": state.ticket_list()})

    async def sim_move(request: web.Request) -> web.Response:
        doc = await _json_body(request) or {}
        try:
            change = await state.move(
                request.match_info["id"],
                str(doc.get("status")),
                doc.get("note"),
                callback=bool(doc.get("callback", True)),
            )
        except KeyError:
            return _error(404, "no such ticket")
        except ValueError as e:
            return _error(400, str(e))
        return web.json_response(change)

    async def sim_outage(request: web.Request) -> web.Response:
        doc = await _json_body(request) or {}
        mode = doc.get("mode")
        if mode not in (None, *OUTAGE_MODES):
            return _error(400, f"mode must be one of {OUTAGE_MODES} or null")
        if mode == "refuse":
            # Answer first, then stop listening; "seconds" brings the port back (nothing
            # could reach /_sim to recover it otherwise).
            seconds = float(doc.get("seconds", 10))

            async def refuse_for_a_while() -> None:
                await asyncio.sleep(0.05)
                await state.set_outage("refuse")
                await asyncio.sleep(seconds)
                await state.set_outage(None)

            app["refuse_task"] = asyncio.create_task(refuse_for_a_while())
            return web.json_response({"outage": "refuse", "seconds": seconds})
        await state.set_outage(mode)
        return web.json_response({"outage": state.outage})

    async def sim_config(request: web.Request) -> web.Response:
        doc = await _json_body(request) or {}
        for key in ("callback_url", "callback_secret", "token"):
            if key in doc:
                setattr(state, key, doc[key])
        return web.json_response({"callback_url": state.callback_url})

    async def sim_stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": dict(state.requests),
                "total": state.request_count,
                "tickets": len(state.tickets),
                "callbacks": state.callbacks,
            }
        )

    app.router.add_post("/tickets", create)
    app.router.add_get("/tickets", search)
    app.router.add_get("/tickets/{id}", get_ticket)
    app.router.add_post("/tickets/{id}/comments", comment)
    app.router.add_post("/tickets/{id}/reopen", reopen)
    app.router.add_get("/changes", changes)
    app.router.add_get("/_sim/tickets", sim_tickets)
    app.router.add_post("/_sim/tickets/{id}/move", sim_move)
    app.router.add_post("/_sim/outage", sim_outage)
    app.router.add_post("/_sim/config", sim_config)
    app.router.add_get("/_sim/stats", sim_stats)
    return app


class RestSimServer:
    """Runs the app and can stop and resume listening on the same port (``refuse`` outages)."""

    def __init__(self, state: RestTicketState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._runner = web.AppRunner(create_app(state), handle_signals=False)
        self._site: web.TCPSite | None = None
        state.server = self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        await self.listen()

    async def listen(self) -> None:
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._site = site

    async def stop_listening(self) -> None:
        """Close the listening socket and every open connection: clients see refusals."""
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        if self._runner.server is not None:
            for conn in self._runner.server.connections:
                conn.force_close()

    async def close(self) -> None:
        self.state.server = None
        await self._runner.cleanup()
        self._site = None


async def serve(host: str, port: int, **opts: Any) -> None:
    """Run until cancelled. ``opts``: token, callback_url, callback_secret."""
    state = RestTicketState(**{k: v for k, v in opts.items() if v is not None})
    server = RestSimServer(state, host, port)
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


def demo_ticketing_config(base_url: str, token: str = "sim-rest-token") -> dict[str, Any]:
    """A ``ticketing`` block describing this simulator to the generic REST adapter: what a
    department's operator writes for their own system (no code per department)."""
    return {
        "adapter": "rest",
        "base_url": base_url,
        "auth": {"bearer": token},
        "create": {
            "path": "/tickets",
            "body": {
                "title": "【{category_label}】{public_text:.30}",
                "body": "{description}",
                "external_ref": "{reference}",
                "channel": "{platform}",
            },
            "id_path": "id",
            "status_path": "status",
            "created_at_path": "created_at",
        },
        "lookup": {
            "path": "/tickets?external_ref={reference}",
            "results_path": "tickets",
            "reference_path": "external_ref",
        },
        "append": {"path": "/tickets/{ticket_id}/comments", "body": {"body": "{description}"}},
        "changes": {
            "path": "/changes",
            "items_path": "items",
            "next_cursor_path": "next_cursor",
            "item": {
                "event_id": "id",
                "ticket_id": "ticket_id",
                "status": "status",
                "time": "time",
                "note": "note",
                "reference": "external_ref",
            },
        },
        "status_map": {
            "NEW": "received",
            "ASSIGNED": "referred",
            "IN_PROGRESS": "in_progress",
            "DONE": "resolved",
            "REJECTED": "rejected",
            "RETURNED": "returned",
            "REOPENED": "reopened",
            "CLOSED": "closed",
            "DRAFT": "IGNORE",
        },
    }
