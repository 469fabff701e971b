"""The same create delivered twice at once (a platform retry racing its original, or a
redelivery after a connection loss while the first handler still runs) makes one ticket."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from govbridge_tools.simulators.open311 import Open311Server

from adapters.base import CreatedTicket
from schemas.messages import TicketCommand
from tests.conftest import bridge_config, eventually, running_bridge
from tests.test_ticketing import (
    command,
    department,
    open311_sim,  # noqa: F401 - the fixture
    open311_ticketing,
    record_inquiry,
    references,
)


async def test_concurrent_duplicate_creates_make_one_ticket(
    tmp_path: Path,
    open311_sim: Open311Server,  # noqa: F811
) -> None:
    cfg = bridge_config(
        tmp_path,
        # A live create is never presumed crashed here (the default 1 s lease of these tests
        # is shorter than a slow create on a loaded machine; taking over a create whose
        # holder is alive duplicates it: issue 25 ties the lease to the holder's liveness).
        departments=[
            department(open311_ticketing(open311_sim.base_url, searchable=True, create_lease="30s"))
        ],
    )
    commands = [command(n, uuid.uuid4().hex[:8]) for n in range(5)]
    async with running_bridge(cfg, ["ticketing"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        for cmd in commands:
            await record_inquiry(daemon.ctx.store, cmd)
        # a slow backend: the ticket exists only once POST requests returns, 0.5 s later
        system = daemon.ctx.adapters.ticket_systems()[commands[0].department]
        real_create = system.create

        async def slow_create(cmd: TicketCommand, idempotency_key: str) -> CreatedTicket:
            await asyncio.sleep(0.5)
            return await real_create(cmd, idempotency_key)

        system.create = slow_create  # type: ignore[method-assign]
        publish = daemon.ctx.broker.publish
        # every command three times, all in flight together (prefetch 16)
        await asyncio.gather(
            *(publish(f"inquiry.routed.{c.department}", c) for c in commands for _ in range(3))
        )

        async def all_recorded() -> bool:
            assert daemon.ctx is not None
            return len(await daemon.ctx.store.list_tickets()) == len(commands)

        await eventually(all_recorded, timeout=30)
        await eventually(lambda: _settled(daemon, 3 * len(commands)), timeout=30)
    assert references(open311_sim.state) == {c.reference: 1 for c in commands}
    assert open311_sim.state.requests_by_route["POST /requests.{fmt}"] == len(commands)


async def _settled(daemon: object, n: int) -> bool:
    acked = daemon.metrics.acked.labels("ticketing")._value.get()  # type: ignore[attr-defined]
    return bool(acked >= n)
