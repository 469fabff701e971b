"""Mastodon source adapter: mentions and direct messages in, threaded replies out.

Reads ``GET /api/v1/notifications?types[]=mention`` forward with ``min_id`` (one page per
``fetch``), normalises each mention to an ``Inquiry`` and answers with ``POST /api/v1/statuses``
carrying an ``Idempotency-Key``. Ids are opaque strings throughout: they are only ever
passed back to the server, never compared or converted here.

Platform facts it honours (Mastodon client API): ids are opaque strings; notification pages
follow ``Link`` headers; ``Idempotency-Key`` is kept by Mastodon for an hour, but other servers
may ignore it and commit a status after the client timed out, so an uncertain post is looked
for in the thread (``find_reply``, ``find_copies``) and an extra copy deleted (``delete_copy``);
``X-RateLimit-Reset`` is an ISO 8601 time; a reply starts with the citizen's ``@acct``; servers
that implement the API partly may answer a bad token with a plain-text 400 and lack the
notification-policy endpoint.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

import aiohttp
import structlog
from pydantic import ConfigDict, Field, SecretStr

from adapters import text as textutil
from adapters.base import (
    AdapterError,
    AuthError,
    FetchResult,
    FoundCopy,
    PermanentError,
    PostedReply,
    RateLimit,
    RejectedItem,
    SourceCapabilities,
    StreamEvent,
    StreamSettings,
    StreamUnavailable,
    TargetGone,
    TransientError,
)
from adapters.http import HttpClient, Params, Response
from adapters.wire import Malformed, parse_json
from schemas.config import AccountConfig, Duration
from schemas.messages import Author, Inquiry, PostRef, ReplyRequest, ThreadRef
from schemas.states import PostOutcome
from schemas.vocab import InquiryKind, Platform, Visibility

log = structlog.get_logger(__name__)

DEFAULT_MAX_CHARS = 500
# Documented defaults (reference): 300 requests / 5 min per account, 300 statuses / 3 h.
READ_LIMIT = RateLimit(max_calls=300, period=timedelta(minutes=5))
REPLY_LIMIT = RateLimit(max_calls=300, period=timedelta(hours=3))
# Mastodon counts every URL as 23 characters; counting max(len, 23) can only over-estimate.
URL_WEIGHT = 23
_URL_RE = re.compile(r"https?://\S+")
_LINK_RE = re.compile(r"<([^>]*)>\s*;\s*rel=\"?([^\";,]+)\"?")
_PRIVATE_VISIBILITIES = frozenset({"private", "direct"})


class MastodonConfig(AccountConfig):
    """One ``[[accounts]]`` block with ``adapter = "mastodon"``."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://[^/\s]+", description="e.g. https://mastodon.social")
    token: SecretStr = Field(description="Access token with read:notifications, write:statuses.")
    page_limit: int = Field(
        default=40, ge=1, le=80, description="Notifications per request (server max 80)."
    )
    include_filtered: bool = Field(
        default=True,
        description="Also read notifications filtered by the 4.3+ notification policy "
        "(e.g. private mentions from strangers), so no citizen's DM is missed.",
    )
    accept_private_mentions: bool = Field(
        default=False,
        description="On first use set the account's policy for_private_mentions=accept "
        "(PATCH /api/v2/notifications/policy). Changes the account's settings.",
    )
    backfill: bool = Field(
        default=True,
        description="Without a cursor, read from the oldest notification; if false, "
        "start after the newest one (ignore history).",
    )
    resolve_thread_root: bool = Field(
        default=True,
        description="For replies, look up the top of the reply chain (one extra request).",
    )
    timeout: Duration = timedelta(seconds=15)
    streaming: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: also listen on the server's streaming API "
        "(GET /api/v1/streaming/user/notification, server-sent events) so a mention is "
        "published within moments instead of at the next poll; the REST read stays the "
        "cursor's source of truth (after every (re)connect and every stream_catch_up). A "
        "server without streaming (404, 501) is polled every `poll`. off: poll only.",
    )
    stream_heartbeat_timeout: Duration = Field(
        default=timedelta(seconds=60),
        description="A stream silent this long (not even a heartbeat; Mastodon sends one "
        "every 15 s or so) is taken as dead and reconnected.",
    )
    stream_catch_up: Duration = Field(
        default=timedelta(seconds=60),
        description="While streaming, read the REST notifications this often anyway (or every "
        "`poll` if that is sooner: streaming is never slower than polling): what a stream "
        "never carries (notifications filtered by the 4.3 policy, e.g. a stranger's private "
        "mention, are not streamed) and what a half-dead connection lost are found within "
        "this time.",
    )
    stream_max_backoff: Duration = Field(
        default=timedelta(seconds=60),
        description="Reconnects back off from 1 s, doubling, up to this.",
    )


