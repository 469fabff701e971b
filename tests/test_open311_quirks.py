"""Open311 against a server as real ones behave (the simulator's ``quirks`` mode): paged lists,
stale ``updated_datetime``, ``{"code", "detail"}`` errors, 400 for a wrong key, no extensions.

Must show (issue 9): with 250 newer foreign requests and 120 services, a status change made
without moving ``updated_datetime`` on a 3-month-old ticket reaches the citizen from the first
poll after it; a follow-up on a server without updates is refused by the adapter with a clear
reason and ``capabilities.appends`` is false; a wrong key is an auth failure (ticketing paused
with an alert) and ``check --adapters`` fails naming the key.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from govbridge_tools.simulators import open311 as open311_sim
from govbridge_tools.simulators.open311 import SimService
from govbridge_tools.simulators.weibo import WeiboState
from govbridge_tools.simulators.weibo import create_app as weibo_app

from adapters.base import AuthError, PermanentError
from schemas.vocab import TicketStatus
from tests.conftest import bridge_config, eventually, running_bridge
from tests.contract.harness_open311 import Open311Harness

FOREIGN = 250
EXTRA_SERVICES = 120


@pytest.fixture
async def quirky() -> AsyncIterator[Open311Harness]:
    h = Open311Harness(quirks=True)
    # 120 services listed before the department's own: they arrive on the second page.
    extra = [SimService(f"ZZ-{i:03d}", f"其他服务{i}") for i in range(EXTRA_SERVICES)]
    h.state.services = extra + h.state.services
    async with h.running():
        yield h


async def test_plain_server_is_detected_and_lists_are_read_to_the_end(
    quirky: Open311Harness,
) -> None:
    adapter = quirky.adapter()
    await adapter.check()  # passes: nothing in the default config needs an extension
    assert "servicerequestupdates: no" in adapter.describe()
    assert "tokens: no" in adapter.describe()
    assert adapter.capabilities.appends is False
    assert adapter.capabilities.search_by_reference is True
    routes = quirky.state.requests_by_route
    assert routes["GET /services.{fmt}"] >= 2  # 123 services, 100 a page

    cmd = quirky.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    quirky.state.add_foreign_requests(FOREIGN, "TR-01")  # newer: ours is on page 3
    before = routes["GET /requests.{fmt}"]
    found = await quirky.adapter().find_by_reference(cmd.reference)
    assert found is not None and found.ticket_id == ticket.ticket_id
    assert routes["GET /requests.{fmt}"] - before == 3
    # Nothing unproven is ever taken: another reference finds nothing among 251 records.
    assert await quirky.adapter().find_by_reference(cmd.reference + "-other") is None


async def test_stale_status_change_of_an_old_ticket_is_found_by_id(quirky: Open311Harness) -> None:
    adapter = quirky.adapter()
    cmd = quirky.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    quirky.state.backdate(ticket.ticket_id, timedelta(days=92))  # outside any window
    quirky.state.add_foreign_requests(FOREIGN, "TR-01")
    adapter.watch({ticket.ticket_id: ticket.native_status})
    base = await adapter.changes_since(None)
    assert base.events == []  # no spurious "received" for new records (times differ by µs)

    quirky.state.admin_set_status(ticket.ticket_id, "closed", "已处理")
    updated = quirky.state.tickets[ticket.ticket_id].updated_at
    first = await adapter.changes_since(base.cursor)
    [event] = first.events
    assert (event.ticket_id, event.status, event.native_status) == (
        ticket.ticket_id,
        TicketStatus.CLOSED,
        "closed",
    )
    assert quirky.state.tickets[ticket.ticket_id].updated_at == updated  # it never moved
    assert event.occurred_at > datetime.now(UTC) - timedelta(minutes=1)  # seen now, not then
    assert (await adapter.changes_since(first.cursor)).events == []


async def test_windows_never_end_before_now(quirky: Open311Harness) -> None:
    seen: list[str] = []
    adapter = quirky.adapter()
    original = adapter.http.request

    async def spy(method: str, url: str, **kw: Any) -> Any:
        params = kw.get("params") or {}
        if isinstance(params, dict) and "end_date" in params:
            seen.append(params["end_date"])
        return await original(method, url, **kw)

    adapter.http.request = spy  # type: ignore[method-assign]
    await adapter.changes_since(None)
    assert seen
    for end in seen:
        assert datetime.fromisoformat(end.replace("Z", "+00:00")) >= datetime.now(UTC) - timedelta(
            seconds=1
        )


async def test_follow_up_without_an_update_api_is_refused_clearly(quirky: Open311Harness) -> None:
    adapter = quirky.adapter()
    await adapter.detect()
    assert adapter.capabilities.appends is False
    cmd = quirky.command(1)
    ticket = await adapter.create(cmd, cmd.command_id)
    with pytest.raises(PermanentError, match="no servicerequestupdates"):
        await adapter.append(ticket.ticket_id, quirky.command(2))


async def test_code_detail_errors_and_a_wrong_key(quirky: Open311Harness) -> None:
    adapter = quirky.adapter(service_attributes={"TR-01": {"urgency": "extreme"}})
    with pytest.raises(PermanentError) as bad:
        await adapter.create(quirky.command(1), "k")
    assert "is not one of" in bad.value.reason  # the words inside {"code", "detail": {...}}

    wrong = quirky.adapter(api_key="not-the-key")
    with pytest.raises(AuthError, match="Invalid API key"):
        await wrong.create(quirky.command(2), "k2")
    with pytest.raises(AuthError, match=r"departments.ticketing.api_key of 'transport'"):
        await wrong.check()
    assert quirky.state.tickets == {}


async def test_check_adapters_fails_naming_the_key(quirky: Open311Harness, tmp_path: Path) -> None:
    server = quirky.server
    assert server is not None
    config = tmp_path / "govbridge.toml"
    config.write_text(
        f"""
