"""The outbox: approved replies posted to the platforms exactly once, in the order that helps
citizens most when an account's posting quota is what limits.

The store is the outbox. A reply is posted only if the store holds it as approved (composed by
the bridge and passed its department's approval mode); the ``reply.requested.<platform>``
messages only wake the account's dispatcher. One dispatcher per account per process:

- it leases the next reply from the store (``SqlStore.claim_reply``) inside the account's
  quota, shared by every process through the store (a sliding window over recorded calls);
- when the quota binds, an inquiry's first answer goes before any second reply, final answers
  before intermediate statuses, and pending statuses of one inquiry become one reply;
- a lease that ran out (the process died, or a call timed out and may have succeeded) is taken
  again as *uncertain*: the dispatcher first looks for its own earlier reply in the thread
  (``FindsOwnReplies``) before posting, for platforms that ignore ``Idempotency-Key``;
- platform rate limits and revoked tokens pause the account (nothing is dropped; what waits is
  counted in ``govbridge_replies_waiting`` and listed in ``/readyz``); a reply the platform
  refuses for good is kept as ``failed`` and dead-lettered as a copy, so ``govbridge dlq replay``
  puts it back in line.

Parameters (``[outbox]``): ``lease`` (how long a claimed reply is held; a platform call is cut
off at half of it), ``concurrency`` (posts in flight per account per process) and ``scan_every``
(how often the store is looked at without a wake-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from adapters.base import (
    AuthError,
    DuplicateContent,
    FindsOwnReplies,
    PermanentError,
    PostedReply,
    RateLimited,
    Source,
    TargetGone,
    TransientError,
)
from bridge import pii, timing
from bridge.runtime import FAILED_AT_HEADER, REASON_HEADER, ROUTING_HEADER, STAGE_HEADER
from bridge.stages.common import account_key, sources
from bridge.store import ReplyClaim
from bridge.templates import fit
from schemas import routing
from schemas.config import AccountConfig
from schemas.messages import ReplyPosted, ReplyRequest
from schemas.vocab import ReplyState, Visibility

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.outbox")

DEFAULT_RATE_LIMIT_PAUSE = timedelta(seconds=60)


@dataclass
class AccountLine:
    """One account's dispatcher state in this process."""

    account: AccountConfig
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    paused_until: float = 0.0  # monotonic
    paused_reason: str | None = None
    paused_source: Source | None = None  # an auth pause ends when the adapter is replaced
    inflight: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def key(self) -> str:
        return account_key(self.account.adapter, self.account.handle)

    @property
    def platform(self) -> str:
        return self.account.platform_name


