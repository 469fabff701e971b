"""ingest: bring citizens' inquiries onto the bus.

Polled accounts: one loop per account reads ``fetch(cursor)`` pages, publishes every item with
confirms, and only then stores the cursor, so a crash between fetch and confirm re-reads (and
triage dedupes by the deterministic inquiry id) instead of losing. Pushing platforms:
``POST /hooks/sources/{account}`` verifies the HMAC signature, the replay window and the size,
validates, publishes, and answers 202 only after the broker confirmed. A Weibo fan-service push
(answered 200 within 5 s whatever the broker does) is kept in the store first and published
from there (``bridge.runtime.push``); this role runs the sweep that publishes what a stopped or
dead process kept.

A source that streams (``StreamsItems``: Mastodon with ``streaming = "auto"``) is read by a
``bridge.runtime.streaming.StreamLoop`` under the same lease: items are published as they
arrive, and the same fetch → publish → store cursor step runs after every (re)connect and every
``stream_catch_up`` or ``poll``, whichever is sooner (what the server does not stream, a
stranger's filtered private mention, is read as soon as polling would); what both ways bring is
published once (``AccountPoller.seen``). A server without streaming is polled.

An account with ``call_budget`` is polled at the pace of ``bridge.runtime.pacing.PollPacer``
(faster while citizens write, slower when quiet, never over the budget less posting's quota);
its spend is kept beside the cursor (``pace:<account>``).

Rate limits wait for the window; an auth failure pauses only that account with a visible alert
(log, metric, ``/readyz``; operation ``poll``) until the token is replaced
(``PUT /api/accounts/{adapter}/{handle}/token``, in any process: ``bridge/web/credentials.py``)
or a recheck succeeds; the cursor is kept throughout, and the next successful poll clears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from adapters.base import (
    AdapterError,
    AuthError,
    MalformedId,
    PermanentError,
    PushSource,
    QuerySignedPush,
    RateLimit,
    Source,
    StreamEvent,
    StreamsItems,
    StreamUnavailable,
)
from bridge.ingest import rejected
from bridge.runtime.pacing import PollPacer
from bridge.runtime.polling import PollLoop
from bridge.runtime.push import Parsed, PushRejected
from bridge.runtime.streaming import StreamLoop
from bridge.runtime.worker import Worker
from bridge.store.errors import StoreUnavailable
from schemas import routing
from schemas.config import AccountConfig
from schemas.messages import Inquiry

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.ingest")


def is_echo(ctx: BridgeContext, inquiry: Inquiry) -> bool:
    """Posts by the bridge's own accounts are never ingested (no echo loops)."""
    if inquiry.author.is_official:
        return True
    own = {a.handle.lower() for a in ctx.cfg.accounts}
    return inquiry.author.handle.lower().lstrip("@") in own


async def publish_inquiries(ctx: BridgeContext, items: list[Inquiry]) -> int:
    """Publish with confirms; returns how many were published (echoes dropped)."""
    fresh = [i for i in items if not is_echo(ctx, i)]
    await ctx.broker.publish_many([(routing.inquiry_received(i.platform), i) for i in fresh])
    for i in fresh:
        ctx.metrics.inquiries.labels(i.platform, "received").inc()
    return len(fresh)


