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

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from bridge import timing
from bridge.http import BodyError, json_error, read_limited_body
from bridge.runtime import Broker, PublishError, UnencodableMessage
from bridge.signing import SignatureError, verify
from schemas.config import HttpConfig
from schemas.messages import Message

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

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


def push_pipeline(ctx: BridgeContext) -> PushPipeline:
    """The daemon's one pipeline (one in-flight count for both endpoints)."""
    return ctx.push
