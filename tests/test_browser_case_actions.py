"""Issue 22's case actions pressed in the console (issue 23: the journey's buttons), in
Debian's Chromium against the whole bridge on the real RabbitMQ; each checked where it lands:
the ticket systems' own records (Open311, REST), the platform's record of what was posted to
the citizen, the bus, the store.

One hotline account for two departments: transport on Open311, urban on the REST system. A
citizen's case, ticketed on Open311, opened at its own address (``#/inquiries/<id>``) by an
admin: an internal note (stored, never posted); a 延期 request and its approval (the new
deadline recorded, the citizen told it); 督办 (``sla.escalated.transport`` on the bus); 转派 to
urban (exactly one ticket on the REST system, the Open311 ticket told, one "已转办" to the
citizen); then 退单 by urban (the case waits in the review queue). An approver sees every
action but 督办; a viewer sees none.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators.open311 import Open311Server, Open311State
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.simulators.webhook import create_app as webhook_app
from govbridge_tools.testing import BusTap

from bridge.web.operators import add_operator
from schemas.states import ExtensionState
from tests.conftest import eventually, running_bridge
from tests.test_browser import Page, chrome, in_thread
from tests.test_case_actions import SECRET, item, only_inquiry, sent_to, two_departments

__all__ = ["chrome"]  # the fixture, used by name

pytestmark = pytest.mark.browser

PASSWORD = "case-actions-password"
BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def open311() -> AsyncIterator[Open311Server]:
    server = await Open311Server(Open311State(agency="市交通委")).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def rest() -> AsyncIterator[RestSimServer]:
    server = RestSimServer(RestTicketState())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def held_for_review(port: int) -> list[dict[str, Any]]:
    """The triage review queue, as the console's approvals page reads it."""
    auth = {"Authorization": "Bearer test-admin-token"}
    async with (
        aiohttp.ClientSession(headers=auth) as http,
        http.get(f"http://127.0.0.1:{port}/api/triage/review") as resp,
    ):
        assert resp.status == 200
        return list((await resp.json())["held"])


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