@dataclass
class AccountPoller:
    ctx: BridgeContext
    account: AccountConfig
    stop: asyncio.Event
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    # Inquiries this process published for the account (stream and REST read), newest last:
    # an item both bring is published once.
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    streaming: bool = field(default=False, init=False)
    stream_loop: StreamLoop | None = field(default=None, init=False)
    # with the account's call_budget: polls paced by activity (bridge/runtime/pacing.py)
    pacer: PollPacer | None = field(default=None, init=False)
    _pace_loaded: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        budget = self.account.call_budget
        if budget is None:
            return
        window = budget.period.total_seconds()
        reserve = 0.0
        quota = self.account.reply_limit or self._reply_rate_limit()
        if quota is not None:  # posting shares the budget: its quota is kept for it
            reserve = quota.max_calls * window / max(quota.period.total_seconds(), 1.0)
        self.pacer = PollPacer(
            budget=max(1, budget.max_calls - math.ceil(reserve)),
            window=window,
            base=self.account.poll.total_seconds(),
            fastest=min(self.account.poll_fastest, self.account.poll).total_seconds(),
            slowest=max(self.account.poll_slowest, self.account.poll).total_seconds(),
            clock=time.time,
        )

    def _reply_rate_limit(self) -> RateLimit | None:
        source = self.ctx.adapters.sources().get(self.key)
        return source.capabilities.reply_rate_limit if source is not None else None

    @property
    def key(self) -> str:
        return self.account.key

    @property
    def cursor_name(self) -> str:
        return f"source:{self.key}"

    @property
    def source(self) -> Source:
        return self.ctx.adapters.sources()[self.key]

    def loop(self) -> PollLoop:
        """The account's poll loop: one process at a time polls it (see
        ``bridge.runtime.polling``)."""
        return PollLoop(
            name=self.cursor_name,
            step=self.step,
            interval=self.account.poll.total_seconds(),
            stop=self.stop,
            leases=self.ctx.leases,
            on_auth_error=self._auth_failed,
            on_rate_limited=self._rate_limited,
            on_success=self._polled,
            next_wait=self._next_wait if self.pacer is not None else None,
        )

    def _next_wait(self, more: bool) -> float:
        assert self.pacer is not None
        return self.pacer.wait(more=more)

    @property
    def pace_name(self) -> str:
        return f"pace:{self.key}"

    def _polled(self) -> None:
        self.ctx.alerts.succeeded("account_auth", self.key, "poll")

    def streamer(self, source: StreamsItems) -> StreamLoop:
        """The account's stream loop (see ``bridge.runtime.streaming``)."""
        settings = source.stream_settings
        return StreamLoop(
            name=self.cursor_name,
            open=self._open_stream,
            read_step=self._read_step,
            on_items=self._streamed,
            stop=self.stop,
            leases=self.ctx.leases,
            heartbeat_timeout=settings.heartbeat_timeout.total_seconds(),
            # never slower than polling: what the stream does not carry (a stranger's private
            # mention the server's policy filtered) is read at least every `poll`
            catch_up_every=max(min(settings.catch_up, self.account.poll).total_seconds(), 0.1),
            max_backoff=max(settings.max_backoff.total_seconds(), 1.0),
            on_auth_error=self._auth_failed,
        )

    async def run(self) -> None:
        with structlog.contextvars.bound_contextvars(account=self.key):
            source = self.source
            if isinstance(source, StreamsItems) and source.streams:
                self.streaming = True
                self.stream_loop = self.streamer(source)
                outcome = await self.stream_loop.run()
                self.streaming = False
                if outcome == "stopped":
                    return
            await self.loop().run()

    def _open_stream(self) -> AsyncIterator[StreamEvent]:
        """A stream of the account's current source (a replaced token makes a new one)."""
        source = self.source
        if not isinstance(source, StreamsItems):
            raise StreamUnavailable("the account's source no longer streams")
        return source.stream()

    async def _read_step(self) -> tuple[bool, list[str]]:
        """One REST read while streaming: whether more remains, the inquiry ids read."""
        more, read = await self._step()
        self._polled()
        return more, read

    async def _streamed(self, events: list[StreamEvent]) -> None:
        """Publish what the stream brought (with confirms); the cursor stays the REST read's."""
        items = [i for e in events for i in e.items if i.inquiry_id not in self.seen]
        items, _ = rejected.encodable(items)  # an unencodable one: the REST read keeps it
        published = await publish_inquiries(self.ctx, items)
        self._remember(items)
        if items:
            log.info("inquiries streamed", fetched=len(items), published=published)

    def _remember(self, items: list[Inquiry]) -> None:
        for i in items:
            self.seen[i.inquiry_id] = None
            self.seen.move_to_end(i.inquiry_id)
        while len(self.seen) > 10_000:
            self.seen.popitem(last=False)

    def _rate_limited(self) -> None:
        self.ctx.metrics.inquiries.labels(self.account.adapter, "rate_limited").inc()

    async def _auth_failed(self, exc: AuthError) -> float:
        self.ctx.alerts.raise_(
            "account_auth", self.key, f"re-authorise the account: {exc.reason}", "poll"
        )
        await self._paused()
        return 0.0

    async def step(self) -> bool:
        """One fetch → publish → store cursor. True while a backlog is being drained."""
        more, _ = await self._step()
        return more

    async def _step(self) -> tuple[bool, list[str]]:
        """``step``: whether more remains, and the ids of the inquiries read."""
        pacer = self.pacer
        if pacer is not None and not self._pace_loaded:  # what this window has spent so far
            pacer.load(await self.ctx.store.get_cursor(self.pace_name))
            self._pace_loaded = True
        if pacer is not None and not pacer.can_spend():
            return False, []  # the window's budget is spent: the wait is until the next
        cursor = await self.ctx.store.get_cursor(self.cursor_name)
        try:
            result = await self.source.fetch(cursor)
        except AdapterError:
            if pacer is not None:  # a refused or failed call counts all the same
                pacer.record(1, 0)
                await self._keep_pace()
            raise
        if pacer is not None:
            pacer.record(result.calls, len(result.items))
            await self._keep_pace()
        # One bad item never blocks the stream: kept for the operator, then the cursor moves.
        items, unencodable = rejected.encodable(result.items)
        await rejected.keep(self.ctx, self.account, [*result.rejected, *unencodable])
        fresh = [i for i in items if i.inquiry_id not in self.seen]
        published = await publish_inquiries(self.ctx, fresh)
        self._remember(fresh)
        if not await self.ctx.store.set_cursor(self.cursor_name, result.cursor, expected=cursor):
            log.warning("cursor moved by another poller; this step's cursor not stored")
            return False, [i.inquiry_id for i in items]
        if result.items:
            log.info(
                "inquiries ingested",
                fetched=len(result.items),
                published=published,
                more=result.more,
            )
        return result.more, [i.inquiry_id for i in items]

    async def _keep_pace(self) -> None:
        assert self.pacer is not None
        with contextlib.suppress(StoreUnavailable):  # kept at the next step
            await self.ctx.store.set_cursor(self.pace_name, self.pacer.dump())

    async def _paused(self) -> None:
        """Wait until the token is replaced (or a recheck succeeds), keeping the cursor. The
        alert stays until the next poll succeeds."""
        self.resumed.clear()
        interval = max(self.account.poll.total_seconds(), 1.0)
        while not self.stop.is_set():
            waiter = asyncio.ensure_future(self.resumed.wait())
            stopper = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=interval * 5, return_when=asyncio.FIRST_COMPLETED
            )
            for f in (waiter, stopper):
                f.cancel()
            if self.stop.is_set():
                return
            try:
                await self.source.check()
            except AdapterError:
                continue
            log.info("account resumed")
            return


