"""The console in Debian's Chromium, headless, driven by Selenium against a running bridge (real
RabbitMQ, simulated platform and ticket systems): sign in; approve one reply, edit and approve
another, reject a third with a reason, and find the outcome among the simulator's posted
replies; search an inquiry and open its journey; replay a dead letter; settle a
reconciliation. Every page is photographed into docs/screenshots/.

Approval integrity (issue 20, must-show 1): the one approve button publishes what is in the
box, byte for byte, as the platform simulator records it; a draft superseded while it is open
(a newer status of its ticket, another approver's decision) answers 409, the page says so and
nothing is posted; an edit carrying a phone number comes back masked in the box for the
approver to confirm.

Chromium and chromium-driver come from Debian (``apt-get install -y chromium chromium-driver
fonts-wqy-microhei``, done here when they are missing and apt-get can; .ci/run does it too);
without them the tests skip, saying why.
Selenium calls block, so they run in a thread while the bridge serves on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.store import NewInquiry, audit
from bridge.web.operators import add_operator
from schemas.config import RateLimitConfig
from schemas.messages import ReplyRequest, ThreadRef, inquiry_id_for
from tests.conftest import eventually, running_bridge
from tests.test_approval import AUTH, World, config, count_state, push, start, ticket_of, world

__all__ = ["world"]  # the fixture, used by name

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PASSWORD = "browser-test-password"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")


def _chromium() -> tuple[str, str] | None:
    if all(os.access(p, os.X_OK) for p in CHROMIUM):
        return CHROMIUM
    found = shutil.which("chromium"), shutil.which("chromedriver")
    return (found[0], found[1]) if found[0] and found[1] else None


CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
PACKAGES = ("chromium", "chromium-driver", "fonts-wqy-microhei")  # the font: readable shots


def _install_chromium() -> str | None:
    """Debian's chromium and chromium-driver (and a CJK font), installed when missing; the
    reason if they cannot be."""
    if _chromium() is not None and CJK_FONT.exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        if _chromium() is not None:
            return None  # screenshots without Chinese glyphs, the flows still run
        return "chromium is not installed and apt-get cannot run here (not Debian, or not root)"
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *PACKAGES],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0 or _chromium() is None:
        return f"apt-get install chromium chromium-driver failed: {result.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium() or CHROMIUM
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


# Visible controls with no name a screen reader could read: none allowed.
UNLABELLED = """
return [...document.querySelectorAll("input, select, textarea, button")]
  .filter((e) => e.offsetParent !== null)
  .filter((e) => e.tagName === "BUTTON"
    ? !e.textContent.trim() && !e.getAttribute("aria-label")
    : !(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
  .map((e) => e.outerHTML.slice(0, 120));
"""


class Page:
    """Blocking browser steps (run in a thread)."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.d = driver
        self.base = base
        # a live page re-renders its lists: an element found a moment ago may be gone, which
        # is a reason to look again, not a failure
        self.wait = WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.d.find_elements(By.CSS_SELECTOR, selector))

    def until(self, check: Callable[[], Any]) -> Any:
        return self.wait.until(lambda _: check())

    def text(self, element_id: str) -> str:
        return str(self.css(f"#{element_id}").text)

    def go(self, page: str) -> None:
        self.css(f'#tabs a[href="#{page}"]').click()
        self.until(lambda: not self.css(f"#page-{page}").get_attribute("hidden"))

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(SHOTS / f"console-{name}.png"))


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_console_flows_in_chromium(chrome: Any, tmp_path: Path, world: World) -> None:
    texts = [
        "小区旁边的河道有一股臭味，像是有人偷排污水，请来检查一下",
        "工厂烟囱每天晚上冒黑烟，投诉好几次了都没有结果",
        "建议在城区增加空气质量监测点，并公开实时数据",
    ]
    edited = "您好，您反映的工厂排烟问题已受理，我们将在三个工作日内答复。"
    cfg = config(tmp_path, world)
    quota = RateLimitConfig(max_calls=30, period=timedelta(hours=1))
    cfg.accounts[0] = cfg.accounts[0].model_copy(update={"reply_limit": quota})
    async with running_bridge(cfg) as daemon:
        api = await start(daemon, world)
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await add_operator(store, "值班长王敏", "admin", PASSWORD, actor="test")
        ids = []
        for n, text in enumerate(texts):
            external = await push(world, "env12345", text, n)
            ids.append(inquiry_id_for("hotline12345", "env12345", "mention", external))
        await eventually(lambda: count_state(daemon, "awaiting_approval", 3), timeout=30)
        replies = {r.inquiry_id: r for r in await store.list_replies(state="awaiting_approval")}
        approve, edit, reject = (replies[i].reply_id for i in ids)

        # A dead letter: a request to post a reply before it was approved (refused by the
        # outbox); an overdue ticket; and a create awaiting reconciliation.
        early = ReplyRequest.model_validate_json(replies[ids[0]].request_json)
        await daemon.ctx.broker.publish("reply.requested.hotline12345", early)
        async with api.http:

            async def dead_letter_listed() -> bool:
                async with api.http.get(f"{api.base}/api/dead-letters", headers=AUTH) as resp:
                    items = (await resp.json())["dead_letters"]
                return any(d.get("stage") == "outbox" for d in items)

            await eventually(dead_letter_listed, timeout=20)
        late = (datetime.now(UTC) - timedelta(days=40)).isoformat()
        await store.db.execute(
            "UPDATE tickets SET created_at = ? WHERE inquiry_id = ?", (late, ids[1])
        )
        await reconciliation_item(store)

        page = Page(chrome, f"http://127.0.0.1:{daemon.http_port}")

        def sign_in() -> None:
            page.d.get(page.base + "/")
            page.until(lambda: page.css("#signin-name").is_displayed())
            page.shot("signin")
            page.css("#signin-name").send_keys("值班长王敏")
            page.css("#signin-password").send_keys(PASSWORD + "\n")  # Enter, from the keyboard
            page.until(lambda: len(page.all("#approvals article.card")) == 3)
            page.shot("approvals")
            assert not page.d.execute_script(UNLABELLED), page.d.execute_script(UNLABELLED)

        await in_thread(sign_in)
        assert "值班长王敏 (管理员)" in await in_thread(page.text, "who")

        def decide() -> None:
            card = page.css(f'article[data-reply="{approve}"]')
            assert texts[0][:10] in card.text  # the citizen's original beside the draft
            card.find_element("css selector", 'button[data-decision="approve"]').click()
            page.until(lambda: not page.all(f'article[data-reply="{approve}"]'))
            box = page.css(f"#draft-{edit}")
            box.clear()
            box.send_keys(edited)
            page.css(f'article[data-reply="{edit}"] button[data-decision="approve"]').click()
            page.until(lambda: not page.all(f'article[data-reply="{edit}"]'))
            page.css(f'article[data-reply="{reject}"] button[data-decision="reject"]').click()
            page.until(lambda: "驳回原因" in page.text("approvals"))  # a reason is required
            page.css(f"#reason-{reject}").send_keys("建议类诉求另行答复")
            page.css(f'article[data-reply="{reject}"] button[data-decision="reject"]').click()
            page.until(lambda: not page.all("#approvals article.card"))

        await in_thread(decide)

        def posted() -> dict[str, dict[str, Any]]:
            return {r["idempotency_key"]: r for r in world.replies("env12345")}

        async def both_posted() -> bool:
            return {approve, edit} <= set(posted())

        await eventually(both_posted, timeout=30)

        def journey() -> str:
            page.go("inquiries")
            page.css('#search-form input[name="q"]').send_keys("烟囱")
            page.css("#search-form button[type=submit]").click()
            page.until(lambda: len(page.all("#results button[data-journey]")) == 1)
            page.css("#results button[data-journey]").click()
            page.until(lambda: "修改后批准" in page.text("journey"))  # reply.edited
            page.shot("inquiries")
            return page.text("journey")

        trail = await in_thread(journey)
        assert "值班长王敏" in trail and "已分派" in trail and ids[1] in trail

        def dead_letters() -> None:
            page.go("dead")
            page.until(lambda: page.all('#dead-letters button[data-dlq-action="replay"]'))
            page.until(lambda: page.all('#reconciliation button[data-action="not_created"]'))
            page.shot("dead-letters")
            page.css('#dead-letters button[data-dlq-action="replay"]').click()
            page.until(lambda: "已完成" in page.text("dead-letters"))
            page.css('#reconciliation button[data-action="not_created"]').click()
            page.until(lambda: "已完成" in page.text("reconciliation"))

        await in_thread(dead_letters)

        async def reconciled() -> bool:
            attempt = await store.get_create_attempt("GB-R")
            return attempt is not None and attempt.state == "created"

        await eventually(reconciled, timeout=30)

        def other_pages() -> dict[str, str]:
            seen = {}
            for name, ready in (
                ("overdue", lambda: "已逾期" in page.text("overdue")),
                ("accounts", lambda: "env12345" in page.text("accounts")),
                ("dashboard", lambda: page.all("#dashboard svg rect.received")),
                ("ranking", lambda: "市生态环境局" in page.text("ranking")),
                ("inspection", lambda: "env12345" in page.text("inspection")),
                ("audit", lambda: "批准回复" in page.text("audit")),
            ):
                page.go(name)
                page.until(ready)
                page.shot(name)
                seen[name] = page.text(name)
                assert not page.d.execute_script(UNLABELLED), (
                    name,
                    page.d.execute_script(UNLABELLED),
                )
            page.css("#verify").click()
            page.until(lambda: "记录链完整" in page.text("chain"))
            page.css("#lang").click()
            page.until(lambda: "Audit trail" in page.css("#tabs").text)
            page.go("dashboard")
            page.until(lambda: "Department dashboard" in page.text("h-dashboard"))
            page.shot("dashboard-en")
            page.css("#lang").click()
            return seen

        seen = await in_thread(other_pages)
        assert "市生态环境局" in seen["dashboard"]
        assert "2 / 30 (60 min)" in seen["accounts"]  # the two replies posted, of the quota
        records = await audit.recent(store.db, limit=200)
        assert ("dead_letter.replayed", "值班长王敏") in {
            (r["action"], r["actor"]) for r in records
        }
        assert ("reconciliation.settled", "值班长王敏") in {
            (r["action"], r["actor"]) for r in records
        }
        rejected = next(r for r in records if r["action"] == "reply.rejected")
        assert rejected["actor"] == "值班长王敏" and rejected["detail"]["reason"]
        assert (await audit.verify(store.db)).ok

    on_platform = posted()
    assert set(on_platform) >= {approve, edit} and reject not in on_platform
    assert on_platform[edit]["text"] == edited
    assert on_platform[approve]["text"] == early.text
    for name in ("signin", "approvals", "inquiries", "dead-letters", "overdue", "accounts"):
        assert (SHOTS / f"console-{name}.png").stat().st_size > 5000, name
    for name in ("dashboard", "ranking", "inspection", "audit", "dashboard-en"):
        assert (SHOTS / f"console-{name}.png").stat().st_size > 5000, name


