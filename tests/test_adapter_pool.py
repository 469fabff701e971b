"""The daemon owns the adapters: made once whatever roles run, closed once when it stops."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests import ledger_tickets
from tests.conftest import bridge_config, running_bridge


def ledger_department(ledger: str) -> dict[str, object]:
    return {
        "id": "transport",
        "name": "市交通委",
        "ticketing": {"adapter": "ledger", "ledger": ledger, "poll": "1s"},
    }


async def test_a_process_running_only_sync_closes_its_ticket_systems(tmp_path: Path) -> None:
    ledger_tickets.register()
    name = f"pool-{uuid.uuid4().hex[:8]}"
    cfg = bridge_config(tmp_path, departments=[ledger_department(name)])
    async with running_bridge(cfg, ["sync"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        assert list(daemon.ctx.adapters.ticket_systems()) == ["transport"]
    assert ledger_tickets.LEDGERS[name].closed == 1


async def test_adapters_shared_by_two_roles_are_closed_once(tmp_path: Path) -> None:
    ledger_tickets.register()
    name = f"pool-{uuid.uuid4().hex[:8]}"
    cfg = bridge_config(tmp_path, departments=[ledger_department(name)])
    async with running_bridge(cfg, ["ticketing", "sync"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        first = daemon.ctx.adapters.ticket_systems()["transport"]
        assert daemon.ctx.adapters.ticket_systems()["transport"] is first  # made once
    assert ledger_tickets.LEDGERS[name].closed == 1
