"""A Mastodon platform for demos and tests: the third-party ``mastodon-mock`` run in-process.

Unlike the home-made simulators, the server here is someone else's implementation of the
Mastodon API (a FastAPI app), so tests against it catch misreadings a fake of our own would
share. This module only starts it inside the current event loop, seeds the official account
through mastodon-mock's seed config, and drives citizens through the same HTTP API a real
client uses (plus mastodon-mock's ``/api/v1/_mock/*`` control plane for accounts and faults).

Operator controls exist as Python methods on ``MastodonSimState`` and over HTTP under
``/_sim/...`` on the same server, so ``govbridge simulate mastodon --port N`` can be driven.

``quirks`` puts a wrapper in front of mastodon-mock that behaves like other Mastodon-API
servers (the end of ``reference/mastodon.md``): a bad or revoked token answered 400 with the
plain text ``Invalid Bearer token``; no ``/api/v2/notifications/policy`` (404);
``include_filtered`` ignored; ``Idempotency-Key`` ignored; ``acct`` of local users with the
domain; and, on demand, statuses committed after the client gave up (``slow_commit``: committed
at once, answered late; ``commit_late``: committed late, as a server waiting on a lock on its
posts table does, so a client that timed out and looks at once finds nothing yet) and poison
items (``poison``: a notification rewritten into something no client can read).

Streaming (server-sent events, ``/api/v1/streaming/user[/notification]``, heartbeats every
second here) is mastodon-mock's own. ``streaming=False`` switches it off (404, a server without
streaming). With ``quirks`` the stream is also dropped mid-burst: every ``stream_drop_every``-th
notification event (default 100) is lost in flight and the connection closed, as a proxy or a
restarting streaming server does (``drop_stream()`` does it once, in any mode);
``stall_next_stream()`` makes the next connection go silent
(no event, no heartbeat) without closing. ``notified_at`` records when each notification's
status was posted (monotonic clock), ``stream_connections`` and ``stream_drops`` what the
streams went through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import aiohttp
import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request
from mastodon_mock.app import create_app as create_mock_app
from mastodon_mock.config import (
    DatabaseConfig,
    MastodonMockConfig,
    RateLimitConfig,
    SeedAccount,
    SeedConfig,
    StreamingConfig,
)
from pydantic import SecretStr

from adapters.mastodon import html_to_text, parse_link_header

log = logging.getLogger(__name__)

DEFAULT_OFFICIAL = "gov_official"
# Only for ``serve()``: a stable mock credential so a separate ``govbridge run`` can be
# configured to talk to ``govbridge simulate mastodon``. In-process use draws a random one.
SIM_TOKEN = "sim-official-token"
_API_PATHS = r"^/api/v[12]/(?!_mock)"


@dataclass
class OfficialPost:
    """One ``POST /api/v1/statuses`` of the official account, as the server saw it: when it
    arrived, how long it waited to be committed, and the status it made (``None`` if it made
    none). The server's own record, whatever the client saw of it."""

    arrived_at: float
    wait: float | None  # seconds it was held (None: held until released by an event)
    committed_at: float | None = None
    status_id: str | None = None


