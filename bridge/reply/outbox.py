"""The outbox: approved replies posted to the platforms exactly once, in the order that helps
citizens most when an account's posting quota is what limits.

The store is the outbox. A reply is posted only if the store holds it as approved (composed by
the bridge and passed its department's approval mode); the ``reply.requested.<platform>``
messages only wake the account's dispatcher. One dispatcher per account per process:

- it leases the next reply from the store (``SqlStore.claim_reply``) inside the account's
  quota, shared by every process through the store (a sliding window over recorded calls);
- a claim names its owner, and the owner holds a liveness lease (``owner:<owner>``,
  ``bridge.store.leases``: a PostgreSQL session advisory lock, or a flock beside a SQLite
  file) for as long as the process lives. A dispatcher that sees another owner's claim checks
  that lease (at most every second): free, the owner is gone (SIGKILLed, crashed), so the
  claim is taken over at once, as uncertain, not after ``lease``. ``lease`` remains the bound
  for a live owner that got no answer; and a process that finds its own liveness lease lost
  (its lease connection cut) makes no call on the claim in hand;
- when the quota binds, an inquiry's first answer goes before any second reply, final answers
  before intermediate statuses, and pending statuses of one inquiry become one reply;
- a post whose outcome is unknown (the call timed out and may yet succeed, or the process
  died and its lease ran out) is *uncertain*. Where the platform can be searched
  (``FindsOwnReplies``), the dispatcher does not post again at once: a slow server may commit
  the post tens of seconds after the client gave up, ignoring ``Idempotency-Key``. It looks
  for its own reply in the thread after each wait of ``settle`` (5, 15, 45, 135 s by default)
  and posts again only when none of those looks found it. After a later post succeeds it
  looks again on the same steps and deletes (``DeletesReplies``) any copy that an earlier
  call committed late, or records it where the platform cannot delete. Every post call is
  a row of ``reply_copies``, with the platform ids of the copy it made and that copy's fate
  (kept, deleted, extra, none, unknown), so the store accounts for every copy;
- platform rate limits and revoked tokens pause the account (nothing is dropped; what waits is
  counted in ``govbridge_replies_waiting`` and listed in ``/readyz``); a reply the platform
  refuses for good is kept as ``failed`` and dead-lettered as a copy, so ``govbridge dlq replay``
  puts it back in line.

Parameters (``[outbox]``): ``lease`` (how long a claimed reply is held; a platform call is cut
off at half of it), ``concurrency`` (posts in flight per account per process), ``scan_every``
(how often the store is looked at without a wake-up) and ``settle`` (the waits before each
look for an uncertain post; their sum bounds how late a copy is still looked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from adapters.base import (
    AdapterError,
    AuthError,
    DeletesReplies,
    DuplicateContent,
    FindsOwnReplies,
    FoundCopy,
    ListsOwnReplies,
    PermanentError,
    PostedReply,
    RateLimited,
    Source,
    TargetGone,
    TransientError,
)
from adapters.text import fit
from bridge.reply import public_text
from bridge.runtime.deadletters import dead_letter
from bridge.store import ReplyClaim, ReplyCopy, StoredReply, iso
from bridge.store.errors import StoreUnavailable
from bridge.telemetry import timing
from schemas import routing
from schemas.config import AccountConfig
from schemas.messages import ReplyPosted, ReplyRequest
from schemas.states import PostOutcome
from schemas.vocab import CopyFate, ReplyState

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.outbox")
T = TypeVar("T")

DEFAULT_RATE_LIMIT_PAUSE = timedelta(seconds=60)
# How often a dispatcher asks whether the owners of other processes' claims still live.
OWNER_CHECK_EVERY = 1.0
# Owners that hold a liveness lease (an older version's owners, ``outbox-<hex>``, held none:
# theirs are taken over only when their fixed lease runs out).
LIVE_OWNER_PREFIX = "outbox-live-"


def owner_lease_name(owner: str) -> str:
    """The liveness lease an outbox owner holds for its process's life."""
    return f"owner:{owner}"


