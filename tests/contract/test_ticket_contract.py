"""The contract every ticket-system adapter must honour, run against each ``harness_*.py`` here.

Harness modules are discovered by file name and selected by protocol (``kind =
"ticket_system"``, or the ``TicketSystemHarness`` members when ``kind`` is absent), so a new
backend joins the suite by adding its harness. A harness that fails to import shows up as a
failing test, not as a silent skip.

Optional harness extras the suite uses when present:
``native_in_progress`` (the backend's code for "in progress"; otherwise a few usual spellings
are tried) with ``moved_status`` (what it maps to, when a plain backend can only show
"closed"), ``request_count()`` (requests that reached the backend, to prove an outage costs a
bounded number of them) and ``appended(ticket_id)`` (follow-up texts the backend holds).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import PermanentError, TicketSystem, TransientError
from adapters.circuit import CircuitBreaker
from schemas.vocab import TicketStatus
from tests.contract.harness import TicketSystemHarness

HERE = Path(__file__).parent
_MEMBERS = sorted(
    n for n, v in vars(TicketSystemHarness).items() if callable(v) and not n.startswith("_")
)
IN_PROGRESS_SPELLINGS = ("in_progress", "IN_PROGRESS", "processing", "PROCESSING")
OUTAGE_ATTEMPTS = 12


class _Broken:
    """Stands in for a harness module that could not be imported."""

    def __init__(self, module: str, error: BaseException) -> None:
        self.module = module
        self.error = error


def _is_ticket_harness(obj: Any) -> bool:
    kind = getattr(obj, "kind", None)
    if kind is not None:
        return bool(kind == "ticket_system")
    return all(callable(getattr(obj, m, None)) for m in _MEMBERS)


def _discover() -> list[Any]:
    found: list[Any] = []
    for path in sorted(HERE.glob("harness_*.py")):
        module = f"{__package__ or 'tests.contract'}.{path.stem}"
        try:
            mod = importlib.import_module(module)
        except Exception as e:
            found.append(pytest.param(_Broken(module, e), id=path.stem))
            continue
        obj = getattr(mod, "HARNESS", None)
        if obj is None or not _is_ticket_harness(obj):
            continue  # a source harness, or a helper module
        found.append(pytest.param(obj, id=str(getattr(obj, "name", path.stem))))
    return found


HARNESSES = _discover()


@pytest.fixture(params=HARNESSES)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[TicketSystemHarness]:
    obj = request.param
    if isinstance(obj, _Broken):
        pytest.fail(f"harness module {obj.module} does not import: {obj.error!r}")
    h: TicketSystemHarness = obj() if isinstance(obj, type) else obj
    async with h.running() as running:
        yield running


def test_built_in_harnesses_are_discovered() -> None:
    names = {getattr(p.values[0], "name", None) for p in HARNESSES}
    assert {"open311", "rest"} <= names, names


async def _tickets_with(h: TicketSystemHarness, reference: str) -> list[dict[str, str]]:
    return [t for t in await h.tickets() if t.get("reference") == reference]


async def _move_in_progress(h: TicketSystemHarness, ticket_id: str, note: str) -> str:
    """Move the ticket to the backend's 'in progress'; return the native code used."""
    hinted = getattr(h, "native_in_progress", None)
    candidates = (hinted,) if hinted else IN_PROGRESS_SPELLINGS
    errors = []
    for native in candidates:
        try:
            await h.set_status(ticket_id, native, note)
            return native
        except (ValueError, KeyError) as e:
            errors.append(repr(e))
    pytest.fail(f"harness {h.name} accepts none of {candidates}: {errors}")


# --------------------------------------------------------------------------- create / append


async def _detected(adapter: TicketSystem) -> TicketSystem:
    """Let an adapter learn what its backend offers, as the runtime does at start."""
    detect = getattr(adapter, "detect", None)
    if detect is not None:
        await detect()
    return adapter


def _watch(adapter: TicketSystem, ticket_id: str, native: str) -> None:
    """Tell an adapter the bridge's open ticket, as the sync stage does before each poll."""
    watch = getattr(adapter, "watch", None)
    if watch is not None:
        watch({ticket_id: native})


async def test_create_stores_the_reference(harness: TicketSystemHarness) -> None:
    adapter = harness.adapter()
    cmd = harness.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    assert ticket.ticket_id
    assert ticket.status == TicketStatus.RECEIVED
    stored = await _tickets_with(harness, cmd.reference)
    assert [t["id"] for t in stored] == [ticket.ticket_id]


async def test_distinct_commands_make_distinct_tickets(harness: TicketSystemHarness) -> None:
    adapter = harness.adapter()
    ids = set()
    for n in (1, 2, 3):
        cmd = harness.command(n)
        ids.add((await adapter.create(cmd, cmd.command_id)).ticket_id)
    assert len(ids) == 3
    assert len(await harness.tickets()) == 3


