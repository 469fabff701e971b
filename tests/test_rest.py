"""The generic REST ticket adapter against its simulator: mapping, idempotency, statuses,
callbacks, errors and outages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState
from pydantic import ValidationError

from adapters import signing
from adapters.base import (
    AuthError,
    PermanentError,
    RateLimited,
    TransientError,
    make_ticket_system,
)
from adapters.rest import RestConfig, RestTicketSystem, get_path, render_path
from schemas.vocab import TicketStatus
from tests.contract.harness_rest import TOKEN, command, department, rest_config

CALLBACK_SECRET = "cb-secret-test"


@pytest.fixture
async def sim() -> AsyncIterator[RestSimServer]:
    server = RestSimServer(RestTicketState(token=TOKEN))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def adapters() -> AsyncIterator[list[RestTicketSystem]]:
    made: list[RestTicketSystem] = []
    yield made
    for a in made:
        await a.close()


def make(base_url: str, adapters: list[RestTicketSystem], **overrides: Any) -> RestTicketSystem:
    ticketing = rest_config(base_url, **overrides)
    system = RestTicketSystem(RestConfig.model_validate(ticketing), department(ticketing))
    adapters.append(system)
    return system


# --------------------------------------------------------------------------- config


def test_config_rejects_unknown_template_fields_and_keys() -> None:
    cfg = rest_config("http://127.0.0.1:1")
    cfg["create"] = {**cfg["create"], "body": {"title": "{categroy_label}"}}
    with pytest.raises(ValidationError, match=r"create\.body\.title.*categroy_label"):
        RestConfig.model_validate(cfg)
    with pytest.raises(ValidationError, match="base_ulr"):
        RestConfig.model_validate({**rest_config("http://127.0.0.1:1"), "base_ulr": "x"})
    with pytest.raises(ValidationError, match="exactly one"):
        RestConfig.model_validate(rest_config("http://127.0.0.1:1", auth={}))
    with pytest.raises(ValidationError, match="IGNORE"):
        RestConfig.model_validate(rest_config("http://127.0.0.1:1", status_map={"X": "done"}))


def test_registry_builds_the_adapter_from_a_department_block() -> None:
    ticketing = rest_config("http://127.0.0.1:1/api/")
    system = make_ticket_system(department(ticketing))
    assert isinstance(system, RestTicketSystem)
    assert system.cfg.base_url == "http://127.0.0.1:1/api"
    assert system.capabilities.idempotent_create and system.capabilities.callbacks
    assert system.capabilities.search_by_reference
    assert "contract-rest-token" not in repr(system.cfg)


def test_paths_and_templates() -> None:
    assert get_path({"a": {"b": [{"c": 7}]}}, "a.b.0.c") == 7
    assert get_path({"a": [1]}, "") == {"a": [1]}
    assert render_path("/t?ref={reference}", {"reference": "GB/1&x=2"}) == "/t?ref=GB%2F1%26x%3D2"


# --------------------------------------------------------------------------- create / lookup


async def test_create_maps_command_fields_into_the_body(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    system = make(sim.url, adapters)
    created = await system.create(command(1), "idem-1")
    [ticket] = sim.state.tickets.values()
    assert created.ticket_id == ticket["id"]
    assert created.status is TicketStatus.RECEIVED and created.native_status == "NEW"
    assert created.created_at is not None
    assert ticket["title"] == "【投诉】" + command(1).public_text[:30]
    assert ticket["body"] == command(1).description
    assert ticket["external_ref"] == "GB-00001"
    assert ticket["channel"] == "weibo"
    assert ticket["citizen"] == {"handle": "citizen1"}
    assert ticket["priority"] == 3


async def test_create_is_idempotent_on_the_key(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    system = make(sim.url, adapters)
    first = await system.create(command(1), "idem-1")
    replay = await make(sim.url, adapters).create(command(1), "idem-1")  # e.g. after a crash
    other = await system.create(command(2), "idem-2")
    assert replay.ticket_id == first.ticket_id
    assert other.ticket_id != first.ticket_id
    assert len(sim.state.tickets) == 2
    assert sim.state.requests["POST /tickets"] == 3


async def test_conflict_without_ticket_in_body_falls_back_to_lookup(
    adapters: list[RestTicketSystem],
) -> None:
    """A backend that answers 409 with only an error message: the adapter searches instead."""

    async def conflict(request: web.Request) -> web.Response:
        return web.json_response({"error": "duplicate"}, status=409)

    async def search(request: web.Request) -> web.Response:
        ref = request.query["external_ref"]
        return web.json_response(
            {"tickets": [{"id": "T-9", "status": "ASSIGNED", "external_ref": ref}]}
        )

    app = web.Application()
    app.router.add_post("/tickets", conflict)
    app.router.add_get("/tickets", search)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        found = await make(url, adapters).create(command(3), "idem-3")
        assert (found.ticket_id, found.status) == ("T-9", TicketStatus.REFERRED)
        with pytest.raises(PermanentError, match="no ticket id"):
            await make(url, adapters, lookup=None).create(command(3), "idem-3")
    finally:
        await server.close()


async def test_find_by_reference(sim: RestSimServer, adapters: list[RestTicketSystem]) -> None:
    system = make(sim.url, adapters)
    created = await system.create(command(1), "idem-1")
    await system.create(command(2), "idem-2")
    found = await system.find_by_reference("GB-00001")
    assert found is not None and found.ticket_id == created.ticket_id
    assert await system.find_by_reference("GB-99999") is None
    blind = make(sim.url, adapters, lookup=None)
    assert blind.capabilities.search_by_reference is False
    with pytest.raises(PermanentError, match="no search endpoint"):
        await blind.find_by_reference("GB-00001")


async def test_rejected_request_is_permanent(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    cfg = rest_config(sim.url)
    cfg["create"] = {**cfg["create"], "body": {"body": "{description}"}}  # no title
    system = make(sim.url, adapters, create=cfg["create"])
    with pytest.raises(PermanentError, match="422: title is required"):
        await system.create(command(1), "idem-1")
    assert sim.state.tickets == {}


async def test_append_adds_a_comment(sim: RestSimServer, adapters: list[RestTicketSystem]) -> None:
    system = make(sim.url, adapters)
    created = await system.create(command(1), "idem-1")
    follow_up = command(2, action="append", ticket_id=created.ticket_id)
    await system.append(created.ticket_id, follow_up)
    await system.append(created.ticket_id, follow_up)  # redelivered: deduped by the backend
    comments = sim.state.tickets[created.ticket_id]["comments"]
    assert [c["body"] for c in comments] == [follow_up.description]
    with pytest.raises(PermanentError, match="404"):
        await system.append("T-404", follow_up)


# --------------------------------------------------------------------------- statuses


async def test_changes_map_statuses_ignore_and_unknown(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    status_map = {k: v for k, v in rest_config("x")["status_map"].items() if k != "RETURNED"}
    system = make(sim.url, adapters, status_map=status_map)
    t = (await system.create(command(1), "idem-1")).ticket_id
    await sim.state.move(t, "ASSIGNED", "已转交区城管局")
    await sim.state.move(t, "DRAFT", "内部草稿")
    await sim.state.move(t, "RETURNED", None)  # not in this department's map
    await sim.state.move(t, "DONE", "路灯已修复")

    result = await system.changes_since(None)
    got = [(e.status, e.native_status, e.note) for e in result.events]
    assert got == [
        (TicketStatus.REFERRED, "ASSIGNED", "已转交区城管局"),
        (TicketStatus.RECEIVED, "RETURNED", None),  # unknown → safe default, native kept
        (TicketStatus.RESOLVED, "DONE", "路灯已修复"),
    ]
    assert all(e.ticket_id == t and e.reference == "GB-00001" for e in result.events)
    assert all(e.department == "contract" and e.source == "poll" for e in result.events)
    assert len({e.event_id for e in result.events}) == 3

    again = await system.changes_since(result.cursor)
    assert again.events == [] and again.cursor == result.cursor
    await sim.state.move(t, "CLOSED", None)
    later = await system.changes_since(result.cursor)
    assert [e.status for e in later.events] == [TicketStatus.CLOSED]


async def test_changes_page_through_a_backlog(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    cfg = rest_config(sim.url)
    system = make(sim.url, adapters, changes={**cfg["changes"], "limit": 2})
    t = (await system.create(command(1), "idem-1")).ticket_id
    for status in ("ASSIGNED", "IN_PROGRESS", "DONE", "REOPENED", "CLOSED"):
        await sim.state.move(t, status)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await system.changes_since(cursor)
        if not page.events:
            break
        assert len(page.events) <= 2
        seen += [e.native_status for e in page.events]
        cursor = page.cursor
    assert seen == ["ASSIGNED", "IN_PROGRESS", "DONE", "REOPENED", "CLOSED"]


def test_status_map_is_case_insensitive_as_a_fallback() -> None:
    system = RestTicketSystem(
        RestConfig.model_validate(rest_config("http://127.0.0.1:1")),
        department(rest_config("http://127.0.0.1:1")),
    )
    assert system.map_status("done") is TicketStatus.RESOLVED
    assert system.map_status("DRAFT") is None
    assert system.map_status("SOMETHING_NEW") is TicketStatus.RECEIVED


# --------------------------------------------------------------------------- callbacks


def callback_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "chg-7",
        "ticket_id": "T-000001",
        "external_ref": "GB-00001",
        "status": "IN_PROGRESS",
        "time": "2024-05-02T09:30:00+08:00",
        "note": "已派人现场查看",
    }
    item.update(overrides)
    return item


def test_parse_callback_valid_bodies() -> None:
    system = RestTicketSystem(
        RestConfig.model_validate(rest_config("http://127.0.0.1:1")),
        department(rest_config("http://127.0.0.1:1")),
    )
    body = json.dumps(
        {"items": [callback_item(), callback_item(id="chg-8", status="DRAFT")]}
    ).encode()
    [event] = system.parse_callback({}, body)
    assert event.event_id == "chg-7" and event.ticket_id == "T-000001"
    assert event.status is TicketStatus.IN_PROGRESS and event.native_status == "IN_PROGRESS"
    assert event.occurred_at == datetime(2024, 5, 2, 1, 30, tzinfo=UTC)
    assert event.note == "已派人现场查看" and event.reference == "GB-00001"
    assert event.source == "callback"
    single = system.parse_callback({}, json.dumps(callback_item(time=1714613400)).encode())
    assert single[0].occurred_at == datetime(2024, 5, 2, 1, 30, tzinfo=UTC)
    as_list = system.parse_callback({}, json.dumps([callback_item()]).encode())
    assert as_list[0].event_id == "chg-7"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<xml/>", "callback: body is not JSON"),
        (b'"text"', "callback: body must be a JSON object or list"),
        (json.dumps({"items": {"id": 1}}).encode(), "callback.items: must be a list"),
        (
            json.dumps({"items": [callback_item(), callback_item(status=None)]}).encode(),
            "callback.items[1].status: required status is missing",
        ),
        (
            json.dumps({k: v for k, v in callback_item().items() if k != "ticket_id"}).encode(),
            "callback.ticket_id: required ticket id is missing",
        ),
        (json.dumps(callback_item(time="soon")).encode(), "callback.time: not an ISO 8601 time"),
        (json.dumps(callback_item(id={"x": 1})).encode(), "callback.id: event id must be"),
        (json.dumps([callback_item(), 5]).encode(), "callback[1]: must be a JSON object"),
    ],
)
def test_parse_callback_malformed_names_the_reason(body: bytes, reason: str) -> None:
    system = RestTicketSystem(
        RestConfig.model_validate(rest_config("http://127.0.0.1:1")),
        department(rest_config("http://127.0.0.1:1")),
    )
    with pytest.raises(PermanentError) as exc:
        system.parse_callback({}, body)
    assert exc.value.reason.startswith(reason)


async def test_simulator_pushes_signed_callbacks(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    """Operator moves reach the bridge's callback endpoint, signed, and parse into events."""
    system = make(sim.url, adapters)
    received = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            signing.verify(CALLBACK_SECRET, request.headers, raw)
        except signing.SignatureError as e:
            return web.json_response({"error": e.reason}, status=e.status)
        try:
            received.extend(system.parse_callback(request.headers, raw))
        except PermanentError as e:
            return web.json_response({"error": e.reason}, status=400)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks/tickets/contract", hook)
    receiver = TestServer(app, host="127.0.0.1", port=0)
    await receiver.start_server()
    try:
        sim.state.callback_url = str(receiver.make_url("/hooks/tickets/contract"))
        sim.state.callback_secret = CALLBACK_SECRET
        t = (await system.create(command(1), "idem-1")).ticket_id
        await sim.state.move(t, "IN_PROGRESS", "处理中")
        sim.state.callback_secret = "wrong"
        await sim.state.move(t, "DONE", "已修复")
    finally:
        await receiver.close()
    assert [s for _, s in sim.state.callbacks] == [200, 401]
    assert [(e.ticket_id, e.status, e.source) for e in received] == [
        (t, TicketStatus.IN_PROGRESS, "callback")
    ]


