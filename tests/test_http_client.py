"""adapters.http: the one client every adapter uses (error mapping, reasons, caps, pacing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.base import AuthError, PermanentError, RateLimited, TargetGone, TransientError
from adapters.circuit import CircuitBreaker
from adapters.http import HttpClient, retry_after
from adapters.wire import Malformed, error_detail, parse_json, parse_xml

ANSWERS: dict[str, tuple[int, str, str, dict[str, str]]] = {
    "spec": (400, '[{"code":400,"description":"service_code is required"}]', "json", {}),
    "detail": (400, '{"code": 400, "detail": ["Invalid API key"]}', "json", {}),
    "fields": (
        400,
        '{"code": 400, "detail": {"non_field_errors": ["Service code X is invalid"]}}',
        "json",
        {},
    ),
    "token": (400, "Invalid Bearer token", "text", {}),
    "html404": (
        404,
        "<!DOCTYPE html><html><head><title>Page not found at /nope</title></head>"
        "<body><pre>urlconf … SECRET_KEY …</pre></body></html>",
        "html",
        {},
    ),
    "busy": (503, "down for maintenance", "text", {"Retry-After": "7"}),
    "gateway": (502, "", "text", {}),
    "limited": (429, '{"error": "Too many requests"}', "json", {"Retry-After": "30"}),
    "huge": (200, "x" * 5000, "text", {}),
    "badjson": (200, "{not json", "json", {}),
}


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def answer(request: web.Request) -> web.Response:
        status, body, kind, headers = ANSWERS[request.match_info["name"]]
        ctype = {"json": "application/json", "html": "text/html", "text": "text/plain"}[kind]
        return web.Response(status=status, text=body, content_type=ctype, headers=headers)

    remaining = {"n": 2}

    async def paced(request: web.Request) -> web.Response:
        remaining["n"] -= 1
        reset = (datetime.now(UTC) + timedelta(minutes=3)).isoformat()
        headers = {"X-RateLimit-Remaining": str(max(remaining["n"], 0)), "X-RateLimit-Reset": reset}
        return web.json_response({"ok": True}, headers=headers)

    app = web.Application()
    app.router.add_get("/a/{name}", answer)
    app.router.add_get("/paced", paced)
    srv = TestServer(app)
    await srv.start_server()
    yield srv
    await srv.close()


async def _error(client: HttpClient, srv: TestServer, name: str, **kw: object) -> Exception:
    with pytest.raises(Exception) as info:
        await client.request("GET", str(srv.make_url(f"/a/{name}")), what=f"t {name}", **kw)  # type: ignore[arg-type]
    return info.value


async def test_outcomes_map_onto_adapter_errors_with_the_bodys_words(server: TestServer) -> None:
    client = HttpClient("test", timeout=timedelta(seconds=5), max_response_bytes=1000)
    try:
        err = await _error(client, server, "spec")
        assert isinstance(err, PermanentError) and err.reason == (
            "t spec: HTTP 400: service_code is required"
        )
        err = await _error(client, server, "detail")
        assert isinstance(err, AuthError) and "Invalid API key" in err.reason  # 400, not 403
        err = await _error(client, server, "fields")
        assert isinstance(err, PermanentError) and not isinstance(err, AuthError)
        assert "Service code X is invalid" in err.reason
        err = await _error(client, server, "token")
        assert isinstance(err, AuthError) and err.reason.endswith("Invalid Bearer token")
        err = await _error(client, server, "html404", not_found=TargetGone)
        assert isinstance(err, TargetGone)
        assert err.reason == "t html404: HTTP 404: Page not found at /nope"  # no debug dump
        err = await _error(client, server, "busy")
        assert isinstance(err, TransientError) and err.not_sent
        assert err.retry_after == timedelta(seconds=7)
        err = await _error(client, server, "gateway")
        assert isinstance(err, TransientError) and not err.not_sent  # may have had effect
        err = await _error(client, server, "limited")
        assert isinstance(err, RateLimited) and err.retry_after == timedelta(seconds=30)
        err = await _error(client, server, "huge")
        assert isinstance(err, TransientError) and "cap" in err.reason
        resp = await client.request("GET", str(server.make_url("/a/badjson")), what="t bad")
        with pytest.raises(TransientError, match="unreadable"):
            resp.json()
    finally:
        await client.close()


async def test_refused_connection_is_certainly_not_sent_and_counts_for_the_breaker() -> None:
    breaker = CircuitBreaker("t", failure_threshold=2, cooldown=60)
    client = HttpClient("test", timeout=timedelta(seconds=2), breaker=breaker)
    try:
        for _ in range(2):
            with pytest.raises(TransientError) as err:
                await client.request("GET", "http://127.0.0.1:9/", what="t refused")
            assert err.value.not_sent
        with pytest.raises(TransientError, match="circuit open"):
            await client.request("GET", "http://127.0.0.1:9/", what="t refused")
        assert breaker.short_circuited == 1
    finally:
        await client.close()


async def test_remaining_zero_pauses_until_the_reset(server: TestServer) -> None:
    client = HttpClient("test", timeout=timedelta(seconds=5), pace_rate_limit=True)
    try:
        url = str(server.make_url("/paced"))
        await client.request("GET", url, what="t")
        await client.request("GET", url, what="t")  # the server says: 0 left
        assert client.rate_limit_remaining == 0
        with pytest.raises(RateLimited) as err:
            await client.request("GET", url, what="t")
        assert err.value.not_sent
        assert (
            timedelta(minutes=2) < (err.value.retry_after or timedelta(0)) <= timedelta(minutes=3)
        )
    finally:
        await client.close()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert retry_after("120") == timedelta(seconds=120)
    assert retry_after("Mon, 30 Nov 2026 12:01:00 GMT", now) == timedelta(minutes=1)
    assert retry_after("soon") is None and retry_after(None) is None


def test_documents_nested_too_deeply_are_refused() -> None:
    with pytest.raises(Malformed, match="deeper"):
        parse_json(b"[" * 100 + b"]" * 100)
    assert parse_json(b'["[[[[", {"a": "]]]"}]') == ["[[[[", {"a": "]]]"}]
    with pytest.raises(Malformed, match="deeper"):
        parse_xml(b"<a>" * 100 + b"</a>" * 100)
    with pytest.raises(Malformed, match="refused"):
        parse_xml(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    assert error_detail(b"<errors><error><description>no key</description></error></errors>") == (
        "no key"
    )
