"""Sina Weibo source: poll the comment and mention timelines of an official account, answer in
the same thread. Platform facts: ../shared/reference/weibo.md.

Why it looks the way it does:
- Ids are 16-digit integers near 2^53; they are read from ``idstr`` and handled as strings or
  Python ints only, and the JSON is parsed so that no number can become a float.
- Each stream is read newest-first. A poll asks for ``since_id``; when a full page comes back a
  backlog is drained downwards with ``max_id = smallest seen - 1`` (``max_id`` is inclusive).
  The cursor keeps, per stream, ``since`` (everything up to it was handed on), and while
  draining ``top`` (the newest id of this round) and ``max`` (next ``max_id``), so storing it
  after any page and restarting neither loses nor repeats an item.
- Weibo has no idempotency key: a replayed reply is recognised by the "identical content" errors
  (20017/20019/20111), so a reply's parts are split deterministically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from adapters import fanservice
from adapters import text as textutil
from adapters.base import (
    AdapterError,
    AuthError,
    FetchResult,
    PermanentError,
    PostedReply,
    RateLimit,
    RateLimited,
    RejectedItem,
    SourceCapabilities,
    TransientError,
)
from adapters.http import HttpClient
from adapters.wire import PAGE_MAX_DEPTH, Malformed, parse_json
from schemas.config import AccountConfig, Duration
from schemas.messages import (
    Author,
    Inquiry,
    PostRef,
    ReplyRequest,
    ThreadRef,
    no_control_characters,
)
from schemas.states import PostOutcome
from schemas.vocab import InquiryKind, Visibility

log = structlog.get_logger(__name__)

MAX_REPLY_CHARS = 140

StreamName = Literal["comments_to_me", "comments_mentions", "statuses_mentions"]
ALL_STREAMS: tuple[StreamName, ...] = ("comments_to_me", "comments_mentions", "statuses_mentions")

# stream -> (endpoint, wrapper key, inquiry kind)
_STREAMS: dict[str, tuple[str, str, InquiryKind]] = {
    "comments_to_me": ("comments/to_me.json", "comments", InquiryKind.COMMENT),
    "comments_mentions": ("comments/mentions.json", "comments", InquiryKind.MENTION),
    "statuses_mentions": ("statuses/mentions.json", "statuses", InquiryKind.MENTION),
}

RATE_LIMIT_CODES = frozenset({10022, 10023, 10024, 20016})
AUTH_CODES = frozenset({21301, 21314, 21315, 21316, 21317, 21319, 21327, 21332})
PERMISSION_CODES = frozenset({10014})
DUPLICATE_CODES = frozenset({20017, 20019, 20111})
POST_GONE, COMMENT_GONE = 20101, 20201
TRANSIENT_CODES = frozenset({10001, 10002, 10009})  # system error, unavailable, busy

CURSOR_VERSION = 1


class FanServiceConfig(BaseModel):
    """``[accounts.fan_service]``: the account also takes Weibo fan-service pushes (private
    messages) at ``/hooks/sources/{handle}``; its comments and mentions are still polled."""

    model_config = ConfigDict(extra="forbid")

    appsecret: SecretStr = Field(
        description="The app secret Weibo signs the URL verification and every push with."
    )
    uid: str = Field(
        pattern=r"^[0-9]{1,20}$",
        description="The account's own uid: a push to another receiver is refused, the"
        " account's own messages are not inquiries.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="The fan-service access token (365 days) for messages/reply/biz.json;"
        " the account's `token` when unset.",
    )
    reply_window: Duration = Field(
        default=timedelta(hours=48),
        description="Weibo takes a fan-service reply only within 48-72 h of the citizen's"
        " message; a reply later than this is recorded as undeliverable.",
    )
    answer_within: Duration = Field(
        default=timedelta(seconds=3),
        description="How long a push waits for the broker's confirm before it is answered 200"
        " anyway (the message kept and published as soon as the broker confirms); Weibo"
        " retries a push not answered within 5 s.",
    )


class WeiboConfig(AccountConfig):
    """``[[accounts]]`` block with ``adapter = "weibo"``."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "https://api.weibo.com/2/"
    filter_by_author: Literal[0, 1, 2] = Field(
        default=0, description="0 everyone, 1 only followed users, 2 only strangers."
    )
    page_size: int = Field(default=50, ge=1, le=200)
    streams: list[StreamName] = Field(default_factory=lambda: list(ALL_STREAMS), min_length=1)
    rip: str | None = Field(default=None, description="Real IP sent with posts (required on /biz).")
    timeout: Duration = timedelta(seconds=30)
    poll: Duration = Field(
        default=timedelta(minutes=3),
        description="Weibo recommends polling every 3-5 minutes; 3 streams a poll stay well"
        " inside the test tier's 150 calls an hour.",
    )
    fan_service: FanServiceConfig | None = Field(
        default=None,
        description="Push mode for private messages (Weibo's fan-service platform); polling"
        " of `streams` continues.",
    )
    drain_until_empty: bool = Field(
        default=True,
        description="End a round only on an empty page. Weibo drops deleted or hidden items"
        " after choosing a page, so a short page does not mean the end (costs one call per"
        " poll that found items). False trusts short pages (saves calls; only for API variants"
        " known not to filter).",
    )

    @model_validator(mode="after")
    def _needs_token(self) -> WeiboConfig:
        if self.token is None or not self.token.get_secret_value():
            raise ValueError("a weibo account needs `token` (an OAuth2 access token)")
        if len(set(self.streams)) != len(self.streams):
            raise ValueError("`streams` must not repeat a stream")
        return self