class IngestRole:
    name = "ingest"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.workers: list[Worker[Any]] = []
        self._stop = asyncio.Event()
        self.pollers: dict[str, AccountPoller] = {}
        self._tasks: list[asyncio.Task[None]] = []
        ctx.details["polling"] = self._polling
        ctx.app.router.add_post("/hooks/sources/{account}", self.hook)
        ctx.app.router.add_get("/hooks/sources/{account}", self.verify_url)
        ctx.credentials.on_change(self._credentials_changed)

    async def _polling(self) -> dict[str, Any]:
        """For ``/readyz``: each paced account polled here, its budget, spend and next poll."""
        return {
            key: poller.pacer.describe()
            for key, poller in self.pollers.items()
            if poller.pacer is not None and not poller.streaming
        }

    async def _credentials_changed(self, subject: str, actor: str) -> None:
        """A replaced token (here or in another process): the paused poller tries it now."""
        kind, _, key = subject.partition(":")
        poller = self.pollers.get(key) if kind == "account" else None
        if poller is not None:
            poller.resumed.set()

    async def start(self) -> None:
        # pushes kept but not published (their process stopped or died, the broker refused)
        self.ctx.push.start()
        for acc in self.ctx.cfg.accounts:
            src = self.ctx.adapters.sources()[acc.key]
            if src.capabilities.pushes:
                continue
            poller = AccountPoller(self.ctx, acc, self._stop)
            self.pollers[poller.key] = poller
            self._tasks.append(asyncio.create_task(poller.run(), name=f"poll:{poller.key}"))

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for t in self._tasks:
            t.cancel()  # the daemon closes the adapters

    def _push_account(self, handle: str) -> tuple[SecretStr, Callable[[bytes], Any]] | None:
        """The webhook secret and ``parse_push`` of a configured account that accepts pushes."""
        for acc in self.ctx.cfg.accounts:
            if acc.handle != handle:
                continue
            src = self.ctx.adapters.sources()[acc.key]
            if src.capabilities.pushes and isinstance(src, PushSource):
                return src.push_secret, src.parse_push
        return None

    def _query_signed(self, handle: str) -> QuerySignedPush | None:
        """The source of a configured account in a query-signed push mode (Weibo fan-service)."""
        for acc in self.ctx.cfg.accounts:
            if acc.handle == handle:
                src = self.ctx.adapters.sources()[acc.key]
                if isinstance(src, QuerySignedPush) and src.fan_service_push:
                    return src
        return None

    async def verify_url(self, request: web.Request) -> web.Response:
        """``GET /hooks/sources/{account}``: the platform's URL verification. ``echostr`` is
        answered as-is when the signature is right; anything else 403 (unknown accounts too)."""
        src = self._query_signed(request.match_info["account"])
        echostr = request.query.get("echostr", "")
        if src is None or not echostr or not src.push_signature_ok(request.query):
            return web.Response(status=403, text="signature does not match")
        return web.Response(text=echostr, content_type="text/plain")

    def _parser(self, parse_push: Callable[[bytes], list[Inquiry]]) -> Callable[[bytes], Parsed]:
        def parse(body: bytes) -> Parsed:
            try:
                items: list[Inquiry] = parse_push(body)
            except PermanentError as exc:
                bad_request = isinstance(exc, MalformedId) or not _is_json(body)
                raise PushRejected(400 if bad_request else 422, exc.reason) from None
            fresh = [i for i in items if not is_echo(self.ctx, i)]

            def count() -> None:
                for i in fresh:
                    self.ctx.metrics.inquiries.labels(i.platform, "received").inc()

            return Parsed(
                messages=[(routing.inquiry_received(i.platform), i) for i in fresh],
                answer={"accepted": len(fresh), "inquiry_ids": [i.inquiry_id for i in items]},
                on_published=count,
            )

        return parse

    async def hook(self, request: web.Request) -> web.Response:
        """``POST /hooks/sources/{account}``: a signed push from a platform.

        An account that is not configured, or does not accept pushes, is answered exactly like
        a bad signature (no enumeration of handles).
        """
        handle = request.match_info["account"]
        signed = self._query_signed(handle)
        if signed is not None:  # Weibo fan-service: signed in the query, answered 200 in time
            return await self.ctx.push.handle_query_signed(
                request,
                signed.push_signature_ok,
                self._parser(signed.parse_push),
                signed.push_answer_within,
                "fan-service push",
            )
        found = self._push_account(handle)
        secret = found[0] if found is not None else None
        parse = self._parser(found[1] if found is not None else lambda body: [])
        return await self.ctx.push.handle(request, secret, parse, "push")


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except (ValueError, RecursionError):
        return False


def create(ctx: BridgeContext) -> IngestRole:
    return IngestRole(ctx)
