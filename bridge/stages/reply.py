"""reply: tell the citizen about every status change, approved, in order, once, within limits.

Two workers: ``reply`` turns ticket events into reply requests (applying the event to the
ticket first: an event that is replayed, late or older than the last applied one changes
nothing and says nothing), passing them through the department's approval mode; ``outbox``
posts approved replies through the account's source adapter under the account's rate limit.

Approval modes: ``none`` (everything goes out), ``templated-auto`` (templated status replies go
out, officials' free-text notes wait), ``all-manual`` (everything waits). The queue is served at
``/api/approvals`` (bearer admin token); each decision is recorded with actor and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from adapters.base import (
    AuthError,
    DuplicateContent,
    PermanentError,
    PostedReply,
    RateLimited,
    TargetGone,
    TransientError,
)
from bridge import pii
from bridge.http import json_error, read_json, require_admin
from bridge.runtime import DeadLetter, Retry, Stage, Worker
from bridge.stages.common import account_key, longest_delay, source_for, sources
from bridge.templates import deadline_for, fit, format_deadline, render
from schemas.messages import ReplyPosted, ReplyRequest, ThreadRef, TicketEvent, stable_id
from schemas.vocab import Category, TicketStatus, Visibility, rank_in_cycle

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.reply")

FINISHED = ("posted", "rejected", "superseded", "undeliverable")


class WindowLimiter:
    """At most ``max_calls`` posts in any window of ``period`` seconds (a sliding window).

    A slot is taken before the call and counts until ``period`` after the call returned, so
    however long calls take, no window of that length sees more than ``max_calls`` of them
    reach the platform. (A leaky bucket such as ``aiolimiter`` lets a full burst through and
    then refills during the same window: up to twice the limit in one window.)
    """

    def __init__(self, max_calls: int, period: float) -> None:
        self.max_calls = max_calls
        self.period = period
        self._in_flight = 0
        self._done: deque[float] = deque()  # when recent calls returned, oldest first
        self._turn = asyncio.Lock()  # waiters take slots one at a time, first come first served
        self._released = asyncio.Event()

    def _used(self, now: float) -> int:
        while self._done and self._done[0] <= now - self.period:
            self._done.popleft()
        return self._in_flight + len(self._done)

    async def acquire(self) -> None:
        async with self._turn:
            while True:
                now = time.monotonic()
                if self._used(now) < self.max_calls:
                    self._in_flight += 1
                    return
                if self._done:  # a slot frees when the oldest finished call leaves the window
                    await asyncio.sleep(self._done[0] + self.period - now)
                else:  # every slot is in flight: wait for one to return
                    self._released.clear()
                    await self._released.wait()

    def release(self) -> None:
        self._in_flight -= 1
        self._done.append(time.monotonic())
        self._released.set()


class ReplyRole:
    name = "reply"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.composer: Worker[TicketEvent] = Worker(
            ctx.broker, Stage("reply", TicketEvent, self.compose)
        )
        self.outbox: Worker[ReplyRequest] = Worker(
            ctx.broker, Stage("outbox", ReplyRequest, self.post)
        )
        self.workers: list[Worker[Any]] = [self.composer, self.outbox]
        self.limiters: dict[str, WindowLimiter] = {}
        # per-inquiry locks, dropped when no post holds them
        self._inquiry_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        r = ctx.app.router
        r.add_get("/api/approvals", self.list_approvals)
        r.add_post("/api/approvals/{reply_id}", self.decide)
        r.add_get("/api/inquiries/{inquiry_id}", self.trace)

    async def start(self) -> None:
        await self.composer.start()
        await self.outbox.start()

    async def stop(self) -> None:
        await self.composer.stop()
        await self.outbox.stop()
        if "ingest" not in self.ctx.roles:  # otherwise ingest closes the shared adapters
            for src in sources(self.ctx).values():
                with contextlib.suppress(Exception):
                    await src.close()

    # ------------------------------------------------------------------ compose
    async def compose(self, event: TicketEvent, _: AbstractIncomingMessage) -> None:
        store = self.ctx.store
        ticket = await store.get_ticket(event.department, event.ticket_id)
        if ticket is None:
            log.info("event for a ticket the bridge did not create; ignored")
            return
        occurred = event.occurred_at.astimezone(UTC).isoformat()
        new, applied, cycle = await store.apply_status(
            department=event.department,
            ticket_id=event.ticket_id,
            event_id=event.event_id,
            status=event.status.value,
            status_rank=event.status.rank,
            native_status=event.native_status,
            occurred_at=occurred,
        )
        if event.source == "create":
            applied = True  # the ticket row was written with "received" when it was created
        if not applied and not event.note:
            log.info("event does not move the ticket; no reply", status=event.status.value, new=new)
            return
        # From here on everything is idempotent (reply ids are stable), so a redelivered event
        # that was applied before a crash completes the replies instead of losing them.
        inquiry = await store.get_inquiry(ticket["inquiry_id"])
        if inquiry is None:
            raise DeadLetter(f"ticket {event.ticket_id} has no recorded inquiry")
        dept = self.ctx.cfg.department(event.department)
        category = Category(inquiry["category"] or "other")
        created = datetime.fromisoformat(ticket["created_at"])
        deadline = format_deadline(deadline_for(dept, category, created))
        requests: list[ReplyRequest] = []
        base: dict[str, Any] = {
            "inquiry_id": inquiry["inquiry_id"],
            "platform": inquiry["platform"],
            "account": inquiry["account"],
            "department": dept.id,
            "thread": ThreadRef.model_validate_json(inquiry["thread_json"]),
            "citizen_handle": inquiry["citizen_handle"],
            "visibility": Visibility(inquiry["visibility"]),
            "ticket_id": event.ticket_id,
            "cycle": cycle,
        }
        if applied:
            text = render(
                dept,
                event.status.value,
                ticket_id=event.ticket_id,
                status=event.status,
                deadline=deadline,
                category=category,
            )
            requests.append(
                ReplyRequest(
                    reply_id=status_reply_id(inquiry["inquiry_id"], event.status, cycle),
                    text=pii.redact_text(text),
                    status=event.status,
                    templated=True,
                    **base,
                )
            )
        if event.note:
            text = render(
                dept,
                "note",
                ticket_id=event.ticket_id,
                note=event.note,
                status=event.status,
                deadline=deadline,
                category=category,
            )
            # An official's note carries case details: answered privately where the
            # platform can (Weibo's ordinary API cannot: there it stays in the thread, redacted).
            source = source_for(self.ctx, inquiry["platform"], inquiry["account"])
            private = source is not None and source.capabilities.supports_direct_messages
            requests.append(
                ReplyRequest(
                    reply_id=stable_id("rep", inquiry["inquiry_id"], "note", event.event_id),
                    text=pii.redact_text(text),
                    status=None,
                    templated=False,
                    **{**base, "visibility": Visibility.PRIVATE if private else base["visibility"]},
                )
            )
        for request in requests:
            await queue_reply(self.ctx, request, dept.approval)

    # ------------------------------------------------------------------ post
    def _limiter(self, key: str) -> WindowLimiter | None:
        if key not in self.limiters:
            acc = next(
                (a for a in self.ctx.cfg.accounts if account_key(a.adapter, a.handle) == key), None
            )
            limit = None
            if acc is not None and acc.reply_limit is not None:
                limit = (acc.reply_limit.max_calls, acc.reply_limit.period.total_seconds())
            else:
                src = sources(self.ctx).get(key)
                rl = src.capabilities.reply_rate_limit if src else None
                if rl is not None:
                    limit = (rl.max_calls, rl.period.total_seconds())
            if limit is None:
                return None
            self.limiters[key] = WindowLimiter(limit[0], limit[1])
        return self.limiters[key]

    async def post(self, request: ReplyRequest, _: AbstractIncomingMessage) -> None:
        """One inquiry's replies are posted one at a time (in this process), so a status
        check against what is already posted cannot race with a concurrent post."""
        lock = self._inquiry_locks.get(request.inquiry_id)
        if lock is None:
            lock = self._inquiry_locks[request.inquiry_id] = asyncio.Lock()
        async with lock:
            await self._post(request)

    async def _post(self, request: ReplyRequest) -> None:
        store = self.ctx.store
        stored = await store.get_reply(request.reply_id)
        if stored is None:  # requested by another system on the public routing key
            await store.add_reply(
                reply_id=request.reply_id,
                inquiry_id=request.inquiry_id,
                platform=request.platform,
                account=request.account,
                department=request.department,
                status=request.status.value if request.status else None,
                templated=request.templated,
                state="approved",
                request_json=request.model_dump_json(),
                cycle=request.cycle,
            )
            stored = await store.get_reply(request.reply_id)
            assert stored is not None
        if stored.state in FINISHED or stored.state == "awaiting_approval":
            log.info("reply not postable in its state", state=stored.state)
            return
        if request.status is not None and await self._superseded(request):
            await store.mark_reply(request.reply_id, "superseded", only_from=("approved",))
            log.info("a later status was already posted; skipping", status=request.status.value)
            return
        source = source_for(self.ctx, request.platform, request.account)
        if source is None:
            raise DeadLetter(f"account {request.platform}:{request.account} is not configured")
        key = next(k for k, v in sources(self.ctx).items() if v is source)
        text = stored.final_text or request.text
        if request.visibility == Visibility.PUBLIC:
            text = pii.redact_text(text)
        caps = source.capabilities
        if len(text) > caps.max_reply_chars and not caps.splits_long_replies:
            text = fit(text, caps.max_reply_chars)  # never cut mid-character
        limiter = self._limiter(key)
        if limiter is not None:
            period = limiter.period / limiter.max_calls
            try:
                await asyncio.wait_for(limiter.acquire(), timeout=max(30.0, period * 2))
            except TimeoutError:
                raise Retry(
                    "account reply rate limit", counts=False, delay=timedelta(seconds=period)
                ) from None
        try:
            posted = await source.post_reply(request.model_copy(update={"text": text}))
            self.ctx.alerts.clear("account_auth", key)
        except DuplicateContent:
            posted = PostedReply(external_ids=[], outcome="already_posted")
        except TargetGone as exc:
            posted = PostedReply(external_ids=[], outcome="undeliverable")
            log.warning("reply target gone", reason=exc.reason)
        except RateLimited as exc:
            self.ctx.metrics.replies.labels(request.platform, "rate_limited").inc()
            raise Retry(
                f"platform rate limit: {exc.reason}", exc.retry_after, counts=False
            ) from exc
        except AuthError as exc:
            self.ctx.alerts.raise_("account_auth", key, f"re-authorise the account: {exc.reason}")
            raise Retry(
                f"account paused: {exc.reason}", longest_delay(self.ctx), counts=False
            ) from exc
        except TransientError as exc:
            raise Retry(exc.reason, exc.retry_after) from exc
        except PermanentError as exc:
            raise DeadLetter(f"platform refused the reply: {exc.reason}") from exc
        finally:
            if limiter is not None:
                limiter.release()
        state = "undeliverable" if posted.outcome == "undeliverable" else "posted"
        await store.mark_reply(
            request.reply_id, state, external_ids=posted.external_ids, outcome=posted.outcome
        )
        self.ctx.metrics.replies.labels(request.platform, posted.outcome).inc()
        await self.ctx.broker.publish(
            f"reply.posted.{request.platform}",
            ReplyPosted(
                reply_id=request.reply_id,
                inquiry_id=request.inquiry_id,
                platform=request.platform,
                account=request.account,
                external_ids=posted.external_ids,
                outcome=posted.outcome,
            ),
        )
        log.info("reply posted", reply_id=request.reply_id, outcome=posted.outcome)

    async def _superseded(self, request: ReplyRequest) -> bool:
        """A reply for a status is stale once a later status (or a later handling cycle) has
        already been posted in the thread."""
        assert request.status is not None
        mine = (request.cycle, rank_in_cycle(request.status))
        for other in await self.ctx.store.list_replies(inquiry_id=request.inquiry_id):
            if (
                other.state == "posted"
                and other.status
                and other.reply_id != request.reply_id
                and (other.cycle, rank_in_cycle(TicketStatus(other.status))) > mine
            ):
                return True
        return False

    # ------------------------------------------------------------------ approvals API
    async def list_approvals(self, request: web.Request) -> web.Response:
        require_admin(request)
        items = []
        for r in await self.ctx.store.list_replies(state="awaiting_approval"):
            req = ReplyRequest.model_validate_json(r.request_json)
            items.append(
                {
                    "reply_id": r.reply_id,
                    "department": r.department,
                    "platform": r.platform,
                    "account": r.account,
                    "status": r.status,
                    "templated": r.templated,
                    "text": req.text,
                    "created_at": r.created_at,
                }
            )
        return web.json_response({"approvals": items})

    async def decide(self, request: web.Request) -> web.Response:
        """Body: ``{"decision": "approve"|"edit"|"reject", "actor": "...", "text": "..."}``."""
        require_admin(request)
        reply_id = request.match_info["reply_id"]
        body = await read_json(request)
        if not isinstance(body, dict) or "decision" not in body or "actor" not in body:
            return json_error(400, 'body must be {"decision": ..., "actor": ..., "text"?: ...}')
        decision, actor = body["decision"], body["actor"]
        if decision not in ("approve", "edit", "reject") or not isinstance(actor, str) or not actor:
            return json_error(400, "decision must be approve|edit|reject and actor non-empty")
        text = body.get("text")
        if decision == "edit" and (not isinstance(text, str) or not text.strip()):
            return json_error(400, "edit needs the new text")
        stored = await self.ctx.store.get_reply(reply_id)
        if stored is None:
            return json_error(404, f"no reply {reply_id}")
        original = ReplyRequest.model_validate_json(stored.request_json)
        final = None
        if decision == "edit" and isinstance(text, str):
            final = text if original.visibility == Visibility.PRIVATE else pii.redact_text(text)
        if not await self.ctx.store.decide_reply(
            reply_id, decision=decision, actor=actor, text=final
        ):
            return json_error(409, f"reply {reply_id} is not awaiting approval ({stored.state})")
        log.info("reply decision", reply_id=reply_id, decision=decision, actor=actor)
        if decision != "reject":
            req = original.model_copy(update={"text": final or original.text})
            await self.ctx.broker.publish(f"reply.requested.{req.platform}", req)
        decided = await self.ctx.store.get_reply(reply_id)
        assert decided is not None
        return web.json_response(
            {
                "reply_id": reply_id,
                "state": decided.state,
                "decided_by": decided.decided_by,
                "decided_at": decided.decided_at,
            }
        )

    async def trace(self, request: web.Request) -> web.Response:
        require_admin(request)
        inquiry_id = request.match_info["inquiry_id"]
        row = await self.ctx.store.get_inquiry(inquiry_id)
        if row is None:
            return json_error(404, f"no inquiry {inquiry_id}")
        replies = await self.ctx.store.list_replies(inquiry_id=inquiry_id)
        inquiry = {k: v for k, v in row.items() if k != "thread_json"}
        if inquiry.get("explanation"):  # why triage chose the category (bridge/classify.py)
            inquiry["explanation"] = json.loads(inquiry["explanation"])
        return web.json_response(
            {
                "inquiry": inquiry,
                "replies": [json.loads(json.dumps(r.__dict__)) for r in replies],
            }
        )


def status_reply_id(inquiry_id: str, status: TicketStatus, cycle: int) -> str:
    """One reply per status per handling cycle: a replay posts nothing new."""
    if cycle == 0:
        return stable_id("rep", inquiry_id, status.value)
    return stable_id("rep", inquiry_id, status.value, f"cycle-{cycle}")


async def queue_reply(ctx: BridgeContext, request: ReplyRequest, approval: str) -> None:
    """Record a reply and, when the department's approval mode lets it go out unseen,
    request its posting; otherwise it waits in ``/api/approvals``."""
    auto = approval == "none" or (approval == "templated-auto" and request.templated)
    state = "approved" if auto else "awaiting_approval"
    added = await ctx.store.add_reply(
        reply_id=request.reply_id,
        inquiry_id=request.inquiry_id,
        platform=request.platform,
        account=request.account,
        department=request.department,
        status=request.status.value if request.status else None,
        templated=request.templated,
        state=state,
        request_json=request.model_dump_json(),
        cycle=request.cycle,
    )
    stored = await ctx.store.get_reply(request.reply_id)
    if stored is None or stored.state != "approved":
        if added:
            log.info("reply awaits approval", reply_id=request.reply_id)
        return
    await ctx.broker.publish(f"reply.requested.{request.platform}", request)


def create(ctx: BridgeContext) -> ReplyRole:
    return ReplyRole(ctx)