async def reconciliation_item(store: Any) -> None:
    """A create whose outcome the bridge could not learn (as the ticketing stage leaves it)."""
    thread = ThreadRef(root_id="m-r", reply_to={"external_id": "m-r"})
    await store.record_inquiry(
        NewInquiry(
            inquiry_id="inq_r",
            platform="hotline12345",
            account="env12345",
            kind="mention",
            thread_key="hotline12345:env12345:m-r",
            state="needs_reconciliation",
            department="environment",
            category="complaint",
            citizen_handle="citizen-r",
            visibility="public",
            thread_json=thread.model_dump_json(),
            public_text="路边垃圾桶满了没人清理",
        )
    )
    command = {
        "command_id": "cmd_r",
        "action": "create",
        "department": "environment",
        "category": "complaint",
        "reference": "GB-R",
        "description": "路边垃圾桶满了没人清理",
        "public_text": "路边垃圾桶满了没人清理",
        "inquiry": {
            "inquiry_id": "inq_r",
            "platform": "hotline12345",
            "account": "env12345",
            "kind": "mention",
            "external_id": "m-r",
            "author": {"id": "9", "handle": "citizen-r"},
            "text": "路边垃圾桶满了没人清理",
            "created_at": datetime.now(UTC).isoformat(),
            "thread": thread.model_dump(mode="json"),
        },
    }
    await store.claim_create("GB-R", "environment", "inq_r", command_json=json.dumps(command))
    await store.set_create_state("GB-R", "needs_reconciliation", detail="timed out after sending")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """chromedriver is spoken to on localhost: never through a proxy."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


async def test_approve_publishes_the_box_and_a_superseded_draft_nothing(
    chrome: Any, tmp_path: Path, world: World
) -> None:
    texts = {
        "edit": "河道边有人倒建筑垃圾，已经堆成小山了，下雨就往河里冲",
        "newer": "工地晚上十一点还在打桩，吵得孩子没法睡觉",
        "other": "小区门口的餐馆油烟直排，整栋楼都是油烟味",
        "phone": "公园里的健身器材坏了好几个，老人用着不安全",
    }
    # What the approver types: several lines, full-width and ASCII punctuation, spaces, a URL.
    edited = (
        "您好，您反映的河道倾倒建筑垃圾问题已受理（工单见上）。\n"
        "执法队员将于本周三前到现场核查；处理结果会在此答复。\n"
        "详情: https://example.gov.cn/notice?id=42  —  感谢监督！"
    )
    other_text = "您好，餐馆油烟问题已转环保执法大队，我们会督促整改。"
    with_phone = "您好，健身器材已报修，维修进度可致电139，8765，4321查询。"
    async with running_bridge(config(tmp_path, world)) as daemon:
        api = await start(daemon, world)
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await add_operator(store, "审批员周洁", "approver", PASSWORD, actor="test")
        inquiry = {}
        for n, (key, text) in enumerate(texts.items()):
            external = await push(world, "env12345", text, n)
            inquiry[key] = inquiry_id_for("hotline12345", "env12345", "mention", external)
        await eventually(lambda: count_state(daemon, "awaiting_approval", 4), timeout=30)
        draft = {
            key: next(
                r.reply_id
                for r in await store.list_replies(state="awaiting_approval")
                if r.inquiry_id == inquiry[key]
            )
            for key in texts
        }
        page = Page(chrome, f"http://127.0.0.1:{daemon.http_port}")

        def sign_in() -> None:
            page.d.get(page.base + "/")
            page.until(lambda: page.css("#signin-name").is_displayed())
            page.css("#signin-name").send_keys("审批员周洁")
            page.css("#signin-password").send_keys(PASSWORD + "\n")
            page.until(lambda: len(page.all("#approvals article.card")) == 4)
            # one approve button per draft, and no separate "edit and approve"
            assert len(page.all('#approvals button[data-decision="approve"]')) == 4
            assert not page.all('#approvals button[data-decision="edit"]')

        await in_thread(sign_in)

        def card(key: str) -> str:
            return f'article[data-reply="{draft[key]}"]'

        def approve_edited() -> None:
            box = page.css(f"#draft-{draft['edit']}")
            box.clear()
            box.send_keys(edited)
            assert box.get_attribute("value") == edited
            page.css(f'{card("edit")} button[data-decision="approve"]').click()
            page.until(lambda: not page.all(card("edit")))

        await in_thread(approve_edited)

        # While the approver has the other drafts open: the ticket system moves one ticket on
        # (a newer status supersedes its draft) and another approver decides a second one.
        ticket = await ticket_of(daemon, "environment", inquiry["newer"])
        await world.tickets["environment"].move(ticket, "ASSIGNED", callback=False)

        async def superseded() -> bool:
            row = await store.get_reply(draft["newer"])
            return row is not None and row.state == "superseded"

        await eventually(superseded, timeout=30)
        async with api.http:
            shown = {i["reply_id"]: i for i in await api.approvals()}
            status, _ = await api.decide(
                draft["other"],
                decision="approve",
                text=other_text,
                version=shown[draft["other"]]["version"],
            )
            assert status == 200

        def stale_drafts() -> dict[str, str]:
            """Press approve on both; the live queue (server-sent events, every 2 s) may have
            marked and locked a card first, which is the other right answer: either way the
            card says why nothing was published and its button is dead."""
            from selenium.common.exceptions import (
                ElementNotInteractableException,
                InvalidElementStateException,
            )

            said = {}
            for key in ("newer", "other"):
                button = page.css(f'{card(key)} button[data-decision="approve"]')
                try:
                    if key == "other":  # this approver had edited it too
                        box = page.css(f"#draft-{draft['other']}")
                        box.clear()
                        box.send_keys("您好，油烟问题我们会尽快处理。")
                    button.click()
                except (InvalidElementStateException, ElementNotInteractableException):
                    assert "stale" in page.css(card(key)).get_attribute("class")
                page.until(lambda k=key: page.text(f"msg-{draft[k]}"))
                said[key] = page.text(f"msg-{draft[key]}")
                assert not page.css(f'{card(key)} button[data-decision="approve"]').is_enabled()
            page.shot("approval-conflict")
            return said

        said = await in_thread(stale_drafts)
        assert "新状态取代" in said["newer"] and "未发布任何内容" in said["newer"]
        assert "其他审批人" in said["other"] and "未发布任何内容" in said["other"]

        def approve_with_phone() -> tuple[str, str]:
            box = page.css(f"#draft-{draft['phone']}")
            box.clear()
            box.send_keys(with_phone)
            page.css(f'{card("phone")} button[data-decision="approve"]').click()
            page.until(lambda: "[手机号]" in (box.get_attribute("value") or ""))
            shown, message = box.get_attribute("value"), page.text(f"msg-{draft['phone']}")
            page.d.execute_script("arguments[0].scrollIntoView()", box)
            page.shot("approval-masked")
            page.css(f'{card("phone")} button[data-decision="approve"]').click()  # confirmed
            page.until(lambda: not page.all(card("phone")))
            return shown, message

        masked_in_box, message = await in_thread(approve_with_phone)
        assert "个人信息" in message

        def posted() -> dict[str, dict[str, Any]]:
            return {r["idempotency_key"]: r for r in world.replies("env12345")}

        async def all_out() -> bool:
            backlog = await store.outbox_backlog()
            waiting = sum(r.waiting for r in backlog)
            return {draft["edit"], draft["other"], draft["phone"]} <= set(posted()) and not waiting

        await eventually(all_out, timeout=30)
        posts = world.platforms["env12345"].requests["POST /replies"]
        newest = await store.list_replies(inquiry_id=inquiry["newer"])

    on_platform = posted()
    print(
        f"\nbrowser approvals: {len(on_platform)} replies on the platform, {posts} POSTs;"
        f" superseded draft posted: {draft['newer'] in on_platform}"
    )
    # The edited text, byte for byte; the other approver's text once; the masked text as shown.
    assert on_platform[draft["edit"]]["text"].encode() == edited.encode()
    assert on_platform[draft["other"]]["text"] == other_text
    assert on_platform[draft["phone"]]["text"] == masked_in_box
    assert masked_in_box == with_phone.replace("139，8765，4321", "[手机号]")
    # Nothing else: the superseded draft and the stale second approval posted nothing.
    assert set(on_platform) == {draft["edit"], draft["other"], draft["phone"]}
    assert posts == 3
    assert {r.state for r in newest} == {"superseded", "awaiting_approval"}