[broker]
url = "{os.environ.get("GOVBRIDGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")}"
[store]
url = "sqlite:///{tmp_path}/check.db"
[[departments]]
id = "transport"
name = "市交通委"
[departments.ticketing]
adapter = "open311"
base_url = "{server.base_url}"
api_key = "wrong-key"
service_codes = {{ complaint = "TR-01", other = "TR-09" }}
lat = 39.9
long = 116.4
attributes = {{ urgency = "normal" }}
""",
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "check",
        "-c",
        str(config),
        "--adapters",
        "--no-declare",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, raw_err = await proc.communicate()
    err = raw_err.decode()
    assert proc.returncode == 1, err
    assert "departments.ticketing.api_key of 'transport' is refused" in err
    assert "wrong-key" not in err  # never the secret itself


async def test_bridge_replies_to_a_stale_change_from_the_first_poll_after_it(
    tmp_path: Path,
) -> None:
    """End to end: Weibo citizen → ticket on a quirky Open311 server → an official closes it in
    the admin tool (updated_datetime unchanged), 3 months later, behind 250 newer requests →
    the first sync poll after that publishes the change and the citizen gets the reply.
    Polls are driven one by one (poll = 0), so "the first poll after" is counted, not timed."""
    weibo = WeiboState()
    weibo_server = TestServer(weibo_app(weibo), host="127.0.0.1", port=0)
    await weibo_server.start_server()
    h = Open311Harness(quirks=True)
    h.state.services = [
        SimService(f"ZZ-{i:03d}", f"其他服务{i}") for i in range(EXTRA_SERVICES)
    ] + h.state.services
    async with h.running():
        assert h.server is not None
        ticketing = {
            **open311_sim.demo_ticketing_config(h.server.base_url, h.state.api_key),
            "searchable": False,
            "poll": "0s",
        }
        cfg = bridge_config(
            tmp_path,
            departments=[
                {
                    "id": "transport",
                    "name": "市交通委",
                    "approval": "none",
                    "sla": {"complaint": "15wd", "other": "10wd"},
                    "ticketing": ticketing,
                }
            ],
            accounts=[
                {
                    "adapter": "weibo",
                    "handle": weibo.official_name,
                    "department": "transport",
                    "token": weibo.token,
                    "base_url": str(weibo_server.make_url("/2/")),
                    "poll": "200ms",
                }
            ],
        )
        try:
            async with running_bridge(cfg) as daemon:
                assert daemon.ctx is not None
                comment = weibo.add_citizen_comment("投诉：路口红绿灯坏了三天，请尽快修理。")

                async def replies() -> list[dict[str, Any]]:
                    return [r for r in weibo.posted_replies() if r["reply_cid"] == str(comment.id)]

                async def received() -> bool:
                    return len(h.state.tickets) == 1 and len(await replies()) >= 1

                await eventually(received)
                [ticket_id] = h.state.tickets
                h.state.backdate(ticket_id, timedelta(days=92))
                h.state.add_foreign_requests(FOREIGN, "TR-01")
                sync = daemon.ctx.roles["sync"]
                dept = cfg.department("transport")
                assert await sync.poll_once(dept) == 0  # type: ignore[attr-defined]
                count_before = len(await replies())

                h.state.admin_set_status(ticket_id, "closed", "已修复")
                assert await sync.poll_once(dept) == 1  # type: ignore[attr-defined]

                async def answered() -> bool:
                    return len(await replies()) > count_before

                await eventually(answered)
                assert await sync.poll_once(dept) == 0  # type: ignore[attr-defined]
        finally:
            await weibo_server.close()


async def test_a_wrong_key_pauses_ticketing_with_an_alert_until_it_is_right(
    quirky: Open311Harness, tmp_path: Path
) -> None:
    """The bridge against the quirky server with a key it refuses (400 "Invalid API key"):
    ticketing raises the ``ticketing_auth`` alert and holds the command (not dead-lettered, no
    ticket); once the server takes the key (fixed on its side: no reload, no replacement) the
    ``auth_recheck`` probe tries the held command again, which makes its one ticket, and the
    alert clears."""
    assert quirky.server is not None
    ticketing = {
        **open311_sim.demo_ticketing_config(quirky.server.base_url, "a-wrong-key"),
        "poll": "0s",
        "auth_recheck": "1s",
    }
    cfg = bridge_config(
        tmp_path,
        departments=[{"id": "transport", "name": "市交通委", "ticketing": ticketing}],
    )
    command = quirky.command(1)
    async with running_bridge(cfg, ["ticketing"]) as daemon:
        assert daemon.ctx is not None
        ctx = daemon.ctx
        await ctx.broker.publish(f"inquiry.routed.{command.department}", command)

        async def alerted() -> bool:
            return ("ticketing_auth", "transport") in ctx.alerts.active

        await eventually(alerted)
        assert "Invalid API key" in ctx.alerts.active[("ticketing_auth", "transport")]
        assert "a-wrong-key" not in ctx.alerts.active[("ticketing_auth", "transport")]
        assert quirky.state.tickets == {}

        quirky.state.api_key = "a-wrong-key"  # the department's IT fixed the key on its side

        async def filed() -> bool:
            return len(quirky.state.tickets) == 1 and not await alerted()

        await eventually(filed, timeout=60)
        [ticket] = quirky.state.tickets.values()  # the held command itself, not a new one
        assert command.reference in ticket.description  # (this server drops attributes)