def _notification_id(notification: Any) -> str | None:
    """A notification's id as a string (ids are opaque; small integers on some servers)."""
    if not isinstance(notification, dict):
        return None
    raw = notification.get("id")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw)
    return text if text and len(text) <= 64 and text.isprintable() else None


def _same_text(rendered: str, sent: str) -> bool:
    """A status as the server renders it is the text we sent: mentions lose their domain
    (``@user@host`` shows as ``@user``), whitespace may change."""

    def norm(text: str) -> str:
        text = re.sub(r"^(?:[@＠][^\s]+\s*)+", "", text.strip())
        return re.sub(r"\s+", " ", text).strip()

    return norm(rendered) == norm(sent)


# --------------------------------------------------------------------------- HTML → text


class _TextExtractor(HTMLParser):
    """Plain text from Mastodon status HTML: paragraphs, line breaks, readable links.

    Mentions and hashtags keep their visible text (``@user``, ``#tag``); other links are
    written as their full ``href`` because Mastodon hides part of a long URL in
    ``<span class="invisible">``.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._link: dict[str, str] | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._emit("\n")
        elif tag == "p" and self.parts:
            self._emit("\n\n")
        elif tag == "a" and self._link is None:
            self._link = {k: v or "" for k, v in attrs}
            self._link_text = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            link, text = self._link, "".join(self._link_text).strip()
            self._link = None
            classes = link.get("class", "").split()
            href = link.get("href", "")
            if "mention" in classes or "hashtag" in classes or not href:
                self.parts.append(text)
            elif not text or _same_url(text, href):
                self.parts.append(href)
            else:
                self.parts.append(f"{text} ({href})")

    def handle_data(self, data: str) -> None:
        self._emit(data)

    def _emit(self, text: str) -> None:
        if self._link is not None:
            self._link_text.append(text)
        else:
            self.parts.append(text)


def _same_url(text: str, href: str) -> bool:
    def bare(u: str) -> str:
        return re.sub(r"^https?://", "", u).rstrip("/").removesuffix("…")

    return bare(href).startswith(bare(text))


def html_to_text(html: str) -> str:
    """Convert status ``content`` HTML to plain text (stdlib parser, no markup survives)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.replace("\r", "").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --------------------------------------------------------------------------- replies


def status_length(text: str) -> int:
    """Characters as Mastodon counts them, rounded up (URLs weigh at least 23)."""
    total = len(text)
    for url in _URL_RE.findall(text):
        total += max(0, URL_WEIGHT - len(url))
    return total


def split_reply(prefix: str, body: str, limit: int) -> list[str]:
    """``prefix + body`` cut into statuses of at most ``limit`` characters.

    Every part starts with ``prefix`` (the citizen's ``@acct``, so each part notifies them)
    and, when there are several, ends with `` (i/n)``. Cuts fall between graphemes, preferring
    punctuation or spaces.
    """
    body = body.strip()
    if status_length(prefix + body) <= limit:
        return [prefix + body]
    room = limit - status_length(prefix)
    if room - len(" (99/99)") < 20:
        raise PermanentError(f"max reply length {limit} leaves no room after {prefix!r}")
    parts = textutil.numbered(body, room, lambda i, n: f" ({i}/{n})", measure=status_length)
    return [prefix + p for p in parts]


# --------------------------------------------------------------------------- headers


def parse_link_header(value: str | None) -> dict[str, str]:
    """``Link`` header → {rel: url}."""
    links: dict[str, str] = {}
    for url, rel in _LINK_RE.findall(value or ""):
        for r in rel.split():
            links[r] = url
    return links


# --------------------------------------------------------------------------- adapter