@dataclass
class AccountLine:
    """One account's dispatcher state in this process."""

    account: AccountConfig
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    paused_until: float = 0.0  # monotonic
    paused_reason: str | None = None
    paused_source: Source | None = None  # an auth pause ends when the adapter is replaced
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    owners_checked: float = float("-inf")  # monotonic: when other owners' liveness was asked
    dead_owners: set[str] = field(default_factory=set)  # gone for good (owners are unique)

    @property
    def key(self) -> str:
        return self.account.key

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
        self.owner = f"{LIVE_OWNER_PREFIX}{uuid.uuid4().hex[:12]}"
        self.lines = {line.key: line for line in (AccountLine(a) for a in ctx.cfg.accounts)}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self._take_owner_lease()
        log.info("outbox started", owner=self.owner)  # the name its claims carry
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
        with contextlib.suppress(StoreUnavailable):
            await self.ctx.leases.release(owner_lease_name(self.owner))

    async def _take_owner_lease(self) -> bool:
        """Take this process's liveness lease (again, after its connection was lost)."""
        name = owner_lease_name(self.owner)
        try:
            if await self.ctx.leases.still_held(name):
                return True
            if await self.ctx.leases.try_acquire(name):
                return True
            log.error("outbox liveness lease held by another process", lease=name)
        except StoreUnavailable as exc:
            log.warning("outbox liveness lease not taken; will try again", error=str(exc))
        return False

    async def _owner_lease_held(self) -> bool:
        """Whether this process's claims are still known to be alive. When the lease was lost
        (its connection cut) another process may have taken them over: False, and the lease
        is taken again for the claims to come."""
        try:
            if await self.ctx.leases.still_held(owner_lease_name(self.owner)):
                return True
        except StoreUnavailable:
            pass
        await self._take_owner_lease()
        return False

    async def _dead_owners(self, line: AccountLine) -> list[str]:
        """Owners of the account's claims (other than this process) whose liveness lease is
        free: their process is gone, so their claims can be taken over now. Asked at most
        every ``OWNER_CHECK_EVERY`` seconds per account."""
        now = time.monotonic()
        if now - line.owners_checked < OWNER_CHECK_EVERY:
            return sorted(line.dead_owners)
        line.owners_checked = now
        owners = await self.ctx.store.live_claim_owners(
            line.platform, line.account.handle, self.clock()
        )
        line.dead_owners &= set(owners)  # the rest have no claim left
        found: list[str] = []
        for owner in owners:
            if (
                owner == self.owner
                or owner in line.dead_owners
                or not owner.startswith(LIVE_OWNER_PREFIX)
            ):
                continue
            name = owner_lease_name(owner)
            try:
                if await self.ctx.leases.try_acquire(name):
                    await self.ctx.leases.release(name)
                    found.append(owner)
            except StoreUnavailable:
                break  # cannot tell for the rest: their fixed lease decides
        if found:
            log.warning("claims of a process that is gone will be taken over", owners=found)
            line.dead_owners.update(found)
        return sorted(line.dead_owners)

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
        source = self.ctx.adapters.sources().get(line.key)
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
        dead = await self._dead_owners(line)
        claim = await self.ctx.store.claim_reply(
            line.platform,
            line.account.handle,
            owner=self.owner,
            lease=self.cfg.lease,
            quota=self._quota(line, source),
            now=self.clock(),
            dead_owners=dead,
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

    async def _again_while_store_down(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """A store step of a post written again while the store is unreachable, for up to half
        the claim's lease, instead of leaving the claim to run out (2 minutes) while the
        process that knows what happened is alive: the call's copy row before the call
        (nothing sent yet: waiting is safe), and the outcome after it (``finish_post`` is
        written so that doing it twice changes nothing: a second run finds the reply no longer
        posting and records nothing more). A copy row written whose answer was lost leaves a
        pending copy: a later claimant treats the reply as uncertain (the safe side)."""
        deadline = time.monotonic() + self.cfg.lease.total_seconds() / 2
        pause = 0.2
        while True:
            try:
                return await step()
            except StoreUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("store unreachable; again", step=what, error=str(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _outgoing(
        self, gated: public_text.Gated, request: ReplyRequest, source: Source
    ) -> ReplyRequest:
        """The request as it goes to the platform: the store's text through the last
        personal-data gate, fitted. The looks and the sweep find copies by this same text."""
        text = gated.text
        caps = source.capabilities
        if len(text) > caps.max_reply_chars and not caps.splits_long_replies:
            text = fit(text, caps.max_reply_chars)  # never cut mid-character
        return request.model_copy(update={"text": text})

    async def _post_claimed(
        self, line: AccountLine, source: Source, claim: ReplyClaim, request: ReplyRequest
    ) -> None:
        reply = claim.reply
        assert reply is not None
        store, metrics = self.ctx.store, self.ctx.metrics
        gated = public_text.last_gate(reply, request)
        await public_text.report_masked(self.ctx, reply, gated)
        outgoing = self._outgoing(gated, request, source)
        tiers = self.ctx.cfg.broker.retry_delays
        settle = self.cfg.settle
        backoff = self.clock() + tiers[min(reply.post_attempts - 1, len(tiers) - 1)]
        call_timeout = self.cfg.lease.total_seconds() / 2
        looks = isinstance(source, FindsOwnReplies)
        posted: PostedReply | None = None
        attempt: int | None = None  # this claim's post call, once it is made
        sweep = False  # an earlier call may still commit a copy: look again later
        try:
            if reply.uncertain and isinstance(source, FindsOwnReplies):
                with timing.timed("http"):
                    posted, sweep = await self._look(source, reply, outgoing)
                if posted is not None:
                    log.info("earlier reply found in the thread; not posting again")
                elif reply.looks + 1 < len(settle):
                    # Not there (yet): a slow server may still commit it. Wait, look again.
                    await store.release_post(
                        claim,
                        uncertain=True,
                        counts=False,
                        calls_used=0,
                        not_before=self.clock() + settle[reply.looks + 1],
                        looks=reply.looks + 1,
                        now=self.clock(),
                    )
                    return
                elif reply.post_attempts - 1 > len(tiers):
                    await self._fail(claim, request, "attempts exhausted: no answer, no copy seen")
                    return
                else:
                    log.warning("earlier reply not in the thread after every look; posting again")
            if posted is None:
                if not await self._owner_lease_held():
                    # Another process may have taken this claim over: make no call on it.
                    log.warning("liveness lease lost; the claim is given back, not posted")
                    await store.release_post(
                        claim, uncertain=False, counts=False, calls_used=0, now=self.clock()
                    )
                    return
                attempt = await self._again_while_store_down(
                    lambda: store.start_copy(reply.reply_id, self.clock()), "the call's copy row"
                )
                with timing.timed("http"):
                    posted = await asyncio.wait_for(source.post_reply(outgoing), call_timeout)
            self.ctx.alerts.succeeded("account_auth", line.key, "post")
        except DuplicateContent:
            posted = PostedReply(external_ids=[], outcome=PostOutcome.ALREADY_POSTED)
        except TargetGone as exc:
            posted = PostedReply(external_ids=[], outcome=PostOutcome.UNDELIVERABLE)
            log.warning("reply target gone", reason=exc.reason)
        except RateLimited as exc:
            await self._end_copy(reply, attempt, "refused", exc.reason)
            metrics.replies.labels(line.platform, "rate_limited").inc()
            pause = (exc.retry_after or DEFAULT_RATE_LIMIT_PAUSE).total_seconds()
            self._pause(line, pause, f"platform rate limit: {exc.reason}", None)
            await store.release_post(claim, uncertain=False, counts=False, now=self.clock())
            return
        except AuthError as exc:
            await self._end_copy(reply, attempt, "refused", exc.reason)
            self.ctx.alerts.raise_(
                "account_auth", line.key, f"re-authorise the account: {exc.reason}", "post"
            )
            longest = tiers[-1].total_seconds()
            self._pause(line, longest, f"account paused: {exc.reason}", source)
            await store.release_post(claim, uncertain=False, counts=False, now=self.clock())
            return
        except (TimeoutError, TransientError) as exc:
            reason, not_sent = f"no answer within {call_timeout:g} s", False
            if isinstance(exc, TransientError):
                reason, not_sent = exc.reason, exc.not_sent
                if exc.retry_after is not None:
                    backoff = max(backoff, self.clock() + exc.retry_after)
            if attempt is None:  # the look failed, not a post: look again at the same step
                wait = settle[min(reply.looks, len(settle) - 1)]
                log.warning("could not look into the thread; will look again", reason=reason)
                await store.release_post(
                    claim,
                    uncertain=True,
                    counts=False,
                    calls_used=0,
                    not_before=max(backoff, self.clock() + wait),
                    failure=reason[:500],
                    now=self.clock(),
                )
                return
            if not_sent:
                await self._end_copy(reply, attempt, "not_sent", reason)
                await self._retry_or_fail(claim, reason, False, backoff)
            else:
                await store.end_copy(
                    reply.reply_id,
                    attempt,
                    answer="timed_out",
                    fate=CopyFate.PENDING,
                    detail=reason[:500],
                )
                await self._uncertain(claim, reason, backoff, looks)
            return
        except PermanentError as exc:
            await self._end_copy(reply, attempt, "refused", exc.reason)
            await self._fail(claim, request, f"platform refused the reply: {exc.reason}")
            return
        # the common case (one call, one copy) is noted with the post, in one transaction
        kept = (
            attempt if attempt is not None and not reply.uncertain and posted.external_ids else None
        )
        if attempt is not None and kept is None:
            sweep = await self._after_call(source, reply, attempt, posted)
        state = (
            ReplyState.UNDELIVERABLE
            if posted.outcome == PostOutcome.UNDELIVERABLE
            else ReplyState.POSTED
        )
        done = posted  # as the closure sees it
        finished = await self._again_while_store_down(
            lambda: store.finish_post(
                claim,
                state=state,
                external_ids=done.external_ids,
                outcome=done.outcome,
                now=self.clock(),
                sweep_at=self.clock() + settle[0] if sweep else None,
                calls_used=None if attempt is not None else 0,
                kept_copy=kept,
            ),
            "the post's outcome",
        )
        if not finished:
            log.warning("lease lost during the call; the reply may be looked for again")
        metrics.replies.labels(line.platform, posted.outcome).inc()
        log.info("reply posted", outcome=posted.outcome, looks_again=sweep)
        # recorded just now as posted with these ids: announced without reading it back
        # (the lease lost: whatever the store holds now is announced)
        await self._announce(
            reply.reply_id,
            _posted_event(reply, posted.external_ids, posted.outcome) if finished else None,
        )

    async def _end_copy(
        self, reply: StoredReply, attempt: int | None, answer: str, detail: str
    ) -> None:
        """A post call that made no copy (refused, or certainly not sent)."""
        if attempt is not None:
            await self.ctx.store.end_copy(
                reply.reply_id, attempt, answer=answer, fate=CopyFate.NONE, detail=detail[:500]
            )

    async def _uncertain(
        self, claim: ReplyClaim, reason: str, backoff: datetime, looks: bool
    ) -> None:
        """A post whose outcome is unknown. Where the platform can be searched, wait the
        first settle step and look (the next claim is uncertain); otherwise retry in the
        delay tiers (the platform's idempotency key or duplicate check guards the repeat)."""
        if not looks:
            await self._retry_or_fail(claim, reason, True, backoff)
            return
        log.warning("reply post outcome unknown; will look for it", reason=reason)
        await self.ctx.store.release_post(
            claim,
            uncertain=True,
            not_before=self.clock() + self.cfg.settle[0],
            failure=reason[:500],
            looks=0,
            now=self.clock(),
        )

    async def _after_call(
        self, source: Source, reply: StoredReply, attempt: int, posted: PostedReply
    ) -> bool:
        """Record what the post call made; True when an earlier call may still commit a copy
        and the thread should be looked at again (``sweep``)."""
        store = self.ctx.store
        if not reply.uncertain and posted.external_ids:  # the common case: one call, one copy
            await store.end_copy(
                reply.reply_id,
                attempt,
                answer="posted",
                fate=CopyFate.KEPT,
                external_ids=posted.external_ids,
            )
            return False
        rows = await store.list_copies(reply.reply_id)
        earlier = [r for r in rows if r.attempt != attempt and r.fate == CopyFate.PENDING]
        changes: list[ReplyCopy] = []
        this = next(r for r in rows if r.attempt == attempt)
        ids = posted.external_ids
        if posted.outcome == PostOutcome.ALREADY_POSTED and ids and earlier:
            # the adapter found an earlier call's copy itself: that call made it
            changes += [
                replace(earlier[0], fate=CopyFate.KEPT, external_ids=ids),
                replace(this, answer="found", fate=CopyFate.NONE),
            ]
            earlier = earlier[1:]
        elif ids:
            changes.append(replace(this, answer="posted", fate=CopyFate.KEPT, external_ids=ids))
        elif posted.outcome == PostOutcome.ALREADY_POSTED:  # refused as a duplicate of a copy there
            changes.append(replace(this, answer="duplicate", fate=CopyFate.NONE))
            if earlier:  # made by the earlier call whose answer never came
                detail = "the platform refused a repeat as duplicate content: this copy stands"
                changes.append(replace(earlier[0], fate=CopyFate.KEPT, detail=detail))
                earlier = earlier[1:]
        else:  # the target is gone: no copy made
            changes.append(replace(this, answer="refused", fate=CopyFate.NONE))
        sweep = bool(earlier) and isinstance(source, ListsOwnReplies)
        if earlier and not sweep:
            detail = "this platform cannot be searched for copies; its idempotency guards a repeat"
            changes += [replace(r, fate=CopyFate.UNKNOWN, detail=detail) for r in earlier]
        await store.record_copies(reply, changes)
        return sweep

    # ------------------------------------------------------------------ copies
    async def _own_copies(
        self, source: ListsOwnReplies, reply: StoredReply, outgoing: ReplyRequest
    ) -> list[FoundCopy]:
        """The reply's copies in its thread, less any post the bridge recorded as another
        reply's (two replies of one text to one post are two replies, not copies)."""
        copies = await source.find_copies(outgoing)
        firsts = [c.external_ids[0] for c in copies if c.external_ids]
        owners = await self.ctx.store.replies_of_posts(reply.platform, reply.account, firsts)
        return [
            c
            for c in copies
            if c.external_ids and owners.get(c.external_ids[0], reply.reply_id) == reply.reply_id
        ]

    async def _look(
        self, source: FindsOwnReplies, reply: StoredReply, outgoing: ReplyRequest
    ) -> tuple[PostedReply | None, bool]:
        """Look for an uncertain post's copies in the thread: keep one, remove the others.
        Returns the kept copy (``None``: none there yet) and whether an earlier call may
        still commit another (look again later)."""
        if not isinstance(source, ListsOwnReplies):
            return await source.find_reply(outgoing), False
        copies = await self._own_copies(source, reply, outgoing)
        if not copies:
            return None, True
        kept = next((c for c in copies if c.complete), None)
        if kept is None:  # only the first parts of a long reply made it: finish the first
            finished = await source.find_reply(outgoing)
            if finished is None:
                return None, True
            kept = FoundCopy(external_ids=finished.external_ids)
        extras = [c for c in copies if c.external_ids[0] != kept.external_ids[0]]
        rows = await self._settle_copies(source, reply, kept, extras)
        pending = any(r.fate == CopyFate.PENDING for r in rows)
        return PostedReply(
            external_ids=kept.external_ids, outcome=PostOutcome.ALREADY_POSTED
        ), pending

    async def _settle_copies(
        self,
        source: object,
        reply: StoredReply,
        kept: FoundCopy | None,
        extras: list[FoundCopy],
    ) -> list[ReplyCopy]:
        """Delete the extra copies where the platform can (else record them as left), tie
        every copy seen to the call that made it, and record it all. Returns every row."""
        store = self.ctx.store
        rows = {r.attempt: r for r in await store.list_copies(reply.reply_id)}
        changed: dict[int, ReplyCopy] = {}

        def row_for(copy: FoundCopy) -> ReplyCopy:
            """The call that made this copy: the one that reported its ids, else the
            earliest call still unaccounted for, else a row of its own."""
            first = copy.external_ids[0]
            for row in rows.values():
                if first in row.external_ids:
                    return row
            for row in sorted(rows.values(), key=lambda r: r.attempt):
                if row.fate == CopyFate.PENDING and not row.external_ids:
                    return row
            stamp = iso(self.clock())
            new = ReplyCopy(
                reply.reply_id,
                max(rows, default=0) + 1,
                "unattributed",
                CopyFate.PENDING,
                [],
                None,
                stamp,
                stamp,
            )
            rows[new.attempt] = new
            return new

        def settle(row: ReplyCopy, copy: FoundCopy, fate: str, detail: str | None) -> None:
            if (row.fate, row.external_ids, row.detail) != (fate, copy.external_ids, detail):
                row = replace(row, fate=fate, external_ids=copy.external_ids, detail=detail)
                rows[row.attempt] = changed[row.attempt] = row

        if kept is not None:
            settle(row_for(kept), kept, CopyFate.KEPT, None)
        for extra in extras:
            row = row_for(extra)
            fate: str = CopyFate.EXTRA
            detail: str | None = "the platform cannot delete it"
            if isinstance(source, DeletesReplies):
                try:
                    await source.delete_copy(extra.external_ids)
                    fate, detail = CopyFate.DELETED, None
                    self.ctx.metrics.replies.labels(reply.platform, "copy_deleted").inc()
                    log.warning("extra copy of a reply deleted", posts=len(extra.external_ids))
                except (TransientError, PermanentError) as exc:
                    detail = f"deleting it failed: {exc.reason}"[:500]
            if fate == CopyFate.EXTRA:
                self.ctx.metrics.replies.labels(reply.platform, "copy_left").inc()
                log.error("extra copy of a reply left on the platform", reason=detail)
            settle(row, extra, fate, detail)
        await store.record_copies(reply, list(changed.values()))
        return list(rows.values())

    async def _sweep(self, reply: StoredReply) -> None:
        """One more look for late copies of a posted reply whose earlier call timed out:
        remove any, and go on along the settle steps while a call is unaccounted for."""
        store, settle = self.ctx.store, self.cfg.settle
        line = next(
            (
                x
                for x in self.lines.values()
                if x.platform == reply.platform and x.account.handle == reply.account
            ),
            None,
        )
        source = self.ctx.adapters.sources().get(line.key) if line is not None else None
        if reply.sweep_at is None or source is None or not isinstance(source, ListsOwnReplies):
            return
        if not await store.claim_sweep(
            reply.reply_id, reply.sweep_at, self.clock() + self.cfg.lease
        ):
            return  # another process is looking
        request = ReplyRequest.model_validate_json(reply.request_json)
        outgoing = self._outgoing(public_text.last_gate(reply, request), request, source)
        try:
            copies = await self._own_copies(source, reply, outgoing)
            extras = [c for c in copies if c.external_ids[0] not in reply.external_ids]
            kept = FoundCopy(external_ids=reply.external_ids) if reply.external_ids else None
            rows = await self._settle_copies(source, reply, kept, extras)
        except AdapterError as exc:  # look again at the same step
            log.warning("could not look for late copies; will look again", reason=exc.reason)
            wait = settle[min(reply.looks, len(settle) - 1)]
            await store.set_sweep(reply.reply_id, self.clock() + wait, reply.looks)
            return
        unsettled = [
            r
            for r in rows
            if r.fate == CopyFate.PENDING
            or (r.fate == CopyFate.EXTRA and isinstance(source, DeletesReplies))
        ]
        step = reply.looks + 1
        if unsettled and step < len(settle):
            await store.set_sweep(reply.reply_id, self.clock() + settle[step], step)
            return
        window = sum(settle, timedelta()).total_seconds()
        detail = f"no copy seen within the settle steps ({window:g} s)"
        await store.record_copies(
            reply,
            [
                replace(r, fate=CopyFate.NONE, detail=detail)
                for r in rows
                if r.fate == CopyFate.PENDING
            ],
        )
        await store.set_sweep(reply.reply_id, None, step)

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
        key = routing.reply_requested(request.platform)
        with contextlib.suppress(Exception):  # the store keeps it either way
            await dead_letter(
                self.ctx.broker,
                "outbox",
                request.model_dump_json().encode(),
                reason=reason,
                routing_key=key,
                type_="ReplyRequest",
                sign_as=key,  # the bridge's own copy: a replay must find it genuine
                failed_at=self.clock(),
            )

    async def _announce(self, reply_id: str, event: ReplyPosted | None = None) -> None:
        """``reply.posted.<platform>`` for a posted reply, once it is confirmed (retried by
        housekeeping until then). ``event``: what was just recorded (else read from the
        store)."""
        if event is None:
            reply = await self.ctx.store.get_reply(reply_id)
            if reply is None:
                return
            event = _posted_event(reply, reply.external_ids, reply.outcome)
        try:
            await self.ctx.broker.publish(routing.reply_posted(event.platform), event)
        except Exception as exc:
            log.warning("reply.posted not confirmed; will announce again", error=repr(exc))
            return
        await self.ctx.store.mark_announced(reply_id)

    # ------------------------------------------------------------------ housekeeping
    async def _housekeeping(self) -> None:
        """Announce what was posted but not announced, look once more for late copies of
        replies whose earlier call timed out, prune old quota records, and publish how many
        replies wait per account."""
        interval = max(1.0, self.cfg.scan_every.total_seconds())
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                return
            try:
                for reply in await self.ctx.store.unannounced_posts():
                    event = _posted_event(reply, reply.external_ids, reply.outcome)
                    await self._announce(reply.reply_id, event)
                accounts = [(x.platform, x.account.handle) for x in self.lines.values()]
                for reply in await self.ctx.store.due_sweeps(self.clock(), accounts):
                    await self._sweep(reply)
                await self.ctx.store.prune_post_calls(self.clock() - timedelta(days=1))
                await self.backlog()
            except Exception as exc:
                log.warning("outbox housekeeping failed", error=repr(exc))

    async def backlog(self) -> dict[str, Any]:
        """What waits, per account (also the ``/readyz`` detail and the metrics)."""
        now = self.clock()
        out: dict[str, Any] = {}
        rows = {(r.platform, r.account): r for r in await self.ctx.store.outbox_backlog()}
        for line in self.lines.values():
            row = rows.get((line.platform, line.account.handle))
            waiting = row.waiting if row is not None else 0
            oldest = row.oldest if row is not None else None
            age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
            self.ctx.metrics.replies_waiting.labels(line.key).set(waiting)
            self.ctx.metrics.replies_oldest_waiting.labels(line.key).set(age)
            out[line.key] = {
                "waiting": waiting,
                "oldest_waiting_s": round(age, 1),
                "failed": row.failed if row is not None else 0,
                "paused": line.paused_reason,
            }
        return out


def _outcome(stored: str | None) -> PostOutcome:
    """A stored outcome as the message says it (a row without one was posted)."""
    known = {o.value for o in PostOutcome}
    return PostOutcome(stored) if stored in known else PostOutcome.POSTED


def _posted_event(reply: StoredReply, external_ids: list[str], outcome: str | None) -> ReplyPosted:
    """``reply.posted``'s message for ``reply``, posted as ``external_ids`` with ``outcome``."""
    return ReplyPosted(
        reply_id=reply.reply_id,
        inquiry_id=reply.inquiry_id,
        platform=reply.platform,
        account=reply.account,
        external_ids=external_ids,
        outcome=_outcome(outcome),
    )
