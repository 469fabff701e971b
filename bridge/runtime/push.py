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
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from adapters.signing import SignatureError, verify
from bridge.runtime.broker import Broker, PublishError, UnencodableMessage, encode_message
from bridge.runtime.http import BodyError, json_error, read_limited_body
from bridge.store import Store, iso
from bridge.store.errors import StoreUnavailable
from bridge.store.pushes import KeptPush
from bridge.telemetry import timing
from schemas.config import HttpConfig
from schemas.messages import MESSAGE_MODELS, Message

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
    """One per daemon: the limits of ``[http]``, the broker, the store (where query-signed
    pushes are kept), and the in-flight count."""

    http: HttpConfig
    broker: Broker
    store: Store
    in_flight: int = 0
    _decoy: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    # query-signed pushes (Weibo fan-service) are kept in the store before they are answered
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    )
    sweep_every: float = 2.0
    remember_for: timedelta = timedelta(days=3)  # a late duplicate is dropped within this
    _tasks: set[asyncio.Task[bool]] = field(default_factory=set)
    _sweeper: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _next_forget: datetime = field(default_factory=lambda: datetime.now(UTC))
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

        Signature first (403 and nothing published when wrong), then parse, then the push is
        kept in the store (``push_inbox``) and published from there: the answer waits for the
        broker's confirm while there is time, and is 200 either way once the push is kept.
        A push the broker has not confirmed is published by this process, or, when its claim
        lapses (the process died) or is given up (it stopped, the broker refused), by any
        process (``sweep``): Weibo would otherwise retry three times and give up, and a push
        held only in memory would die with the process. A retry or a late duplicate finds
        the kept row and is answered 200 and dropped. When the store cannot keep it in time
        the push is published directly (200 once confirmed, 503 otherwise: Weibo retries).
        """
        with timing.stage("ingest"):
            clock = asyncio.get_running_loop().time
            started = clock()
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
            if not parsed.messages:
                return web.json_response(parsed.answer, status=200)
            try:
                encoded = _encode(parsed.messages)
            except UnencodableMessage as exc:
                return json_error(422, f"body has text that cannot be encoded: {exc}")
            key = "|".join(sorted(f"{rk}:{_message_id(msg)}" for rk, msg in parsed.messages))

            def left() -> float:
                return max(0.1, answer_within - (clock() - started))

            now = datetime.now(UTC)
            kept = KeptPush(key, what, encoded, iso(now))
            try:
                fresh = await asyncio.wait_for(
                    self.store.keep_push(kept, owner=self.owner, until=now + self._claim()),
                    left() * 0.6,
                )
            except (StoreUnavailable, TimeoutError) as exc:
                log.error(f"{what} could not be kept; publishing directly", error=repr(exc))
                return await self._publish_unkept(parsed, left(), what)
            if not fresh:
                log.info(f"{what} duplicate dropped", messages=len(parsed.messages))
                return web.json_response({**parsed.answer, "duplicate": True}, status=200)
            task = asyncio.create_task(self._publish_kept(kept, parsed.on_published))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            try:
                await asyncio.wait_for(asyncio.shield(task), left())
            except TimeoutError:
                log.warning(f"{what} answered before the broker confirmed; kept, publishing")
                return web.json_response(
                    {**parsed.answer, "kept": True, "duplicate": False}, status=200
                )
            return web.json_response({**parsed.answer, "duplicate": False}, status=200)

    def _claim(self) -> timedelta:
        """How long a process owns a kept push's publish: longer than one publish attempt
        (the broker's confirm timeout), so only a dead or stopped owner's lapses."""
        return self.broker.cfg.confirm_timeout + timedelta(seconds=5)

    async def _publish_unkept(self, parsed: Parsed, within: float, what: str) -> web.Response:
        try:
            await asyncio.wait_for(self.broker.publish_many(parsed.messages), within)
        except (PublishError, TimeoutError) as exc:
            log.error(f"{what} neither kept nor confirmed", error=repr(exc))
            return json_error(503, "not kept; retry later", **{"Retry-After": "5"})
        if parsed.on_published is not None:
            parsed.on_published()
        return web.json_response({**parsed.answer, "duplicate": False}, status=200)

    async def _publish_kept(self, kept: KeptPush, on_published: Callable[[], None] | None) -> bool:
        """One publish of a kept push by its owner; False (claim given up, the sweep retries)
        when the broker did not confirm."""
        try:
            await self.broker.publish_many(_decode(kept.messages_json))
        except PublishError as exc:
            log.warning("kept push not confirmed; the sweep retries it", error=str(exc))
            with contextlib.suppress(StoreUnavailable):
                await self.store.release_push_claims(self.owner, kept.push_key)
            self._wake.set()
            return False
        with contextlib.suppress(StoreUnavailable):  # unmarked: the sweep publishes it again
            await self.store.push_published(kept.push_key, now=datetime.now(UTC))
        if on_published is not None:
            on_published()
        return True

    def start(self) -> None:
        """Start the sweep that publishes kept pushes whose owner gave them up or died."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="push-sweep")

    async def sweep(self) -> int:
        """Publish the kept pushes no live process is publishing; how many were confirmed."""
        now = datetime.now(UTC)
        rows = await self.store.claim_unpublished_pushes(
            owner=self.owner, now=now, until=now + self._claim()
        )
        done = 0
        for row in rows:
            if self._stopping:
                break
            if await self._publish_kept(row, None):
                done += 1
                log.info("kept push published", source=row.source, received_at=row.received_at)
            else:
                break  # the broker is away: the rest wait for the next round
        if now >= self._next_forget:
            self._next_forget = now + timedelta(hours=1)
            await self.store.forget_published_pushes(before=now - self.remember_for)
        return done

    async def _sweep_loop(self) -> None:
        delay = self.sweep_every
        while not self._stopping:
            self._wake.clear()
            try:
                await self.sweep()
                delay = self.sweep_every
            except Exception as exc:  # the store is away: next round
                log.warning("push sweep failed", error=repr(exc))
                delay = min(delay * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def close(self, timeout: float = 10.0) -> None:
        """Give pushes being published up to ``timeout``; what is left stays kept, its claim
        given up so the next process to start (or another one running) publishes it."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
            for t in tasks:
                t.cancel()
        try:
            released = await self.store.release_push_claims(self.owner)
        except Exception as exc:
            log.error("could not give up the claims of kept pushes", error=repr(exc))
            return
        if released:
            log.warning(
                "kept pushes not yet confirmed at shutdown; kept for the next process",
                count=released,
            )


def _message_id(message: Message) -> str:
    return str(getattr(message, "inquiry_id", None) or encode_message(message).decode())


def _encode(messages: Sequence[tuple[str, Message]]) -> str:
    """The messages as kept: routing key, model name, JSON body (``UnencodableMessage`` when
    one has no encoding)."""
    return json.dumps(
        [[rk, type(msg).__name__, encode_message(msg).decode()] for rk, msg in messages],
        ensure_ascii=False,
    )


def _decode(text: str) -> list[tuple[str, Message]]:
    return [
        (rk, MESSAGE_MODELS[name].model_validate_json(body)) for rk, name, body in json.loads(text)
    ]
