"""The verified-push pipeline that both hook endpoints share.

``POST /hooks/sources/{account}`` (pushed inquiries) and ``POST /hooks/tickets/{department}``
(ticket-system callbacks) differ only in how a body becomes messages. Everything around that is
here, once: read the body whole (size cap, time limit) → verify the HMAC signature and the
replay window → parse → encode every message → publish with confirms → 202, or 503 when the
broker did not confirm. Each refusal is a 4xx with its reason and publishes nothing.

Unknown names (an account or department that is not configured, or one that does not accept
pushes) are verified against a random secret, so they are answered exactly like a bad signature
and nobody can enumerate the configured handles.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from adapters.signing import SignatureError, verify
from bridge.runtime.broker import Broker, PublishError, UnencodableMessage
from bridge.runtime.http import BodyError, json_error, read_limited_body
from bridge.telemetry import timing
from schemas.config import HttpConfig
from schemas.messages import Message

log = structlog.get_logger("govbridge.push")


class PushRejected(Exception):
    """An authentic body that can never be accepted as it is: ``status`` (4xx) and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Parsed:
    """What a verified body became: the messages to publish (routing key, message), the JSON
    answered with 202, and what to count once they are confirmed."""

    messages: Sequence[tuple[str, Message]]
    answer: dict[str, Any]
    on_published: Callable[[], None] | None = None


Parser = Callable[[bytes], Parsed]


@dataclass
class PushPipeline:
    """One per daemon: the limits of ``[http]``, the broker, and the in-flight count."""

    http: HttpConfig
    broker: Broker
    in_flight: int = 0
    _decoy: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    # query-signed pushes (Weibo fan-service): inquiry ids being published / confirmed lately
    _pending: dict[tuple[str, ...], asyncio.Task[None]] = field(default_factory=dict)
    _confirmed: OrderedDict[tuple[str, ...], None] = field(default_factory=OrderedDict)
    _stopping: bool = False

    async def handle(
        self, request: web.Request, secret: SecretStr | None, parse: Parser, what: str
    ) -> web.Response:
        """Run one push through the pipeline; ``secret`` None means "no such endpoint"."""
        with timing.stage("ingest"):
            return await self._handle(request, secret, parse, what)

    async def _handle(
        self, request: web.Request, secret: SecretStr | None, parse: Parser, what: str
    ) -> web.Response:
        http = self.http
        try:
            body = await read_limited_body(
                request, http.max_body_bytes, http.body_timeout.total_seconds()
            )
        except BodyError as exc:
            return exc.response()
        key = secret.get_secret_value() if secret is not None else self._decoy
        try:
            verify(key, request.headers, body, http.replay_window.total_seconds())
        except SignatureError as exc:
            return json_error(exc.status, exc.reason)
        if secret is None:  # unreachable unless someone guessed 256 random bits
            return json_error(401, "signature does not match")
        try:
            parsed = parse(body)
        except PushRejected as exc:
            return json_error(exc.status, exc.reason)
        except (ValueError, RecursionError, OverflowError) as exc:
            # Authentic but unreadable (absurd numbers, nesting, times): it will never succeed.
            log.warning(f"{what} rejected: body not readable", error=type(exc).__name__)
            return json_error(400, f"body not readable ({type(exc).__name__})")
        if self.in_flight >= http.max_inflight_pushes:
            return json_error(503, "too many pushes in flight; retry later", **{"Retry-After": "1"})
        self.in_flight += 1
        try:
            await self.broker.publish_many(parsed.messages)
        except UnencodableMessage as exc:
            return json_error(422, f"body has text that cannot be encoded: {exc}")
        except PublishError as exc:
            log.error(f"{what} not confirmed by the broker", error=str(exc))
            return json_error(503, "broker did not confirm; retry later", **{"Retry-After": "5"})
        finally:
            self.in_flight -= 1
        if parsed.on_published is not None:
            parsed.on_published()
        return web.json_response(parsed.answer, status=202)

    # ------------------------------------------------------------- query-signed pushes

    async def handle_query_signed(
        self,
        request: web.Request,
        signature_ok: Callable[[Mapping[str, str]], bool],
        parse: Parser,
        answer_within: float,
        what: str,
    ) -> web.Response:
        """A push signed in its query (Weibo fan-service), answered 200 within ``answer_within``.

        Signature first (403 and nothing published when wrong), then parse, then publish with
        confirm. A retry of a push being published waits for the same publish; a retry of one
        already confirmed is answered 200 and dropped. When the broker has not confirmed within
        ``answer_within`` the push is answered 200 anyway and its publish goes on (retried until
        confirmed) in this process: Weibo would otherwise retry three times and give up.
        """
        with timing.stage("ingest"):
            started = asyncio.get_running_loop().time()
            try:
                body = await read_limited_body(
                    request, self.http.max_body_bytes, self.http.body_timeout.total_seconds()
                )
            except BodyError as exc:
                return exc.response()
            if not signature_ok(request.query):
                return json_error(403, "signature does not match")
            try:
                parsed = parse(body)
            except PushRejected as exc:
                return json_error(exc.status, exc.reason)
            except (ValueError, RecursionError, OverflowError) as exc:
                log.warning(f"{what} rejected: body not readable", error=type(exc).__name__)
                return json_error(400, f"body not readable ({type(exc).__name__})")
            key = tuple(
                sorted(f"{rk}:{getattr(msg, 'inquiry_id', id(msg))}" for rk, msg in parsed.messages)
            )
            if not key:
                return web.json_response(parsed.answer, status=200)
            if key in self._confirmed:
                log.info(f"{what} duplicate dropped", messages=len(key))
                return web.json_response({**parsed.answer, "duplicate": True}, status=200)
            task = self._pending.get(key)
            duplicate = task is not None
            if task is None and len(self._pending) >= self.http.max_inflight_pushes:
                # kept in memory only up to the bound: beyond it the platform retries
                return json_error(503, "too many pushes in flight; retry later")
            if task is None:
                task = asyncio.create_task(self._publish_until_confirmed(key, parsed))
                self._pending[key] = task
            left = max(0.1, answer_within - (asyncio.get_running_loop().time() - started))
            try:
                await asyncio.wait_for(asyncio.shield(task), left)
            except TimeoutError:
                log.warning(f"{what} answered before the broker confirmed; kept, publishing")
                return web.json_response(
                    {**parsed.answer, "kept": True, "duplicate": duplicate}, status=200
                )
            except UnencodableMessage as exc:
                return json_error(422, f"body has text that cannot be encoded: {exc}")
            return web.json_response({**parsed.answer, "duplicate": duplicate}, status=200)

    async def _publish_until_confirmed(self, key: tuple[str, ...], parsed: Parsed) -> None:
        delay = 0.5
        try:
            while True:
                try:
                    await self.broker.publish_many(parsed.messages)
                    break
                except PublishError as exc:
                    if self._stopping:
                        log.error("push not confirmed at shutdown", error=str(exc))
                        raise
                    log.warning("push not confirmed; retrying", error=str(exc), delay=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self._confirmed[key] = None
            while len(self._confirmed) > 100_000:
                self._confirmed.popitem(last=False)
            if parsed.on_published is not None:
                parsed.on_published()
        finally:
            self._pending.pop(key, None)

    async def close(self, timeout: float = 10.0) -> None:
        """Give pushes answered before their confirm up to ``timeout`` to be confirmed."""
        self._stopping = True
        tasks = list(self._pending.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
            for t in tasks:
                if not t.done():
                    log.error("push still unconfirmed at shutdown; it is lost from this process")
