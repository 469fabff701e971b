"""The one HTTP client every adapter uses.

It owns what is the same for every platform, so each adapter keeps only what is its own:

- one ``aiohttp`` session per adapter (keep-alive), a total timeout per request;
- an optional ``CircuitBreaker`` around every call (a backend that is down costs a bounded
  number of requests);
- a response size cap (a runaway or hostile server cannot exhaust memory);
- rate limits: ``Retry-After`` (seconds or an HTTP date) and ``X-RateLimit-Remaining/-Reset``;
  with ``pace_rate_limit`` a remaining count of 0 pauses every call until the reset, before
  the server has to refuse one;
- one mapping of HTTP outcomes onto adapter errors (below), with the error body's own words
  (JSON, XML, HTML or plain text) cut to a safe length in the reason. Reasons name the call
  (``what``), never the URL, so a token in a query string never reaches a log;
- redirects: not followed by default (``follow_redirects = "off"``), so credentials (a REST
  ``X-API-Key`` header, an Open311 ``api_key`` in a form or a query) never go where the
  configured address did not point; with ``"same-origin"`` a redirect to the same scheme, host
  and port is followed (at most ``MAX_REDIRECTS``), one to another origin never is. A redirect
  not followed is a ``PermanentError`` naming the target's origin.

=========================================  ==========================================
outcome                                    error
=========================================  ==========================================
connection refused, circuit open, paced    ``TransientError(not_sent=True)``
timeout, reset, 502/504, 5xx, 408          ``TransientError`` (the request may have had effect)
503                                        ``TransientError(not_sent=True)``
429                                        ``RateLimited`` (wait from the headers)
401, 403, 400 saying the key/token is bad  ``AuthError``
404, 410                                   ``not_found`` (``PermanentError`` unless given)
other 4xx                                  ``PermanentError``
=========================================  ==========================================
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import structlog
from yarl import URL

from adapters.base import (
    AdapterError,
    AuthError,
    PermanentError,
    RateLimited,
    TransientError,
)
from adapters.circuit import CircuitBreaker
from adapters.wire import PAGE_MAX_DEPTH, Malformed, error_detail, parse_json

log = structlog.get_logger(__name__)

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
DEFAULT_RATE_LIMIT_WAIT = timedelta(minutes=1)

# A 400 whose text says the credentials are bad is an auth failure, not a bad request: some
# servers answer a wrong key with 400 "Invalid API key" or a plain-text "Invalid Bearer token".
AUTH_COMPLAINT = re.compile(
    r"\b(invalid|expired|revoked|missing|bad|wrong|unknown|incorrect)\b[\w\s-]{0,20}?"
    r"(api[\s_-]?key|token|credentials?)\b"
    r"|\b(api[\s_-]?key|access[\s_-]?token|credentials?)\b[\w\s]{0,20}?"
    r"\b(invalid|expired|revoked|incorrect)\b",
    re.IGNORECASE,
)

Params = Mapping[str, str] | Sequence[tuple[str, str]]
Redirects = Literal["off", "same-origin"]
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


def retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date; ``None`` if absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return timedelta(seconds=min(max(0.0, float(value)), 86400.0))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - (now or datetime.now(UTC)), timedelta(0))


def rate_limit_reset(value: str | None) -> datetime | None:
    """``X-RateLimit-Reset``: an ISO 8601 time (Mastodon) or epoch seconds (others)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    if re.fullmatch(r"\d{9,11}(\.\d+)?", value):
        return datetime.fromtimestamp(float(value), UTC)
    return None


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None


def _form(data: Any) -> Any:
    """A form (a mapping or a list of pairs, all text) as the urlencoded body aiohttp would
    make of it, without its ``FormData`` (a multipart writer, a uuid and a failed payload
    lookup per call): the same bytes and ``Content-Type``. Anything else as it is."""
    if isinstance(data, Mapping):
        pairs: Any = list(data.items())
    elif isinstance(data, list):
        pairs = data
    else:
        return data
    for pair in pairs:
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        ):
            return data
    return aiohttp.payload.BytesPayload(
        urlencode(pairs, doseq=True, encoding="utf-8").encode(),
        content_type="application/x-www-form-urlencoded",
    )


