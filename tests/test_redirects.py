"""The adapters' HTTP client never carries credentials to another origin (issue 20, must-show
6: the redirect case).

Two local servers on two ports (two origins): the configured ticket system ("here") answers
with redirects, the other ("elsewhere") records every request that reaches it. The REST
adapter's ``X-API-Key`` and the Open311 adapter's ``api_key`` (a form field) must never reach
"elsewhere": redirects are off by default (the call fails naming where it pointed), and with
``follow_redirects = "same-origin"`` only a redirect within the same scheme, host and port is
followed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from govbridge_tools.kit import AppServer

from adapters.base import PermanentError
from adapters.http import HttpClient
from adapters.open311 import Open311Config, Open311TicketSystem
from adapters.rest import RestConfig, RestTicketSystem
from schemas.config import DepartmentConfig, TicketingConfig
from tests.contract.harness_rest import command, rest_config

API_KEY = "rest-key-0123456789abcdef"
OPEN311_KEY = "open311-key-0123456789abcdef"


@dataclass
class Elsewhere:
    """Another origin: what it received, every byte of it."""

    seen: list[str] = field(default_factory=list)
    server: AppServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def app(self) -> web.Application:
        async def record(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append(f"{request.method} {request.path_qs} {dict(request.headers)} {body!r}")
            return web.json_response({"id": "T-STOLEN", "status": "NEW"}, status=201)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return app


@dataclass
class Here:
    """The configured ticket system: redirects ``POST`` (and ``GET``) where ``target`` says,
    answers at ``/moved/…`` itself."""

    target: str = ""
    status: int = 307
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    server: AppServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def app(self) -> web.Application:
        async def any_request(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append((request.method, request.path, dict(request.headers), body))
            if request.path.endswith("services.json"):
                return web.json_response(
                    [{"service_code": "TR-01", "service_name": "路灯", "metadata": False}]
                )
            if request.path.startswith("/moved/"):
                if request.path.endswith("requests.json"):
                    return web.json_response([{"service_request_id": "R-1"}])
                return web.json_response({"id": "T-000001", "status": "NEW"}, status=201)
            raise _redirect(self.status, self.target)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_request)
        return app


def _redirect(status: int, location: str) -> web.HTTPException:
    cls = {
        301: web.HTTPMovedPermanently,
        302: web.HTTPFound,
        303: web.HTTPSeeOther,
        307: web.HTTPTemporaryRedirect,
        308: web.HTTPPermanentRedirect,
    }[status]
    return cls(location)


@pytest.fixture
async def origins() -> AsyncIterator[tuple[Here, Elsewhere]]:
    here, elsewhere = Here(), Elsewhere()
    here.server = await AppServer(here.app()).start()
    elsewhere.server = await AppServer(elsewhere.app()).start()
    try:
        yield here, elsewhere
    finally:
        await here.server.stop()
        await elsewhere.server.stop()


def rest(here: Here, **overrides: Any) -> RestTicketSystem:
    ticketing = rest_config(here.url, auth={"api_key": API_KEY}, **overrides)
    dept = DepartmentConfig(
        id="urban", name="市城管委", ticketing=TicketingConfig.model_validate(ticketing)
    )
    return RestTicketSystem(RestConfig.model_validate(ticketing), dept)


def open311(here: Here, **overrides: Any) -> Open311TicketSystem:
    ticketing = {
        "adapter": "open311",
        "base_url": here.url + "/open311/v2/",
        "api_key": OPEN311_KEY,
        "service_codes": {"other": "TR-01", "complaint": "TR-01"},
        "lat": 39.9,
        "long": 116.4,
        **overrides,
    }
    dept = DepartmentConfig(
        id="transport", name="市交通委", ticketing=TicketingConfig.model_validate(ticketing)
    )
    return Open311TicketSystem(Open311Config.model_validate(ticketing), dept)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("follow", ["off", "same-origin"])
async def test_credentials_never_follow_a_redirect_to_another_origin(
    origins: tuple[Here, Elsewhere], status: int, follow: str
) -> None:
    here, elsewhere = origins
    here.status = status
    here.target = elsewhere.url + "/tickets"
    system = rest(here, follow_redirects=follow)
    try:
        with pytest.raises(PermanentError) as info:
            await system.create(command(1), "idem-1")
    finally:
        await system.close()
    reason = info.value.reason
    assert f"HTTP {status}" in reason and elsewhere.url in reason and "not followed" in reason
    assert "another origin" in reason if follow == "same-origin" else "redirects are off" in reason
    assert "/tickets" not in reason  # the origin only: a path or query may carry a token
    assert elsewhere.seen == []  # not a byte, so not the key
    assert [(m, p) for m, p, _, _ in here.seen] == [("POST", "/tickets")]
    assert here.seen[0][2]["X-API-Key"] == API_KEY  # it went only where it was configured for

    here.seen.clear()
    here.target = elsewhere.url + "/open311/v2/requests.json"
    sys311 = open311(here, follow_redirects=follow)
    try:
        with pytest.raises(PermanentError, match="not followed"):
            await sys311.create(command(2), "idem-2")
    finally:
        await sys311.close()
    assert elsewhere.seen == []
    posted = [body for method, _, _, body in here.seen if method == "POST"]
    assert len(posted) == 1 and OPEN311_KEY.encode() in posted[0]


async def test_a_same_origin_redirect_is_followed_only_when_allowed(
    origins: tuple[Here, Elsewhere],
) -> None:
    here, elsewhere = origins
    here.target = "/moved/tickets"  # relative: the same origin
    system = rest(here)  # default: off
    try:
        with pytest.raises(PermanentError, match="redirects are off"):
            await system.create(command(1), "idem-1")
    finally:
        await system.close()
    assert [p for _, p, _, _ in here.seen] == ["/tickets"]

    here.seen.clear()
    system = rest(here, follow_redirects="same-origin")
    try:
        created = await system.create(command(1), "idem-1")
    finally:
        await system.close()
    assert created.ticket_id == "T-000001"
    assert [(m, p) for m, p, _, _ in here.seen] == [
        ("POST", "/tickets"),
        ("POST", "/moved/tickets"),
    ]
    moved = here.seen[1]
    assert moved[2]["X-API-Key"] == API_KEY and moved[3] == here.seen[0][3]  # 307: same body
    assert elsewhere.seen == []


async def test_the_client_caps_same_origin_hops_and_turns_303_into_get(
    origins: tuple[Here, Elsewhere],
) -> None:
    here, _ = origins
    client = HttpClient("test", timeout=timedelta(seconds=5), follow_redirects="same-origin")
    try:
        here.target, here.status = "/loop", 302
        with pytest.raises(PermanentError, match="more than 5 redirects"):
            await client.request("GET", here.url + "/loop", what="loop")
        assert len(here.seen) == 6
        here.seen.clear()
        here.target, here.status = "/moved/requests.json", 303
        resp = await client.request("POST", here.url + "/form", what="form", data=b"api_key=k")
        assert resp.status == 200
        assert [(m, p, b) for m, p, _, b in here.seen] == [
            ("POST", "/form", b"api_key=k"),
            ("GET", "/moved/requests.json", b""),
        ]
    finally:
        await client.close()