# --------------------------------------------------------------------------- errors


async def test_bad_credentials_are_auth_errors(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    system = make(sim.url, adapters)
    sim.state.revoke_token()
    with pytest.raises(AuthError, match="401"):
        await system.create(command(1), "idem-1")
    with pytest.raises(AuthError):
        await system.changes_since(None)
    with pytest.raises(AuthError):
        await system.check()
    assert system.breaker.state == "closed"  # the backend answered: not an outage


async def test_api_key_header_auth(sim: RestSimServer, adapters: list[RestTicketSystem]) -> None:
    system = make(sim.url, adapters, auth={"api_key": TOKEN, "api_key_header": "X-API-Key"})
    await system.check()
    assert (await system.create(command(1), "idem-1")).ticket_id == "T-000001"


async def test_rate_limit_is_rate_limited(adapters: list[RestTicketSystem]) -> None:
    async def limited(request: web.Request) -> web.Response:
        return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "7"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", limited)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        system = make(str(server.make_url("")).rstrip("/"), adapters)
        with pytest.raises(RateLimited) as exc:
            await system.create(command(1), "idem-1")
        assert exc.value.retry_after is not None and exc.value.retry_after.total_seconds() == 7
    finally:
        await server.close()


@pytest.mark.parametrize("mode", ["503", "refuse"])
async def test_outage_is_transient_then_recovers(
    sim: RestSimServer, adapters: list[RestTicketSystem], mode: str
) -> None:
    system = make(sim.url, adapters, circuit_failures=10)
    port = sim.port
    await system.create(command(1), "idem-1")  # keeps a pooled connection open
    await sim.state.set_outage(mode)
    with pytest.raises(TransientError):
        await system.create(command(2), "idem-2")
    with pytest.raises(TransientError):
        await system.changes_since(None)
    await sim.state.set_outage(None)
    assert sim.port == port
    created = await system.create(command(2), "idem-2")
    assert len(sim.state.tickets) == 2 and created.ticket_id == "T-000002"


async def test_circuit_opens_and_stops_requests(
    sim: RestSimServer, adapters: list[RestTicketSystem]
) -> None:
    system = make(sim.url, adapters, circuit_failures=3, circuit_cooldown="60s")
    await sim.state.set_outage("503")
    for n in range(3):
        with pytest.raises(TransientError, match="503"):
            await system.create(command(n), f"idem-{n}")
    before = sim.state.request_count
    with pytest.raises(TransientError, match="circuit open"):
        await system.create(command(9), "idem-9")
    assert sim.state.request_count == before
    assert system.breaker.state == "open"
