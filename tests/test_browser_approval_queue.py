"""A busy morning in the approval queue (issue 23, must-show 1), in Debian's Chromium against a
running bridge (real RabbitMQ, a webhook platform and a REST ticket system per department).

200 drafts await approval across three all-manual departments: three came through the whole
pipeline (pushed by the platforms, triaged, filed, drafted), 197 are written into the store as
the reply role writes them (a ticket at 已受理 and its template draft), so the morning is set
in seconds. The approver filters by department and pages; approves 20 picked template drafts
at once; edits one with the keyboard (``e``, ``Esc``, ``a``) and rejects one (``r``), the
focus staying on the next card; and a newer status of one ticket (the ticket system moves it)
supersedes the draft on screen, whose approval then says why in Chinese and posts nothing.
A second approver, in a second Chromium with the same page open, sees the card whose draft the
first one is editing marked with that approver's name while the cursor is in its box, and the
20 cards the first one approved marked and locked live (server-sent events), without a reload.
A viewer sees the drafts as text, with no box and no button.

What each platform simulator recorded is exactly what was approved: the 20 as shown and the
edited text, byte for byte; nothing for the rejected and the superseded drafts, nor for the
180 not yet decided. The pages are photographed into docs/screenshots/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.simulators.webhook import create_app as webhook_app

from bridge.store import NewInquiry, Store
from bridge.web.operators import add_operator
from schemas.messages import ReplyRequest, ThreadRef, inquiry_id_for
from schemas.vocab import InquiryState, ReplyState, TicketStatus
from tests.conftest import bridge_config, eventually, running_bridge
from tests.test_browser import CHROMIUM, UNLABELLED, Page, _chromium, chrome, in_thread

__all__ = ["chrome"]  # the fixture, used by name

pytestmark = pytest.mark.browser

SECRET = "queue-test-secret"
PASSWORD = "queue-test-password"
DEPARTMENTS = {"environment": "市生态环境局", "transport": "市交通委", "urban": "市城管委"}
HANDLES = {"environment": "env12345", "transport": "tr12345", "urban": "cg12345"}
CATEGORIES = ("complaint", "help", "consultation")
PENDING = 200


@dataclass
class Morning:
    platforms: dict[str, WebhookPlatformState]  # department -> its account's platform
    tickets: dict[str, RestTicketState]
    servers: list[Any]


@pytest.fixture
async def morning() -> AsyncIterator[Morning]:
    platforms: dict[str, WebhookPlatformState] = {}
    tickets: dict[str, RestTicketState] = {}
    servers: list[Any] = []
    for dept, handle in HANDLES.items():
        state = WebhookPlatformState(secret=SECRET, account_handle=handle)
        servers.append(await AppServer(webhook_app(state)).start())
        platforms[dept] = state
        rest = RestSimServer(RestTicketState())
        await rest.start()
        servers.append(rest)
        tickets[dept] = rest.state
    try:
        yield Morning(platforms, tickets, servers)
    finally:
        for server in servers:
            await (server.stop() if isinstance(server, AppServer) else server.close())


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@contextmanager
def second_browser() -> Iterator[Any]:
    """A second Chromium, as another approver's desk."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium() or CHROMIUM
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN"):
        options.add_argument(arg)
    options.add_argument("--window-size=1440,900")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def config(tmp_path: Path, m: Morning) -> Any:
    departments, accounts = [], []
    for n, (dept, name) in enumerate(DEPARTMENTS.items()):
        server = m.tickets[dept].server
        assert server is not None
        departments.append(
            {
                "id": dept,
                "name": name,
                "approval": "all-manual",
                "sla": {"complaint": "15wd", "help": "10wd", "consultation": "2wd"},
                "ticketing": {**demo_ticketing_config(server.url), "poll": "200ms"},
            }
        )
        accounts.append(
            {
                "adapter": "webhook",
                "handle": HANDLES[dept],
                "department": dept,
                "secret": SECRET,
                "reply_url": m.servers[2 * n].url + "/replies",
                "platform": "hotline12345",
            }
        )
    return bridge_config(tmp_path, departments=departments, accounts=accounts)


