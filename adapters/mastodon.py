"""Mastodon source adapter: mentions and direct messages in, threaded replies out.

Reads ``GET /api/v1/notifications?types[]=mention`` forward with ``min_id`` (one page per
``fetch``), normalises each mention to an ``Inquiry`` and answers with ``POST /api/v1/statuses``
carrying an ``Idempotency-Key``. Ids are opaque strings throughout: they are only ever
passed back to the server, never compared or converted here.

See /work/shared/reference/mastodon.md for the platform facts this module honours.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import aiohttp
from pydantic import ConfigDict, Field, SecretStr

from adapters.base import (
    AuthError,
    FetchResult,
    PermanentError,
    PostedReply,
    RateLimit,
    RateLimited,
    SourceCapabilities,
    TargetGone,
    TransientError,
)
from schemas.config import AccountConfig, Duration
from schemas.messages import Author, Inquiry, PostRef, ReplyRequest, ThreadRef
from schemas.vocab import InquiryKind, Platform, Visibility

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


_BREAKS = "\n。！？；!?;，,、 "


def _regional(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def _safe_cut(text: str, cut: int) -> int:
    """Move ``cut`` back so it never splits one visible character (combining marks, variation
    selectors, zero-width joiners, skin tones, flag pairs); always at least 1, so every part
    consumes text."""
    start = cut
    while 0 < cut < len(text):
        left, right = text[cut - 1], text[cut]
        joined = unicodedata.combining(right) or right in "\u200d\ufe0f\ufe0e" or left == "\u200d"
        if joined or "\U0001f3fb" <= right <= "\U0001f3ff":  # …or an emoji skin tone
            cut -= 1
        elif _regional(left) and _regional(right):
            run = 0
            while run < cut and _regional(text[cut - 1 - run]):
                run += 1
            if run % 2:  # inside a flag (flags are pairs of regional indicators)
                cut -= 1
            break
        else:
            break
    return cut if cut > 0 else max(1, start)


def split_reply(prefix: str, body: str, limit: int) -> list[str]:
    """``prefix + body`` cut into statuses of at most ``limit`` characters.

    Every part starts with ``prefix`` (the citizen's ``@acct``, so each part notifies them)
    and, when there are several, ends with `` (i/n)``. Cuts prefer punctuation or spaces.
    """
    body = body.strip()
    if status_length(prefix + body) <= limit:
        return [prefix + body]
    marker_room = len(" (99/99)")
    room = limit - status_length(prefix) - marker_room
    if room < 20:
        raise PermanentError(f"max reply length {limit} leaves no room after {prefix!r}")
    chunks: list[str] = []
    rest = body
    while rest:
        # the longest prefix that fits (links count as fixed weight, so search, not arithmetic)
        lo, hi = 1, min(len(rest), room)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if status_length(rest[:mid]) <= room:
                lo = mid
            else:
                hi = mid - 1
        cut = _safe_cut(rest, lo)
        if cut < len(rest):
            window = rest[:cut]
            best = max(window.rfind(ch) for ch in _BREAKS)
            if best >= cut // 2:
                cut = best + 1
        chunks.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    n = len(chunks)
    return [f"{prefix}{c} ({i}/{n})" for i, c in enumerate(chunks, 1)]


# --------------------------------------------------------------------------- headers


def parse_link_header(value: str | None) -> dict[str, str]:
    """``Link`` header → {rel: url}."""
    links: dict[str, str] = {}
    for url, rel in _LINK_RE.findall(value or ""):
        for r in rel.split():
            links[r] = url
    return links


def parse_reset(value: str | None, now: datetime) -> datetime | None:
    """``X-RateLimit-Reset``: an ISO 8601 time on Mastodon (epoch seconds tolerated)."""
    if not value:
        return None
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    if re.fullmatch(r"\d{9,}(\.\d+)?", value):
        # Not what Mastodon sends, but some mocks/proxies do: seconds since the epoch.
        return datetime.fromtimestamp(float(value), UTC)
    return None


def _retry_after(headers: Mapping[str, str], now: datetime) -> timedelta:
    reset = parse_reset(headers.get("X-RateLimit-Reset"), now)
    if reset is not None:
        return max(reset - now, timedelta(seconds=1))
    ra = headers.get("Retry-After")
    if ra:
        if ra.strip().isdigit():
            return timedelta(seconds=max(1, int(ra.strip())))
        try:
            return max(parsedate_to_datetime(ra) - now, timedelta(seconds=1))
        except (TypeError, ValueError):
            pass
    return READ_LIMIT.period


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
            read_rate_limit=READ_LIMIT,
        )
        # Last values the server reported; the runtime may read them to pace itself.
        self.rate_limit_remaining: int | None = None
        self.rate_limit_limit: int | None = None
        self.rate_limit_reset: datetime | None = None
        self._session: aiohttp.ClientSession | None = None
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
            return FetchResult(items=[], cursor=str(newest[0]["id"]), more=True)
        # "0" sorts below every snowflake: from the oldest notification, without a gap.
        params = {"min_id": cursor if cursor is not None else "0"}
        params["limit"] = str(self.cfg.page_limit)
        page, headers = await self._notifications(params)
        if not page:
            return FetchResult(items=[], cursor=cursor, more=False)
        returned = [str(n["id"]) for n in page]
        # The server answers newest first; its rel="prev" link carries min_id = the newest
        # id of this page, which is where the next page starts. Trust it only if it names
        # an id we actually got.
        prev = parse_link_header(headers.get("Link")).get("prev")
        new_cursor = returned[0]
        if prev:
            min_ids = parse_qs(urlsplit(prev).query).get("min_id", [])
            if min_ids and min_ids[0] in returned:
                new_cursor = min_ids[0]
        items: list[Inquiry] = []
        for notification in reversed(page):  # oldest first
            inquiry = await self._normalise(notification, me)
            if inquiry is not None:
                items.append(inquiry)
        return FetchResult(items=items, cursor=new_cursor, more=True)

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
        """Answer in the inquiry's thread; same ``reply_id`` → the same statuses."""
        await self._account()
        target, visibility, parts = self._reply_plan(reply, await self._max_reply_chars())
        return await self._post_parts(reply.reply_id, target, visibility, parts, [])

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
        outcome = "posted" if not done else "already_posted"
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
                outcome, visibility = "fallback_root", "direct"
                status = await self._post_status(text, None, visibility, key)
            ids.append(str(status["id"]))
            parent = str(status["id"])
        return PostedReply(external_ids=ids, outcome=outcome)

    async def find_reply(self, reply: ReplyRequest) -> PostedReply | None:
        """Our own earlier reply in the thread, for when an earlier post's outcome is unknown
        (servers that ignore ``Idempotency-Key``, or commit after the client timed out).

        Reads ``/context`` of the answered status and follows our statuses whose text is the
        reply's. If only the first parts of a long reply made it, the rest is posted now.
        """
        me = await self._account()
        target, visibility, parts = self._reply_plan(reply, await self._max_reply_chars())
        if target is None:
            return None
        try:
            ctx, _ = await self._request("GET", f"/api/v1/statuses/{target}/context")
        except TargetGone:
            return None
        descendants = ctx.get("descendants") if isinstance(ctx, dict) else None
        ours = [
            d
            for d in (descendants if isinstance(descendants, list) else [])
            if isinstance(d, dict) and str((d.get("account") or {}).get("id")) == str(me["id"])
        ]
        found: list[str] = []
        parent = target
        for text in parts:
            match = next(
                (
                    d
                    for d in ours
                    if str(d.get("in_reply_to_id")) == parent
                    and _same_text(html_to_text(str(d.get("content") or "")), text)
                ),
                None,
            )
            if match is None:
                break
            found.append(str(match["id"]))
            parent = found[-1]
        if not found:
            return None
        if len(found) == len(parts):
            return PostedReply(external_ids=found, outcome="already_posted")
        return await self._post_parts(reply.reply_id, target, visibility, parts, found)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ reading

    async def _notifications(
        self, params: dict[str, str]
    ) -> tuple[list[dict[str, Any]], Mapping[str, str]]:
        query = [("types[]", "mention"), *params.items()]
        if self.cfg.include_filtered:
            query.append(("include_filtered", "true"))
        body, headers = await self._request("GET", "/api/v1/notifications", params=query)
        if not isinstance(body, list):
            raise TransientError("notifications: expected a JSON list")
        return body, headers

    async def _normalise(self, n: dict[str, Any], me: dict[str, Any]) -> Inquiry | None:
        status = n.get("status")
        if n.get("type") != "mention" or not isinstance(status, dict):
            return None
        account = status.get("account") or n.get("account") or {}
        if str(account.get("id")) == str(me.get("id")):
            return None  # echo protection: never answer our own posts
        status_id = str(status["id"])
        visibility = str(status.get("visibility") or "public")
        kind = InquiryKind.DIRECT_MESSAGE if visibility == "direct" else InquiryKind.MENTION
        text = html_to_text(str(status.get("content") or ""))
        if status.get("spoiler_text"):
            text = f"{status['spoiler_text']}\n\n{text}".strip()
        parent = status.get("in_reply_to_id")
        ancestors: list[PostRef] = []
        if parent:
            parent_author = status.get("in_reply_to_account_id")
            ancestors = await self._ancestors(
                status_id,
                PostRef(id=str(parent), author_id=str(parent_author) if parent_author else None),
            )
        root = ancestors[-1].id if ancestors else status_id
        acct = str(account.get("acct") or account.get("username") or "")
        return Inquiry.create(
            platform=Platform.MASTODON.value,
            account=self.cfg.handle,
            kind=kind,
            external_id=status_id,
            author=Author(
                id=str(account.get("id")),
                handle=acct,
                display_name=account.get("display_name") or None,
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
        if self.cfg.accept_private_mentions and not self._policy_done:
            await self._request(
                "PATCH",
                "/api/v2/notifications/policy",
                json_body={"for_private_mentions": "accept"},
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

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout.total_seconds()),
                headers={"User-Agent": "govbridge (+mastodon source)"},
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        data: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        not_found: type[Exception] = PermanentError,
    ) -> tuple[Any, Mapping[str, str]]:
        hdrs = dict(headers or {})
        if auth:
            hdrs["Authorization"] = f"Bearer {self.cfg.token.get_secret_value()}"
        try:
            async with self._client().request(
                method, self.base_url + path, params=params, data=data, json=json_body, headers=hdrs
            ) as resp:
                raw = await resp.read()
                status, rheaders = resp.status, resp.headers
        except TimeoutError:
            raise TransientError(f"{method} {path}: timed out") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{method} {path}: {type(exc).__name__}") from None
        self._note_rate_limit(rheaders)
        if 200 <= status < 300:
            try:
                return (json.loads(raw) if raw else None), rheaders
            except ValueError:
                raise TransientError(f"{method} {path}: malformed JSON body") from None
        raise self._error(method, path, status, raw, rheaders, not_found)

    def _error(
        self,
        method: str,
        path: str,
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
        not_found: type[Exception],
    ) -> Exception:
        message = ""
        try:
            body = json.loads(raw)
            if isinstance(body, dict):
                message = str(body.get("error") or "")[:200]
        except ValueError:
            pass
        reason = f"{method} {path}: HTTP {status}" + (f" {message}" if message else "")
        if status == 401 or status == 403:
            return AuthError(reason)
        if status == 429:
            return RateLimited(reason, retry_after=_retry_after(headers, datetime.now(UTC)))
        if status in (404, 410):
            return not_found(reason)
        if status == 408 or status >= 500:
            return TransientError(reason)
        return PermanentError(reason)

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        remaining, limit = headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-Limit")
        if remaining is not None and remaining.strip().isdigit():
            self.rate_limit_remaining = int(remaining)
        if limit is not None and limit.strip().isdigit():
            self.rate_limit_limit = int(limit)
        reset = parse_reset(headers.get("X-RateLimit-Reset"), datetime.now(UTC))
        if reset is not None:
            self.rate_limit_reset = reset


__all__ = ["MastodonConfig", "MastodonSource", "html_to_text", "split_reply"]