class MastodonSource:
    """A Mastodon account the bridge reads mentions/DMs of and answers from."""

    name: ClassVar[str] = "mastodon"
    Config: ClassVar[type[AccountConfig]] = MastodonConfig

    def __init__(self, cfg: MastodonConfig) -> None:
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.capabilities = SourceCapabilities(
            max_reply_chars=DEFAULT_MAX_CHARS,
            supports_direct_messages=True,
            supports_idempotency_key=True,
            splits_long_replies=True,
            reply_rate_limit=REPLY_LIMIT,
        )
        # Remaining 0 in X-RateLimit-* pauses every call until the reset (pace_rate_limit).
        self.http = HttpClient(
            f"mastodon {cfg.handle}",
            timeout=cfg.timeout,
            pace_rate_limit=True,
            default_rate_limit_wait=READ_LIMIT.period,
            follow_redirects=cfg.follow_redirects,
        )
        self._unsure: set[str] = set()  # replies whose post may have committed unseen
        self._posted: OrderedDict[str, PostedReply] = OrderedDict()  # posted by this process
        self._me: dict[str, Any] | None = None
        self._max_chars: int | None = None
        self._policy_done = False
        self._chains: OrderedDict[str, list[PostRef]] = OrderedDict()

    # ------------------------------------------------------------------ protocol

    async def check(self) -> None:
        """Token valid, belongs to the configured handle, instance reachable."""
        self._me = None
        await self._account()
        await self._max_reply_chars(refresh=True)

    async def fetch(self, cursor: str | None) -> FetchResult:
        """One page of mention notifications after ``cursor`` (a notification id)."""
        me = await self._account()
        await self._apply_policy()
        if cursor is None and not self.cfg.backfill:
            newest, _ = await self._notifications({"limit": "1"})
            if not newest:
                return FetchResult(items=[], cursor=None, more=False)
            newest_id = _notification_id(newest[0])
            return FetchResult(items=[], cursor=newest_id, more=newest_id is not None)
        # "0" sorts below every snowflake: from the oldest notification, without a gap.
        params = {"min_id": cursor if cursor is not None else "0"}
        params["limit"] = str(self.cfg.page_limit)
        page, headers = await self._notifications(params)
        return await self.read_page(page, headers.get("Link"), cursor, me)

    async def read_page(
        self, page: Any, link: str | None, cursor: str | None, me: dict[str, Any]
    ) -> FetchResult:
        """One page of notifications (newest first) → its inquiries (oldest first), the items
        that cannot be read, and where the next page starts. Raises only adapter errors."""
        if not isinstance(page, list):
            raise TransientError("mastodon notifications: expected a JSON list")
        if not page:
            return FetchResult(items=[], cursor=cursor, more=False)
        returned = [_notification_id(n) for n in page]
        ids = [i for i in returned if i is not None]
        if not ids:  # nothing on this page can be read, nor can the cursor move past it
            raise TransientError("mastodon notifications: a page without one readable id")
        # The server answers newest first; its rel="prev" link carries min_id = the newest
        # id of this page, which is where the next page starts. Trust it only if it names
        # an id we actually got.
        prev = parse_link_header(link).get("prev")
        new_cursor = ids[0]
        if prev:
            min_ids = parse_qs(urlsplit(prev).query).get("min_id", [])
            if min_ids and min_ids[0] in ids:
                new_cursor = min_ids[0]
        items: list[Inquiry] = []
        rejected: list[RejectedItem] = []
        for notification, nid in reversed(list(zip(page, returned, strict=True))):  # oldest first
            try:
                inquiry = await self._normalise(notification, me)
            except AdapterError:
                raise  # the platform (not the item) failed: try the page again later
            except Exception as e:  # one bad item must never block the stream
                log.warning("mastodon.unparseable_item", error=type(e).__name__)
                raw = json.dumps(notification, default=str).encode()
                reason = f"mastodon notification: {type(e).__name__}: {e}"[:300]
                rejected.append(RejectedItem(reason=reason, raw=raw, external_id=nid))
                continue
            if inquiry is not None:
                items.append(inquiry)
        return FetchResult(items=items, cursor=new_cursor, more=True, rejected=rejected)

    async def parse_item(self, raw: bytes) -> Inquiry | None:
        """A rejected notification read again (operator replay)."""
        try:
            notification = parse_json(raw)
        except Malformed as e:
            raise PermanentError(f"mastodon: not a rejected item ({e})") from None
        try:
            return await self._normalise(notification, await self._account())
        except AdapterError:
            raise
        except Exception as e:
            raise PermanentError(f"mastodon: item still unreadable: {type(e).__name__}") from None

    def _reply_plan(self, reply: ReplyRequest, max_chars: int) -> tuple[str | None, str, list[str]]:
        """Where a reply goes (the status answered), with which visibility, in which parts."""
        reply_to = reply.thread.reply_to
        target = reply_to.get("status_id") or reply.thread.parent_id
        acct = (reply_to.get("acct") or reply.citizen_handle).lstrip("@")
        if not acct:
            raise PermanentError("reply has no citizen handle to address")
        private = reply.visibility == Visibility.PRIVATE
        original = reply_to.get("visibility", "public")
        visibility = "direct" if private else (original if original == "unlisted" else "public")
        prefix = f"@{acct} "
        body = reply.text.strip()
        body = re.sub(rf"^@{re.escape(acct)}(?=\s|$)", "", body).lstrip()
        if visibility == "direct":
            # Every @handle in a direct status is a recipient: only the citizen may be one.
            body = body.replace("@", "＠")
        return target, visibility, split_reply(prefix, body, max_chars)

    async def post_reply(self, reply: ReplyRequest) -> PostedReply:
        """Answer in the inquiry's thread; same ``reply_id`` → the same statuses.

        ``Idempotency-Key`` makes a repeat safe where the server honours it. Where it does not,
        a post whose outcome is unknown (timed out; a slow server may commit it later) is
        looked for in the thread before posting again."""
        await self._account()
        if reply.reply_id in self._posted:  # this process posted it: never again
            return self._posted[reply.reply_id]
        if reply.reply_id in self._unsure:
            found = await self.find_reply(reply)
            if found is not None:
                self._unsure.discard(reply.reply_id)
                return self._remember(reply.reply_id, found)
        target, visibility, parts = self._reply_plan(reply, await self._max_reply_chars())
        try:
            result = await self._post_parts(reply.reply_id, target, visibility, parts, [])
        except TransientError as exc:
            if not exc.not_sent:
                self._unsure.add(reply.reply_id)
            raise
        self._unsure.discard(reply.reply_id)
        return self._remember(reply.reply_id, result)

    def _remember(self, reply_id: str, result: PostedReply) -> PostedReply:
        self._posted[reply_id] = result
        while len(self._posted) > 10_000:
            self._posted.popitem(last=False)
        return result

    async def _post_parts(
        self,
        reply_id: str,
        target: str | None,
        visibility: str,
        parts: list[str],
        done: list[str],
    ) -> PostedReply:
        """Post ``parts`` as a chain under ``target``, skipping the ``done`` ones (already on
        the server, ids given)."""
        ids = list(done)
        outcome = PostOutcome.POSTED if not done else PostOutcome.ALREADY_POSTED
        parent = ids[-1] if ids else target
        for i, text in enumerate(parts):
            if i < len(done):
                continue
            key = reply_id if i == 0 else f"{reply_id}#{i + 1}"
            try:
                status = await self._post_status(text, parent, visibility, key)
            except TargetGone:
                if parent is None or i > 0:
                    raise PermanentError("status endpoint not found") from None
                # The citizen's post is gone: reach them privately, outside any thread.
                outcome, visibility = PostOutcome.FALLBACK_ROOT, "direct"
                status = await self._post_status(text, None, visibility, key)
            ids.append(str(status["id"]))
            parent = str(status["id"])
        return PostedReply(external_ids=ids, outcome=outcome)

    async def last_own_post(self) -> datetime | None:
        """When the account last published (``accounts/:id/statuses`` without its replies,
        newest first); ``None`` when it has published nothing."""
        me = await self._account()
        page, _ = await self._request(
            "GET",
            f"/api/v1/accounts/{me['id']}/statuses",
            params={"limit": "5", "exclude_replies": "true"},
        )
        if not isinstance(page, list):
            raise TransientError("accounts/:id/statuses: unexpected body")
        newest: datetime | None = None
        for status in page:
            try:
                when = datetime.fromisoformat(str(status["created_at"]).replace("Z", "+00:00"))
            except (TypeError, KeyError, ValueError):
                continue
            if when.tzinfo is not None:
                newest = when if newest is None else max(newest, when)
        return newest.astimezone(UTC) if newest is not None else None

    async def find_reply(self, reply: ReplyRequest) -> PostedReply | None:
        """Our own earlier reply in the thread, for when an earlier post's outcome is unknown
        (servers that ignore ``Idempotency-Key``, or commit after the client timed out).

        The first copy ``find_copies`` sees; if only its first parts made it (a long reply),
        the rest is posted now.
        """
        copies = await self.find_copies(reply)
        if not copies:
            return None
        complete = next((c for c in copies if c.complete), None)
        if complete is not None:
            return PostedReply(
                external_ids=complete.external_ids, outcome=PostOutcome.ALREADY_POSTED
            )
        target, visibility, parts = self._reply_plan(reply, await self._max_reply_chars())
        done = copies[0].external_ids
        return await self._post_parts(reply.reply_id, target, visibility, parts, done)

    async def find_copies(self, reply: ReplyRequest) -> list[FoundCopy]:
        """Every copy of our reply in the thread, in the server's order: each of our statuses
        answering the status answered with the reply's (first part's) text, followed down
        its chain through the later parts. Reads ``/context`` of the answered status."""
        me = await self._account()
        target, _, parts = self._reply_plan(reply, await self._max_reply_chars())
        if target is None:
            return []
        try:
            ctx, _ = await self._request("GET", f"/api/v1/statuses/{target}/context")
        except TargetGone:
            return []
        descendants = ctx.get("descendants") if isinstance(ctx, dict) else None
        ours = [
            d
            for d in (descendants if isinstance(descendants, list) else [])
            if isinstance(d, dict)
            and d.get("id") is not None
            and str((d.get("account") or {}).get("id")) == str(me["id"])
        ]

        def answering(parent: str, text: str) -> list[dict[str, Any]]:
            return [
                d
                for d in ours
                if str(d.get("in_reply_to_id")) == parent
                and _same_text(html_to_text(str(d.get("content") or "")), text)
            ]

        copies: list[FoundCopy] = []
        for first in answering(target, parts[0]):
            chain = [str(first["id"])]
            for text in parts[1:]:
                following = answering(chain[-1], text)
                if not following:
                    break
                chain.append(str(following[0]["id"]))
            copies.append(FoundCopy(external_ids=chain, complete=len(chain) == len(parts)))
        return copies

    async def delete_copy(self, external_ids: list[str]) -> None:
        """``DELETE /api/v1/statuses/{id}`` for every part, the last first (a status already
        gone counts as deleted)."""
        await self._account()
        for status_id in reversed(external_ids):
            try:
                await self._request("DELETE", f"/api/v1/statuses/{status_id}", not_found=TargetGone)
            except TargetGone:
                continue

    async def close(self) -> None:
        await self.http.close()

    # ------------------------------------------------------------------ streaming

    @property
    def streams(self) -> bool:
        return self.cfg.streaming == "auto"

    @property
    def stream_settings(self) -> StreamSettings:
        return StreamSettings(
            heartbeat_timeout=self.cfg.stream_heartbeat_timeout,
            catch_up=self.cfg.stream_catch_up,
            max_backoff=self.cfg.stream_max_backoff,
        )

    async def stream(self) -> AsyncIterator[StreamEvent]:
        """One server-sent-events connection to ``/api/v1/streaming/user/notification``:
        ``connected`` once the server answered 200 (it has subscribed us), a ``heartbeat``
        for every comment line (``:thump``), an ``item`` for every ``notification`` event
        (other events are heartbeats too). Ends when the server closes the stream; a
        404/501 raises ``StreamUnavailable``; other failures the usual adapter errors."""
        me = await self._account()
        url = self.base_url + "/api/v1/streaming/user/notification"
        what = "mastodon GET /api/v1/streaming/user/notification"
        headers = {
            "Authorization": f"Bearer {self.cfg.token.get_secret_value()}",
            "Accept": "text/event-stream",
        }
        connect = self.cfg.timeout.total_seconds()
        timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=None)
        # A connection of its own, closed with the stream: a stream the server ended cleanly
        # never hands its connection to the next request while the server may still be busy
        # with it.
        connector = aiohttp.TCPConnector(force_close=True, limit=1)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, headers=self.http.headers) as session,
                session.get(url, headers=headers, timeout=timeout, allow_redirects=False) as resp,
            ):
                if resp.status in (404, 501):
                    raise StreamUnavailable(f"{what}: HTTP {resp.status}: no streaming here")
                if resp.status != 200:
                    body = await resp.content.read(4096)
                    raise self.http.error_for(
                        Response(resp.status, resp.headers, body, what), StreamUnavailable
                    )
                yield StreamEvent(kind="connected")
                event, data = "", []
                while True:
                    line = await resp.content.readline()
                    if not line:
                        return  # the server closed the stream: reconnect
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    if text.startswith(":"):
                        yield StreamEvent(kind="heartbeat")
                    elif text.startswith("event:"):
                        event = text[6:].strip()
                    elif text.startswith("data:"):
                        data.append(text[5:].removeprefix(" "))
                    elif not text:
                        if data:
                            yield await self._stream_event(event, "\n".join(data), me)
                        event, data = "", []
        except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
            raise TransientError(f"{what}: {type(exc).__name__}") from None

    async def _stream_event(self, event: str, data: str, me: dict[str, Any]) -> StreamEvent:
        if event != "notification":
            return StreamEvent(kind="heartbeat")
        try:
            notification = parse_json(data.encode())
        except Malformed:
            log.warning("mastodon.unreadable_stream_event")
            return StreamEvent(kind="heartbeat")  # the REST catch-up reads it properly
        nid = _notification_id(notification)
        try:
            inquiry = await self._normalise(notification, me)
        except AdapterError:
            raise
        except Exception as e:  # the REST read keeps it as a rejected item for the operator
            log.warning("mastodon.unparseable_stream_item", error=type(e).__name__)
            return StreamEvent(kind="item", cursor=nid)
        items = [inquiry] if inquiry is not None else []
        return StreamEvent(kind="item", cursor=nid, items=items)

    # Last rate-limit figures the server reported.
    @property
    def rate_limit_remaining(self) -> int | None:
        return self.http.rate_limit_remaining

    @property
    def rate_limit_reset(self) -> datetime | None:
        return self.http.rate_limit_reset

    # ------------------------------------------------------------------ reading

    async def _notifications(
        self, params: dict[str, str]
    ) -> tuple[list[dict[str, Any]], Mapping[str, str]]:
        query = [("types[]", "mention"), *params.items()]
        if self.cfg.include_filtered:
            query.append(("include_filtered", "true"))
        body, headers = await self._request("GET", "/api/v1/notifications", params=query)
        if not isinstance(body, list):
            raise TransientError("mastodon notifications: expected a JSON list")
        return body, headers

    async def _normalise(self, n: dict[str, Any], me: dict[str, Any]) -> Inquiry | None:
        status = n.get("status")
        if n.get("type") != "mention" or not isinstance(status, dict):
            return None
        account = status.get("account") or n.get("account") or {}
        account_id = _notification_id(account)
        if account_id is None:
            raise ValueError("status without a readable account")
        if account_id == str(me.get("id")):
            return None  # echo protection: never answer our own posts
        status_id = str(status["id"])
        visibility = str(status.get("visibility") or "public")
        kind = InquiryKind.DIRECT_MESSAGE if visibility == "direct" else InquiryKind.MENTION
        text = textutil.clean(html_to_text(str(status.get("content") or "")))
        if status.get("spoiler_text"):
            text = textutil.clean(f"{status['spoiler_text']}\n\n{text}").strip()
        parent = status.get("in_reply_to_id")
        ancestors: list[PostRef] = []
        if parent:
            parent_author = status.get("in_reply_to_account_id")
            ancestors = await self._ancestors(
                status_id,
                PostRef(id=str(parent), author_id=str(parent_author) if parent_author else None),
            )
        root = ancestors[-1].id if ancestors else status_id
        acct = textutil.clean(str(account.get("acct") or account.get("username") or ""))
        return Inquiry.create(
            platform=Platform.MASTODON.value,
            account=self.cfg.handle,
            kind=kind,
            external_id=status_id,
            author=Author(
                id=account_id,
                handle=acct,
                display_name=textutil.clean(str(account.get("display_name") or "")) or None,
            ),
            text=text,
            created_at=status.get("created_at") or n.get("created_at"),
            thread=ThreadRef(
                root_id=root,
                parent_id=status_id,
                conversation_id=root,
                reply_to={"status_id": status_id, "acct": acct, "visibility": visibility},
                ancestors=ancestors,
            ),
            visibility=Visibility.PRIVATE
            if visibility in _PRIVATE_VISIBILITIES
            else Visibility.PUBLIC,
            url=status.get("url") or status.get("uri"),
        )

    async def _ancestors(self, status_id: str, parent: PostRef) -> list[PostRef]:
        """The reply chain above a status, nearest first, with each post's author (from
        ``/context``); just the parent if the chain cannot be read."""
        if not self.cfg.resolve_thread_root:
            return [parent]
        if status_id in self._chains:
            return self._chains[status_id]
        try:
            ctx, _ = await self._request("GET", f"/api/v1/statuses/{status_id}/context")
        except (PermanentError, TargetGone):
            return [parent]
        raw = ctx.get("ancestors") if isinstance(ctx, dict) else None
        chain: list[PostRef] = []
        for post in reversed(raw if isinstance(raw, list) else []):  # the API lists root first
            if isinstance(post, dict) and post.get("id") is not None:
                author = post.get("account") if isinstance(post.get("account"), dict) else {}
                author_id = author.get("id") if isinstance(author, dict) else None
                chain.append(
                    PostRef(id=str(post["id"]), author_id=str(author_id) if author_id else None)
                )
        if not chain:
            chain = [parent]
        self._chains[status_id] = chain
        while len(self._chains) > 4096:
            self._chains.popitem(last=False)
        return chain

    # ------------------------------------------------------------------ setup

    async def _account(self) -> dict[str, Any]:
        """The token's account (cached); refuse a token of another account than ``handle``."""
        if self._me is None:
            me, _ = await self._request("GET", "/api/v1/accounts/verify_credentials")
            if not isinstance(me, dict) or "id" not in me:
                raise TransientError("verify_credentials: unexpected body")
            want = self.cfg.handle.lstrip("@").split("@")[0].lower()
            if str(me.get("username", "")).lower() != want:
                raise AuthError(
                    f"token belongs to @{me.get('username')}, not the configured @{want}"
                )
            self._me = me
        return self._me

    async def _apply_policy(self) -> None:
        """Accept private mentions where the server has the 4.3 notification policy; a server
        without it (404/405, or any refusal) gets one warning and never blocks reading."""
        if not self.cfg.accept_private_mentions or self._policy_done:
            return
        try:
            await self._request(
                "PATCH",
                "/api/v2/notifications/policy",
                json_body={"for_private_mentions": "accept"},
            )
        except PermanentError as exc:
            log.warning(
                "mastodon.notification_policy_unavailable",
                account=self.cfg.handle,
                reason=exc.reason,
                effect="private mentions from strangers may stay filtered on this server",
            )
        self._policy_done = True

    async def _max_reply_chars(self, refresh: bool = False) -> int:
        if self._max_chars is not None and not refresh:
            return self._max_chars
        try:
            info, _ = await self._request("GET", "/api/v1/instance", auth=False)
        except (TransientError, PermanentError, TargetGone):
            return self._max_chars or DEFAULT_MAX_CHARS  # fall back, ask again next time
        limit = DEFAULT_MAX_CHARS
        if isinstance(info, dict):
            statuses = (info.get("configuration") or {}).get("statuses") or {}
            raw = statuses.get("max_characters") or info.get("max_toot_chars")
            if isinstance(raw, int) and raw > 0:
                limit = raw
        self._max_chars = limit
        self.capabilities = self.capabilities.model_copy(update={"max_reply_chars": limit})
        return limit

    # ------------------------------------------------------------------ writing

    async def _post_status(
        self, text: str, in_reply_to: str | None, visibility: str, key: str
    ) -> dict[str, Any]:
        form = {"status": text, "visibility": visibility}
        if in_reply_to:
            form["in_reply_to_id"] = in_reply_to
        body, _ = await self._request(
            "POST",
            "/api/v1/statuses",
            data=form,
            headers={"Idempotency-Key": key},
            not_found=TargetGone,
        )
        if not isinstance(body, dict) or "id" not in body:
            raise TransientError("statuses: unexpected body")
        return body

    # ------------------------------------------------------------------ HTTP

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        data: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        not_found: type[AdapterError] = PermanentError,
    ) -> tuple[Any, Mapping[str, str]]:
        hdrs = dict(headers or {})
        if auth:
            hdrs["Authorization"] = f"Bearer {self.cfg.token.get_secret_value()}"
        resp = await self.http.request(
            method,
            self.base_url + path,
            what=f"mastodon {method} {path}",
            params=params,
            data=data,
            json_body=json_body,
            headers=hdrs,
            not_found=not_found,
        )
        return resp.json(), resp.headers


__all__ = ["MastodonConfig", "MastodonSource", "html_to_text", "split_reply"]
