"""The ticket system's own row on the console's accounts page, in Chromium (issue 19): against
the Open311 quirks server refusing the bridge's key, the row says "paused: credentials refused"
with the held inquiry; "retry now" sends it again (refused again, held again); the operator
types the right key and the held inquiry is filed once, counted in the simulator's records,
and the row turns "ok". Photographed into docs/screenshots/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from govbridge_tools.simulators import open311 as open311_sim

from bridge.store import audit
from bridge.web.operators import add_operator
from tests.conftest import bridge_config, eventually, running_bridge
from tests.contract.harness_open311 import API_KEY, Open311Harness
from tests.test_browser import SHOTS, UNLABELLED, Page, chrome, in_thread

__all__ = ["chrome"]  # the fixture, used by name

pytestmark = pytest.mark.browser

PASSWORD = "browser-test-password"
OPERATOR = "值班员李静"


@pytest.fixture
async def refusing() -> AsyncIterator[Open311Harness]:
    h = Open311Harness(quirks=True)
    async with h.running():
        yield h


async def test_ticket_system_row_retry_and_key_replacement(
    chrome: Any, tmp_path: Path, refusing: Open311Harness
) -> None:
    assert refusing.server is not None
    block = {
        **open311_sim.demo_ticketing_config(refusing.server.base_url, "an-expired-key-2025"),
        "poll": "500ms",
        "auth_recheck": "1h",
    }
    cfg = bridge_config(
        tmp_path,
        departments=[{"id": "transport", "name": "市交通委", "ticketing": block}],
        credentials={"keys": [Fernet.generate_key().decode()]},
    )
    command = refusing.command(1)
    posts = refusing.state.requests_by_route
    async with running_bridge(cfg, ["ticketing", "sync", "http"]) as daemon:
        assert daemon.ctx is not None
        ctx = daemon.ctx
        await add_operator(ctx.store, OPERATOR, "admin", PASSWORD, actor="test")
        await ctx.broker.publish("inquiry.routed.transport", command)

        async def held() -> bool:
            return (await ctx.held.counts()).get("transport", {}).get("create") == 1

        await eventually(held)
        page = Page(chrome, f"http://127.0.0.1:{daemon.http_port}")
        row = 'tr[data-ticket-system="transport"]'

        def paused() -> str:
            page.d.get(page.base + "/#accounts")
            page.until(lambda: page.css("#signin-name").is_displayed())
            page.css("#signin-name").send_keys(OPERATOR)
            page.css("#signin-password").send_keys(PASSWORD + "\n")
            page.until(lambda: page.all(row) and "暂停：凭据被拒" in page.css(row).text)
            assert not page.d.execute_script(UNLABELLED), page.d.execute_script(UNLABELLED)
            page.shot("accounts-ticket-system-paused")
            return str(page.css(row).text)

        text = await in_thread(paused)
        assert "Invalid API key" in text and "建单" in text  # the refused operation, named
        assert posts["POST /requests.{fmt}"] == 1

        def retry() -> None:
            page.css('button[data-ts-retry="transport"]').click()
            page.until(lambda: "1 已重新发送" in page.text("accounts"))

        await in_thread(retry)

        async def refused_again() -> bool:
            return posts["POST /requests.{fmt}"] == 2 and await held()

        await eventually(refused_again)  # the same key: refused, held again, no ticket
        assert refusing.state.tickets == {}

        def replace_key() -> None:
            from selenium.common.exceptions import StaleElementReferenceException

            page.css("#tsk-transport-api_key").send_keys(API_KEY)
            page.css('button[data-ts-key="transport"]').click()

            def emptied() -> bool:  # the page is drawn again once the key is taken
                try:
                    return not page.css("#tsk-transport-api_key").get_attribute("value")
                except StaleElementReferenceException:
                    return False

            page.until(emptied)

        await in_thread(replace_key)

        async def filed() -> bool:
            return len(refusing.state.tickets) == 1 and not ctx.alerts.active

        await eventually(filed, timeout=30)

        def healed() -> str:
            from selenium.common.exceptions import StaleElementReferenceException

            def ok() -> bool:
                page.d.execute_script("return Promise.all([loadAccounts(), loadReady()])")
                try:  # the row and the alerts in the header agree
                    return "正常" in page.css(row).text and "⚠" not in page.text("ready")
                except StaleElementReferenceException:
                    return False

            page.until(ok)
            page.shot("accounts-ticket-system-ok")
            return str(page.css(row).text)

        text = await in_thread(healed)
        assert "建单" in text  # the create's last success is shown
        [ticket] = refusing.state.tickets.values()
        assert command.reference in ticket.description
        assert posts["POST /requests.{fmt}"] == 3  # refused, refused on retry, created
        records = {(r["action"], r["actor"]) for r in await audit.recent(ctx.store.db, 200)}
        assert ("ticketing.credentials_replaced", OPERATOR) in records
        assert ("ticket.released", OPERATOR) in records  # retry now, under their name
        assert API_KEY not in str(await audit.recent(ctx.store.db, 200))
    for name in ("accounts-ticket-system-paused", "accounts-ticket-system-ok"):
        assert (SHOTS / f"console-{name}.png").stat().st_size > 5000, name
