"""The ticketing role and the ticket-system simulators (issue 4): the crashes with processes on
the real RabbitMQ, the outages on the in-memory broker.

- A process that dies after the backend created the ticket and before the bridge recorded it:
  the message returns to the queue and a second process picks it up. Searchable backend →
  the ticket is found by reference (one ticket); non-searchable Open311 → the inquiry is
  flagged ``needs_reconciliation`` (store, metric, ``/api/reconciliation``) and no second
  ticket is made; REST with ``Idempotency-Key`` → the repeated create is deduplicated.
- The backend down for a minute (503 answers, then refused connections): nothing lost, no dead
  letter, every ticket created exactly once after recovery, and a request count during the
  outage bounded by the circuit breaker's settings.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from govbridge_tools.simulators.open311 import Open311Server, Open311State
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.testing import MemoryBroker, Simulators
from prometheus_client.parser import text_string_to_metric_families

from adapters.base import CreatedTicket
from adapters.open311 import Open311TicketSystem
from bridge.daemon import Daemon
from bridge.store import NewInquiry, SqlStore
from schemas.config import GovbridgeConfig
from schemas.messages import (
    Author,
    Inquiry,
    ThreadRef,
    TicketCommand,
    reference_for,
    stable_id,
)
from schemas.vocab import Category, InquiryKind
from tests.conftest import AMQP_URL, bridge_config, delete_topology, eventually, running_bridge

ADMIN = {"Authorization": "Bearer test-admin-token"}
DEPT = "transport"


# --------------------------------------------------------------------------- helpers


def open311_ticketing(base_url: str, **overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "adapter": "open311",
        "base_url": base_url,
        "api_key": "sim-open311-key",
        "service_codes": {"complaint": "TR-01", "other": "TR-09"},
        "attributes": {"urgency": "normal"},
        "lat": 39.9,
        "long": 116.4,
        "poll": "0s",  # no sync role here; keep the department quiet anyway
        "timeout": "2s",
        # A crashed process's create is taken over once its lease is free (the holder gone),
        # never by waiting out create_lease: ten minutes here, longer than any test.
        "create_lease": "10m",
    }
    block.update(overrides)
    return block


def department(ticketing: dict[str, Any]) -> dict[str, Any]:
    return {"id": DEPT, "name": "市交通委", "ticketing": ticketing}


def command(n: int, tag: str) -> TicketCommand:
    inquiry = Inquiry.create(
        platform="weibo",
        account="bjjtw",
        kind=InquiryKind.MENTION,
        external_id=f"{tag}-{n}",
        author=Author(id=f"u{n}", handle=f"citizen{n}"),
        text=f"第{n}号路口信号灯坏了，请尽快处理",
        created_at=datetime.now(UTC),
        thread=ThreadRef(root_id=f"{tag}-{n}"),
    )
    return TicketCommand(
        command_id=stable_id("cmd", inquiry.inquiry_id),
        action="create",
        inquiry=inquiry,
        department=DEPT,
        category=Category.COMPLAINT,
        reference=reference_for(inquiry.inquiry_id),
        description=inquiry.text,
        public_text=inquiry.text,
    )


async def record_inquiry(store: SqlStore, cmd: TicketCommand) -> None:
    """What the triage stage writes before it routes an inquiry."""
    inq = cmd.inquiry
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=inq.inquiry_id,
            platform=inq.platform,
            account=inq.account,
            kind=inq.kind.value,
            thread_key=inq.thread_key,
            state="routed",
            department=cmd.department,
            category=cmd.category.value,
            public_text=cmd.public_text,
            citizen_handle=inq.author.handle,
            visibility=inq.visibility.value,
            thread_json=inq.thread.model_dump_json(),
        )
    )


async def send(daemon: Daemon, cmd: TicketCommand) -> None:
    assert daemon.ctx is not None
    await record_inquiry(daemon.ctx.store, cmd)
    await daemon.ctx.broker.publish(f"inquiry.routed.{cmd.department}", cmd)


async def queue_depth(daemon: Daemon, name: str) -> int:
    if isinstance(daemon.broker, MemoryBroker):
        return len(daemon.broker.queues[name])
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(name, passive=True)
        count = q.declaration_result.message_count
        assert count is not None
        return count


async def metric(port: int, name: str, labels: dict[str, str]) -> float | None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


CreateFn = Callable[[TicketCommand, str], Awaitable[CreatedTicket]]


async def crash_after_backend_create(cfg: GovbridgeConfig, cmd: TicketCommand) -> None:
    """Run a first bridge process whose create reaches the backend and then never returns
    (the process is gone before it records anything); stop it hard so the unacked message
    goes back to the queue. The store and the broker topology are left for the next one."""
    daemon = Daemon(cfg, ["ticketing"], watchdog_interval=3600)
    await daemon.start()
    try:
        assert daemon.ctx is not None
        system = daemon.ctx.adapters.ticket_systems()[DEPT]
        real: CreateFn = system.create
        reached = asyncio.Event()

        async def create_then_die(command: TicketCommand, idempotency_key: str) -> CreatedTicket:
            await real(command, idempotency_key)
            reached.set()
            await asyncio.Event().wait()  # dead: never records, never acks
            raise AssertionError("unreachable")

        system.create = create_then_die  # type: ignore[method-assign]
        await send(daemon, cmd)
        await asyncio.wait_for(reached.wait(), 20)
    finally:
        # drain_timeout is 1 s: the stuck handler is cancelled, the channel closes unacked.
        await daemon.stop()


@pytest.fixture
async def open311_sim(sims: Simulators) -> Open311Server:
    return await sims.open311()


def references(state: Open311State) -> Counter[str]:
    return Counter(state.reference_of(t) or "" for t in state.tickets.values())


# --------------------------------------------------------------------------- crash → redelivery


async def test_crash_after_create_searchable_backend_finds_the_ticket(
    tmp_path: Path, open311_sim: Open311Server
) -> None:
    cfg = bridge_config(
        tmp_path,
        departments=[department(open311_ticketing(open311_sim.base_url, searchable=True))],
        broker={"drain_timeout": "1s"},
    )
    cmd = command(1, uuid.uuid4().hex[:8])
    state = open311_sim.state
    try:
        await crash_after_backend_create(cfg, cmd)
        assert references(state) == Counter({cmd.reference: 1})  # the backend has it
        posts_before = state.requests_by_route["POST /requests.{fmt}"]

        async with second_process(cfg, ["ticketing"]) as daemon:
            assert daemon.ctx is not None
            store = daemon.ctx.store
            attempt = await store.get_create_attempt(cmd.reference)
            assert attempt is not None and attempt.state == "attempted"

            async def recorded() -> bool:
                return await store.ticket_by_reference(cmd.reference) is not None

            await eventually(recorded)
            row = await store.ticket_by_reference(cmd.reference)
            assert row is not None
            (backend_ticket,) = state.tickets.values()
            assert row.ticket_id == backend_ticket.id
            inquiry = await store.get_inquiry(cmd.inquiry.inquiry_id)
            assert inquiry is not None
            assert (inquiry.state, inquiry.ticket_id) == ("ticketed", backend_ticket.id)
            attempt = await store.get_create_attempt(cmd.reference)
            assert attempt is not None
            assert (attempt.state, attempt.ticket_id) == ("created", backend_ticket.id)
        # Found by reference, not created again.
        assert state.requests_by_route["POST /requests.{fmt}"] == posts_before == 1
        assert state.requests_by_route["GET /requests.{fmt}"] >= 1
        assert references(state) == Counter({cmd.reference: 1})
    finally:
        await delete_topology(cfg.broker)


async def test_crash_after_create_unsearchable_backend_flags_for_reconciliation(
    tmp_path: Path, open311_sim: Open311Server
) -> None:
    open311_sim.state.searchable = False  # the backend ignores attribute filters
    cfg = bridge_config(
        tmp_path,
        # Nothing to search by: no attribute filter, and no reference in the description.
        departments=[
            department(
                open311_ticketing(
                    open311_sim.base_url, searchable=False, reference_in_description=False
                )
            )
        ],
        broker={"drain_timeout": "1s"},
    )
    cmd = command(1, uuid.uuid4().hex[:8])
    other = command(2, uuid.uuid4().hex[:8])
    state = open311_sim.state
    try:
        await crash_after_backend_create(cfg, cmd)
        assert len(state.tickets) == 1

        async with second_process(cfg, ["ticketing", "http"]) as daemon:
            assert daemon.ctx is not None and daemon.http_port is not None
            store, port = daemon.ctx.store, daemon.http_port

            async def flagged() -> bool:
                attempt = await store.get_create_attempt(cmd.reference)
                return attempt is not None and attempt.state == "needs_reconciliation"

            await eventually(flagged)
            inquiry = await store.get_inquiry(cmd.inquiry.inquiry_id)
            assert inquiry is not None and inquiry.state == "needs_reconciliation"
            assert await store.ticket_by_reference(cmd.reference) is None
            gauge = "govbridge_needs_reconciliation"
            assert await metric(port, gauge, {"department": DEPT}) == 1.0

            url = f"http://127.0.0.1:{port}/api/reconciliation"
            async with aiohttp.ClientSession() as http:
                async with http.get(url) as resp:
                    assert resp.status == 401
                async with http.get(url, headers=ADMIN) as resp:
                    assert resp.status == 200
                    listed = (await resp.json())["needs_reconciliation"]
            assert [(r["reference"], r["inquiry_id"], r["department"]) for r in listed] == [
                (cmd.reference, cmd.inquiry.inquiry_id, DEPT)
            ]

            # A redelivery of the flagged command still creates nothing; an unrelated
            # inquiry is ticketed normally by the same process (nothing is stuck).
            await daemon.ctx.broker.publish(f"inquiry.routed.{DEPT}", cmd)
            await send(daemon, other)

            async def other_recorded() -> bool:
                return await store.ticket_by_reference(other.reference) is not None

            await eventually(other_recorded)
            acked = daemon.metrics.acked.labels("ticketing")

            async def both_handled() -> bool:
                return acked._value.get() >= 3

            await eventually(both_handled)
            assert await metric(port, gauge, {"department": DEPT}) == 1.0
        assert references(state) == Counter({cmd.reference: 1, other.reference: 1})
        assert state.requests_by_route["POST /requests.{fmt}"] == 2
    finally:
        await delete_topology(cfg.broker)


async def test_crash_after_create_rest_backend_dedupes_on_idempotency_key(
    tmp_path: Path,
) -> None:
    sim = RestSimServer(RestTicketState())
    await sim.start()
    ticketing = demo_ticketing_config(sim.url)
    del ticketing["lookup"]  # no search: the Idempotency-Key alone must prevent a duplicate
    ticketing["poll"] = "0s"
    ticketing["create_lease"] = "1s"
    cfg = bridge_config(
        tmp_path, departments=[department(ticketing)], broker={"drain_timeout": "1s"}
    )
    cmd = command(1, uuid.uuid4().hex[:8])
    state = sim.state
    try:
        await crash_after_backend_create(cfg, cmd)
        assert len(state.tickets) == 1

        async with second_process(cfg, ["ticketing"]) as daemon:
            assert daemon.ctx is not None
            store = daemon.ctx.store
            system = daemon.ctx.adapters.ticket_systems()[DEPT]
            assert system.capabilities.idempotent_create
            assert not system.capabilities.search_by_reference

            async def recorded() -> bool:
                return await store.ticket_by_reference(cmd.reference) is not None

            await eventually(recorded)
            row = await store.ticket_by_reference(cmd.reference)
            assert row is not None
            (backend_ticket,) = state.tickets.values()
            assert row.ticket_id == backend_ticket["id"]
        # The create was repeated with the same key; the backend answered with the first ticket.
        assert state.requests["POST /tickets"] == 2
        assert [t["external_ref"] for t in state.tickets.values()] == [cmd.reference]
        assert list(state.idempotency) == [cmd.reference]
    finally:
        await sim.close()
        await delete_topology(cfg.broker)


async def test_refused_connection_on_unsearchable_backend_is_not_flagged(
    tmp_path: Path, open311_sim: Open311Server
) -> None:
    open311_sim.state.searchable = False
    cfg = bridge_config(
        tmp_path,
        # Nothing to search by: no attribute filter, and no reference in the description.
        departments=[
            department(
                open311_ticketing(
                    open311_sim.base_url, searchable=False, reference_in_description=False
                )
            )
        ],
        broker={"retry_delays": ["500ms", "1s"]},
    )
    cmd = command(1, uuid.uuid4().hex[:8])
    state = open311_sim.state
    async with running_bridge(cfg, ["ticketing"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await state.set_outage("refuse")
        await send(daemon, cmd)

        async def tried() -> bool:
            return await store.get_create_attempt(cmd.reference) is not None

        await eventually(tried)
        await state.set_outage(None)  # the backend never saw a create

        async def settled() -> bool:
            attempt = await store.get_create_attempt(cmd.reference)
            return attempt is not None and attempt.state in ("created", "needs_reconciliation")

        await eventually(settled)
        attempt = await store.get_create_attempt(cmd.reference)
        assert attempt is not None
        assert attempt.state == "created", attempt.detail
        assert references(state) == Counter({cmd.reference: 1})


@asynccontextmanager
async def second_process(cfg: GovbridgeConfig, roles: list[str]) -> AsyncIterator[Daemon]:
    """The process that takes over after the crash: same store, same broker topology."""
    daemon = Daemon(cfg, roles, watchdog_interval=3600)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


# --------------------------------------------------------------------------- outage


OUTAGE_503_S = 30.0
OUTAGE_REFUSE_S = 30.0
N_COMMANDS = 30
BREAKER_FAILURES = 5
BREAKER_COOLDOWN_S = 10.0
PREFETCH = 16


async def test_backend_down_a_minute_loses_nothing_and_costs_bounded_requests(
    tmp_path: Path, open311_sim: Open311Server
) -> None:
    ticketing = open311_ticketing(
        open311_sim.base_url,
        searchable=True,
        breaker_failures=BREAKER_FAILURES,
        breaker_cooldown=f"{BREAKER_COOLDOWN_S:g}s",
    )
    cfg = bridge_config(
        tmp_path,
        departments=[department(ticketing)],
        broker={"retry_delays": ["1s", "2s", "5s", "10s"], "prefetch": PREFETCH},
    )
    state = open311_sim.state
    tag = uuid.uuid4().hex[:8]
    commands = [command(n, tag) for n in range(N_COMMANDS)]

    # Every HTTP attempt the adapter makes (refused connections never reach the simulator's
    # counter, so count on the client side too), by phase.
    attempts: Counter[str] = Counter()
    phase = "before"

    async with running_bridge(cfg, ["ticketing"], watchdog_interval=3600, in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        system = daemon.ctx.adapters.ticket_systems()[DEPT]
        assert isinstance(system, Open311TicketSystem)
        real_request = system.http._exchange

        async def counted(*args: Any, **kwargs: Any) -> Any:
            attempts[phase] += 1
            return await real_request(*args, **kwargs)

        system.http._exchange = counted  # type: ignore[method-assign]
        try:
            state.reset_counter()
            await state.set_outage("503")
            phase = "outage"
            started = time.monotonic()
            for cmd in commands:
                await send(daemon, cmd)
            await asyncio.sleep(OUTAGE_503_S)
            seen_in_503 = state.request_count
            await state.set_outage("refuse")
            await asyncio.sleep(OUTAGE_REFUSE_S)
            await state.set_outage(None)
            outage_s = time.monotonic() - started
            phase = "after"
            seen_during_outage = state.request_count
            # refused by the breaker: inside the adapter, or before the stage even tried
            skipped = daemon.metrics.tickets.labels(DEPT, "circuit_open")._value.get()
            breaker_during = system.breaker.short_circuited + int(skipped)

            async def all_recorded() -> bool:
                return len(await store.list_tickets(DEPT)) == N_COMMANDS

            await eventually(all_recorded, timeout=60)
            recovered_s = time.monotonic() - started - outage_s
        finally:
            await state.set_outage(None)

        # Nothing lost, each exactly once: in the backend (by reference) and in the store.
        wanted = {c.reference for c in commands}
        assert references(state) == Counter(dict.fromkeys(wanted, 1))
        rows = await store.list_tickets(DEPT)
        assert {r.reference for r in rows} == wanted
        assert {r.ticket_id for r in rows} == set(state.tickets)
        assert state.requests_by_route["POST /requests.{fmt}"] == N_COMMANDS
        assert await store.list_create_attempts("needs_reconciliation") == []
        # No dead letters.
        dead = daemon.broker.topology.queues("ticketing").dead
        assert await queue_depth(daemon, dead) == 0
        dl = daemon.metrics.dead_lettered
        assert (
            sum(s.value for m in dl.collect() for s in m.samples if s.name.endswith("_total")) == 0
        )

    # The bound: while the circuit is closed at most BREAKER_FAILURES consecutive failures are
    # recorded before it opens, plus whatever was already in flight (at most one request per
    # unacked message: PREFETCH); after that only one half-open probe per cool-down goes out,
    # and every failed probe re-opens the circuit for another BREAKER_COOLDOWN_S.
    probes = int(outage_s // BREAKER_COOLDOWN_S) + 1
    bound = BREAKER_FAILURES + PREFETCH + probes
    naive = N_COMMANDS * (len(cfg.broker.retry_delays) + 1)  # one request per delivery
    print(
        f"\noutage {outage_s:.1f}s: {attempts['outage']} HTTP attempts by the adapter "
        f"({seen_in_503} reached the backend during the 503 phase, {seen_during_outage} in all), "
        f"{breaker_during} calls short-circuited by the breaker; bound {bound}, "
        f"naive {naive}; all {N_COMMANDS} tickets recorded {recovered_s:.1f}s after recovery "
        f"with {attempts['after']} more requests"
    )
    assert attempts["outage"] >= BREAKER_FAILURES  # the outage was really hit
    assert seen_during_outage <= attempts["outage"] <= bound
    assert breaker_during > 0
