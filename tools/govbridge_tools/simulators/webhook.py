"""A platform that pushes signed inquiries to the bridge and takes replies back by POST.

It is the counterpart of ``adapters.webhook.WebhookSource``:

- push: ``state.push(items)`` POSTs ``{"items": [...]}`` (or a Weibo fan-service message) to
  ``push_url``, signed with ``secret`` (``adapters.signing``), and returns the HTTP status;
- replies: ``POST /replies`` stores a reply, deduped on ``Idempotency-Key`` (a repeat answers
  200 with ``"duplicate": true`` and the first reply's id), verifying the signature when a
  ``reply_secret`` is set; ``GET /replies`` lists them;
- operator controls under ``/_sim/``: ``POST /_sim/push`` (``{"n": 3}`` or ``{"items": [...]}``),
  ``POST /_sim/fan_service`` (``{"sender_id", "text"}``), ``GET /_sim/replies``,
  ``POST /_sim/outage`` (``{"mode": "503" | "429" | "401" | null}``), ``POST /_sim/target``
  (``{"push_url", "secret"}``), ``GET /_sim/stats``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from adapters import signing

OUTAGE_MODES = ("503", "429", "401")


@dataclass
class StoredReply:
    id: str
    idempotency_key: str
    body: dict[str, Any]
    received_at: datetime


@dataclass
class WebhookPlatformState:
    """Everything the fake platform holds, plus its operator controls."""

    secret: str = "sim-webhook-secret"
    push_url: str | None = None
    reply_secret: str | None = None
    account_handle: str = "gov_account"
    outage: str | None = None
    replies: dict[str, StoredReply] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    pushes: list[dict[str, Any]] = field(default_factory=list)
    retried: int = 0  # pushes sent again after no answer within 5 s (``retries``)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ----------------------------------------------------------------- controls

    def citizen_item(self, n: int, **overrides: Any) -> dict[str, Any]:
        """A push item of the govbridge schema: the n-th citizen asks something."""
        seq = next(self._seq)
        item: dict[str, Any] = {
            "external_id": f"msg-{seq}",
            "kind": "mention",
            "author": {"id": f"{100000 + n}", "handle": f"citizen{n}"},
            "text": f"@{self.account_handle} 路灯坏了，第{n}号，请尽快修理",
            "created_at": datetime.now(UTC).isoformat(),
            "thread": {"root_id": f"msg-{seq}"},
            "visibility": "public",
        }
        item.update(overrides)
        return item

    async def push(self, items: list[dict[str, Any]], *, retries: int = 0) -> int:
        """POST a signed ``{"items": [...]}`` to ``push_url``; return the HTTP status. With
        ``retries``, a push not answered within 5 s is sent again, as platforms do."""
        return await self.push_raw({"items": items}, retries=retries)

    async def push_fan_service(self, sender_id: str, text: str, receiver_id: str = "1") -> int:
        """POST a Weibo fan-service private message (same wire format as Weibo's push)."""
        created = datetime.now(UTC).astimezone().strftime("%a %b %d %H:%M:%S %z %Y")
        doc = {
            "type": "text",
            "receiver_id": receiver_id,
            "sender_id": sender_id,
            "created_at": created,
            "text": text,
            "data": {},
        }
        return await self.push_raw(doc)

    async def push_raw(self, doc: Any, *, retries: int = 0) -> int:
        if self.push_url is None:
            raise RuntimeError("no push_url configured")
        body = json.dumps(doc, ensure_ascii=False).encode()
        self.pushes.append(doc)
        timeout = aiohttp.ClientTimeout(total=5)  # Weibo gives a push 5 s before it retries
        for attempt in range(retries + 1):
            headers = {"Content-Type": "application/json", **signing.sign(self.secret, body)}
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.post(self.push_url, data=body, headers=headers) as resp,
                ):
                    await resp.read()
                    return resp.status
            except TimeoutError:
                if attempt == retries:
                    raise
                self.retried += 1
        raise AssertionError("unreachable")

    def set_outage(self, mode: str | None) -> None:
        if mode is not None and mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES} or None")
        self.outage = mode

    def reply_list(self) -> list[dict[str, Any]]:
        return [
            {"id": r.id, "idempotency_key": r.idempotency_key, **r.body}
            for r in self.replies.values()
        ]

    # ----------------------------------------------------------------- reply endpoint

    def receive_reply(self, headers: Any, raw: bytes) -> web.Response:
        self.requests["POST /replies"] += 1
        if self.outage == "503":
            return web.json_response({"error": "service unavailable"}, status=503)
        if self.outage == "429":
            return web.json_response(
                {"error": "too many requests"}, status=429, headers={"Retry-After": "30"}
            )
        if self.outage == "401":
            return web.json_response({"error": "credentials revoked"}, status=401)
        if self.reply_secret is not None:
            try:
                signing.verify(self.reply_secret, headers, raw)
            except signing.SignatureError as e:
                return web.json_response({"error": e.reason}, status=e.status)
        key = headers.get("Idempotency-Key")
        if not key:
            return web.json_response({"error": "Idempotency-Key header required"}, status=400)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return web.json_response({"error": "text is required"}, status=400)
        if key in self.replies:
            return web.json_response({"id": self.replies[key].id, "duplicate": True}, status=200)
        reply = StoredReply(
            id=f"r-{len(self.replies) + 1}",
            idempotency_key=key,
            body=body,
            received_at=datetime.now(UTC),
        )
        self.replies[key] = reply
        return web.json_response({"id": reply.id}, status=201)


def create_app(state: WebhookPlatformState) -> web.Application:
    app = web.Application()

    async def post_reply(request: web.Request) -> web.Response:
        return state.receive_reply(request.headers, await request.read())

    async def get_replies(request: web.Request) -> web.Response:
        return web.json_response({"replies": state.reply_list()})

    async def sim_push(request: web.Request) -> web.Response:
        doc = await request.json()
        items = doc.get("items") or [state.citizen_item(i) for i in range(int(doc.get("n", 1)))]
        status = await state.push(items)
        return web.json_response({"status": status, "pushed": [i["external_id"] for i in items]})

    async def sim_fan_service(request: web.Request) -> web.Response:
        doc = await request.json()
        status = await state.push_fan_service(str(doc["sender_id"]), str(doc["text"]))
        return web.json_response({"status": status})

    async def sim_outage(request: web.Request) -> web.Response:
        doc = await request.json()
        try:
            state.set_outage(doc.get("mode"))
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response({"outage": state.outage})

    async def sim_target(request: web.Request) -> web.Response:
        doc = await request.json()
        state.push_url = doc.get("push_url", state.push_url)
        state.secret = doc.get("secret", state.secret)
        return web.json_response({"push_url": state.push_url})

    async def sim_stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": dict(state.requests),
                "replies": len(state.replies),
                "pushes": len(state.pushes),
            }
        )

    app.router.add_post("/replies", post_reply)
    app.router.add_get("/replies", get_replies)
    app.router.add_post("/_sim/push", sim_push)
    app.router.add_post("/_sim/fan_service", sim_fan_service)
    app.router.add_get("/_sim/replies", get_replies)
    app.router.add_post("/_sim/outage", sim_outage)
    app.router.add_post("/_sim/target", sim_target)
    app.router.add_get("/_sim/stats", sim_stats)
    return app


async def serve(host: str, port: int, **opts: Any) -> None:
    """Run until cancelled. ``opts``: push_url, secret, reply_secret, account_handle."""
    state = WebhookPlatformState(**{k: v for k, v in opts.items() if v is not None})
    runner = web.AppRunner(create_app(state))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
