"""The create lease (issue 25): a create in flight is held under ``create:<reference>``, a lease
that lives exactly as long as its holder's database session (PostgreSQL) or flock (SQLite).
While another process holds it, nothing is sent; once the holder is gone the create is taken
over at once, not after ``create_lease`` (ten minutes here, longer than the test).

The other process is played by a second set of leases on the same store (its own PostgreSQL
session, its own flock); its death is that session or descriptor closing. Counted from the
Open311 simulator's own records (POST requests, tickets by reference).
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

from govbridge_tools.simulators.open311 import Open311Server

from bridge.store.leases import leases_for
from bridge.ticketing.role import create_lease_name
from tests.conftest import bridge_config, eventually, running_bridge
from tests.test_ticketing import (
    command,
    department,
    open311_sim,  # noqa: F401 - the fixture
    open311_ticketing,
    references,
    send,
)

POST = "POST /requests.{fmt}"


async def test_a_create_held_by_a_live_process_waits_and_is_taken_over_when_it_dies(
    tmp_path: Path,
    store_url: str,
    open311_sim: Open311Server,  # noqa: F811
) -> None:
    ticketing = open311_ticketing(
        open311_sim.base_url, searchable=True, create_lease="10m", create_settle="1s"
    )
    cfg = bridge_config(tmp_path, departments=[department(ticketing)], store={"url": store_url})
    cmd = command(1, uuid.uuid4().hex[:8])
    state = open311_sim.state
    other = leases_for(store_url)  # the other process
    async with running_bridge(cfg, ["ticketing"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        # The other process took the lease and noted its attempt, then was cut off before
        # the request reached the ticket system.
        assert await other.try_acquire(create_lease_name(cmd.reference))
        assert await store.claim_create(cmd.reference, cmd.department, cmd.inquiry.inquiry_id)
        await send(daemon, cmd)

        async def waited_twice() -> bool:
            retried = daemon.metrics.retried.collect()[0].samples
            return sum(s.value for s in retried if s.labels["stage"] == "ticketing") >= 2

        await eventually(waited_twice)
        assert state.requests_by_route[POST] == 0  # nothing sent while the holder lives
        attempt = await store.get_create_attempt(cmd.reference)
        assert attempt is not None and attempt.state == "attempted"

        await other.close()  # the holder dies: its session (or flock) goes with it

        async def recorded() -> bool:
            return await store.ticket_by_reference(cmd.reference) is not None

        await eventually(recorded)  # within seconds: create_lease is ten minutes
        attempt = await store.get_create_attempt(cmd.reference)
        assert attempt is not None
        assert (attempt.state, attempt.attempts) == ("created", 2)  # taken over once
    assert state.requests_by_route[POST] == 1
    assert references(state) == Counter({cmd.reference: 1})


async def test_a_live_create_without_an_answer_is_looked_up_only_after_create_lease(
    tmp_path: Path,
    open311_sim: Open311Server,  # noqa: F811
) -> None:
    """The process lived but had no answer (its client timed out after 1 s; the server commits
    the ticket 2.5 s after the request): its lease is free, but the attempt is marked "no
    answer", so it is looked up only after ``create_lease`` (4 s), and found: one ticket. (With
    ``create_settle`` at zero, a takeover as after a death would have created a second.)"""
    state = open311_sim.state
    state.create_delay, state.create_commits_late = 2.5, True
    ticketing = open311_ticketing(
        open311_sim.base_url,
        searchable=True,
        timeout="1s",
        create_lease="4s",
        create_settle="0s",
        breaker_failures=100,
    )
    cfg = bridge_config(tmp_path, departments=[department(ticketing)])
    cmd = command(2, uuid.uuid4().hex[:8])
    async with running_bridge(cfg, ["ticketing"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await send(daemon, cmd)

        async def no_answer() -> bool:
            attempt = await store.get_create_attempt(cmd.reference)
            return attempt is not None and (attempt.detail or "").startswith("no answer")

        await eventually(no_answer)

        async def recorded() -> bool:
            return await store.ticket_by_reference(cmd.reference) is not None

        await eventually(recorded)
        row = await store.ticket_by_reference(cmd.reference)
        assert row is not None
    assert state.requests_by_route[POST] == 1
    assert references(state) == Counter({cmd.reference: 1})
    (ticket,) = state.tickets.values()
    assert row.ticket_id == ticket.id
