"""ingest: bring citizens' inquiries onto the bus.

Polled accounts: one loop per account reads ``fetch(cursor)`` pages, publishes every item with
confirms, and only then stores the cursor, so a crash between fetch and confirm re-reads (and
triage dedupes by the deterministic inquiry id) instead of losing. Pushing platforms:
``POST /hooks/sources/{account}`` verifies the HMAC signature, the replay window and the size,
validates, publishes, and answers 202 only after the broker confirmed.

Rate limits wait for the window; an auth failure pauses only that account with a visible alert
(log, metric, ``/readyz``) until the operator replaces the token
(``PUT /api/accounts/{adapter}/{handle}/token``); the cursor is kept throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from adapters.base import AdapterError, AuthError, PermanentError, PushSource, Source
from bridge import rejected
from bridge.http import json_error, operator_name, read_json, require_admin
from bridge.polling import PollLoop
from bridge.push import Parsed, PushRejected, push_pipeline
from bridge.runtime import Worker
from bridge.stages.common import account_key, replace_source, sources
from schemas import routing
from schemas.config import AccountConfig
from schemas.messages import Inquiry

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

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

    @property
    def key(self) -> str:
        return account_key(self.account.adapter, self.account.handle)

    @property
    def cursor_name(self) -> str:
        return f"source:{self.key}"

    @property
    def source(self) -> Source:
        return sources(self.ctx)[self.key]

    def loop(self) -> PollLoop:
        """The account's poll loop: one process at a time polls it (see ``bridge.polling``)."""
        return PollLoop(
            name=self.cursor_name,
            step=self.step,
            interval=self.account.poll.total_seconds(),
            stop=self.stop,
            leases=self.ctx.leases,
            on_auth_error=self._auth_failed,
            on_rate_limited=self._rate_limited,
        )

    async def run(self) -> None:
        with structlog.contextvars.bound_contextvars(account=self.key):
            await self.loop().run()

    def _rate_limited(self) -> None:
        self.ctx.metrics.inquiries.labels(self.account.adapter, "rate_limited").inc()

    async def _auth_failed(self, exc: AuthError) -> float:
        self.ctx.alerts.raise_("account_auth", self.key, f"re-authorise the account: {exc.reason}")
        await self._paused()
        return 0.0

    async def step(self) -> bool:
        """One fetch → publish → store cursor. True while a backlog is being drained."""
        cursor = await self.ctx.store.get_cursor(self.cursor_name)
        result = await self.source.fetch(cursor)
        # One bad item never blocks the stream: kept for the operator, then the cursor moves.
        items, unencodable = rejected.encodable(result.items)
        await rejected.keep(self.ctx, self.account, [*result.rejected, *unencodable])
        published = await publish_inquiries(self.ctx, items)
        if not await self.ctx.store.set_cursor(self.cursor_name, result.cursor, expected=cursor):
            log.warning("cursor moved by another poller; this step's cursor not stored")
            return False
        if result.items:
            log.info(
                "inquiries ingested",
                fetched=len(result.items),
                published=published,
                more=result.more,
            )
        return result.more

    async def _paused(self) -> None:
        """Wait until the token is replaced (or a recheck succeeds), keeping the cursor."""
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
            self.ctx.alerts.clear("account_auth", self.key)
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
        ctx.app.router.add_post("/hooks/sources/{account}", self.hook)
        ctx.app.router.add_put("/api/accounts/{adapter}/{handle}/token", self.replace_token)

    async def start(self) -> None:
        for acc in self.ctx.cfg.accounts:
            src = sources(self.ctx)[account_key(acc.adapter, acc.handle)]
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
            src = sources(self.ctx)[account_key(acc.adapter, acc.handle)]
            if src.capabilities.pushes and isinstance(src, PushSource):
                return src.push_secret, src.parse_push
        return None

    async def hook(self, request: web.Request) -> web.Response:
        """``POST /hooks/sources/{account}``: a signed push from a platform.

        An account that is not configured, or does not accept pushes, is answered exactly like
        a bad signature (no enumeration of handles).
        """
        found = self._push_account(request.match_info["account"])

        def parse(body: bytes) -> Parsed:
            assert found is not None
            try:
                items: list[Inquiry] = found[1](body)
            except PermanentError as exc:
                raise PushRejected(422 if _is_json(body) else 400, exc.reason) from None
            fresh = [i for i in items if not is_echo(self.ctx, i)]

            def count() -> None:
                for i in fresh:
                    self.ctx.metrics.inquiries.labels(i.platform, "received").inc()

            return Parsed(
                messages=[(routing.inquiry_received(i.platform), i) for i in fresh],
                answer={"accepted": len(fresh), "inquiry_ids": [i.inquiry_id for i in items]},
                on_published=count,
            )

        secret = found[0] if found is not None else None
        return await push_pipeline(self.ctx).handle(request, secret, parse, "push")

    async def replace_token(self, request: web.Request) -> web.Response:
        """Operator replaces an expired token; the account's poller resumes from its cursor."""
        require_admin(request)
        adapter, handle = request.match_info["adapter"], request.match_info["handle"]
        try:
            account = self.ctx.cfg.account(handle, adapter)
        except KeyError:
            return json_error(404, f"no account {adapter}:{handle}")
        doc = await read_json(request)
        token = doc.get("token") if isinstance(doc, dict) else None
        # Tokens travel in HTTP headers and query strings: printable ASCII, nothing else.
        if not (isinstance(token, str) and token and token.isascii() and token.isprintable()):
            return json_error(400, 'body must be {"token": "<new token>"} (printable ASCII)')
        updated = account.model_copy(update={"token": SecretStr(token)})
        idx = self.ctx.cfg.accounts.index(account)
        self.ctx.cfg.accounts[idx] = updated
        key = account_key(adapter, handle)
        _, old = replace_source(self.ctx, updated)
        if old is not None:
            # Its token is dead, so nothing it still does can succeed; free its HTTP session.
            with contextlib.suppress(Exception):
                await old.close()
        poller = self.pollers.get(key)
        if poller is not None:
            poller.resumed.set()
        self.ctx.alerts.clear("account_auth", key)
        await self.ctx.store.record_audit(
            "account.token_replaced", actor=operator_name(request), subject=key
        )
        log.info("account token replaced", account=key)
        return web.json_response({"account": key, "status": "token replaced"})


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except (ValueError, RecursionError):
        return False


def create(ctx: BridgeContext) -> IngestRole:
    return IngestRole(ctx)