async def test_append_reaches_the_ticket(harness: TicketSystemHarness) -> None:
    adapter = await _detected(harness.adapter())
    first = harness.command(1)
    ticket = await adapter.create(first, first.command_id)
    follow_up = harness.command(2).model_copy(
        update={"action": "append", "ticket_id": ticket.ticket_id}
    )
    if not adapter.capabilities.appends:
        # No API takes a follow-up: a clear refusal (the bridge keeps it on record instead).
        with pytest.raises(PermanentError, match="follow-ups"):
            await adapter.append(ticket.ticket_id, follow_up)
        assert len(await harness.tickets()) == 1
        return
    await adapter.append(ticket.ticket_id, follow_up)
    appended = getattr(harness, "appended", None)
    if appended is not None:
        texts = await appended(ticket.ticket_id)
        assert any(follow_up.description[:20] in t for t in texts), texts
    # Appending never creates a ticket.
    assert len(await harness.tickets()) == 1


# --------------------------------------------------------------------------- status changes


async def test_status_change_is_reported_once(harness: TicketSystemHarness) -> None:
    adapter = harness.adapter()
    cmd = harness.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    _watch(adapter, ticket.ticket_id, ticket.native_status)
    before = await adapter.changes_since(None)

    native = await _move_in_progress(harness, ticket.ticket_id, "已派单至运营公司")
    first = await adapter.changes_since(before.cursor)
    mine = [
        e
        for e in first.events
        if e.ticket_id == ticket.ticket_id and e.native_status.lower() == native.lower()
    ]
    assert len(mine) == 1, first.events
    event = mine[0]
    assert event.status == getattr(harness, "moved_status", TicketStatus.IN_PROGRESS)
    assert event.department == cmd.department
    assert event.event_id
    assert first.cursor is not None

    again = await adapter.changes_since(first.cursor)
    assert [e for e in again.events if e.ticket_id == ticket.ticket_id] == []
    # The cursor alone carries the state: a restarted process reports nothing twice either.
    fresh = harness.adapter()
    _watch(fresh, ticket.ticket_id, ticket.native_status)  # the store has not applied it yet
    restarted = await fresh.changes_since(first.cursor)
    assert [e for e in restarted.events if e.ticket_id == ticket.ticket_id] == []


# --------------------------------------------------------------------------- no duplicate ticket


async def test_idempotent_create_or_reconciliation(harness: TicketSystemHarness) -> None:
    adapter = harness.adapter()
    caps = adapter.capabilities
    cmd = harness.command(1)
    first = await adapter.create(cmd, cmd.command_id)
    if caps.idempotent_create:
        second = await adapter.create(cmd, cmd.command_id)
        assert second.ticket_id == first.ticket_id
    elif caps.search_by_reference:
        found = await harness.adapter().find_by_reference(cmd.reference)
        assert found is not None and found.ticket_id == first.ticket_id
        assert await adapter.find_by_reference(cmd.reference + "-absent") is None
    else:
        pytest.fail("a ticket system needs idempotent create or search by reference")
    assert len(await _tickets_with(harness, cmd.reference)) == 1


async def test_find_by_reference_refuses_when_it_cannot_search(
    harness: TicketSystemHarness,
) -> None:
    adapter = harness.adapter()
    if adapter.capabilities.search_by_reference:
        pytest.skip("this backend can search by reference")
    with pytest.raises(PermanentError):
        await adapter.find_by_reference("gb-anything")


# --------------------------------------------------------------------------- outage


async def _request_count(h: TicketSystemHarness) -> int | None:
    counter = getattr(h, "request_count", None)
    return None if counter is None else int(await counter())


async def test_outage_is_transient_bounded_and_recovers(harness: TicketSystemHarness) -> None:
    adapter: TicketSystem = harness.adapter()
    warm = harness.command(1)
    await adapter.create(warm, warm.command_id)  # caches filled, connection open

    await harness.set_outage("503")
    before = await _request_count(harness)
    for i in range(OUTAGE_ATTEMPTS):
        cmd = harness.command(100 + i)
        with pytest.raises(TransientError):
            await adapter.create(cmd, cmd.command_id)
    after = await _request_count(harness)
    if before is not None and after is not None:
        assert 1 <= after - before <= OUTAGE_ATTEMPTS // 2, (before, after)
    breaker = getattr(adapter, "breaker", None)
    if isinstance(breaker, CircuitBreaker):
        assert breaker.short_circuited >= 1

    await harness.set_outage("refuse")
    cold = harness.adapter()
    cmd = harness.command(200)
    with pytest.raises(TransientError):
        await cold.create(cmd, cmd.command_id)

    await harness.set_outage(None)
    cmd = harness.command(300)
    ticket = await harness.adapter().create(cmd, cmd.command_id)
    assert [t["id"] for t in await _tickets_with(harness, cmd.reference)] == [ticket.ticket_id]
    # Nothing failed half-way into a ticket.
    failed = {harness.command(100 + i).reference for i in range(OUTAGE_ATTEMPTS)}
    failed.add(harness.command(200).reference)
    assert not [t for t in await harness.tickets() if t.get("reference") in failed]