@dataclass(frozen=True)
class Response:
    """A finished exchange: status, headers, the whole (capped) body, and what it was."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    what: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self, *, exact: bool = False) -> Any:
        """The body as JSON (``None`` when empty); unreadable → ``TransientError`` (the server
        or a proxy in between misbehaved; the request may still have had effect)."""
        if not self.body.strip():
            return None
        try:
            return parse_json(self.body, exact=exact, max_depth=PAGE_MAX_DEPTH)
        except Malformed as exc:
            raise TransientError(
                f"{self.what}: HTTP {self.status} answer unreadable: {exc}"
            ) from None

    @property
    def detail(self) -> str:
        """What the body says, one short line (error bodies of any shape)."""
        return error_detail(self.body, self.headers.get("Content-Type", ""))


class HttpClient:
    """One adapter's HTTP client (see the module docstring for the error mapping)."""

    def __init__(
        self,
        name: str,
        *,
        timeout: timedelta,
        headers: Mapping[str, str] | None = None,
        breaker: CircuitBreaker | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        pace_rate_limit: bool = False,
        default_rate_limit_wait: timedelta = DEFAULT_RATE_LIMIT_WAIT,
        auth_complaint: re.Pattern[str] | None = AUTH_COMPLAINT,
        follow_redirects: Redirects = "off",
    ) -> None:
        self.name = name
        self.follow_redirects = follow_redirects
        self.timeout = timeout
        self.headers = dict(headers or {})
        # The process id lets a server (and the simulators' request logs) tell the bridge's
        # processes apart: which one polled an account, and when.
        self.headers.setdefault("User-Agent", f"govbridge ({name}; pid {os.getpid()})")
        self.breaker = breaker
        self.max_response_bytes = max_response_bytes
        self.pace_rate_limit = pace_rate_limit
        self.default_rate_limit_wait = default_rate_limit_wait
        self.auth_complaint = auth_complaint
        # The last rate-limit figures the server reported (read by adapters and tests).
        self.rate_limit_remaining: int | None = None
        self.rate_limit_reset: datetime | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ session

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout.total_seconds()),
                headers=self.headers,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ calls

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Params | None = None,
        data: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        raise_for_status: bool = True,
        accept: Container[int] = (),
        not_found: type[AdapterError] = PermanentError,
    ) -> Response:
        """One call. 2xx and ``accept`` statuses are returned; others raise the mapped error
        unless ``raise_for_status`` is false (the adapter then reads the platform's own error
        scheme first and falls back on ``error_for``)."""
        self._pace(what)
        guard = self.breaker.guard() if self.breaker is not None else contextlib.nullcontext()
        async with guard:
            return await self._exchange(
                method,
                url,
                what,
                params,
                data,
                json_body,
                headers,
                raise_for_status,
                accept,
                not_found,
            )

    async def _exchange(
        self,
        method: str,
        url: str,
        what: str,
        params: Params | None,
        data: Any,
        json_body: Any,
        headers: Mapping[str, str] | None,
        raise_for_status: bool,
        accept: Container[int],
        not_found: type[AdapterError],
    ) -> Response:
        for hop in range(MAX_REDIRECTS + 1):
            response, location = await self._once(
                method, url, what, params, data, json_body, headers
            )
            if location is None:
                break
            refusal = self._not_followed(response.status, location, URL(url), hop)
            if refusal is not None:
                log.warning("redirect not followed", call=what, status=response.status)
                if raise_for_status and response.status not in accept:
                    raise PermanentError(f"{what}: HTTP {response.status}: {refusal}")
                break
            url, params = str(location), None  # the target's own query, nothing added
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method = "GET" if method != "HEAD" else method
                data = json_body = None  # the body is not sent again (as browsers do)
        self._note_rate_limit(response.headers)
        if response.ok or response.status in accept or not raise_for_status:
            return response
        raise self.error_for(response, not_found)

    def _not_followed(self, status: int, location: URL, came_from: URL, hop: int) -> str | None:
        """Why a redirect is not followed, or None to follow it."""
        target = location.origin() if location.absolute else location
        if self.follow_redirects != "same-origin":
            return (
                f"redirect to {target} not followed (redirects are off; follow_redirects ="
                ' "same-origin" follows them within the same scheme, host and port)'
            )
        if not location.absolute or location.origin() != came_from.origin():
            return f"redirect to another origin ({target}) not followed: credentials stay here"
        if hop >= MAX_REDIRECTS:
            return f"more than {MAX_REDIRECTS} redirects"
        return None

    async def _once(
        self,
        method: str,
        url: str,
        what: str,
        params: Params | None,
        data: Any,
        json_body: Any,
        headers: Mapping[str, str] | None,
    ) -> tuple[Response, URL | None]:
        """One request, redirects not followed: the response, and where a redirect points."""
        try:
            async with self.session().request(
                method,
                url,
                params=params,
                data=_form(data),
                json=json_body,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                body = await self._read(resp, what)
                response = Response(resp.status, resp.headers, body, what)
                location: URL | None = None
                if resp.status in REDIRECT_STATUSES and resp.headers.get("Location"):
                    try:
                        location = resp.url.join(URL(resp.headers["Location"]))
                    except ValueError:
                        location = URL("about:unreadable-location")
        except TimeoutError:
            raise TransientError(f"{what}: no answer within {self.timeout}") from None
        except aiohttp.ClientConnectorError as exc:
            raise TransientError(
                f"{what}: cannot connect ({type(exc).__name__})", not_sent=True
            ) from None
        except aiohttp.InvalidURL:
            raise PermanentError(f"{what}: invalid URL (check base_url)") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{what}: {type(exc).__name__}") from None
        return response, location

    async def _read(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        cap = self.max_response_bytes
        declared = _count(resp.headers.get("Content-Length"))
        if declared is not None and declared > cap:
            raise TransientError(f"{what}: answer of {declared} bytes exceeds the {cap}-byte cap")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise TransientError(f"{what}: answer exceeds the {cap}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)

    # ------------------------------------------------------------------ errors

    def error_for(
        self, response: Response, not_found: type[AdapterError] = PermanentError
    ) -> AdapterError:
        """The adapter error for a non-success answer (see the table in the module docstring)."""
        status = response.status
        detail = response.detail
        reason = f"{response.what}: HTTP {status}" + (f": {detail}" if detail else "")
        if status in (401, 403):
            return AuthError(reason)
        if status == 400 and self.auth_complaint is not None and self.auth_complaint.search(detail):
            return AuthError(reason)
        if status == 429:
            return RateLimited(reason, retry_after=self._wait(response.headers), not_sent=True)
        if status in (404, 410):
            return not_found(reason)
        if status == 408 or status >= 500:
            return TransientError(
                reason,
                retry_after=retry_after(response.headers.get("Retry-After")),
                not_sent=status == 503,
            )
        return PermanentError(reason)

    # ------------------------------------------------------------------ rate limits

    def _wait(self, headers: Mapping[str, str]) -> timedelta:
        now = datetime.now(UTC)
        reset = rate_limit_reset(headers.get("X-RateLimit-Reset"))
        if reset is not None and reset > now:
            return max(reset - now, timedelta(seconds=1))
        after = retry_after(headers.get("Retry-After"), now)
        if after is not None:
            return max(after, timedelta(seconds=1))
        return self.default_rate_limit_wait

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        remaining = _count(headers.get("X-RateLimit-Remaining"))
        if remaining is None:
            return
        self.rate_limit_remaining = remaining
        self.rate_limit_reset = rate_limit_reset(headers.get("X-RateLimit-Reset"))

    def _pace(self, what: str) -> None:
        """With ``pace_rate_limit``: no call while the server said none are left."""
        if not self.pace_rate_limit or self.rate_limit_remaining != 0:
            return
        now = datetime.now(UTC)
        reset = self.rate_limit_reset
        if reset is None or reset <= now:
            self.rate_limit_remaining = None  # the window has passed (or was never told)
            return
        raise RateLimited(
            f"{what}: no requests left until {reset.isoformat(timespec='seconds')}"
            " (X-RateLimit-Remaining 0); not sent",
            retry_after=max(reset - now, timedelta(seconds=1)),
            not_sent=True,
        )
