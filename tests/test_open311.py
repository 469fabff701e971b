"""Open311 adapter, its simulator and the circuit breaker: the GeoReport v2 + mySociety edges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import structlog
from govbridge_tools.simulators.open311 import SimAttribute, SimService
from govbridge_tools.testing import ManualClock
from pydantic import ValidationError

from adapters.base import (
    AuthError,
    PermanentError,
    RateLimited,
    TransientError,
    make_ticket_system,
)
from adapters.circuit import CircuitBreaker
from adapters.open311 import (
    Open311Config,
    Open311TicketSystem,
    clean_description,
    error_reason,
    parse_body,
)
from schemas.config import DepartmentConfig, TicketingConfig
from schemas.vocab import Category, TicketStatus
from tests.contract.harness_open311 import API_KEY, Open311Harness

Start = Callable[..., Awaitable[Open311Harness]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """``await start(**simulator_options)`` → a running harness; all stopped afterwards."""
    async with AsyncExitStack() as stack:

        async def _start(**opts: Any) -> Open311Harness:
            h = Open311Harness(**opts)
            await stack.enter_async_context(h.running())
            return h

        yield _start


def by_ticket(events: list[Any], ticket_id: str) -> list[Any]:
    return [e for e in events if e.ticket_id == ticket_id]


# --------------------------------------------------------------------------- circuit breaker


class Backend:
    """Counts calls; fails with ``error`` while it is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    async def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


async def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock, backend = ManualClock(), Backend()
    breaker = CircuitBreaker("t", failure_threshold=3, cooldown=30, clock=clock)
    backend.error = TransientError("down")
    for _ in range(3):
        with pytest.raises(TransientError, match="down"):
            await breaker.call(backend)
    assert breaker.state == "open"
    for _ in range(10):
        with pytest.raises(TransientError, match="circuit open") as info:
            await breaker.call(backend)
        assert info.value.retry_after is not None
    assert backend.calls == 3
    assert breaker.short_circuited == 10


async def test_breaker_half_open_probe_closes_or_reopens() -> None:
    clock, backend = ManualClock(), Backend()
    breaker = CircuitBreaker("t", failure_threshold=2, cooldown=30, clock=clock)
    backend.error = TransientError("down")
    for _ in range(2):
        with pytest.raises(TransientError):
            await breaker.call(backend)
    clock.t += 31
    assert breaker.state == "half_open"
    with pytest.raises(TransientError, match="down"):  # the probe went out and failed
        await breaker.call(backend)
    assert backend.calls == 3
    with pytest.raises(TransientError, match="circuit open"):  # a fresh cool-down
        await breaker.call(backend)
    clock.t += 31
    backend.error = None
    assert await breaker.call(backend) == "ok"
    assert breaker.state == "closed"
    assert await breaker.call(backend) == "ok"
    assert backend.calls == 5


async def test_breaker_lets_one_probe_at_a_time() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("t", failure_threshold=1, cooldown=5, clock=clock)
    with pytest.raises(TransientError):
        await breaker.call(failing_backend())
    clock.t += 6
    gate = asyncio.Event()

    async def slow_probe() -> str:
        await gate.wait()
        return "probe"

    probe = asyncio.create_task(breaker.call(slow_probe))
    await asyncio.sleep(0)
    with pytest.raises(TransientError, match="circuit open"):
        await breaker.call(Backend())
    gate.set()
    assert await probe == "probe"
    assert breaker.state == "closed"


def failing_backend() -> Backend:
    b = Backend()
    b.error = TransientError("down")
    return b


async def test_breaker_counts_only_transient_failures() -> None:
    backend = Backend()
    breaker = CircuitBreaker("t", failure_threshold=2, cooldown=30, clock=ManualClock())
    backend.error = TransientError("down")
    with pytest.raises(TransientError):
        await breaker.call(backend)
    backend.error = PermanentError("bad request")  # the backend answered: resets the count
    with pytest.raises(PermanentError):
        await breaker.call(backend)
    backend.error = TransientError("down")
    with pytest.raises(TransientError):
        await breaker.call(backend)
    assert breaker.state == "closed"
    backend.error = RateLimited("slow down")  # a working backend enforcing its limit
    for _ in range(3):
        with pytest.raises(RateLimited):
            await breaker.call(backend)
    assert breaker.state == "closed"
    assert backend.calls == 6