class Outbox:
    """Every configured account's dispatcher, in this process."""

    def __init__(self, ctx: BridgeContext, clock: Callable[[], datetime] | None = None) -> None:
        self.ctx = ctx
        # The posting quota, leases and back-offs are measured on this clock (tests move it).
        self.clock = clock or (lambda: datetime.now(UTC))
        self.cfg = ctx.cfg.outbox
        self.owner = f"outbox-{uuid.uuid4().hex[:12]}"
        self.lines = {line.key: line for line in (AccountLine(a) for a in ctx.cfg.accounts)}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        for line in self.lines.values():
            self._tasks.append(asyncio.create_task(self._run(line), name=f"outbox:{line.key}"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="outbox:housekeeping"))

    async def stop(self) -> None:
        """Stop claiming; let posts in flight finish (bounded by the drain timeout)."""
        self._stop.set()
        for line in self.lines.values():
            line.wake.set()
        if self._tasks:
            await asyncio.wait(
                self._tasks, timeout=self.ctx.cfg.broker.drain_timeout.total_seconds()
            )
        for task in self._tasks:
            task.cancel()

    def wake(self, platform: str, account: str) -> bool:
        """A reply for this account may be ready. False if no such account is configured."""
        for line in self.lines.values():
            if line.account.handle == account and platform in (line.platform, line.account.adapter):
                line.wake.set()
                return True
        return False

    # ------------------------------------------------------------------ dispatch
    def _quota(self, line: AccountLine, source: Source) -> tuple[int, timedelta] | None:
        if line.account.reply_limit is not None:
            return line.account.reply_limit.max_calls, line.account.reply_limit.period
        limit = source.capabilities.reply_rate_limit
        return (limit.max_calls, limit.period) if limit is not None else None

    async def _run(self, line: AccountLine) -> None:
        with timing.stage("outbox"), structlog.contextvars.bound_contextvars(account=line.key):
            failures = 0
            while not self._stop.is_set():
                try:
                    timeout = await self._step(line)
                    failures = 0
                except Exception as exc:  # the store or the adapter misbehaved: back off
                    failures += 1
                    timeout = min(30.0, 0.5 * 2**failures)
                    log.error("outbox step failed; retrying", error=repr(exc), in_s=timeout)
                if timeout is None:
                    continue
                line.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(line.wake.wait(), max(0.0, timeout))
            if line.inflight:
                await asyncio.wait(line.inflight)

    async def _step(self, line: AccountLine) -> float | None:
        """Claim and start at most one post. Returns how long to wait before the next step
        (``None``: go on at once)."""
        source = sources(self.ctx).get(line.key)
        if source is None:
            return self.cfg.scan_every.total_seconds()
        now = time.monotonic()
        if line.paused_until > now:
            if line.paused_source is not None and line.paused_source is not source:
                self._resume(line, "account adapter replaced")
            else:
                return min(line.paused_until - now, self.cfg.scan_every.total_seconds())
        elif line.paused_reason is not None:
            self._resume(line, "pause over")
        if len(line.inflight) >= self.cfg.concurrency:
            await asyncio.wait(line.inflight, return_when=asyncio.FIRST_COMPLETED)
            return None
        claim = await self.ctx.store.claim_reply(
            line.platform,
            line.account.handle,
            owner=self.owner,
            lease=self.cfg.lease,
            quota=self._quota(line, source),
            now=self.clock(),
        )
        for reply_id in claim.superseded:
            log.info("reply overtaken by a later status; not posted", reply_id=reply_id)
            self.ctx.metrics.replies.labels(line.platform, "superseded").inc()
        if claim.reply is not None:
            task = asyncio.create_task(self._post(line, source, claim))
            line.inflight.add(task)
            task.add_done_callback(line.inflight.discard)
            task.add_done_callback(lambda _: line.wake.set())
            return None
        if claim.superseded:
            return None
        if claim.wait_until is not None:  # the quota binds: wait for the next free slot
            wait = (claim.wait_until - self.clock()).total_seconds()
            return max(0.01, min(wait, self.cfg.scan_every.total_seconds()))
        return self.cfg.scan_every.total_seconds()

    def _pause(self, line: AccountLine, seconds: float, reason: str, source: Source | None) -> None:
        line.paused_until = time.monotonic() + seconds
        line.paused_reason = reason
        line.paused_source = source
        log.warning("account posting paused", reason=reason, for_s=round(seconds, 1))

    def _resume(self, line: AccountLine, why: str) -> None:
        line.paused_until, line.paused_reason, line.paused_source = 0.0, None, None
        log.info("account posting resumed", why=why)

    # ------------------------------------------------------------------ posting
    async def _post(self, line: AccountLine, source: Source, claim: ReplyClaim) -> None:
        reply = claim.reply
        assert reply is not None
        request = ReplyRequest.model_validate_json(reply.request_json)
        with (
            timing.stage("outbox"),
            structlog.contextvars.bound_contextvars(
                reply_id=reply.reply_id, inquiry_id=reply.inquiry_id
            ),
        ):
            try:
                await self._post_claimed(line, source, claim, request)
            except Exception as exc:  # never lose the lease silently: let it run out, retry
                log.exception("posting crashed; the reply waits for its lease", error=repr(exc))

    async def _post_claimed(
        self, line: AccountLine, source: Source, claim: ReplyClaim, request: ReplyRequest
    ) -> None:
        reply = claim.reply
        assert reply is not None
        store, metrics = self.ctx.store, self.ctx.metrics
        text = reply.final_text or request.text
        if request.visibility == Visibility.PUBLIC:
            text = pii.redact_text(text, keep=[request.ticket_id])
        caps = source.capabilities
        if len(text) > caps.max_reply_chars and not caps.splits_long_replies:
            text = fit(text, caps.max_reply_chars)  # never cut mid-character
        outgoing = request.model_copy(update={"text": text})
        tiers = self.ctx.cfg.broker.retry_delays
        backoff = self.clock() + tiers[min(reply.post_attempts - 1, len(tiers) - 1)]
        call_timeout = self.cfg.lease.total_seconds() / 2
        posted: PostedReply | None = None
        try:
            if reply.uncertain and isinstance(source, FindsOwnReplies):
                with timing.timed("http"):
                    posted = await asyncio.wait_for(source.find_reply(outgoing), call_timeout)
                if posted is not None:
                    log.info("earlier reply found in the thread; not posting again")
            if posted is None:
                with timing.timed("http"):
                    posted = await asyncio.wait_for(source.post_reply(outgoing), call_timeout)
            self.ctx.alerts.clear("account_auth", line.key)
        except DuplicateContent:
            posted = PostedReply(external_ids=[], outcome="already_posted")
        except TargetGone as exc:
            posted = PostedReply(external_ids=[], outcome="undeliverable")
            log.warning("reply target gone", reason=exc.reason)
        except RateLimited as exc:
            metrics.replies.labels(line.platform, "rate_limited").inc()
            pause = (exc.retry_after or DEFAULT_RATE_LIMIT_PAUSE).total_seconds()
            self._pause(line, pause, f"platform rate limit: {exc.reason}", None)
            await store.release_post(claim, uncertain=False, counts=False, now=self.clock())
            return
        except AuthError as exc:
            self.ctx.alerts.raise_(
                "account_auth", line.key, f"re-authorise the account: {exc.reason}"
            )
            longest = tiers[-1].total_seconds()
            self._pause(line, longest, f"account paused: {exc.reason}", source)
            await store.release_post(claim, uncertain=False, counts=False, now=self.clock())
            return
        except TimeoutError:
            await self._retry_or_fail(claim, f"no answer within {call_timeout:g} s", True, backoff)
            return
        except TransientError as exc:
            if exc.retry_after is not None:
                backoff = max(backoff, self.clock() + exc.retry_after)
            await self._retry_or_fail(claim, exc.reason, not exc.not_sent, backoff)
            return
        except PermanentError as exc:
            await self._fail(claim, request, f"platform refused the reply: {exc.reason}")
            return
        state = ReplyState.UNDELIVERABLE if posted.outcome == "undeliverable" else ReplyState.POSTED
        if not await store.finish_post(
            claim,
            state=state,
            external_ids=posted.external_ids,
            outcome=posted.outcome,
            now=self.clock(),
        ):
            log.warning("lease lost during the call; the reply may be looked for again")
        metrics.replies.labels(line.platform, posted.outcome).inc()
        log.info("reply posted", outcome=posted.outcome)
        await self._announce(reply.reply_id)

    async def _retry_or_fail(
        self, claim: ReplyClaim, reason: str, uncertain: bool, not_before: datetime
    ) -> None:
        reply = claim.reply
        assert reply is not None
        if reply.post_attempts > len(self.ctx.cfg.broker.retry_delays):
            request = ReplyRequest.model_validate_json(reply.request_json)
            await self._fail(claim, request, f"attempts exhausted: {reason}", uncertain=uncertain)
            return
        log.warning("reply not posted; will retry", reason=reason, uncertain=uncertain)
        await self.ctx.store.release_post(
            claim,
            uncertain=uncertain,
            not_before=not_before,
            failure=reason[:500],
            now=self.clock(),
        )

    async def _fail(
        self, claim: ReplyClaim, request: ReplyRequest, reason: str, uncertain: bool = False
    ) -> None:
        """Kept as failed (visible, counted) and dead-lettered as a copy for replay."""
        reply = claim.reply
        assert reply is not None
        await self.ctx.store.fail_post(claim, reason, now=self.clock())
        self.ctx.metrics.replies.labels(request.platform, "failed").inc()
        log.error("reply failed; kept for an operator", reason=reason, uncertain=uncertain)
        broker = self.ctx.broker
        with contextlib.suppress(Exception):  # the store keeps it either way
            await broker.publish_raw(
                broker.topology.dead_letter_exchange,
                "outbox",
                request.model_dump_json().encode(),
                type_="ReplyRequest",
                headers={
                    REASON_HEADER: reason[:1000],
                    STAGE_HEADER: "outbox",
                    ROUTING_HEADER: routing.reply_requested(request.platform),
                    FAILED_AT_HEADER: self.clock().isoformat(),
                },
            )

    async def _announce(self, reply_id: str) -> None:
        """``reply.posted.<platform>`` for a posted reply, once it is confirmed (retried by
        housekeeping until then)."""
        reply = await self.ctx.store.get_reply(reply_id)
        if reply is None:
            return
        try:
            await self.ctx.broker.publish(
                routing.reply_posted(reply.platform),
                ReplyPosted(
                    reply_id=reply.reply_id,
                    inquiry_id=reply.inquiry_id,
                    platform=reply.platform,
                    account=reply.account,
                    external_ids=reply.external_ids,
                    outcome=_outcome(reply.outcome),
                ),
            )
        except Exception as exc:
            log.warning("reply.posted not confirmed; will announce again", error=repr(exc))
            return
        await self.ctx.store.mark_announced(reply_id)

    # ------------------------------------------------------------------ housekeeping
    async def _housekeeping(self) -> None:
        """Announce what was posted but not announced, prune old quota records, and publish
        how many replies wait per account."""
        interval = max(1.0, self.cfg.scan_every.total_seconds())
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                return
            try:
                for reply in await self.ctx.store.unannounced_posts():
                    await self._announce(reply.reply_id)
                await self.ctx.store.prune_post_calls(self.clock() - timedelta(days=1))
                await self.backlog()
            except Exception as exc:
                log.warning("outbox housekeeping failed", error=repr(exc))

    async def backlog(self) -> dict[str, Any]:
        """What waits, per account (also the ``/readyz`` detail and the metrics)."""
        now = self.clock()
        out: dict[str, Any] = {}
        rows = {(r["platform"], r["account"]): r for r in await self.ctx.store.outbox_backlog()}
        for line in self.lines.values():
            row = rows.get((line.platform, line.account.handle), {})
            waiting = int(row.get("waiting") or 0)
            oldest = row.get("oldest")
            age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
            self.ctx.metrics.replies_waiting.labels(line.key).set(waiting)
            self.ctx.metrics.replies_oldest_waiting.labels(line.key).set(age)
            out[line.key] = {
                "waiting": waiting,
                "oldest_waiting_s": round(age, 1),
                "failed": int(row.get("failed") or 0),
                "paused": line.paused_reason,
            }
        return out


def _outcome(stored: str | None) -> Any:
    known = ("posted", "already_posted", "fallback_root", "undeliverable")
    return stored if stored in known else "posted"