async def seed(store: Store, n: int, dept: str) -> str:
    """What triage, ticketing and the reply role leave for one inquiry of ``dept``: the
    inquiry, its ticket at 已受理 and the template draft awaiting approval."""
    inquiry_id, ticket_id = f"seed-{n:04d}", f"S-{n:04d}"
    handle = HANDLES[dept]
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=inquiry_id,
            platform="hotline12345",
            account=handle,
            kind="mention",
            thread_key=f"hotline12345:{handle}:seed-{n}",
            state=InquiryState.TICKETED,
            department=dept,
            category=CATEGORIES[n % 3],
            ticket_id=ticket_id,
            public_text=f"@{handle} 第{n}号路灯不亮了，晚上走路很危险，请尽快修理",
            citizen_handle=f"citizen{n}",
            visibility="public",
        )
    )
    await store.record_ticket(
        department=dept,
        ticket_id=ticket_id,
        reference=f"ref-seed-{n}",
        inquiry_id=inquiry_id,
        thread_key=f"hotline12345:{handle}:seed-{n}",
        status=TicketStatus.RECEIVED,
        status_rank=TicketStatus.RECEIVED.rank,
        native_status="NEW",
        status_at="2026-12-07T00:00:00+00:00",
    )
    reply_id = f"rep-seed-{n:04d}"
    request = ReplyRequest(
        reply_id=reply_id,
        inquiry_id=inquiry_id,
        platform="hotline12345",
        account=handle,
        department=dept,
        thread=ThreadRef(root_id=f"seed-{n}"),
        citizen_handle=f"citizen{n}",
        visibility="public",
        text=f"您好，您反映的问题已受理，工单号{ticket_id}，{DEPARTMENTS[dept]}将尽快办理并在此答复。",
        status=TicketStatus.RECEIVED,
        ticket_id=ticket_id,
    )
    await store.add_reply(
        reply_id=reply_id,
        inquiry_id=inquiry_id,
        platform="hotline12345",
        account=handle,
        department=dept,
        status=TicketStatus.RECEIVED,
        templated=True,
        state=ReplyState.AWAITING_APPROVAL,
        request_json=request.model_dump_json(),
    )
    return reply_id