# --------------------------------------------------------------------------- config


def _cfg(**overrides: Any) -> Open311Config:
    values: dict[str, Any] = {
        "adapter": "open311",
        "base_url": "http://127.0.0.1:1/open311/v2",
        "api_key": "s3cr3t-open311-key",
        "service_codes": {"complaint": "TR-01"},
        "address_string": "天安门广场",
    }
    values.update(overrides)
    return Open311Config.model_validate(values)


def test_config_validation() -> None:
    cfg = _cfg(status_map={"Investigating": "referred", "PLANNED": "ignore"})
    assert cfg.base_url.endswith("/v2/")
    assert cfg.status_map == {"investigating": TicketStatus.REFERRED, "planned": "IGNORE"}
    assert "s3cr3t-open311-key" not in repr(cfg) + str(cfg.model_dump())
    for bad in (
        {"address_string": None},
        {"address_string": None, "lat": 39.9},
        {"status_map": {"fixed": "done"}},
        {"service_codes": {"complaints": "TR-01"}},
        {"requests_lookback": "91d"},
        {"base_url": "ftp://x"},
        {"surprise": 1},
        {"extra_fields": {"api_key": "other"}},
        {"extra_fields": {"attribute[urgency]": "high"}},
    ):
        with pytest.raises(ValidationError):
            _cfg(**bad)


def test_registry_builds_the_adapter_from_a_department_block() -> None:
    dept = DepartmentConfig(
        id="transport",
        name="市交通委",
        ticketing=TicketingConfig.model_validate(_cfg().model_dump()),
    )
    system = make_ticket_system(dept)
    assert isinstance(system, Open311TicketSystem)
    assert system.capabilities.idempotent_create is False
    assert system.capabilities.callbacks is False
    assert system.capabilities.extended_statuses is True
    with pytest.raises(PermanentError):
        system.parse_callback({}, b"{}")


# --------------------------------------------------------------------------- wire helpers


def test_description_is_plain_text_within_the_limit() -> None:
    text = clean_description("<p>公交<b>晚点</b></p>请处理<br/>谢谢 a<b <script>x</script>")
    assert "<" not in text and ">" not in text
    assert "公交晚点" in text and "\n谢谢" in text and "a＜b" in text
    long = clean_description("长" * 5000)
    assert len(long) == 4000 and long.endswith("…")


def test_xml_and_json_bodies_parse_alike() -> None:
    xml = (
        b"<service_requests><request><service_request_id>7</service_request_id>"
        b"<status>OPEN</status><attributes><govbridge_ref>gb-1</govbridge_ref></attributes>"
        b"</request></service_requests>"
    )
    assert parse_body(xml, "xml") == [
        {"service_request_id": "7", "status": "OPEN", "attributes": {"govbridge_ref": "gb-1"}}
    ]
    assert parse_body(b"<service_requests/>", "xml") == []
    errors = b'[{"code":400,"description":"a is required"},{"code":400,"description":"b bad"}]'
    assert error_reason(errors) == "a is required; b bad"
    xml_errors = (
        b"<errors><error><code>403</code><description>no key</description></error></errors>"
    )
    assert error_reason(xml_errors) == "no key"


# --------------------------------------------------------------------------- create


async def test_category_maps_to_service_code_with_required_attribute_filled(start: Start) -> None:
    h = await start()
    adapter = h.adapter(
        attributes={"urgency": "high"},
        service_attributes={"TR-01": {"vehicle_plate": "京A12345"}},
    )
    complaint = h.command(1, Category.COMPLAINT)
    consultation = h.command(2, Category.CONSULTATION)
    praise = h.command(3, Category.PRAISE)  # unmapped → the "other" service
    t1 = await adapter.create(complaint, complaint.command_id)
    t2 = await adapter.create(consultation, consultation.command_id)
    t3 = await adapter.create(praise, praise.command_id)
    stored = {t["id"]: t for t in h.state.snapshot()}
    assert stored[t1.ticket_id]["service_code"] == "TR-01"
    assert stored[t1.ticket_id]["attributes"] == {
        "urgency": "high",
        "vehicle_plate": "京A12345",
        "govbridge_ref": complaint.reference,
    }
    assert stored[t2.ticket_id]["service_code"] == "TR-02"
    assert stored[t2.ticket_id]["attributes"] == {"govbridge_ref": consultation.reference}
    assert stored[t3.ticket_id]["service_code"] == "TR-09"
    # The reference also ends the description: servers that drop unknown attributes keep it.
    assert stored[t1.ticket_id]["description"] == (
        f"{complaint.description}\n\n[govbridge-ref: {complaint.reference}]"
    )
    # Catalogue and definitions are cached: one GET services for three creates, one
    # definition per service with metadata (TR-01, TR-02; TR-09 has none).
    assert h.state.requests_by_route["GET /services.{fmt}"] == 1
    assert h.state.requests_by_route["GET /services/{code}.{fmt}"] == 2


