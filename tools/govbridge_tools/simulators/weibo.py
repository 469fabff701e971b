"""A Sina Weibo Open API v2 simulator, faithful to ../shared/reference/weibo.md.

It serves the slice of ``/2/`` the bridge uses (comment and mention timelines, the account's
own posts ``statuses/user_timeline`` for the inspection, replying,
``account/get_uid.json``, ``account/rate_limit_status.json``) with Weibo's quirks on purpose:
ids near or beyond 2^53 sent as JSON numbers next to ``idstr``; ``since_id`` strictly newer but
``max_id`` older-*or-equal*; sparse ids; ``error_code`` sometimes an int and sometimes a string;
hourly per-user limits; tokens that expire and must be replaced by a human. ``comments/to_me``
also lists the official account's own comments on its posts, the worst case for echo loops.

Fan-service push (private messages, "Push alternatives" in the reference): with ``hook_url``
set, :meth:`WeiboState.verify_hook` sends the URL verification GET (``signature``,
``timestamp``, ``nonce``, ``echostr``; SHA-1 of the sorted appsecret/timestamp/nonce) and
:meth:`WeiboState.push_message` POSTs one private message signed the same way, retrying as Weibo
does (three more times while not answered 200 within 5 s). Every delivery is recorded in
``push_log`` (message, copy, status, seconds to the answer, format), and
``messages/reply/biz.json`` records each fan-service reply in ``dm_replies``. ``quirks``: every
message is delivered three times anyway, two copies at once (a retry arriving while the first is
still being handled) and one late, and every other message has an XML body.

Operator controls exist as methods of :class:`WeiboState` and over HTTP under ``/_sim/``.

``quirks`` adds what real traffic brings that the documentation does not: ``poison`` items (by
id) sent broken — an emoji cut into a lone UTF-16 surrogate, a field missing, a number out of
range, an object nested hundreds deep — among good ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import aiohttp
from aiohttp import web

CST = timezone(timedelta(hours=8))
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

MAX_COMMENT_CHARS = 140
MAX_COUNT = 200

# error codes (reference table)
E_SYSTEM = 10001
E_PARAM = 10008
E_PERMISSION = 10014
E_USER_RATE = 10023
E_TOO_LONG = 20012
E_IDENTICAL = 20019
E_POST_GONE = 20101
E_COMMENT_GONE = 20201
E_TOKEN_REVOKED = 21319
E_TOKEN_EXPIRED = 21327
E_TOKEN_INVALID = 21332

_MESSAGES = {
    E_SYSTEM: "system error!",
    E_PARAM: "param error, see doc for more info.",
    E_PERMISSION: "Insufficient app permissions!",
    E_USER_RATE: "User requests out of rate limit!",
    E_TOO_LONG: "Text too long, please input text less than 140 characters!",
    E_IDENTICAL: "Content is identical to the previous one!",
    E_POST_GONE: "Target weibo does not exist!",
    E_COMMENT_GONE: "Target weibo comment does not exist!",
    E_TOKEN_REVOKED: "token_revoked",
    E_TOKEN_EXPIRED: "expired_token",
    E_TOKEN_INVALID: "invalid_access_token",
}


def weibo_time(ts: float) -> str:
    """Weibo's ``created_at`` (``"Wed Jun 01 00:50:25 +0800 2011"``), locale-independent."""
    dt = datetime.fromtimestamp(ts, CST)
    return (
        f"{_DAYS[dt.weekday()]} {_MONTHS[dt.month - 1]} {dt.day:02d} {dt:%H:%M:%S} +0800 {dt.year}"
    )


@dataclass
class SimUser:
    id: int
    screen_name: str
    verified_type: int = -1
    verified_reason: str = ""


@dataclass
class SimStatus:
    id: int
    user_id: int
    text: str
    created_at: float
    deleted: bool = False


@dataclass
class SimComment:
    id: int
    user_id: int
    status_id: int
    text: str
    created_at: float
    reply_cid: int | None = None
    deleted: bool = False


@dataclass
class Limits:
    """Hourly per-user limits of the test tier; ``window`` is shortened by tests."""

    calls: int = 150
    posts: int = 30
    comments: int = 60
    window: float = 3600.0


@dataclass
class Fault:
    path: str  # endpoint suffix, e.g. "comments/reply.json"; "" matches every endpoint
    http_status: int
    error_code: int | None
    times: int