async def test_a_busy_morning_in_the_approval_queue(
    chrome: Any, tmp_path: Path, morning: Morning
) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    edited = "您好，您反映的路灯问题已受理。\n维修班组今晚到现场——感谢监督！(编号见上)"
    reason = "重复诉求，已在另一工单答复"
    async with running_bridge(config(tmp_path, morning)) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        base = f"http://127.0.0.1:{daemon.http_port}"
        await add_operator(store, "审批员周洁", "approver", PASSWORD, actor="test")
        await add_operator(store, "查看员李明", "viewer", PASSWORD, actor="test")
        await add_operator(store, "审批员高峰", "approver", PASSWORD, actor="test")
        # three inquiries through the whole pipeline, one per department
        real: dict[str, str] = {}
        for n, (dept, platform) in enumerate(morning.platforms.items()):
            platform.push_url = f"{base}/hooks/sources/{HANDLES[dept]}"
            item = platform.citizen_item(
                n, text=f"@{HANDLES[dept]} 小区门口的路面塌了一个坑，已经有电动车摔倒了"
            )
            assert await platform.push([item]) == 202
            real[dept] = inquiry_id_for(
                "hotline12345", HANDLES[dept], "mention", item["external_id"]
            )

        async def drafted(n: int) -> bool:
            return len(await store.list_replies(state=ReplyState.AWAITING_APPROVAL)) >= n

        await eventually(lambda: drafted(3), timeout=60)
        depts = list(DEPARTMENTS)
        for n in range(3, PENDING):
            await seed(store, n, depts[n % 3])
        assert (await store.approval_queue()).total == PENDING
        transport_total = (await store.approval_queue(department="transport")).total

        page = Page(chrome, base)
        page.d.set_window_size(1440, 900)

        def sign_in(name: str, on: Page = page) -> None:
            on.d.get(on.base + "/#approvals")
            on.until(lambda: on.css("#signin-name").is_displayed())
            on.css("#signin-name").clear()
            on.css("#signin-name").send_keys(name)
            on.css("#signin-password").send_keys(PASSWORD + "\n")
            on.until(lambda: len(on.all("#approvals article.card")) == 20)

        def filter_and_page() -> dict[str, Any]:
            seen: dict[str, Any] = {"count": page.text("approval-count")}
            seen["unlabelled"] = page.d.execute_script(UNLABELLED)
            Select(page.css("#af-department")).select_by_value("transport")
            page.css('#approval-filters button[type="submit"]').click()
            page.until(lambda: f"共 {transport_total} 件" in page.text("approval-count"))
            seen["filtered"] = page.text("approval-count")
            seen["first"] = page.all("#approvals article.card")[0].get_attribute("data-reply")
            seen["departments"] = {
                c.text.split(" · ")[0]
                for c in page.all("#approvals article.card h3:not(:first-child)")
            }
            seen["card"] = page.all("#approvals article.card")[0].text
            page.shot("approval-queue")
            page.css("#approval-next").click()
            page.until(lambda: "第 21–40 件" in page.text("approval-count"))
            seen["page2"] = page.text("approval-page")
            page.css("#approval-prev").click()
            page.until(lambda: "第 1–20 件" in page.text("approval-count"))
            return seen

        await in_thread(sign_in, "审批员周洁")
        seen = await in_thread(filter_and_page)
        assert seen["count"].startswith(f"共 {PENDING} 件待审核")
        assert not seen["unlabelled"], seen["unlabelled"]  # every control has a name
        # oldest first: the transport inquiry that came through the pipeline heads its list
        first_real = await store.list_replies(inquiry_id=real["transport"])
        assert seen["first"] == first_real[0].reply_id
        assert "第 2 / " in seen["page2"]
        # names, not codes; the time in Beijing, labelled; an age
        card = seen["card"]
        assert "市交通委" in card and "已受理" in card and "北京时间" in card
        for code in ("transport", "received", "hotline12345", "complaint", "in_progress"):
            assert code not in card, (code, card)

        # The ticket system moves the pipeline's transport ticket on while its card is open.
        ticket = next(
            t.ticket_id
            for t in await store.list_tickets("transport")
            if t.inquiry_id == real["transport"]
        )
        await morning.tickets["transport"].move(ticket, "ASSIGNED", callback=False)
        stale = seen["first"]

        async def superseded() -> bool:
            row = await store.get_reply(stale)
            return row is not None and row.state == ReplyState.SUPERSEDED

        await eventually(superseded, timeout=30)

        def approve_stale() -> str:
            page.css(f'article[data-reply="{stale}"] button[data-decision="approve"]').click()
            page.until(lambda: page.text(f"msg-{stale}"))
            page.shot("approval-queue-superseded")
            return page.text(f"msg-{stale}")

        said = await in_thread(approve_stale)
        assert "新状态取代" in said and "未发布任何内容" in said

        # A second approver has the environment queue open at another desk.
        desk = ExitStack()
        other = Page(desk.enter_context(second_browser()), base)

        def other_desk() -> None:
            sign_in("审批员高峰", other)
            Select(other.css("#af-department")).select_by_value("environment")
            other.css('#approval-filters button[type="submit"]').click()
            other.until(lambda: "市生态环境局" in other.all("#approvals article.card h3")[1].text)

        def other_desk_sees() -> tuple[int, str]:
            other.until(lambda: "队列已更新" in other.text("approval-live"))
            other.until(lambda: len(other.all("#approvals article.card.stale")) == 20)
            other.shot("approval-queue-live")

            def locked_now() -> int:  # counted in one look (a re-render makes cards stale)
                return sum(
                    not c.find_element(
                        "css selector", 'button[data-decision="approve"]'
                    ).is_enabled()
                    for c in other.all("#approvals article.card.stale")
                )

            (locked,) = other.until(lambda: (locked_now(),))  # retried only when stale
            return locked, other.text("approval-live")

        try:
            await in_thread(other_desk)
        except BaseException:
            desk.close()
            raise

        def being_edited() -> tuple[str, str, int]:
            """The first approver puts the cursor in a draft's box: the other desk marks that
            card with the approver's name, live; when the cursor leaves, the mark goes."""
            Select(page.css("#af-department")).select_by_value("environment")
            page.css('#approval-filters button[type="submit"]').click()
            page.until(lambda: "市生态环境局" in page.all("#approvals article.card h3")[1].text)
            target = page.all("#approvals article.card")[4].get_attribute("data-reply")
            page.css(f"#draft-{target}").click()
            card = f'#approvals article[data-reply="{target}"]'
            other.until(lambda: other.all(f"{card}.editing [data-editing-note]"))
            note = other.css(f"{card} [data-editing-note]").text
            other.d.execute_script(
                "arguments[0].scrollIntoView({block: 'center'})", other.css(card)
            )
            other.shot("approval-queue-editing")
            page.d.switch_to.active_element.send_keys(Keys.ESCAPE)  # back to the card
            other.until(lambda: not other.all("#approvals article.card.editing"))
            return target, note, len(page.all("#approvals article.card.editing"))

        def bulk() -> tuple[dict[str, str], str, str]:
            Select(page.css("#af-department")).select_by_value("environment")
            page.css('#approval-filters button[type="submit"]').click()
            page.until(lambda: "第 1–20 件" in page.text("approval-count"))
            page.until(
                lambda: all(
                    c.get_attribute("data-reply") != stale
                    for c in page.all("#approvals article.card")
                )
            )
            page.css("#approval-select-all").click()
            shown: dict[str, Any] = {
                box.get_attribute("data-reply-text"): box.get_attribute("value")
                for box in page.all("#approvals textarea")
            }
            page.css("#approval-bulk-approve").click()
            page.until(lambda: "已批准 20 件" in page.text("approval-result"))
            page.until(
                lambda: (
                    not set(shown)
                    & {c.get_attribute("data-reply") for c in page.all("#approvals article.card")}
                )
            )
            first = page.all("#approvals article.card")[0]
            return shown, page.text("approval-result"), first.get_attribute("data-reply")

        try:
            _, editing_note, own_marks = await in_thread(being_edited)
        except BaseException:
            desk.close()
            raise
        assert editing_note == "✎ 正在编辑此回复：审批员周洁", editing_note
        assert own_marks == 0  # an approver's own editing is not marked on their own page
        assert (await store.editing_now("0")) == []  # the mark was withdrawn, not left to lapse

        bulk_shown, result, next_first = await in_thread(bulk)
        with desk:  # the other desk learns it live, without reloading
            locked, live = await in_thread(other_desk_sees)
        assert locked == 20 and "本页 20 件已由他人处理" in live
        assert len(bulk_shown) == 20
        assert real["environment"] in {
            r.inquiry_id for r in [await store.get_reply(i) for i in bulk_shown] if r
        }

        def keyboard() -> dict[str, Any]:
            out: dict[str, Any] = {}
            cards = page.all("#approvals article.card")
            first, second, third = (c.get_attribute("data-reply") for c in cards[:3])
            out["ids"] = (first, second, third)
            cards[0].click()  # the card, not a field in it
            page.d.execute_script("arguments[0].focus()", cards[0])
            active = page.d.switch_to.active_element
            active.send_keys("e")
            box = page.d.switch_to.active_element
            assert box.get_attribute("id") == f"draft-{first}"
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(Keys.DELETE)
            box.send_keys(edited)
            box.send_keys(Keys.ESCAPE)
            page.d.switch_to.active_element.send_keys("a")
            page.until(lambda: not page.all(f'article[data-reply="{first}"]'))
            out["after_approve"] = page.d.switch_to.active_element.get_attribute("data-reply")
            # now reject the card that has the focus: r asks the reason first
            page.d.switch_to.active_element.send_keys("r")
            field = page.d.switch_to.active_element
            assert field.get_attribute("id") == f"reason-{second}"
            field.send_keys(reason)
            field.send_keys(Keys.ESCAPE)
            page.d.switch_to.active_element.send_keys("r")
            page.until(lambda: not page.all(f'article[data-reply="{second}"]'))
            out["after_reject"] = page.d.switch_to.active_element.get_attribute("data-reply")
            page.d.switch_to.active_element.send_keys("j")
            out["after_j"] = page.d.switch_to.active_element.get_attribute("data-reply")
            page.d.switch_to.active_element.send_keys("k")
            out["after_k"] = page.d.switch_to.active_element.get_attribute("data-reply")
            page.shot("approval-queue-keyboard")
            return out

        keys = await in_thread(keyboard)
        first, second, third = keys["ids"]
        assert first == next_first
        assert keys["after_approve"] == second  # the focus moved to the next card
        assert keys["after_reject"] == third
        assert keys["after_j"] != third and keys["after_k"] == third

        def as_viewer() -> dict[str, Any]:
            page.css("#signout").click()
            page.until(lambda: page.css("#signin-name").is_displayed())
            assert not page.all("#approvals article.card")  # gone with the approver
            sign_in("查看员李明")
            shown = {
                "cards": len(page.all("#approvals article.card")),
                "boxes": len(page.all("#approvals textarea")),
                "buttons": len(page.all("#approvals button")),
                "read_only": len(page.all("#approvals .readonly")),
                "bulk_visible": int(page.css("#approval-bulk-approve").is_displayed()),
            }
            page.shot("approval-queue-viewer")
            page.css("#lang").click()
            page.until(lambda: "awaiting approval" in page.text("approval-count"))
            shown["en_card"] = page.all("#approvals article.card")[0].text
            page.shot("approval-queue-en")
            page.css("#lang").click()
            return shown

        viewer = await in_thread(as_viewer)
        assert viewer["cards"] == 20 and viewer["read_only"] == 20
        assert viewer["boxes"] == 0 and viewer["buttons"] == 0 and viewer["bulk_visible"] == 0
        en_card = str(viewer["en_card"])
        assert "Beijing time" in en_card and "Received" in en_card

        approved = {**bulk_shown, first: edited}

        def posted() -> dict[str, dict[str, Any]]:
            return {
                r["idempotency_key"]: r
                for platform in morning.platforms.values()
                for r in platform.reply_list()
            }

        async def all_out() -> bool:
            backlog = await store.outbox_backlog()
            return set(approved) <= set(posted()) and not sum(r.waiting for r in backlog)

        await eventually(all_out, timeout=60)
        await asyncio.sleep(1)  # anything else would have been posted by now
        on_platform = posted()
        rejected = await store.get_reply(second)
        left = (await store.approval_queue()).total

    print(
        f"\nbusy morning: {PENDING} pending, {len(on_platform)} posted,"
        f" {left} left in the queue; {result}"
    )
    assert set(on_platform) == set(approved)  # nothing for the rejected, superseded or undecided
    for reply_id, text in approved.items():
        assert on_platform[reply_id]["text"].encode() == text.encode(), reply_id
    assert stale not in on_platform and second not in on_platform
    assert rejected is not None and rejected.state == ReplyState.REJECTED
    assert left == PENDING - 22  # 20 in bulk, one edited, one rejected; the superseded one's
    # newer draft took its conversation's card