async def test_multi_value_attributes_and_missing_defaults(start: Start) -> None:
    services = [
        SimService(
            "RD-7",
            "Road hazard",
            attributes=[
                SimAttribute(
                    "hazards",
                    "What is on the road?",
                    required=True,
                    datatype="multivaluelist",
                    values=[("ice", "Ice"), ("oil", "Oil"), ("debris", "Debris")],
                )
            ],
        )
    ]
    h = await start(services=services)
    adapter = h.adapter(
        service_codes={"complaint": "RD-7"},
        attributes={},
        service_attributes={"RD-7": {"hazards": ["ice", "oil"]}},
    )
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    assert h.state.tickets[ticket.ticket_id].attributes["hazards"] == ["ice", "oil"]

    bare = h.adapter(service_codes={"complaint": "RD-7"}, attributes={})
    with pytest.raises(PermanentError, match=r"requires attribute\(s\) hazards"):
        await bare.create(h.command(2), "k2")
    with pytest.raises(PermanentError, match="hazards"):
        await bare.check()
    # Never sent half-filled: one create, plus check's harmless key test (which cannot create).
    assert h.state.requests_by_route["POST /requests.{fmt}"] == 2
    assert len(h.state.tickets) == 1


async def test_unmapped_category_without_fallback_is_permanent(start: Start) -> None:
    h = await start()
    adapter = h.adapter(service_codes={"complaint": "TR-01"})
    with pytest.raises(PermanentError, match="no service_code for category 'praise'"):
        await adapter.create(h.command(1, Category.PRAISE), "k")
    unknown = h.adapter(service_codes={"complaint": "NOPE"})
    with pytest.raises(PermanentError, match="'NOPE' is not offered"):
        await unknown.create(h.command(2), "k")
    with pytest.raises(PermanentError, match="NOPE"):
        await unknown.check()
    await h.adapter().check()  # the harness's own config is complete


async def test_description_sent_without_html(start: Start) -> None:
    h = await start()
    adapter = h.adapter()
    cmd = h.command(1).model_copy(update={"description": "<b>公交</b>晚点" + "很久" * 3000})
    ticket = await adapter.create(cmd, cmd.command_id)
    stored = h.state.tickets[ticket.ticket_id].description
    assert stored.startswith("公交晚点") and len(stored) == 4000 and "<" not in stored


async def test_token_answer_is_resolved_to_an_id(start: Start) -> None:
    h = await start(token_mode=True, token_delay=0.1)
    adapter = h.adapter(token_poll_interval="30ms", token_poll_attempts=50)
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    [stored] = h.state.snapshot()
    assert stored["token"] and ticket.ticket_id == stored["id"]
    assert stored["reference"] == cmd.reference
    assert h.state.requests_by_route["GET /tokens/{token}.{fmt}"] >= 1


async def test_unresolved_token_is_transient_and_reconcilable(start: Start) -> None:
    h = await start(token_mode=True, token_delay=3600)
    adapter = h.adapter(token_poll_interval="1ms", token_poll_attempts=3)
    cmd = h.command(1)
    with pytest.raises(TransientError, match=r"token \w+ not resolved after 3 polls"):
        await adapter.create(cmd, cmd.command_id)
    assert h.state.requests_by_route["GET /tokens/{token}.{fmt}"] == 3
    # The runtime's reconciliation finds the ticket instead of creating a second one.
    found = await adapter.find_by_reference(cmd.reference)
    assert found is not None and found.ticket_id == h.state.snapshot()[0]["id"]