@dataclass(frozen=True)
class Citizen:
    """A citizen account on the mock, with its own (mock) access token."""

    id: str
    username: str
    token: SecretStr = field(repr=False)

    @property
    def acct(self) -> str:
        return self.username


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside someone else's event loop: leave the host's signal handling alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class MastodonSimState:
    """A running mastodon-mock with an official account, citizens and fault controls."""

    def __init__(
        self,
        *,
        official: str = DEFAULT_OFFICIAL,
        token: str | None = None,
        filter_private_mentions: bool = True,
        rate_limit: RateLimitConfig | None = None,
        quirks: bool = False,
        streaming: bool = True,
    ) -> None:
        """``filter_private_mentions`` mirrors Mastodon 4.3's default notification policy
        (private mentions from strangers are filtered) so the adapter must cope with it.
        ``rate_limit`` switches on mastodon-mock's own fixed-window limiter.
        """
        self.official = official
        self.official_token = SecretStr(token or secrets.token_urlsafe(24))
        self.filter_private_mentions = filter_private_mentions
        self.official_id = ""
        self.citizens: dict[str, Citizen] = {}
        self._media_dir = tempfile.TemporaryDirectory(prefix="govbridge_mastodon_sim_")
        self.mock_config = MastodonMockConfig(
            database=DatabaseConfig(path=":memory:"),
            url_scheme="http",
            title="govbridge Mastodon simulator",
            media_storage_path=self._media_dir.name,
            streaming=StreamingConfig(enabled=streaming, heartbeat_seconds=1.0),
            ratelimit=rate_limit or RateLimitConfig(),
            seed=SeedConfig(
                accounts=[
                    SeedAccount(
                        username=official,
                        display_name=official,
                        bot=True,
                        access_token=self.official_token.get_secret_value(),
                    )
                ]
            ),
        )
        # Real servers' behaviour the adapter must survive (see the end of reference/mastodon.md)
        self.quirks = quirks
        self.ignore_idempotency_key = quirks  # a repeated key posts again
        self.slow_commit = 0.0  # seconds a new status is held back AFTER it was committed
        # quirks: the official account's new statuses are committed late (a lock on the
        # server's posts table): the next ones by ``late_commits`` in turn, then each by
        # ``commit_delay`` (see ``commit_late``); every such POST is kept in ``posts``.
        self.commit_delay = 0.0
        self.late_commits: deque[float | asyncio.Event] = deque()
        self.posts: list[OfficialPost] = []
        self._posts_in_flight = 0
        self._posts_idle = asyncio.Event()
        self._posts_idle.set()
        # status id → how its notification is broken on the wire (quirks; see _poisoned)
        self.poison: dict[str, str] = {}
        # streaming (see the module docstring)
        self.stream_drop_every = 100 if quirks else 0
        self.streamed_notifications = 0  # notification events sent (or lost) on streams
        self.stream_drops = 0
        self.stream_connections = 0
        self._stall_next = False
        self._drops_pending = 0
        self._streams: set[asyncio.Queue[Any]] = set()  # the open streams' outgoing queues
        self.notified_at: dict[str, float] = {}  # status id → when it was posted (monotonic)
        self.app: FastAPI = create_app(self)
        self.port = 0
        self.host = "127.0.0.1"
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.ready = asyncio.Event()  # set once the official account is set up

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> MastodonSimState:
        """Bind (port 0 = any free port), serve as a task of this loop, seed the policy."""
        server = _EmbeddedServer(
            uvicorn.Config(
                _RealServerBehaviour(self.app, self),
                host=host,
                port=port,
                log_level="warning",
                lifespan="on",
            )
        )
        task = asyncio.create_task(server.serve(), name="mastodon-mock")
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            server.should_exit = True
            if task.done():
                task.result()  # surfaces the bind error
            task.cancel()
            raise RuntimeError("mastodon-mock did not start")
        self._server, self._task, self.host = server, task, host
        self.port = server.servers[0].sockets[0].getsockname()[1]
        # Links in API answers (status urls) point at this server.
        self.mock_config.domain = f"{host}:{self.port}"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        me = await self._api("GET", "/api/v1/accounts/verify_credentials", self.official_token)
        self.official_id = str(me["id"])
        if self.filter_private_mentions and not self.quirks:  # quirks: no policy endpoint
            await self.set_policy(for_private_mentions="filter")
        self.ready.set()
        return self

    async def stop(self) -> None:
        """Stop serving; the mock's lifespan deletes its temporary database."""
        self.ready.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
            except TimeoutError:
                self._server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._server = self._task = None
        self._media_dir.cleanup()

    async def __aenter__(self) -> MastodonSimState:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def account_config(self, department: str = "demo", **overrides: Any) -> dict[str, Any]:
        """An ``[[accounts]]`` block for ``MastodonSource`` pointed at this server."""
        return {
            "adapter": "mastodon",
            "handle": self.official,
            "department": department,
            "base_url": self.base_url,
            "token": self.official_token,
            **overrides,
        }

    # ------------------------------------------------------------------ citizens

    async def create_citizen(
        self, username: str | None = None, display_name: str | None = None
    ) -> Citizen:
        """A fresh local account with a token (mastodon-mock's dev-user control)."""
        name = username or f"citizen_{secrets.token_hex(4)}"
        body = {"username": name, "display_name": display_name or name}
        data = await self._api("POST", "/api/v1/_mock/dev_user", None, json_body=body)
        citizen = Citizen(
            id=str(data["id"]), username=data["username"], token=SecretStr(data["access_token"])
        )
        self.citizens[citizen.username] = citizen
        return citizen

    async def mention(
        self,
        citizen: Citizen,
        text: str,
        *,
        visibility: str = "public",
        in_reply_to_id: str | None = None,
    ) -> dict[str, Any]:
        """The citizen posts ``@official text``; the mock notifies the official account."""
        status = text if text.startswith(f"@{self.official}") else f"@{self.official} {text}"
        form = {"status": status, "visibility": visibility}
        if in_reply_to_id:
            form["in_reply_to_id"] = in_reply_to_id
        posted = time.monotonic()
        result: dict[str, Any] = await self._api(
            "POST", "/api/v1/statuses", citizen.token, data=form
        )
        self.notified_at[str(result["id"])] = posted
        return result

    async def direct_message(
        self, citizen: Citizen, text: str, *, in_reply_to_id: str | None = None
    ) -> dict[str, Any]:
        """A private mention (visibility ``direct``): Mastodon's direct message."""
        return await self.mention(citizen, text, visibility="direct", in_reply_to_id=in_reply_to_id)

    async def announce(self, text: str) -> dict[str, Any]:
        """The official account posts a public status (an announcement citizens answer)."""
        result: dict[str, Any] = await self._api(
            "POST",
            "/api/v1/statuses",
            self.official_token,
            data={"status": text, "visibility": "public"},
        )
        return result

    async def get_status(self, status_id: str) -> dict[str, Any]:
        """A status as the official account sees it."""
        result: dict[str, Any] = await self._api(
            "GET", f"/api/v1/statuses/{status_id}", self.official_token
        )
        return result

    async def delete_status(self, citizen: Citizen, status_id: str) -> None:
        await self._api("DELETE", f"/api/v1/statuses/{status_id}", citizen.token)

    async def mentions_received(self) -> list[str]:
        """The status ids of every mention notification the official account has (the
        server's own record, filtered ones included), oldest first."""
        out: list[str] = []
        base = (
            f"{self.base_url}/api/v1/notifications?types[]=mention&limit=80&include_filtered=true"
        )
        url: str | None = base
        while url:
            page, _ = await self._get_page(url, self.official_token)
            out.extend(str(n["status"]["id"]) for n in page if n.get("status"))
            # the next page by max_id, the query repeated (a Link may not carry all of it)
            url = f"{base}&max_id={page[-1]['id']}" if page else None
        out.reverse()
        return out

    async def official_replies(self) -> list[dict[str, Any]]:
        """Every status the official account has posted, oldest first, with plain text."""
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.base_url}/api/v1/accounts/{self.official_id}/statuses?limit=40"
        while url:
            page, headers = await self._get_page(url, self.official_token)
            out.extend(page)
            url = parse_link_header(headers.get("Link")).get("next") if page else None
        out.reverse()
        return [
            {
                "id": str(s["id"]),
                "in_reply_to_id": s.get("in_reply_to_id"),
                "visibility": s.get("visibility"),
                "text": html_to_text(s.get("content") or ""),
                "mentions": [m.get("acct") for m in s.get("mentions") or []],
                "created_at": s.get("created_at"),
            }
            for s in out
        ]

    # ------------------------------------------------------------------ operator controls

    def drop_stream(self) -> None:
        """The next notification event on a stream is lost in flight and that connection
        closed (whatever ``quirks`` says)."""
        self._drops_pending += 1

    def stall_next_stream(self) -> None:
        """The next streaming connection goes silent after it opens: no event, no heartbeat,
        and the connection is not closed (a half-dead TCP connection, a stuck proxy)."""
        self._stall_next = True

    def commit_late(self, *delays: float | asyncio.Event, every: float | None = None) -> None:
        """quirks: commit the official account's next statuses late, as a server with a lock
        on its posts table does (reference/mastodon.md, "How other Mastodon-API servers
        behave"): the next POSTs wait ``delays`` seconds each, in turn (an ``asyncio.Event``
        holds one until it is set), then every later one ``every`` seconds (``None`` keeps
        the current ``commit_delay``). The status exists only after its wait, whatever the
        client did meanwhile: a client with a shorter timeout has given up on a status that
        still appears. ``commit_late()`` alone ends it."""
        if not self.quirks:
            raise ValueError(
                "strict mode follows the reference: a status is committed when it is answered"
            )
        self.late_commits = deque(delays)
        if every is not None or not delays:
            self.commit_delay = every or 0.0

    @property
    def posts_in_flight(self) -> int:
        """POSTs of the official account still waiting to be committed."""
        return self._posts_in_flight

    async def posts_settled(self, timeout: float = 120.0) -> None:
        """Wait until no POST of the official account is still waiting to be committed."""
        await asyncio.wait_for(self._posts_idle.wait(), timeout)

    def _next_commit_wait(self) -> float | asyncio.Event:
        return self.late_commits.popleft() if self.late_commits else self.commit_delay

    def _post_started(self) -> None:
        self._posts_in_flight += 1
        self._posts_idle.clear()

    def _post_ended(self) -> None:
        self._posts_in_flight -= 1
        if self._posts_in_flight == 0:
            self._posts_idle.set()

    def is_official(self, scope: Any) -> bool:
        """The request carries the official account's token."""
        want = f"Bearer {self.official_token.get_secret_value()}".encode()
        return any(k.lower() == b"authorization" and v == want for k, v in scope["headers"])

    async def policy(self) -> dict[str, Any]:
        """The official account's notification policy as the server reports it."""
        result: dict[str, Any] = await self._api(
            "GET", "/api/v2/notifications/policy", self.official_token
        )
        return result

    async def set_policy(self, **fields: str) -> dict[str, Any]:
        """The official account's notification policy (``accept`` | ``filter`` | ``drop``)."""
        result: dict[str, Any] = await self._api(
            "PATCH", "/api/v2/notifications/policy", self.official_token, json_body=fields
        )
        return result

    async def inject_rate_limit(
        self, reset_at: datetime | None = None, count: int | None = None
    ) -> str:
        """Answer API calls with 429 and Mastodon's headers (reset as ISO 8601).

        ``count`` limits how many requests are refused; ``None`` until cleared.
        """
        reset = reset_at or datetime.now(UTC) + timedelta(minutes=5)
        rule = {
            "match": {"path_regex": _API_PATHS},
            "effect": {
                "type": "ratelimit",
                "status": 429,
                "headers": {
                    "X-RateLimit-Limit": "300",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset.astimezone(UTC).isoformat(timespec="milliseconds"),
                },
            },
            "count": count,
        }
        data = await self._api("POST", "/api/v1/_mock/faults", None, json_body=rule)
        return str(data["id"])

    async def inject_fault(
        self,
        status: int,
        *,
        path: str | None = None,
        methods: list[str] | None = None,
        count: int | None = 1,
    ) -> str:
        """Answer matching API calls with an HTTP error (e.g. 503, 404)."""
        rule = {
            "match": {"path": path, "path_regex": None if path else _API_PATHS, "methods": methods},
            "effect": {"type": "status", "status": status},
            "count": count,
        }
        data = await self._api("POST", "/api/v1/_mock/faults", None, json_body=rule)
        return str(data["id"])

    async def clear_faults(self) -> None:
        await self._api("DELETE", "/api/v1/_mock/faults", None)

    async def new_official_token(self) -> SecretStr:
        """A human re-authorised the official account: a fresh token (the old one stays dead)."""
        data = await self._api(
            "POST", "/api/v1/_mock/login", None, json_body={"username": self.official}
        )
        self.official_token = SecretStr(str(data["access_token"]))
        return self.official_token

    async def revoke_official_token(self) -> None:
        """Revoke the official token (``POST /oauth/revoke``): every call now gets 401, and
        its open streams are closed (as Mastodon's streaming server does on revocation)."""
        await self._api(
            "POST", "/oauth/revoke", None, data={"token": self.official_token.get_secret_value()}
        )
        for stream in self._streams:
            stream.put_nowait(_CLOSE)

    # ------------------------------------------------------------------ HTTP

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("simulator not started")
        return self._http

    async def _api(
        self,
        method: str,
        path: str,
        token: SecretStr | None,
        *,
        data: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        async with self._session().request(
            method, self.base_url + path, data=data, json=json_body, headers=headers
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"mastodon-mock {method} {path}: HTTP {resp.status} {body}")
            return body

    async def _get_page(
        self, url: str, token: SecretStr
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
        async with self._session().get(url, headers=headers) as resp:
            resp.raise_for_status()
            return await resp.json(), dict(resp.headers)


# --------------------------------------------------------------------------- real servers


_CLOSE = object()  # put in an open stream's queue: the server closes that stream


class _RealServerBehaviour:
    """ASGI wrapper: what other Mastodon-API servers do that mastodon-mock does not.

    ``ignore_idempotency_key`` drops the header before the app sees it; ``slow_commit`` lets
    ``POST /api/v1/statuses`` commit the status at once and answer only later, so a client
    with a shorter timeout gives up on a status that exists. With ``quirks`` also: 401 becomes
    a plain-text 400, the v2 notification policy is missing, ``include_filtered`` is ignored,
    local ``acct`` values carry the domain, and notifications of ``poison`` statuses are broken.
    """

    def __init__(self, app: Any, state: MastodonSimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        quirks = self.state.quirks and path.startswith("/api/") and "/_mock/" not in path
        if quirks and path == "/api/v2/notifications/policy":
            await _plain(send, 404, "<html><body><h1>404 page not found</h1></body></html>", "html")
            return
        if path.startswith("/api/v1/streaming") and not path.endswith("/health"):
            await self._stream(scope, receive, send)
            return
        if quirks:
            query = [
                p
                for p in str(scope.get("query_string", b"").decode()).split("&")
                if not p.startswith("include_filtered=")
            ]
            scope = {**scope, "query_string": "&".join(query).encode()}
        posting = scope.get("method") == "POST" and path == "/api/v1/statuses"
        if posting and self.state.ignore_idempotency_key:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"idempotency-key"]
            scope = {**scope, "headers": headers}
        if not posting and not quirks:
            await self.app(scope, receive, send)
            return
        held: list[Any] = []

        async def hold(message: Any) -> None:
            held.append(message)

        if posting and self.state.quirks and self.state.is_official(scope):
            await self._commit_late(scope, receive, hold)
        else:
            await self.app(scope, receive, hold)
        if posting and self.state.slow_commit > 0:
            await asyncio.sleep(self.state.slow_commit)
        if quirks:
            held = self._rewritten(held)
        for message in held:
            await send(message)

    async def _stream(self, scope: Any, receive: Any, send: Any) -> None:
        """mastodon-mock's stream, counted; with quirks dropped every ``stream_drop_every``
        notification events (that event lost in flight); silent after a stall.

        The app writes into a queue of ours and never sees the drop as an error (it is told
        its client left); this wrapper decides what reaches the wire and ends the response."""
        state = self.state
        stalled, state._stall_next = state._stall_next, False
        out: asyncio.Queue[Any] = asyncio.Queue()
        gone = asyncio.Event()

        async def collect(message: Any) -> None:
            out.put_nowait(message)

        async def listen() -> Any:
            waiter = asyncio.ensure_future(receive())
            leaving = asyncio.ensure_future(gone.wait())
            await asyncio.wait({waiter, leaving}, return_when=asyncio.FIRST_COMPLETED)
            leaving.cancel()
            if waiter.done():
                return waiter.result()
            waiter.cancel()
            return {"type": "http.disconnect"}

        async def run_app() -> None:
            try:
                await self.app(scope, listen, collect)
            finally:
                out.put_nowait(None)

        app = asyncio.create_task(run_app())
        started = False
        state._streams.add(out)
        try:
            while True:
                message = await out.get()
                if message is None:
                    return
                if message is _CLOSE:
                    if started:
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                        return
                    continue
                if message["type"] == "http.response.start":
                    if state.quirks and message.get("status") == 401:
                        await _plain(send, 400, "Invalid Bearer token", "plain")
                        return
                    started = True
                    if message.get("status") == 200:
                        state.stream_connections += 1
                    await send(message)
                    continue
                body = message.get("body", b"")
                if b"event: notification" in body:
                    state.streamed_notifications += 1
                    every = state.stream_drop_every if state.quirks else 0
                    due = every and state.streamed_notifications % every == 0
                    if state._drops_pending or due:
                        state._drops_pending = max(0, state._drops_pending - 1)
                        state.stream_drops += 1
                        # this event is lost in flight and the stream ends
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                        return
                if stalled and started and body and not body.startswith(b":connected"):
                    continue  # silent: neither events nor heartbeats
                await send(message)
                if not message.get("more_body", False):
                    return
        finally:
            state._streams.discard(out)
            gone.set()
            if not app.done():
                app.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(app, 2)

    async def _commit_late(self, scope: Any, receive: Any, hold: Any) -> None:
        """Take the whole request at once (as a server does before it waits on a lock), wait
        as ``commit_late`` says, then let the app commit it. The wait goes on whether or not
        the client is still there; the post is kept in ``state.posts``."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its request: nothing to commit
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        state = self.state
        wait = state._next_commit_wait()
        post = OfficialPost(
            arrived_at=time.monotonic(), wait=None if isinstance(wait, asyncio.Event) else wait
        )
        state.posts.append(post)
        state._post_started()
        try:
            if isinstance(wait, asyncio.Event):
                await wait.wait()
            elif wait > 0:
                await asyncio.sleep(wait)
            delivered = False

            async def replay() -> Any:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            answer: list[Any] = []

            async def keep(message: Any) -> None:
                answer.append(message)
                await hold(message)

            await self.app(scope, replay, keep)
            post.committed_at = time.monotonic()
            start = next((m for m in answer if m.get("type") == "http.response.start"), None)
            raw = b"".join(
                m.get("body", b"") for m in answer if m.get("type") == "http.response.body"
            )
            if start is not None and start["status"] < 300:
                with contextlib.suppress(ValueError):
                    doc = json.loads(raw)
                    if isinstance(doc, dict) and doc.get("id") is not None:
                        post.status_id = str(doc["id"])
        finally:
            state._post_ended()

    def _rewritten(self, held: list[Any]) -> list[Any]:
        start = next((m for m in held if m.get("type") == "http.response.start"), None)
        if start is None:
            return held
        body = b"".join(m.get("body", b"") for m in held if m.get("type") == "http.response.body")
        if start["status"] == 401:  # "Invalid Bearer token", as plain text, and 400
            return _plain_messages(400, "Invalid Bearer token", "plain")
        try:
            doc = json.loads(body)
        except ValueError:
            return held
        domain = self.state.mock_config.domain
        doc = _with_domain(doc, domain)
        if isinstance(doc, list) and self.state.poison:
            doc = [self._poisoned(item) for item in doc]
        raw = json.dumps(doc, ensure_ascii=True).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(raw)).encode()))
        return [
            {**start, "headers": headers},
            {"type": "http.response.body", "body": raw, "more_body": False},
        ]

    def _poisoned(self, item: Any) -> Any:
        """A notification as a broken server or a truncating client leaves it."""
        if not isinstance(item, dict) or not isinstance(item.get("status"), dict):
            return item
        how = self.state.poison.get(str(item["status"].get("id")))
        if how is None:
            return item
        status = dict(item["status"])
        if how == "surrogate":  # an emoji cut in half: a lone UTF-16 surrogate in the JSON
            status["content"] = "<p>路灯坏了\ud83d</p>"
        elif how == "missing":  # a field every status has, gone
            status.pop("id", None)
        elif how == "range":  # a number where an object belongs, and far out of range
            status["account"] = 10**400
        elif how == "nested":
            deep: Any = "x"
            for _ in range(300):
                deep = {"a": deep}
            status["account"] = deep
        return {**item, "status": status}


def _with_domain(doc: Any, domain: str) -> Any:
    """``acct`` of local users with the server's domain, as some servers send it."""
    if isinstance(doc, list):
        return [_with_domain(d, domain) for d in doc]
    if isinstance(doc, dict):
        out = {k: _with_domain(v, domain) for k, v in doc.items()}
        acct = out.get("acct")
        if isinstance(acct, str) and acct and "@" not in acct and "username" in out:
            out["acct"] = f"{acct}@{domain}"
        return out
    return doc


def _plain_messages(status: int, text: str, kind: str) -> list[Any]:
    body = text.encode()
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", f"text/{kind}; charset=utf-8".encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        },
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


async def _plain(send: Any, status: int, text: str, kind: str) -> None:
    for message in _plain_messages(status, text, kind):
        await send(message)


# --------------------------------------------------------------------------- HTTP controls


def create_app(state: MastodonSimState) -> FastAPI:
    """mastodon-mock's FastAPI app plus the ``/_sim`` operator routes.

    (The other simulators are aiohttp apps; this one is the third-party FastAPI server.)
    """
    app = create_mock_app(state.mock_config)
    router = APIRouter(prefix="/_sim", tags=["govbridge simulator"])

    async def _citizen(username: str | None) -> Citizen:
        if username and username in state.citizens:
            return state.citizens[username]
        return await state.create_citizen(username)

    async def _body(request: Request) -> dict[str, Any]:
        await state.ready.wait()
        try:
            data = await request.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            raise HTTPException(status_code=422, detail="body must be a JSON object")
        return data

    @router.get("/official")
    async def official() -> dict[str, Any]:
        await state.ready.wait()
        return {"username": state.official, "id": state.official_id, "base_url": state.base_url}

    @router.post("/citizens")
    async def citizens(request: Request) -> dict[str, Any]:
        body = await _body(request)
        c = await state.create_citizen(body.get("username"), body.get("display_name"))
        return {"id": c.id, "username": c.username}

    @router.post("/mention")
    async def mention(request: Request) -> dict[str, Any]:
        body = await _body(request)
        if not body.get("text"):
            raise HTTPException(status_code=422, detail="text is required")
        c = await _citizen(body.get("username"))
        s = await state.mention(
            c,
            str(body["text"]),
            visibility=str(body.get("visibility") or "public"),
            in_reply_to_id=body.get("in_reply_to_id"),
        )
        return {"id": s["id"], "username": c.username, "visibility": s["visibility"]}

    @router.post("/direct_message")
    async def direct_message(request: Request) -> dict[str, Any]:
        body = await _body(request)
        if not body.get("text"):
            raise HTTPException(status_code=422, detail="text is required")
        c = await _citizen(body.get("username"))
        s = await state.direct_message(c, str(body["text"]))
        return {"id": s["id"], "username": c.username, "visibility": s["visibility"]}

    @router.get("/replies")
    async def replies() -> list[dict[str, Any]]:
        await state.ready.wait()
        return await state.official_replies()

    @router.post("/rate_limit")
    async def rate_limit(request: Request) -> dict[str, Any]:
        body = await _body(request)
        seconds = float(body.get("reset_in_seconds", 300))
        rule = await state.inject_rate_limit(
            datetime.now(UTC) + timedelta(seconds=seconds), body.get("count")
        )
        return {"rule": rule}

    @router.post("/faults")
    async def faults(request: Request) -> dict[str, Any]:
        body = await _body(request)
        rule = await state.inject_fault(
            int(body.get("status", 503)), path=body.get("path"), count=body.get("count", 1)
        )
        return {"rule": rule}

    @router.delete("/faults")
    async def clear() -> dict[str, Any]:
        await state.clear_faults()
        return {"ok": True}

    @router.post("/commit_late")
    async def commit_late(request: Request) -> dict[str, Any]:
        """quirks: ``{"delays": [20, 50], "every": 0}``: the official account's next statuses
        are committed that many seconds late (see ``MastodonSimState.commit_late``)."""
        body = await _body(request)
        delays, every = body.get("delays") or [], body.get("every")
        numbers = [*delays, *([] if every is None else [every])]
        if not isinstance(delays, list) or not all(
            isinstance(d, int | float) and not isinstance(d, bool) and 0 <= d <= 3600
            for d in numbers
        ):
            raise HTTPException(status_code=422, detail="delays: seconds between 0 and 3600")
        try:
            state.commit_late(*map(float, delays), every=None if every is None else float(every))
        except ValueError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return {"delays": delays, "every": state.commit_delay}

    @router.get("/posts")
    async def posts() -> list[dict[str, Any]]:
        """Every POST of the official account held by ``commit_late``, as the server saw it."""
        return [asdict(p) for p in state.posts]

    @router.post("/revoke_token")
    async def revoke() -> dict[str, Any]:
        await state.revoke_official_token()
        return {"ok": True}

    app.include_router(router)
    return app


async def serve(
    host: str,
    port: int,
    *,
    official: str = DEFAULT_OFFICIAL,
    token: str = SIM_TOKEN,
    filter_private_mentions: bool = True,
    **_: Any,
) -> None:
    """Run the simulator until cancelled (``govbridge simulate mastodon``)."""
    state = MastodonSimState(
        official=official, token=token, filter_private_mentions=filter_private_mentions
    )
    await state.start(host, port)
    log.info(
        "mastodon simulator (mastodon-mock) at %s, official account @%s; controls under /_sim",
        state.base_url,
        official,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await state.stop()