def _push_id(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 64:
        return no_control_characters(value.strip())
    raise ValueError("must be a string or an integer")


def _push_time(value: object) -> datetime:
    """Unix seconds (XML ``CreateTime``) or the Weibo ``created_at`` format."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("unix seconds out of range") from None
    if isinstance(value, str):
        if value.strip().isdigit():
            return _push_time(int(value.strip()))
        return parse_created_at(value)
    raise ValueError("not a time")


class WeiboError(Exception):
    """An error answer from the API, before it is mapped onto the adapter errors."""

    def __init__(self, code: int, message: str, endpoint: str, http_status: int) -> None:
        super().__init__(f"weibo {endpoint}: error {code} {message}")
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.http_status = http_status


# --------------------------------------------------------------------------- parsing


def _digits(value: object) -> bool:
    """A decimal id within int64 (Weibo ids are 64-bit integers)."""
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= 19
        and int(value) < 2**63
    )


def _optional_id(obj: Any) -> str | None:
    """The id of an object that may be missing or malformed (a parent's author, say)."""
    try:
        return idstr(obj)
    except ValueError:
        return None


def idstr(obj: Any) -> str:
    """The id of a Weibo object as a decimal string (``idstr`` first, exact ``id`` else)."""
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    s = obj.get("idstr")
    if _digits(s):
        return str(s)
    raw = obj.get("id")
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 2**63:
        return str(raw)
    if _digits(raw):
        return str(raw)
    raise ValueError("object without a usable id")


_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}


def parse_created_at(value: str) -> datetime:
    """``"Wed Jun 01 00:50:25 +0800 2011"`` (``%a %b %d %H:%M:%S %z %Y``), independent of locale."""
    try:
        _dow, mon, day, hms, zone, year = value.split()
        hh, mm, ss = (int(x) for x in hms.split(":"))
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        return datetime(int(year), _MONTHS[mon], int(day), hh, mm, ss, tzinfo=timezone(offset))
    except (ValueError, KeyError, IndexError) as e:
        raise ValueError(f"bad created_at {value!r}") from e


def error_code_of(data: Any) -> int | None:
    """``error_code`` as an int whether Weibo sent a number or a string; ``None`` if absent."""
    if not isinstance(data, dict) or "error_code" not in data:
        return None
    raw = data["error_code"]
    try:
        return int(str(raw).strip())
    except ValueError:
        return -1


# --------------------------------------------------------------------------- reply splitting


def split_reply(text: str, limit: int = MAX_REPLY_CHARS) -> list[str]:
    """Fit ``text`` into posts of at most ``limit`` characters, numbered ``(i/n)`` if several.

    Deterministic (a replay produces the same parts, so Weibo's duplicate check recognises it).
    """
    return textutil.numbered(text, limit, lambda i, n: f"({i}/{n})")


# --------------------------------------------------------------------------- cursor


@dataclass(frozen=True)
class StreamCursor:
    since: int | None = None  # every item with id <= since has been handed on
    top: int | None = None  # while draining: newest id of this round (becomes since)
    max: int | None = None  # while draining: next max_id (inclusive)

    @property
    def draining(self) -> bool:
        return self.top is not None

    def dump(self) -> dict[str, str]:
        return {
            k: str(v)
            for k, v in (("since", self.since), ("top", self.top), ("max", self.max))
            if v is not None
        }

    @classmethod
    def load(cls, raw: Any) -> StreamCursor:
        if not isinstance(raw, dict):
            raise ValueError("stream cursor is not an object")

        def num(key: str) -> int | None:
            v = raw.get(key)
            if v is None:
                return None
            if not _digits(v):
                raise ValueError(f"bad {key} in cursor")
            return int(v)

        c = cls(num("since"), num("top"), num("max"))
        if (c.top is None) != (c.max is None):
            raise ValueError("cursor has top without max")
        return c


def _load_cursor(cursor: str | None) -> dict[str, StreamCursor]:
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
            raise ValueError("unknown cursor version")
        streams = data.get("streams", {})
        if not isinstance(streams, dict):
            raise ValueError("streams is not an object")
        return {name: StreamCursor.load(raw) for name, raw in streams.items()}
    except ValueError as e:
        raise PermanentError(f"weibo: unreadable cursor ({e})") from None


def _dump_cursor(streams: dict[str, StreamCursor]) -> str:
    body = {"v": CURSOR_VERSION, "streams": {k: v.dump() for k, v in sorted(streams.items())}}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def _rejected(stream: str, obj: Any, reason: str, external_id: str | None) -> RejectedItem:
    raw = json.dumps({"stream": stream, "item": obj}, default=str).encode()
    return RejectedItem(reason=f"weibo {stream}: {reason}"[:300], raw=raw, external_id=external_id)


# --------------------------------------------------------------------------- the source


class WeiboSource:
    """A Weibo official account, read by polling the Open API v2 and answered with comments."""

    name: ClassVar[str] = "weibo"
    Config: ClassVar[type[AccountConfig]] = WeiboConfig

    capabilities = SourceCapabilities(
        max_reply_chars=MAX_REPLY_CHARS,
        supports_direct_messages=False,  # only via the fan-service platform (push mode)
        supports_idempotency_key=False,
        splits_long_replies=True,
        reply_rate_limit=RateLimit(max_calls=60, period=timedelta(hours=1)),
    )

    def __init__(self, cfg: AccountConfig) -> None:
        self.cfg: WeiboConfig = (
            cfg if isinstance(cfg, WeiboConfig) else WeiboConfig.model_validate(cfg.model_dump())
        )
        if self.cfg.fan_service is not None:
            # still polled (pushes=False): the fan-service push adds private messages only
            self.capabilities = self.capabilities.model_copy(
                update={"supports_direct_messages": True}
            )
        self._base = self.cfg.base_url.rstrip("/") + "/"
        self.http = HttpClient(
            f"weibo {self.cfg.handle}",
            timeout=self.cfg.timeout,
            follow_redirects=self.cfg.follow_redirects,
        )
        self._uid: str | None = None
        self._pending_error: AdapterError | None = None
        self._done: dict[str, PostedReply] = {}  # reply_id -> result, this process only

    # ------------------------------------------------------------------ HTTP

    async def _request(self, method: str, endpoint: str, params: dict[str, str]) -> Any:
        """One API call; raises ``WeiboError`` for an API error, adapter errors otherwise.

        (An unanswered request, a timeout, is also how Weibo treats blacklisted apps.)"""
        assert self.cfg.token is not None
        args = {"access_token": self.cfg.token.get_secret_value(), **params}
        if method != "GET" and self.cfg.rip:
            args.setdefault("rip", self.cfg.rip)
        resp = await self.http.request(
            method,
            self._base + endpoint,
            what=f"weibo {endpoint}",
            params=args if method == "GET" else None,
            data=args if method != "GET" else None,
            raise_for_status=False,
        )
        try:
            # Ids near 2^53 never pass a float; one deeply nested item cannot sink the page.
            data = parse_json(resp.body, exact=True, max_depth=PAGE_MAX_DEPTH)
        except Malformed:
            if resp.ok:  # 200 with a non-JSON body is an interposed proxy/error page
                raise TransientError(f"weibo {endpoint}: HTTP {resp.status}, no JSON") from None
            raise self.http.error_for(resp) from None
        code = error_code_of(data)
        if code is not None:
            message = textutil.clean(str(data.get("error", "")))[:200]
            raise WeiboError(code, message, endpoint, resp.status)
        if not resp.ok:
            raise self.http.error_for(resp)
        return data

    async def _call(self, method: str, endpoint: str, params: dict[str, str]) -> Any:
        """Like ``_request`` but every API error becomes an adapter error."""
        try:
            return await self._request(method, endpoint, params)
        except WeiboError as e:
            raise await self._map_error(e) from None

    async def _map_error(self, e: WeiboError) -> AdapterError:
        reason = f"weibo {e.endpoint}: error {e.code}"
        if e.code in RATE_LIMIT_CODES:
            return RateLimited(reason, retry_after=await self._until_reset())
        if e.code in AUTH_CODES:
            return AuthError(f"{reason} (token rejected: re-authorise the account)")
        if e.code in PERMISSION_CODES:
            return PermanentError(f"{reason} (no permission for this call)")
        if e.code in TRANSIENT_CODES or e.http_status >= 500:
            return TransientError(reason)
        return PermanentError(f"{reason} {e.message}")

    async def _until_reset(self) -> timedelta:
        """Time until the hourly window resets, from ``rate_limit_status`` (not itself limited)."""
        try:
            data = await self._request("GET", "account/rate_limit_status.json", {})
            seconds = int(data["reset_time_in_seconds"])
            if seconds > 0:
                return timedelta(seconds=seconds)
        except (AdapterError, WeiboError, KeyError, TypeError, ValueError):
            pass
        # Weibo's windows are clock hours (UTC+8 is a whole-hour offset).
        now = datetime.now(UTC)
        next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return next_hour - now

    # ------------------------------------------------------------------ reading

    async def own_uid(self) -> str:
        """The official account's uid (echo protection); one cheap call per adapter."""
        if self._uid is None:
            data = await self._call("GET", "account/get_uid.json", {})
            uid = data.get("uid") if isinstance(data, dict) else None
            if (isinstance(uid, int) and not isinstance(uid, bool)) or _digits(uid):
                self._uid = str(uid)
            else:
                raise TransientError("weibo account/get_uid.json: no uid in answer")
        return self._uid

    async def last_own_post(self) -> datetime | None:
        """When the account last posted (``statuses/user_timeline``, newest first; its
        replies are comments and not in it); ``None`` when it has no post. An item that cannot
        be read is passed over for the next one."""
        uid = await self.own_uid()
        data = await self._call(
            "GET", "statuses/user_timeline.json", {"uid": uid, "count": "20", "trim_user": "1"}
        )
        statuses = data.get("statuses") if isinstance(data, dict) else None
        if not isinstance(statuses, list):
            raise TransientError("weibo statuses/user_timeline.json: no statuses in answer")
        newest: datetime | None = None
        for status in statuses:
            try:
                when = parse_created_at(status["created_at"])
            except (TypeError, KeyError, ValueError):
                continue
            newest = when if newest is None else max(newest, when)
        return newest.astimezone(UTC) if newest is not None else None

    async def fetch(self, cursor: str | None) -> FetchResult:
        """One step: a page of every stream (or of each stream still draining a backlog)."""
        if self._pending_error is not None:
            err, self._pending_error = self._pending_error, None
            raise err
        state = _load_cursor(cursor)
        calls = 0 if self._uid is not None else 1  # the account's uid, asked once
        uid = await self.own_uid()
        for s in self.cfg.streams:
            state.setdefault(s, StreamCursor())
        todo = [s for s in self.cfg.streams if state[s].draining] or list(self.cfg.streams)
        items: list[Inquiry] = []
        rejected: list[RejectedItem] = []
        for polled, stream in enumerate(todo):
            calls += 1
            try:
                new_state, page, bad = await self._read_page(stream, state[stream], uid)
            except AdapterError as e:
                if polled == 0:
                    raise
                # Hand on what was read; report the error on the very next call.
                self._pending_error = e
                break
            state[stream] = new_state
            items.extend(page)
            rejected.extend(bad)
        more = self._pending_error is not None or any(state[s].draining for s in self.cfg.streams)
        return FetchResult(
            items=items, cursor=_dump_cursor(state), more=more, rejected=rejected, calls=calls
        )

    async def _read_page(
        self, stream: str, cur: StreamCursor, uid: str
    ) -> tuple[StreamCursor, list[Inquiry], list[RejectedItem]]:
        endpoint = _STREAMS[stream][0]
        params = {
            "count": str(self.cfg.page_size),
            "page": "1",
            "filter_by_author": str(self.cfg.filter_by_author),
        }
        if cur.since is not None:
            params["since_id"] = str(cur.since)
        if cur.max is not None:
            params["max_id"] = str(cur.max)  # inclusive: already smallest seen - 1
        return self.read_page(stream, await self._call("GET", endpoint, params), cur, uid)

    def read_page(
        self, stream: str, data: Any, cur: StreamCursor, uid: str
    ) -> tuple[StreamCursor, list[Inquiry], list[RejectedItem]]:
        """One timeline page (parsed JSON) → the stream's next cursor, its inquiries (oldest
        first) and the items that cannot be read. Raises only ``TransientError`` (a page
        without its list); one bad item never stops the others."""
        endpoint, wrapper, kind = _STREAMS[stream]
        raw = data.get(wrapper) if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise TransientError(f"weibo {endpoint}: answer without {wrapper!r}")

        ids: list[int] = []
        objs: list[tuple[int, dict[str, Any]]] = []
        rejected: list[RejectedItem] = []
        for obj in raw:
            try:
                i = int(idstr(obj))
            except ValueError:
                rejected.append(_rejected(stream, obj, "item without a usable id", None))
                continue
            # Keep only the window asked for, whatever the server sent.
            if (cur.since is not None and i <= cur.since) or (cur.max is not None and i > cur.max):
                continue
            ids.append(i)
            objs.append((i, obj))

        short = len(raw) < self.cfg.page_size and not self.cfg.drain_until_empty
        if not ids:
            new = replace(cur, since=cur.top, top=None, max=None) if cur.draining else cur
        elif cur.draining:
            new = StreamCursor(since=cur.top) if short else replace(cur, max=min(ids) - 1)
        elif short:
            new = StreamCursor(since=max(ids))
        else:
            new = StreamCursor(since=cur.since, top=max(ids), max=min(ids) - 1)

        inquiries: list[Inquiry] = []
        for i, obj in sorted(objs, key=lambda t: t[0]):  # oldest first
            try:
                inq = self._normalise(stream, kind, obj, uid)
            except Exception as e:  # one bad item must never block the stream
                log.warning("weibo.unparseable_item", stream=stream, error=type(e).__name__)
                rejected.append(_rejected(stream, obj, f"{type(e).__name__}: {e}", str(i)))
                continue
            if inq is not None:
                inquiries.append(inq)
        return new, inquiries, rejected

    async def parse_item(self, raw: bytes) -> Inquiry | None:
        """A rejected item read again (operator replay)."""
        try:
            doc = parse_json(raw, exact=True)
            stream, obj = str(doc["stream"]), doc["item"]
            kind = _STREAMS[stream][2]
        except (Malformed, KeyError, TypeError) as e:
            raise PermanentError(f"weibo: not a rejected item ({type(e).__name__})") from None
        try:
            return self._normalise(stream, kind, obj, await self.own_uid())
        except AdapterError:
            raise
        except Exception as e:
            raise PermanentError(f"weibo: item still unreadable: {type(e).__name__}: {e}") from None

    def _normalise(
        self, stream: str, kind: InquiryKind, obj: dict[str, Any], uid: str
    ) -> Inquiry | None:
        user = obj.get("user") or {}
        if not isinstance(user, dict):
            raise ValueError("user is not an object")
        author_id = idstr(user)
        if author_id == uid:
            return None  # our own post or reply: never answer ourselves
        external_id = idstr(obj)
        ancestors: list[PostRef] = []
        if stream == "statuses_mentions":
            root, parent = external_id, None
            reply_to = {"id": external_id}
        else:
            status = obj["status"]
            if not isinstance(status, dict):
                raise ValueError("status is not an object")
            root, parent = idstr(status), external_id
            # The chain above a comment, nearest first: the comment it answers (Weibo shows
            # one level), then the post. Their authors tell a citizen's follow-up from
            # another citizen writing under the same post.
            answered = obj.get("reply_comment")
            if isinstance(answered, dict) and _optional_id(answered) is not None:
                ancestors.append(
                    PostRef(id=idstr(answered), author_id=_optional_id(answered.get("user")))
                )
            ancestors.append(PostRef(id=root, author_id=_optional_id(status.get("user"))))
            if stream == "comments_mentions" and "comments_to_me" in self.cfg.streams:
                parent_comment = obj.get("reply_comment") or {}
                on_ours = idstr(status.get("user") or {"id": 0}) == uid
                answers_us = bool(parent_comment) and idstr(parent_comment.get("user")) == uid
                if on_ours or answers_us:
                    return None  # comments/to_me delivers it already
            reply_to = {"id": root, "cid": external_id}
        return Inquiry.create(
            platform=self.name,
            account=self.cfg.handle,
            kind=kind,
            external_id=external_id,
            author=Author(
                id=author_id,
                handle=textutil.clean(str(user.get("screen_name") or user.get("name") or ""))
                or author_id,
                display_name=textutil.clean(str(user.get("name") or "")) or None,
            ),
            text=textutil.clean(str(obj.get("text", ""))),
            created_at=parse_created_at(str(obj["created_at"])),
            thread=ThreadRef(
                root_id=root, parent_id=parent, reply_to=reply_to, ancestors=ancestors
            ),
            visibility=Visibility.PUBLIC,
            url=f"https://m.weibo.cn/status/{root}",
        )

    # ------------------------------------------------------------------ fan-service push

    @property
    def fan_service_push(self) -> bool:
        return self.cfg.fan_service is not None

    def push_signature_ok(self, query: Mapping[str, str]) -> bool:
        """The ``signature`` query parameter of a verification GET or a push is right."""
        fs = self.cfg.fan_service
        return fs is not None and fanservice.signature_ok(fs.appsecret.get_secret_value(), query)

    @property
    def push_answer_within(self) -> float:
        fs = self.cfg.fan_service
        return fs.answer_within.total_seconds() if fs is not None else 3.0

    def parse_push(self, body: bytes) -> list[Inquiry]:
        """A fan-service push (JSON or XML) → at most one private inquiry."""
        fs = self.cfg.fan_service
        if fs is None:
            raise PermanentError("weibo: this account takes no fan-service pushes")
        return fanservice.to_inquiries(
            fanservice.decode_body(body),
            platform=self.name,
            account=self.cfg.handle,
            account_id=fs.uid,
            validate_id=_push_id,
            parse_time=_push_time,
        )

    async def _reply_private(self, reply: ReplyRequest) -> PostedReply:
        """``messages/reply/biz.json`` within the reply window; later: undeliverable."""
        fs = self.cfg.fan_service
        if fs is None:
            raise PermanentError("weibo: direct messages need the fan-service push mode")
        rt = reply.thread.reply_to
        receiver, sent_at = rt.get("receiver_id"), rt.get("sent_at")
        if not _digits(receiver):
            raise PermanentError("weibo: fan-service reply without a numeric receiver")
        if sent_at is not None and _digits(sent_at):
            age = datetime.now(UTC) - datetime.fromtimestamp(int(sent_at), UTC)
            if age > fs.reply_window:
                log.warning("weibo.fan_service_window_passed", reply_id=reply.reply_id)
                return PostedReply(external_ids=[], outcome=PostOutcome.UNDELIVERABLE)
        form = {
            "type": "text",
            "data": json.dumps({"text": reply.text}, ensure_ascii=False),
            "receiver_id": str(receiver),
            "save_sender_box": "1",
        }
        if fs.token is not None:
            form["access_token"] = fs.token.get_secret_value()
        try:
            created = await self._request("POST", "messages/reply/biz.json", form)
        except WeiboError as e:
            if e.code in DUPLICATE_CODES:
                return PostedReply(external_ids=[], outcome=PostOutcome.ALREADY_POSTED)
            raise await self._map_error(e) from None
        ids = (
            [idstr(created)] if isinstance(created, dict) and "id" in created else [reply.reply_id]
        )
        return PostedReply(external_ids=ids, outcome=PostOutcome.POSTED)

    # ------------------------------------------------------------------ replying

    async def post_reply(self, reply: ReplyRequest) -> PostedReply:
        """Answer in the thread: ``comments/reply.json`` to a comment, ``create.json`` to a post."""
        if reply.reply_id in self._done:
            return self._done[reply.reply_id]
        if reply.visibility == Visibility.PRIVATE:
            result = await self._reply_private(reply)
            self._done[reply.reply_id] = result
            return result
        rt = reply.thread.reply_to
        post_id = rt.get("id") or reply.thread.root_id
        cid = rt.get("cid")
        if not _digits(post_id) or (cid is not None and not _digits(cid)):
            raise PermanentError("weibo: reply target ids are not numeric")
        result = await self._post_parts(post_id, cid, reply.text, reply.citizen_handle)
        if len(self._done) > 10_000:
            self._done.clear()
        self._done[reply.reply_id] = result
        return result

    async def _post_parts(
        self, post_id: str, cid: str | None, text: str, citizen: str
    ) -> PostedReply:
        # "回复@name:" is prepended by Weibo when answering a comment: it counts toward the limit.
        prefix = len(f"回复@{citizen}:") if cid is not None else 0
        parts = split_reply(text, MAX_REPLY_CHARS - prefix)
        posted: list[str] = []
        already = 0
        fallback = False
        i = 0
        while i < len(parts):
            on_comment = cid is not None and not fallback
            form = {"id": post_id, "comment": parts[i], "comment_ori": "0"}
            if on_comment:
                assert cid is not None
                form |= {"cid": cid, "without_mention": "0"}
            endpoint = "comments/reply.json" if on_comment else "comments/create.json"
            try:
                created = await self._request("POST", endpoint, form)
                posted.append(idstr(created))
            except WeiboError as e:
                if e.code in DUPLICATE_CODES:
                    already += 1  # posted before (a replay): done, never loop
                elif e.code == COMMENT_GONE and on_comment:
                    # The comment is gone: answer on the root post, addressing the citizen.
                    fallback = True
                    if i == 0:
                        parts = split_reply(f"@{citizen} {text}")
                    continue
                elif e.code in (POST_GONE, COMMENT_GONE):
                    return PostedReply(external_ids=posted, outcome=PostOutcome.UNDELIVERABLE)
                else:
                    raise await self._map_error(e) from None
            except ValueError:
                raise TransientError(f"weibo {endpoint}: answer without an id") from None
            i += 1
        if fallback:
            return PostedReply(external_ids=posted, outcome=PostOutcome.FALLBACK_ROOT)
        if not posted and already:
            return PostedReply(external_ids=[], outcome=PostOutcome.ALREADY_POSTED)
        return PostedReply(external_ids=posted, outcome=PostOutcome.POSTED)

    # ------------------------------------------------------------------ lifecycle

    async def check(self) -> None:
        """Reachability and token validity, with the cheapest call there is."""
        self._uid = None
        await self.own_uid()

    async def close(self) -> None:
        await self.http.close()