async def test_case_actions_pressed_in_the_journey(
    chrome: Any, tmp_path: Path, open311: Open311Server, rest: RestSimServer
) -> None:
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    hooks = await AppServer(webhook_app(platform)).start()
    cfg = two_departments(tmp_path, open311, rest, hooks.url)
    note = "已电话联系市民，约定周三到现场查看"
    # well after any limit the category has (15 working days at most)
    new_deadline = (datetime.now(UTC) + timedelta(days=60)).astimezone(BEIJING)
    new_deadline = new_deadline.replace(hour=18, minute=0, second=0, microsecond=0)
    try:
        async with (
            running_bridge(cfg) as daemon,
            BusTap(cfg.broker, "sla.escalated.#", declare=True) as tap,
        ):
            assert daemon.ctx is not None
            store = daemon.ctx.store
            for name, role in (("值班长王敏", "admin"), ("审批员周洁", "approver")):
                await add_operator(store, name, role, PASSWORD, actor="test")
            await add_operator(store, "查看员李明", "viewer", PASSWORD, actor="test")
            platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
            assert await platform.push([item("c-1", "公交站台旁边的人行道塌了一块", "41")]) == 202
            inquiry_id = await only_inquiry(store)

            async def received() -> bool:
                return any("已受理" in t for t in sent_to(platform, inquiry_id))

            await eventually(received, 30)
            (old,) = open311.state.tickets
            page = Page(chrome, f"http://127.0.0.1:{daemon.http_port}")
            address = f"{page.base}/#/inquiries/{inquiry_id}"

            def sign_in(name: str) -> None:
                page.d.get(page.base + "/")
                if page.all("#signout") and page.css("#signout").is_displayed():
                    page.css("#signout").click()
                page.until(lambda: page.css("#signin-name").is_displayed())
                page.d.get(address)
                page.until(lambda: page.css("#signin-name").is_displayed())
                page.css("#signin-name").clear()
                page.css("#signin-name").send_keys(name)
                page.css("#signin-password").send_keys(PASSWORD + "\n")
                page.until(lambda: page.all("#journey-view"))

            def act(action: str, done: str, **fields: str) -> str:
                form = f'#journey form[data-case-action="{action}"]'
                for field, value in fields.items():
                    box = page.css(f'{form} [name="{field}"]')
                    if box.tag_name == "select":
                        from selenium.webdriver.support.ui import Select

                        Select(box).select_by_value(value)
                    elif box.get_attribute("type") == "datetime-local":
                        page.d.execute_script("arguments[0].value = arguments[1]", box, value)
                    else:
                        box.send_keys(value)
                page.css(f"{form} button[type=submit]").click()
                page.until(lambda: done in page.text("case-result"))
                return page.text("journey")

            def as_admin() -> dict[str, Any]:
                sign_in("值班长王敏")
                seen: dict[str, Any] = {
                    "own_page": not page.css("#page-journey").get_attribute("hidden"),
                    "results_hidden": bool(page.css("#page-inquiries").get_attribute("hidden")),
                    "head": page.css("#journey-view").text,
                    "actions": sorted(
                        f.get_attribute("data-case-action")
                        for f in page.all("#journey form[data-case-action]")
                    ),
                }
                seen["note"] = act("note", "添加备注", text=note)
                local = new_deadline.strftime("%Y-%m-%dT%H:%M")
                act("extension", "申请延期", new_deadline=local, reason="需协调地铁公司共同施工")
                page.until(lambda: page.all("#journey button[data-ext-decide][data-approve='1']"))
                page.css("#journey button[data-ext-decide][data-approve='1']").click()
                page.until(lambda: "已批准" in page.css("#journey li[data-extension]").text)
                act("escalate", "督办", reason="市民多次反映，请加快办理")
                # once per handling cycle: the refusal says so in Chinese
                seen["again"] = act("escalate", "本轮办理中已督办过", reason="再次督办")
                seen["refused"] = page.text("case-result")
                page.shot("journey-case-actions")
                act("reroute", "转派", department="urban", reason="人行道归城管养护")
                return seen

            seen = await in_thread(as_admin)

            async def rerouted() -> bool:
                row = await store.get_inquiry(inquiry_id)
                told = sum("已转办至市城管委" in t for t in sent_to(platform, inquiry_id))
                return (
                    len(rest.state.tickets) == 1
                    and told == 1
                    and row is not None
                    and (row.department == "urban" and row.state == "ticketed")
                )

            await eventually(rerouted, 60)

            def return_it() -> str:
                page.d.get(address)
                page.d.refresh()
                page.until(lambda: page.all('#journey form[data-case-action="return"]'))
                return act("return", "退单", reason="该路段属交通委管辖")

            await in_thread(return_it)

            async def returned() -> bool:
                row = await store.get_inquiry(inquiry_id)
                return row is not None and row.state == "held_for_review"

            await eventually(returned, 30)

            async def told_extended() -> bool:
                day = f"{new_deadline.year}年{new_deadline.month}月{new_deadline.day}日"
                return any(day in t for t in sent_to(platform, inquiry_id))

            await eventually(told_extended, 30)

            async def escalation_seen() -> bool:
                return bool(tap.on("sla.escalated.transport"))

            await eventually(escalation_seen, 30)
            escalated = [json.loads(s.body) for s in tap.on("sla.escalated.transport")]
            held = await held_for_review(daemon.http_port)

            def roles() -> dict[str, list[str]]:
                found = {}
                for name in ("审批员周洁", "查看员李明"):
                    sign_in(name)
                    found[name] = sorted(
                        f.get_attribute("data-case-action")
                        for f in page.all("#journey form[data-case-action]")
                    )
                return found

            by_role = await in_thread(roles)
            notes = await store.notes_for(inquiry_id)
            extensions = await store.extensions_for(inquiry_id)
            updates = open311.state.client_updates(old)
            sent = sent_to(platform, inquiry_id)
    finally:
        await hooks.stop()

    assert seen["own_page"] and seen["results_hidden"]  # the journey opens on its own
    assert "@user41" in seen["head"]  # the citizen's handle
    assert "您好" in seen["head"]  # the text posted to the citizen (已受理)
    assert seen["actions"] == ["escalate", "extension", "note", "reroute", "return"]
    # the note: stored under the operator's name, shown, never posted
    assert [(n.author, n.text) for n in notes] == [("值班长王敏", note)]
    assert note in seen["note"] and not any(note in t for t in sent)
    # the extension: approved, the new deadline recorded, the citizen told once
    (ext,) = extensions
    assert ext.state == ExtensionState.APPROVED and ext.decided_by == "值班长王敏"
    assert datetime.fromisoformat(ext.new_deadline) == new_deadline
    # 督办: its event on the bus, by the operator
    assert len(escalated) == 1 and escalated[0]["actor"] == "值班长王敏"
    assert seen["refused"] == "督办：本轮办理中已督办过", seen["refused"]
    # 转派: one ticket on the REST system, the Open311 ticket told, one "已转办" to the citizen
    assert len(rest.state.tickets) == 1
    assert any("人行道归城管养护" in (u.description or "") for u in updates), updates
    assert sum("已转办至市城管委" in t for t in sent) == 1, sent
    # 退单: waiting in the review queue (the eventually above), listed there as returned
    assert [h["reason"] for h in held if h["inquiry_id"] == inquiry_id] == ["returned"], held
    # roles: an approver has every action but 督办, a viewer none
    assert by_role["审批员周洁"] == ["extension", "note", "reroute", "return"]
    assert by_role["查看员李明"] == []
