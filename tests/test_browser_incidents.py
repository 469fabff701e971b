"""The console's surge page in Chromium (issue 24, must-show 3 from the console): four citizens
about one burst main (a surge) and two about a broken street lamp, in ``merge`` mode. The
operator opens the surge list (size, places, the 舆情 clock), opens the incident, splits one
merged case out (it gets a ticket of its own, counted in the ticket system's records) and merges
the lamp incident into it, and records the public answer (the 舆情 clock stops); all are in the
audit trail under the operator's name. Photographed into docs/screenshots/.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.simulators.rest import RestSimServer
from govbridge_tools.simulators.webhook import WebhookPlatformState

from bridge.store import audit
from bridge.web.operators import add_operator
from tests.conftest import eventually, running_bridge
from tests.test_browser import SHOTS, UNLABELLED, Page, chrome, in_thread
from tests.test_incidents_e2e import burst, config, connect, item, platform, tickets

__all__ = ["chrome", "platform", "tickets"]  # fixtures, used by name

pytestmark = pytest.mark.browser

PASSWORD = "browser-test-password"
OPERATOR = "值班长赵岚"
LAMPS = ["人民路45号的路灯坏了，晚上一片漆黑", "人民路45号路灯不亮了，晚上黑漆漆的很危险"]


async def test_surge_page_split_and_merge(
    chrome: Any,
    tmp_path: Path,
    tickets: RestSimServer,
    platform: tuple[WebhookPlatformState, str],
) -> None:
    hotline, hotline_url = platform
    cfg = config(tmp_path, tickets, hotline_url + "/replies", "merge")
    now = datetime.now(UTC)
    async with running_bridge(cfg) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await add_operator(store, OPERATOR, "admin", PASSWORD, actor="test")
        await connect(daemon, hotline, tickets.state)
        burst_items = [
            item(f"burst-{n}", burst(n), 1000 + n, now - timedelta(minutes=9 - n)) for n in range(4)
        ]
        assert await hotline.push(burst_items) == 202

        async def surged() -> bool:
            return len(await store.surged_incidents()) == 1 and len(hotline.reply_list()) == 4

        await eventually(surged, timeout=60)
        lamps = [item(f"lamp-{n}", t, 2000 + n, now) for n, t in enumerate(LAMPS)]
        assert await hotline.push(lamps) == 202

        async def lamps_filed() -> bool:
            return len(hotline.reply_list()) == 6

        await eventually(lamps_filed, timeout=60)
        rows = {r.external_id: r for r in await store.list_inquiries()}
        (surge,) = await store.surged_incidents()
        incident = surge.incident_id
        lamp_case = await store.get_incident_case(rows["lamp-1"].inquiry_id)
        assert lamp_case is not None
        split_id = rows["burst-2"].inquiry_id
        page = Page(chrome, f"http://127.0.0.1:{daemon.http_port}")

        def surge_list() -> str:
            page.d.get(page.base + "/#incidents")
            page.until(lambda: page.css("#signin-name").is_displayed())
            page.css("#signin-name").send_keys(OPERATOR)
            page.css("#signin-password").send_keys(PASSWORD + "\n")
            page.until(lambda: page.all(f'#incidents button[data-incident="{incident}"]'))
            assert not page.d.execute_script(UNLABELLED), page.d.execute_script(UNLABELLED)
            page.shot("incidents")
            return str(page.text("incidents"))

        listed = await in_thread(surge_list)
        assert "解放路" in listed and "市水务集团" in listed  # the department by its name
        assert "water" not in listed and "北京时间" in listed  # not its code; times labelled

        def split_one() -> str:
            page.css(f'#incidents button[data-incident="{incident}"]').click()
            page.until(lambda: page.all(f'#incident button[data-split="{split_id}"]'))
            assert not page.d.execute_script(UNLABELLED), page.d.execute_script(UNLABELLED)
            page.shot("incident")
            page.css(f'#incident button[data-split="{split_id}"]').click()
            page.until(lambda: not page.all(f'#incident button[data-split="{split_id}"]'))
            return str(page.text("incident"))

        shown = await in_thread(split_one)
        assert split_id not in shown  # no longer a case of this incident

        async def own_ticket() -> bool:
            return len(tickets.state.tickets) == 3  # burst lead, lamp lead, the split case

        await eventually(own_ticket, timeout=60)

        def merge_lamps() -> str:
            page.css("#merge-other").send_keys(lamp_case.incident_id)
            page.css(f'#incident button[data-merge-into="{incident}"]').click()
            page.until(lambda: rows["lamp-1"].inquiry_id in page.text("incident"))
            return str(page.text("incident"))

        merged = await in_thread(merge_lamps)

        def answer() -> str:
            page.css(f'#incident button[data-answered="{incident}"]').click()
            page.until(lambda: "已公开答复于" in page.text("incident"))
            page.until(lambda: "已公开答复于" in page.text("incidents"))  # the list says so too
            page.shot("incident-answered")
            return str(page.text("incident"))

        assert OPERATOR in await in_thread(answer)
        row = await store.get_incident(incident)
        assert row is not None and row.public_answer_by == OPERATOR
        assert rows["lamp-0"].inquiry_id in merged
        one = await store.incident_cases(incident)
        assert {c.inquiry_id for c in one} == {
            rows[k].inquiry_id for k in ("burst-0", "burst-1", "burst-3", "lamp-0", "lamp-1")
        }
        records = [(r["action"], r["actor"]) for r in await audit.recent(store.db, 50)]
        assert ("incident.split", OPERATOR) in records
        assert ("incident.merged", OPERATOR) in records
        assert ("incident.answered", OPERATOR) in records
    for name in ("incidents", "incident", "incident-answered"):
        assert (SHOTS / f"console-{name}.png").stat().st_size > 5000, name