# --------------------------------------------------------------------------- errors


async def test_spec_error_lists_become_clear_reasons(start: Start) -> None:
    services = [
        SimService(
            "X-1",
            "Two checks",
            attributes=[
                SimAttribute("level", "Level", True, "singlevaluelist", [("1", "One")]),
                SimAttribute("count", "Count", True, "number"),
            ],
        )
    ]
    h = await start(services=services)
    adapter = h.adapter(
        service_codes={"complaint": "X-1"}, attributes={"level": "9", "count": "many"}
    )
    with pytest.raises(PermanentError) as info:
        await adapter.create(h.command(1), "k")
    assert info.value.reason == (
        "open311 POST requests: HTTP 400: attribute[level]: 9 is not one of 1; "
        "attribute[count] must be a number"
    )
    assert h.state.tickets == {}


async def test_bad_api_key_is_an_auth_error_without_the_key(start: Start) -> None:
    h = await start()
    adapter = h.adapter(api_key="wrong-secret-key")
    with pytest.raises(AuthError, match="403: Invalid or missing api_key") as info:
        await adapter.create(h.command(1), "k")
    assert "wrong-secret-key" not in info.value.reason
    assert "wrong-secret-key" not in repr(adapter.cfg)


async def test_wrong_jurisdiction_and_json_against_xml_only(start: Start) -> None:
    h = await start(jurisdiction_id="bj.gov.cn")
    with pytest.raises(PermanentError, match=r"404: jurisdiction_id sh\.gov\.cn not found"):
        await h.adapter(jurisdiction_id="sh.gov.cn").create(h.command(1), "k")
    ticket = await h.adapter(jurisdiction_id="bj.gov.cn").create(h.command(2), "k")
    assert ticket.ticket_id in h.state.tickets

    x = await start(xml_only=True)
    with pytest.raises(PermanentError, match="only speaks XML"):
        await x.adapter(format="json").create(x.command(1), "k")


async def test_outage_answers_are_transient(start: Start) -> None:
    h = await start()
    adapter = h.adapter(breaker_failures=10)
    await h.set_outage("503")
    with pytest.raises(TransientError, match="503: Service unavailable"):
        await adapter.create(h.command(1), "k")
    port = h.server.port if h.server else None
    await h.set_outage("refuse")
    with pytest.raises(TransientError, match=r"ClientConnectorError|ServerDisconnected"):
        await adapter.changes_since(None)
    await h.set_outage(None)
    assert h.server is not None and h.server.port == port
    cmd = h.command(2)
    assert (await adapter.create(cmd, cmd.command_id)).ticket_id


async def test_breaker_recovers_after_the_cooldown(start: Start) -> None:
    h = await start()
    adapter = h.adapter(breaker_failures=2, breaker_cooldown="50ms")
    await h.set_outage("503")
    for n in range(5):
        with pytest.raises(TransientError):
            await adapter.create(h.command(n), "k")
    assert h.state.request_count == 2  # the services GET twice, then short-circuited
    await h.set_outage(None)
    cmd = h.command(9)
    for _ in range(200):  # wait out the cool-down: the probe then goes through
        try:
            ticket = await adapter.create(cmd, cmd.command_id)
            break
        except TransientError as e:
            assert "circuit open" in e.reason
            await asyncio.sleep(0.01)
    else:
        pytest.fail("breaker never closed")
    assert adapter.breaker.state == "closed"
    assert ticket.ticket_id in h.state.tickets


# --------------------------------------------------------------------------- statuses


async def test_extended_upper_case_statuses_are_mapped(start: Start) -> None:
    h = await start(uppercase_statuses=True)
    adapter = h.adapter()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    cursor = (await adapter.changes_since(None)).cursor
    for native in (
        "internal_referral",
        "investigating",
        "unchanged",
        "not_councils_responsibility",
        "fixed",
    ):
        h.state.set_status(ticket.ticket_id, native, f"note {native}")
    result = await adapter.changes_since(cursor)
    got = [(e.native_status, e.status, e.note) for e in by_ticket(result.events, ticket.ticket_id)]
    assert got == [
        ("INTERNAL_REFERRAL", TicketStatus.REFERRED, "note internal_referral"),
        ("INVESTIGATING", TicketStatus.IN_PROGRESS, "note investigating"),
        ("NOT_COUNCILS_RESPONSIBILITY", TicketStatus.RETURNED, "note not_councils_responsibility"),
        ("FIXED", TicketStatus.RESOLVED, "note fixed"),
    ]
    assert len({e.event_id for e in result.events}) == 4
    assert all(e.department == "transport" and e.source == "poll" for e in result.events)