ErrorCodeStyle = Literal["int", "str", "alternate"]


class WeiboApiError(Exception):
    def __init__(self, code: int, http_status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.http_status = http_status


@dataclass
class WeiboState:
    """Everything the fake platform knows, plus the operator controls."""

    official_name: str = "市交通委"
    official_uid: int = 1_900_000_001
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    first_id: int = 4_900_000_000_000_000
    limits: Limits = field(default_factory=Limits)
    error_code_style: ErrorCodeStyle = "alternate"
    clock: Callable[[], float] = time.time
    seed: int = 2011
    quirks: bool = False
    # item id → how it is broken on the wire (quirks): surrogate | missing | range | nested
    poison: dict[int, str] = field(default_factory=dict)
    # fan-service push: where the bridge listens, the app secret both sides know
    hook_url: str | None = None
    appsecret: str = "weibo-fan-service-appsecret"
    late_after: float = 1.0  # quirks: the late copy of a push comes this many seconds after
    fan_service_window: float = 48 * 3600.0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._last_id = self.first_id
        self._next_uid = 5_000_000_001
        self._time_offset = 0.0
        self._tokens: dict[str, str] = {self.token: "valid"}  # token -> valid|expired|revoked
        self.users: dict[int, SimUser] = {}
        self.followed: set[int] = set()
        self.statuses: dict[int, SimStatus] = {}
        self.comments: dict[int, SimComment] = {}
        self._counters = {"calls": 0, "posts": 0, "comments": 0}
        self._window_index = self._current_window()
        self._faults: list[Fault] = []
        self._errors_sent = 0
        self.requests: list[tuple[str, str]] = []  # (method, path): what the adapter asked
        # (unix time, method, endpoint, User-Agent): who asked what, when (which process)
        self.request_log: list[tuple[float, str, str, str]] = []
        # fan-service: one record per delivery, one per reply; the last message time per sender
        self.push_log: list[dict[str, Any]] = []
        self.dm_replies: list[dict[str, Any]] = []
        self._dm_last: dict[str, float] = {}
        self._push_seq = 0
        self.last_push: tuple[bytes, str] | None = None
        self.users[self.official_uid] = SimUser(
            self.official_uid, self.official_name, verified_type=1, verified_reason="政府机构"
        )

    # ------------------------------------------------------------------ clock & ids

    def now(self) -> float:
        return self.clock() + self._time_offset

    def advance_time(self, seconds: float) -> None:
        """Move the simulator's clock forward (e.g. past the rate-limit window)."""
        self._time_offset += seconds

    def _new_id(self) -> int:
        # Real ids are sparse and time-ordered; gaps make off-by-one paging bugs visible.
        self._last_id += self._rng.randint(1, 997)
        return self._last_id

    # ------------------------------------------------------------------ operator: content

    def citizen(self, screen_name: str, *, verified_type: int = -1, followed: bool = False) -> int:
        """The uid of the citizen with that screen name (created on first use)."""
        for u in self.users.values():
            if u.screen_name == screen_name:
                return u.id
        uid = self._next_uid
        self._next_uid += self._rng.randint(1, 50)
        self.users[uid] = SimUser(uid, screen_name, verified_type=verified_type)
        if followed:
            self.followed.add(uid)
        return uid

    def add_status(self, user_id: int, text: str, at: float | None = None) -> SimStatus:
        """A post; ``at`` (unix time) back-dates it (an account's old posts)."""
        s = SimStatus(self._new_id(), user_id, text, self.now() if at is None else at)
        self.statuses[s.id] = s
        return s

    def add_official_post(
        self, text: str = "【通告】本周地铁运营调整，欢迎留言咨询。", at: float | None = None
    ) -> SimStatus:
        return self.add_status(self.official_uid, text, at)

    def add_comment(
        self, user_id: int, status_id: int, text: str, reply_cid: int | None = None
    ) -> SimComment:
        c = SimComment(self._new_id(), user_id, status_id, text, self.now(), reply_cid)
        self.comments[c.id] = c
        return c

    def add_citizen_comment(
        self,
        text: str,
        *,
        citizen: str = "热心市民",
        status_id: int | None = None,
        reply_cid: int | None = None,
    ) -> SimComment:
        """A citizen comments on one of the official account's posts (a new one if not given),
        or answers a comment under it (``reply_cid``: the citizen's own, another citizen's,
        or the official account's reply)."""
        if reply_cid is not None:
            status_id = self.comments[reply_cid].status_id
        if status_id is None:
            status_id = self.add_official_post().id
        return self.add_comment(self.citizen(citizen), status_id, text, reply_cid)

    def add_mention_post(self, text: str, *, citizen: str = "热心市民") -> SimStatus:
        """A citizen's own post that @-mentions the official account."""
        if f"@{self.official_name}" not in text:
            text = f"@{self.official_name} {text}"
        return self.add_status(self.citizen(citizen), text)

    def add_comment_mention(
        self, text: str, *, citizen: str = "热心市民", status_id: int | None = None
    ) -> SimComment:
        """A citizen's comment on someone else's post that @-mentions the official account."""
        if status_id is None:
            status_id = self.add_status(self.citizen("路人甲"), "今天早高峰又堵了").id
        if f"@{self.official_name}" not in text:
            text = f"@{self.official_name} {text}"
        return self.add_comment(self.citizen(citizen), status_id, text)

    def delete(self, item_id: int) -> None:
        """Delete a post or a comment (its author or a moderator did)."""
        if item_id in self.statuses:
            self.statuses[item_id].deleted = True
        elif item_id in self.comments:
            self.comments[item_id].deleted = True
        else:
            raise KeyError(item_id)

    def posted_replies(self) -> list[dict[str, Any]]:
        """Comments the official account has posted, oldest first."""
        return [
            {
                "id": str(c.id),
                "text": c.text,
                "status_id": str(c.status_id),
                "reply_cid": None if c.reply_cid is None else str(c.reply_cid),
            }
            for c in sorted(self.comments.values(), key=lambda c: c.id)
            if c.user_id == self.official_uid and not c.deleted
        ]

    # ------------------------------------------------------------------ fan-service push

    def _signed_query(self, *, bad: bool = False) -> dict[str, str]:
        ts, nonce = str(int(self.now())), secrets.token_hex(8)
        secret = self.appsecret + ("-wrong" if bad else "")
        sig = hashlib.sha1("".join(sorted([secret, ts, nonce])).encode()).hexdigest()
        return {"signature": sig, "timestamp": ts, "nonce": nonce}

    async def verify_hook(self, *, bad_signature: bool = False) -> tuple[int, str]:
        """The URL verification GET: (status, body); accepted when the body is ``echostr``."""
        assert self.hook_url is not None, "set hook_url first"
        echostr = secrets.token_hex(6)
        params = self._signed_query(bad=bad_signature) | {"echostr": echostr}
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.hook_url, params=params) as resp,
        ):
            return resp.status, await resp.text()

    def fan_message(self, sender_uid: int, text: str, *, xml: bool = False) -> bytes:
        """One private message as Weibo pushes it (JSON, or XML shaped like WeChat's)."""
        self._push_seq += 1
        at = int(self.now())
        msg_id = str(self._new_id())
        if xml:
            return (
                f"<xml><ToUserName>{self.official_uid}</ToUserName>"
                f"<FromUserName>{sender_uid}</FromUserName><CreateTime>{at}</CreateTime>"
                f"<MsgType>text</MsgType><Content><![CDATA[{text}]]></Content>"
                f"<MsgId>{msg_id}</MsgId></xml>"
            ).encode()
        doc = {
            "type": "text",
            "receiver_id": self.official_uid,
            "sender_id": sender_uid,
            "created_at": weibo_time(at),
            "text": text,
            "id": int(msg_id),
            "data": {},
        }
        return json.dumps(doc, ensure_ascii=False).encode()

    async def push_message(
        self,
        sender_uid: int,
        text: str,
        *,
        xml: bool | None = None,
        copies: int | None = None,
        bad_signature: bool = False,
    ) -> list[int]:
        """Push one private message to ``hook_url``; the statuses of every delivery.

        Strict: delivered once, then retried (at most 3 more times) while not answered 200
        within 5 s. ``copies`` (quirks: 3) delivers it that many times whatever the answers:
        all but the last at once, the last ``late_after`` seconds later."""
        assert self.hook_url is not None, "set hook_url first"
        number = self._push_seq + 1
        if xml is None:
            xml = self.quirks and number % 2 == 0
        if copies is None:
            copies = 3 if self.quirks else 0
        body = self.fan_message(sender_uid, text, xml=xml)
        self._dm_last[str(sender_uid)] = self.now()
        query = self._signed_query(bad=bad_signature)
        ctype = "text/xml" if xml else "application/json"
        self.last_push = (body, ctype)
        statuses: list[int] = []

        async def deliver(http: aiohttp.ClientSession, copy: int) -> int:
            started = time.monotonic()
            try:
                async with http.post(
                    self.hook_url or "",
                    params=query,
                    data=body,
                    headers={"Content-Type": ctype},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp:
                    status = resp.status
            except TimeoutError:
                status = 0  # not answered within 5 s
            self.push_log.append(
                {
                    "message": number,
                    "copy": copy,
                    "status": status,
                    "seconds": time.monotonic() - started,
                    "format": "xml" if xml else "json",
                }
            )
            return status

        async with aiohttp.ClientSession() as http:
            if copies:
                statuses += await asyncio.gather(*(deliver(http, c) for c in range(copies - 1)))
                await asyncio.sleep(self.late_after)
                statuses.append(await deliver(http, copies - 1))
            else:
                for attempt in range(4):
                    statuses.append(await deliver(http, attempt))
                    if statuses[-1] == 200 or 400 <= statuses[-1] < 500:
                        break
        return statuses

    async def redeliver_last(self) -> int:
        """A late duplicate: the last pushed message delivered once more (signed anew, as a
        retry is); its status."""
        assert self.hook_url is not None and self.last_push is not None, "push first"
        body, ctype = self.last_push
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.hook_url,
                params=self._signed_query(),
                data=body,
                headers={"Content-Type": ctype},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp,
        ):
            return resp.status

    # ------------------------------------------------------------------ operator: token, limits

    def expire_token(self) -> None:
        self._tokens = {t: ("expired" if s == "valid" else s) for t, s in self._tokens.items()}

    def revoke_token(self) -> None:
        self._tokens = {t: ("revoked" if s == "valid" else s) for t, s in self._tokens.items()}

    def replace_token(self, new_token: str | None = None) -> str:
        """A human re-authorised the app: a new valid token; old ones stay dead."""
        self.expire_token()
        self.token = new_token or secrets.token_urlsafe(16)
        self._tokens[self.token] = "valid"
        return self.token

    def exhaust_rate_limit(self) -> None:
        self._roll_window()
        self._counters = {
            "calls": self.limits.calls,
            "posts": self.limits.posts,
            "comments": self.limits.comments,
        }

    def reset_rate_limits(self) -> None:
        self._counters = {"calls": 0, "posts": 0, "comments": 0}

    def inject_fault(
        self, path: str = "", http_status: int = 500, error_code: int | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` calls to ``path`` with an error (5xx body if no code)."""
        self._faults.append(Fault(path, http_status, error_code, times))

    def seconds_to_reset(self) -> int:
        end = (self._current_window() + 1) * self.limits.window
        return max(1, math.ceil(end - self.now()))

    # ------------------------------------------------------------------ rendering

    def _current_window(self) -> int:
        return int(self.now() // self.limits.window)

    def _roll_window(self) -> None:
        idx = self._current_window()
        if idx != self._window_index:
            self._window_index = idx
            self.reset_rate_limits()

    def user_json(self, uid: int) -> dict[str, Any]:
        u = self.users[uid]
        return {
            "id": u.id,
            "idstr": str(u.id),
            "screen_name": u.screen_name,
            "name": u.screen_name,
            "verified": u.verified_type >= 0,
            "verified_type": u.verified_type,
            "verified_reason": u.verified_reason,
            "followers_count": 1024 if u.id == self.official_uid else 12,
        }

    def status_json(self, s: SimStatus) -> dict[str, Any]:
        return {
            "created_at": weibo_time(s.created_at),
            "id": s.id,
            "idstr": str(s.id),
            "mid": str(s.id),
            "text": s.text,
            "source": '<a href="https://weibo.com/" rel="nofollow">微博 weibo.com</a>',
            "user": self.user_json(s.user_id),
            "reposts_count": 0,
            "comments_count": sum(
                1 for c in self.comments.values() if c.status_id == s.id and not c.deleted
            ),
            "pic_ids": [],
        }

    def comment_json(self, c: SimComment, *, with_status: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "created_at": weibo_time(c.created_at),
            "id": c.id,
            "idstr": str(c.id),
            "mid": str(c.id),
            "text": c.text,
            "source": '<a href="https://app.weibo.com/" rel="nofollow">微博 HTML5 版</a>',
            "user": self.user_json(c.user_id),
        }
        if with_status:
            out["status"] = self.status_json(self.statuses[c.status_id])
        if c.reply_cid is not None and c.reply_cid in self.comments:
            out["reply_comment"] = self.comment_json(self.comments[c.reply_cid], with_status=False)
        return out

    # ------------------------------------------------------------------ timelines

    def _visible_comment(self, c: SimComment) -> bool:
        return not c.deleted and not self.statuses[c.status_id].deleted

    def _author_ok(self, uid: int, filter_by_author: int) -> bool:
        if filter_by_author == 1:
            return uid in self.followed
        if filter_by_author == 2:
            return uid not in self.followed
        return True

    def timeline(self, kind: str, filter_by_author: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """(id, json) of one timeline, newest first."""
        mention = f"@{self.official_name}"
        out: list[tuple[int, dict[str, Any]]] = []
        if kind == "statuses_mentions":
            for s in self.statuses.values():
                if (
                    not s.deleted
                    and mention in s.text
                    and self._author_ok(s.user_id, filter_by_author)
                ):
                    out.append((s.id, self._poisoned(s.id, self.status_json(s))))
        else:
            for c in self.comments.values():
                if not self._visible_comment(c) or not self._author_ok(c.user_id, filter_by_author):
                    continue
                if kind == "comments_to_me":
                    on_mine = self.statuses[c.status_id].user_id == self.official_uid
                    parent = self.comments.get(c.reply_cid) if c.reply_cid else None
                    answers_me = parent is not None and parent.user_id == self.official_uid
                    if not (on_mine or answers_me):
                        continue
                elif mention not in c.text:
                    continue
                out.append((c.id, self._poisoned(c.id, self.comment_json(c))))
        out.sort(key=lambda t: t[0], reverse=True)
        return out

    def user_timeline(self, uid: int) -> list[tuple[int, dict[str, Any]]]:
        """(id, json) of one user's own posts, newest first (``statuses/user_timeline``; the
        account's replies are comments, not posts, and are not in it)."""
        mine = [s for s in self.statuses.values() if s.user_id == uid and not s.deleted]
        mine.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return [(s.id, self._poisoned(s.id, self.status_json(s))) for s in mine]

    def _poisoned(self, item_id: int, obj: dict[str, Any]) -> dict[str, Any]:
        how = self.poison.get(item_id) if self.quirks else None
        if how == "surrogate":  # the sender cut an emoji in half
            return {**obj, "text": obj["text"] + "\ud83d"}
        if how == "missing":
            return {k: v for k, v in obj.items() if k != "created_at"}
        if how == "range":  # far beyond int64 (and no idstr to fall back on)
            return {**obj, "user": {**obj["user"], "id": 10**30, "idstr": None}}
        if how == "nested":
            deep: Any = 1
            for _ in range(300):
                deep = {"id": deep}
            return {**obj, "user": deep}
        return obj

    # ------------------------------------------------------------------ request plumbing

    def error_body(self, path: str, code: int) -> dict[str, Any]:
        self._errors_sent += 1
        style = self.error_code_style
        as_str = style == "str" or (style == "alternate" and self._errors_sent % 2 == 0)
        return {
            "request": path,
            "error_code": str(code) if as_str else code,
            "error": _MESSAGES.get(code, "error"),
        }

    def authorise(self, token: str | None) -> int:
        status = self._tokens.get(token or "")
        if status is None:
            raise WeiboApiError(E_TOKEN_INVALID, 403)
        if status == "expired":
            raise WeiboApiError(E_TOKEN_EXPIRED, 403)
        if status == "revoked":
            raise WeiboApiError(E_TOKEN_REVOKED, 403)
        return self.official_uid

    def count_call(self, *, comment: bool = False) -> None:
        self._roll_window()
        if self._counters["calls"] >= self.limits.calls:
            raise WeiboApiError(E_USER_RATE, 403)
        if comment and self._counters["comments"] >= self.limits.comments:
            raise WeiboApiError(E_USER_RATE, 403)
        self._counters["calls"] += 1
        if comment:
            self._counters["comments"] += 1

    def take_fault(self, path: str) -> Fault | None:
        for f in self._faults:
            if path.endswith(f.path):
                f.times -= 1
                if f.times <= 0:
                    self._faults.remove(f)
                return f
        return None

    # ------------------------------------------------------------------ posting

    def post_comment(
        self, status_id: int, text: str, *, reply_cid: int | None, without_mention: bool
    ) -> SimComment:
        status = self.statuses.get(status_id)
        if status is None or status.deleted:
            raise WeiboApiError(E_POST_GONE)
        if reply_cid is not None:
            parent = self.comments.get(reply_cid)
            if parent is None or parent.deleted:
                raise WeiboApiError(E_COMMENT_GONE)
            if parent.status_id != status_id:
                raise WeiboApiError(E_PARAM)
            if not without_mention:
                text = f"回复@{self.users[parent.user_id].screen_name}:{text}"
                if len(text) > MAX_COMMENT_CHARS:  # the mention counts toward the limit
                    raise WeiboApiError(E_TOO_LONG)
        for c in self.comments.values():
            if (
                c.user_id == self.official_uid
                and c.status_id == status_id
                and c.text == text
                and not c.deleted
            ):
                raise WeiboApiError(E_IDENTICAL)
        return self.add_comment(self.official_uid, status_id, text, reply_cid)


# ---------------------------------------------------------------------- HTTP app

_TIMELINES = {
    "comments/to_me.json": ("comments_to_me", "comments", 50),
    "comments/mentions.json": ("comments_mentions", "comments", 50),
    "statuses/mentions.json": ("statuses_mentions", "statuses", 20),
}


def _int_param(params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise WeiboApiError(E_PARAM) from None


def _state(request: web.Request) -> WeiboState:
    state: WeiboState = request.app[STATE_KEY]
    return state


STATE_KEY: web.AppKey[WeiboState] = web.AppKey("weibo_state", WeiboState)


async def _api(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    endpoint = request.match_info["endpoint"]
    path = f"/2/{endpoint}"
    state.requests.append((request.method, endpoint))
    state.request_log.append(
        (time.time(), request.method, endpoint, request.headers.get("User-Agent", ""))
    )
    params: Any = request.query if request.method == "GET" else await request.post()
    try:
        fault = state.take_fault(endpoint)
        if fault is not None:
            if fault.error_code is None:
                return web.Response(status=fault.http_status, text="<html>502 Bad Gateway</html>")
            raise WeiboApiError(fault.error_code, fault.http_status)
        token = params.get("access_token")
        state.authorise(token if isinstance(token, str) else None)
        if endpoint == "account/rate_limit_status.json":
            return web.json_response(_rate_limit_status(state))
        if endpoint in _TIMELINES and request.method == "GET":
            state.count_call()
            return web.json_response(_timeline(state, endpoint, params))
        if endpoint == "statuses/user_timeline.json" and request.method == "GET":
            state.count_call()
            return web.json_response(_user_timeline(state, params))
        if endpoint == "account/get_uid.json" and request.method == "GET":
            state.count_call()
            return web.json_response({"uid": state.official_uid})
        if endpoint in ("comments/reply.json", "comments/create.json") and request.method == "POST":
            state.count_call(comment=True)
            return web.json_response(_post(state, endpoint, params))
        if endpoint == "messages/reply/biz.json" and request.method == "POST":
            state.count_call(comment=True)
            return web.json_response(_dm_reply(state, params))
        if endpoint == "statuses/update.json":
            state.count_call()
            raise WeiboApiError(E_PERMISSION, 403)  # withdrawn from the open API
        raise web.HTTPNotFound()
    except WeiboApiError as e:
        return web.json_response(state.error_body(path, e.code), status=e.http_status)


def _timeline(state: WeiboState, endpoint: str, params: Any) -> dict[str, Any]:
    kind, wrapper, default_count = _TIMELINES[endpoint]
    since_id = _int_param(params, "since_id", 0)
    max_id = _int_param(params, "max_id", 0)
    count = min(max(_int_param(params, "count", default_count), 1), MAX_COUNT)
    page = max(_int_param(params, "page", 1), 1)
    fba = _int_param(params, "filter_by_author", 0)
    rows = [
        (i, obj)
        for i, obj in state.timeline(kind, fba)
        if i > since_id and (max_id == 0 or i <= max_id)  # max_id is inclusive
    ]
    chunk = rows[(page - 1) * count : page * count]
    rest = rows[page * count :]
    return {
        wrapper: [obj for _, obj in chunk],
        "hasvisible": False,
        "previous_cursor": 0,
        "next_cursor": rest[0][0] if rest else 0,
        "total_number": len(rows),
        "interval": 0,
    }


def _user_timeline(state: WeiboState, params: Any) -> dict[str, Any]:
    """``statuses/user_timeline.json``: ``uid`` (default the token's own account), ``count``
    (default 20, at most 100), ``page``, ``since_id``, ``max_id``; newest first."""
    uid = _int_param(params, "uid", state.official_uid)
    if uid not in state.users:
        raise WeiboApiError(E_PARAM)
    since_id = _int_param(params, "since_id", 0)
    max_id = _int_param(params, "max_id", 0)
    count = min(max(_int_param(params, "count", 20), 1), 100)
    page = max(_int_param(params, "page", 1), 1)
    rows = [
        obj for i, obj in state.user_timeline(uid) if i > since_id and (max_id == 0 or i <= max_id)
    ]
    return {
        "statuses": rows[(page - 1) * count : page * count],
        "previous_cursor": 0,
        "next_cursor": 0,
        "total_number": len(rows),
    }


def _post(state: WeiboState, endpoint: str, params: Any) -> dict[str, Any]:
    text = params.get("comment")
    if not isinstance(text, str) or not text.strip():
        raise WeiboApiError(E_PARAM)
    if len(text) > MAX_COMMENT_CHARS:
        raise WeiboApiError(E_TOO_LONG)
    status_id = _int_param(params, "id", 0)
    if endpoint == "comments/reply.json":
        cid = _int_param(params, "cid", 0)
        if not cid or not status_id:
            raise WeiboApiError(E_PARAM)
        without_mention = _int_param(params, "without_mention", 0) == 1
        c = state.post_comment(status_id, text, reply_cid=cid, without_mention=without_mention)
    else:
        if not status_id:
            raise WeiboApiError(E_PARAM)
        c = state.post_comment(status_id, text, reply_cid=None, without_mention=True)
    return state.comment_json(c)


def _dm_reply(state: WeiboState, params: Any) -> dict[str, Any]:
    """``messages/reply/biz.json``: a fan-service reply, only within the window of the
    citizen's last message."""
    receiver = str(params.get("receiver_id", ""))
    try:
        data = json.loads(str(params.get("data", "")))
        text = data["text"]
    except (ValueError, KeyError, TypeError):
        raise WeiboApiError(E_PARAM) from None
    if not receiver.isdigit() or not isinstance(text, str) or not text.strip():
        raise WeiboApiError(E_PARAM)
    last = state._dm_last.get(receiver)
    if last is None or state.now() - last > state.fan_service_window:
        raise WeiboApiError(E_PERMISSION, 403)
    reply = {"id": str(state._new_id()), "receiver_id": receiver, "text": text}
    state.dm_replies.append(reply)
    return {"id": int(reply["id"]), "idstr": reply["id"], "receiver_id": int(receiver)}


def _rate_limit_status(state: WeiboState) -> dict[str, Any]:
    state._roll_window()
    reset_in = state.seconds_to_reset()
    reset_at = datetime.fromtimestamp(state.now() + reset_in, CST)
    remaining = max(0, state.limits.calls - state._counters["calls"])
    return {
        "api_rate_limits": [
            {
                "api": "comments/create",
                "limit": state.limits.comments,
                "limit_time_unit": "HOURS",
                "remaining_hits": max(0, state.limits.comments - state._counters["comments"]),
            },
            {
                "api": "statuses/update",
                "limit": state.limits.posts,
                "limit_time_unit": "HOURS",
                "remaining_hits": max(0, state.limits.posts - state._counters["posts"]),
            },
        ],
        "ip_limit": 10000,
        "limit_time_unit": "HOURS",
        "remaining_ip_hits": 10000,
        "remaining_user_hits": remaining,
        "reset_time": f"{reset_at:%Y-%m-%d %H:%M:%S}",
        "reset_time_in_seconds": reset_in,
        "user_limit": state.limits.calls,
    }


# ---------------------------------------------------------------------- /_sim operator controls


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


async def _sim_official_post(request: web.Request) -> web.Response:
    """``{"text": …, "days_ago": 15}``: an official post, back-dated when ``days_ago`` is given."""
    body = await _body(request)
    state = _state(request)
    days_ago = body.get("days_ago")
    at = state.now() - float(days_ago) * 86400 if isinstance(days_ago, int | float) else None
    s = state.add_official_post(body.get("text") or "【通告】欢迎留言咨询。", at)
    return web.json_response(state.status_json(s))


async def _sim_comment(request: web.Request) -> web.Response:
    body, state = await _body(request), _state(request)
    sid = body.get("status_id")
    c = state.add_citizen_comment(
        str(body["text"]),
        citizen=str(body.get("citizen", "热心市民")),
        status_id=int(sid) if sid else None,
    )
    return web.json_response(state.comment_json(c))


async def _sim_mention(request: web.Request) -> web.Response:
    body, state = await _body(request), _state(request)
    s = state.add_mention_post(str(body["text"]), citizen=str(body.get("citizen", "热心市民")))
    return web.json_response(state.status_json(s))


async def _sim_comment_mention(request: web.Request) -> web.Response:
    body, state = await _body(request), _state(request)
    c = state.add_comment_mention(str(body["text"]), citizen=str(body.get("citizen", "热心市民")))
    return web.json_response(state.comment_json(c))


async def _sim_delete(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        _state(request).delete(int(body["id"]))
    except KeyError:
        raise web.HTTPNotFound() from None
    return web.json_response({"deleted": str(body["id"])})


async def _sim_token(request: web.Request) -> web.Response:
    action, state = request.match_info["action"], _state(request)
    if action == "expire":
        state.expire_token()
        return web.json_response({"ok": True})
    if action == "revoke":
        state.revoke_token()
        return web.json_response({"ok": True})
    if action == "replace":
        body = await _body(request)
        return web.json_response({"token": state.replace_token(body.get("token"))})
    raise web.HTTPNotFound()


async def _sim_replies(request: web.Request) -> web.Response:
    return web.json_response(_state(request).posted_replies())


async def _sim_rate_limit(request: web.Request) -> web.Response:
    action, state = request.match_info["action"], _state(request)
    if action == "exhaust":
        state.exhaust_rate_limit()
    elif action == "reset":
        state.reset_rate_limits()
    else:
        raise web.HTTPNotFound()
    return web.json_response({"ok": True})


async def _sim_advance(request: web.Request) -> web.Response:
    body = await _body(request)
    _state(request).advance_time(float(body.get("seconds", 0)))
    return web.json_response({"now": _state(request).now()})


async def _sim_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    code = body.get("error_code")
    _state(request).inject_fault(
        str(body.get("path", "")),
        int(body.get("http_status", 500)),
        int(code) if code is not None else None,
        int(body.get("times", 1)),
    )
    return web.json_response({"ok": True})


def create_app(state: WeiboState | None = None) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state or WeiboState()
    app.router.add_route("*", "/2/{endpoint:.+}", _api)
    app.router.add_post("/_sim/official_post", _sim_official_post)
    app.router.add_post("/_sim/comment", _sim_comment)
    app.router.add_post("/_sim/mention", _sim_mention)
    app.router.add_post("/_sim/comment_mention", _sim_comment_mention)
    app.router.add_post("/_sim/delete", _sim_delete)
    app.router.add_post("/_sim/token/{action}", _sim_token)
    app.router.add_get("/_sim/replies", _sim_replies)
    app.router.add_post("/_sim/rate_limit/{action}", _sim_rate_limit)
    app.router.add_post("/_sim/clock/advance", _sim_advance)
    app.router.add_post("/_sim/fault", _sim_fault)
    return app


async def serve(host: str, port: int, **opts: Any) -> None:
    """Run the simulator until cancelled. ``opts`` are :class:`WeiboState` fields
    (e.g. ``token=``, ``official_name=``, ``error_code_style=``) plus ``window=`` seconds."""
    window = opts.pop("window", None)
    state = WeiboState(**opts)
    if window is not None:
        state.limits.window = float(window)
    runner = web.AppRunner(create_app(state))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