async def test_configured_map_ignore_and_external_codes(start: Start) -> None:
    h = await start()
    adapter = h.adapter(
        status_map={"INVESTIGATING": "referred", "Planned": "IGNORE", "ext-77": "returned"}
    )
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    cursor = (await adapter.changes_since(None)).cursor
    h.state.set_status(ticket.ticket_id, "investigating")
    h.state.set_status(ticket.ticket_id, "planned")
    h.state.set_status(ticket.ticket_id, "in_progress", external_status_code="EXT-77")
    events = by_ticket((await adapter.changes_since(cursor)).events, ticket.ticket_id)
    assert [(e.native_status, e.status) for e in events] == [
        ("investigating", TicketStatus.REFERRED),
        ("in_progress", TicketStatus.RETURNED),
    ]


async def test_unknown_status_maps_to_default_with_a_warning(start: Start) -> None:
    h = await start()
    adapter = h.adapter()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    cursor = (await adapter.changes_since(None)).cursor
    h.state.inject_raw_update(ticket.ticket_id, "AWAITING_CONTRACTOR", "等待施工方")
    with structlog.testing.capture_logs() as logs:
        result = await adapter.changes_since(cursor)
    [event] = by_ticket(result.events, ticket.ticket_id)
    assert event.status == TicketStatus.RECEIVED
    assert event.native_status == "AWAITING_CONTRACTOR"
    warnings = [r for r in logs if r["event"] == "open311_unknown_status"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["native_status"] == "AWAITING_CONTRACTOR"
    assert warnings[0]["ticket_id"] == ticket.ticket_id

    custom = h.adapter(unknown_status="in_progress")
    [event] = by_ticket((await custom.changes_since(cursor)).events, ticket.ticket_id)
    assert event.status == TicketStatus.IN_PROGRESS


# --------------------------------------------------------------------------- changes_since


async def test_updates_are_deduped_and_late_writes_still_seen(start: Start) -> None:
    now = [datetime.now(UTC)]
    h = await start(clock=lambda: now[0])
    adapter = h.adapter()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    h.state.set_status(ticket.ticket_id, "in_progress", "已派单")
    first = await adapter.changes_since(None)
    assert [e.native_status for e in by_ticket(first.events, ticket.ticket_id)] == ["in_progress"]

    # The backend writes an update late, stamped 10 minutes before our last read.
    now[0] = datetime.now(UTC) - timedelta(minutes=10)
    late = h.state.set_status(ticket.ticket_id, "fixed", "已修复")
    second = await h.adapter().changes_since(first.cursor)
    [event] = by_ticket(second.events, ticket.ticket_id)
    assert (event.status, event.note) == (TicketStatus.RESOLVED, "已修复")
    assert event.event_id != first.events[0].event_id
    assert late.update_id  # deduped on it from now on
    third = await h.adapter().changes_since(second.cursor)
    assert by_ticket(third.events, ticket.ticket_id) == []


async def test_unreadable_cursor_restarts_from_the_lookback(start: Start) -> None:
    h = await start()
    adapter = h.adapter()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    h.state.set_status(ticket.ticket_id, "planned")
    with structlog.testing.capture_logs() as logs:
        result = await adapter.changes_since("{not json")
    assert [e.status for e in result.events] == [TicketStatus.IN_PROGRESS]
    assert [r["event"] for r in logs] == ["open311_cursor_unreadable"]


async def test_without_servicerequestupdates_changes_come_from_requests(start: Start) -> None:
    h = await start(updates_enabled=False)
    adapter = h.adapter()
    assert adapter.cfg.servicerequestupdates is False
    moved, untouched = h.command(1), h.command(2)
    t1 = await adapter.create(moved, moved.command_id)
    await adapter.create(untouched, untouched.command_id)
    base = await adapter.changes_since(None)
    assert base.events == []  # freshly created tickets are not "changes"

    h.state.set_status(t1.ticket_id, "action_scheduled", "周三施工")
    first = await adapter.changes_since(base.cursor)
    [event] = first.events
    assert (event.ticket_id, event.status, event.native_status, event.note) == (
        t1.ticket_id,
        TicketStatus.IN_PROGRESS,
        "action_scheduled",
        "周三施工",
    )
    assert event.reference == moved.reference
    assert (await adapter.changes_since(first.cursor)).events == []
    assert h.state.requests_by_route["GET /servicerequestupdates.{fmt}"] == 0

    with pytest.raises(PermanentError, match="no servicerequestupdates"):
        await adapter.append(t1.ticket_id, h.command(3))
    # Configured as if it had the extension: a clear hint, at check time too.
    assuming = h.adapter(servicerequestupdates=True)
    with pytest.raises(PermanentError, match="set servicerequestupdates = false"):
        await assuming.changes_since(None)
    with pytest.raises(PermanentError, match="set servicerequestupdates = false"):
        await assuming.check()
    await adapter.check()


async def test_requests_window_with_only_open_closed_statuses(start: Start) -> None:
    h = await start(updates_enabled=False, extended_in_requests=False)
    adapter = h.adapter()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    cursor = (await adapter.changes_since(None)).cursor
    h.state.set_status(ticket.ticket_id, "fixed", "已修复")
    [event] = (await adapter.changes_since(cursor)).events
    assert (event.native_status, event.status) == ("closed", TicketStatus.CLOSED)


# --------------------------------------------------------------------------- search, append, XML


async def test_find_by_reference_needs_a_searchable_backend(start: Start) -> None:
    h = await start(searchable=False)
    adapter = h.adapter(reference_in_description=False)
    assert adapter.capabilities.search_by_reference is False
    with pytest.raises(PermanentError, match="cannot search"):
        await adapter.find_by_reference("gb-x")
    # Misconfigured as searchable: the server ignores the filter; never guess a match.
    for n in (1, 2):
        cmd = h.command(n)
        await adapter.create(cmd, cmd.command_id)
    wrong = h.adapter(searchable=True, reference_in_description=False)
    with pytest.raises(PermanentError, match=r"ignored attribute\[govbridge_ref\]"):
        await wrong.find_by_reference(h.command(1).reference)
    # With the reference in the description (the default), the record proves it is ours.
    marked = h.adapter()
    assert marked.capabilities.search_by_reference is True
    cmd = h.command(3)
    created = await marked.create(cmd, cmd.command_id)
    found = await h.adapter().find_by_reference(cmd.reference)
    assert found is not None and found.ticket_id == created.ticket_id
    assert await h.adapter().find_by_reference(h.command(1).reference) is None  # unproven


async def test_append_posts_an_update_once_per_command(start: Start) -> None:
    h = await start()
    adapter = h.adapter()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    follow = h.command(2).model_copy(update={"action": "append", "ticket_id": ticket.ticket_id})
    await adapter.append(ticket.ticket_id, follow)
    await adapter.append(ticket.ticket_id, follow)  # redelivered: same update_id
    [update] = h.state.client_updates(ticket.ticket_id)
    assert update.description == follow.description and update.status == "unchanged"
    assert h.state.tickets[ticket.ticket_id].status == "open"
    # The bridge's own updates are not reported back as backend changes.
    assert by_ticket((await adapter.changes_since(None)).events, ticket.ticket_id) == []

    await adapter.append(ticket.ticket_id, h.command(3), status=TicketStatus.REOPENED)
    assert [u.status for u in h.state.client_updates(ticket.ticket_id)] == ["unchanged", "reopen"]
    with pytest.raises(PermanentError, match="service_request_id 999999 not found"):
        await adapter.append("999999", h.command(4))


async def test_xml_only_server_end_to_end(start: Start) -> None:
    h = await start(xml_only=True, uppercase_statuses=True)
    adapter = h.adapter()
    assert adapter.cfg.format == "xml"
    await adapter.check()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    assert h.state.tickets[ticket.ticket_id].attributes["urgency"] == "normal"
    found = await adapter.find_by_reference(cmd.reference)
    assert found is not None and found.ticket_id == ticket.ticket_id
    assert found.native_status == "OPEN" and found.status == TicketStatus.RECEIVED
    assert await adapter.find_by_reference("gb-nobody") is None
    await adapter.append(ticket.ticket_id, h.command(2))
    base = await adapter.changes_since(None)
    h.state.set_status(ticket.ticket_id, "no_further_action", "不属于受理范围")
    [event] = by_ticket((await adapter.changes_since(base.cursor)).events, ticket.ticket_id)
    assert (event.status, event.native_status, event.note) == (
        TicketStatus.REJECTED,
        "NO_FURTHER_ACTION",
        "不属于受理范围",
    )


# --------------------------------------------------------------------------- simulator


async def test_simulator_requests_filters_and_errors(start: Start) -> None:
    h = await start()
    adapter = h.adapter()
    ids = []
    for n in (1, 2, 3):
        cmd = h.command(n, Category.CONSULTATION if n == 3 else Category.COMPLAINT)
        ids.append((await adapter.create(cmd, cmd.command_id)).ticket_id)
    h.state.set_status(ids[0], "fixed")
    assert h.server is not None
    base = h.server.base_url
    async with aiohttp.ClientSession() as http:

        async def get(path: str, **params: str) -> tuple[int, Any]:
            async with http.get(base + path, params=params) as r:
                return r.status, await r.json()

        status, body = await get("requests.json", service_request_id=f"{ids[2]},{ids[0]}")
        assert [r["service_request_id"] for r in body] == [ids[2], ids[0]]
        _, body = await get("requests.json", service_code="TR-01")
        assert sorted(r["service_request_id"] for r in body) == sorted(ids[:2])
        _, body = await get("requests.json", status="closed")
        assert [r["service_request_id"] for r in body] == [ids[0]]
        status, body = await get(
            "requests.json", start_date="2024-01-01T00:00:00Z", end_date="2024-06-01T00:00:00Z"
        )
        assert status == 400 and body == [
            {"code": 400, "description": "start_date and end_date may span at most 90 days"}
        ]
        status, body = await get("requests/424242.json")
        assert status == 404 and body[0]["code"] == 404
        status, body = await get(f"requests/{ids[1]}.json")
        assert status == 200 and len(body) == 1 and body[0]["status"] == "open"
        async with http.post(base + "requests.json", data={"service_code": "TR-01"}) as r:
            assert r.status == 403
            assert await r.json() == [{"code": 403, "description": "Invalid or missing api_key"}]
        async with http.post(base + "requests.json", data={"api_key": API_KEY}) as r:
            assert r.status == 400
            descriptions = [e["description"] for e in await r.json()]
            assert "service_code is required" in descriptions
            assert any(d.startswith("a location is required") for d in descriptions)
        async with http.get(base + "services.xml") as r:
            text = await r.text()
            assert r.status == 200 and "<services><service><service_code>TR-01" in text


async def test_simulator_http_controls(start: Start) -> None:
    h = await start()
    adapter = h.adapter()
    cmd = h.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    assert h.server is not None
    base, port = h.server.base_url, h.server.port
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}_sim/tickets/{ticket.ticket_id}/status",
            json={"status": "in_progress", "note": "处理中"},
        ) as r:
            assert r.status == 200 and (await r.json())["status"] == "in_progress"
        async with http.get(base + "_sim/stats") as r:
            assert (await r.json())["requests"] == h.state.request_count > 0
        async with http.post(base + "_sim/outage", json={"mode": "503"}) as r:
            assert r.status == 200
        async with http.get(base + "services.json") as r:
            assert r.status == 503
        async with http.post(base + "_sim/outage", json={"mode": "refuse"}) as r:
            assert r.status == 400  # nobody could lift an untimed refusal over HTTP
        async with http.post(base + "_sim/outage", json={"mode": "refuse", "seconds": 1}) as r:
            assert r.status == 200
    async with aiohttp.ClientSession() as http:
        # refused, or (if the socket was still closing) dropped: no answer either way
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(base + "services.json"):
                pass
        for _ in range(1000):  # listens again on the same port once the refusal ends
            if h.state.outage is None:
                break
            await asyncio.sleep(0.01)
        assert h.server.port == port
        async with http.get(base + "services.json") as r:
            assert r.status == 200
    [event] = by_ticket((await adapter.changes_since(None)).events, ticket.ticket_id)
    assert event.note == "处理中"
