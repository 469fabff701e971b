"""Issue 23, must-shows 3, 4 and 5: every console page walked in Chromium, in Chinese and in
English, at 1440×900 and 390×844.

On every page (sign-in, approvals, inquiries and a journey, overdue, incidents, dead letters,
accounts, dashboard, ranking, inspection, audit) the test fails on

- an internal code shown to the user (a department id such as ``environment``, a status such as
  ``in_progress``, a category, any ``snake_case`` or ``dotted.code`` word), an English sentence
  on the Chinese page, Chinese UI text on the English page (data such as citizens' words,
  department and account names and the drafts is allowed), or a time in ISO/UTC form with no
  zone label;
- any axe-core violation, of any impact (axe-core comes from the npm registry into a cache
  outside the repository on first use, ``GOVBRIDGE_NODE_CACHE``, as tests/test_asyncapi.py
  fetches its parser; without npm the test skips and says so);
- a page wider than the viewport at 390 px (``document.documentElement.scrollWidth``).

Each page is photographed at both widths into docs/screenshots/ (``console-walk-*``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.simulators.rest import RestSimServer
from govbridge_tools.simulators.webhook import WebhookPlatformState

from bridge.web.operators import add_operator
from schemas.messages import ReplyRequest, inquiry_id_for
from tests.conftest import eventually, running_bridge
from tests.test_approval import AUTH, World, config, count_state, push, start, world
from tests.test_browser import SHOTS, Page, chrome, in_thread, reconciliation_item
from tests.test_incidents_e2e import burst, connect, item, platform, tickets
from tests.test_incidents_e2e import config as incidents_config

__all__ = ["chrome", "platform", "tickets", "world"]  # fixtures, used by name

pytestmark = pytest.mark.browser

PASSWORD = "browser-test-password"
OPERATOR = "值班长刘洋"
AXE = "axe-core"
WIDTHS = {"wide": (1440, 900), "phone": (390, 844)}
TEXTS = [
    "小区旁边的河道有一股臭味，像是有人偷排污水，请来检查一下",
    "工厂烟囱每天晚上冒黑烟，投诉好几次了都没有结果",
    "建议在城区增加空气质量监测点，并公开实时数据",
]


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js from the npm registry, installed once per machine into the node cache."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not installed: cannot fetch axe-core")
    cache = Path(
        os.environ.get("GOVBRIDGE_NODE_CACHE", Path.home() / ".cache" / "govbridge" / "node")
    )
    target = cache / AXE
    target.mkdir(parents=True, exist_ok=True)
    script = target / "node_modules" / "axe-core" / "axe.min.js"
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not script.exists():
            done = subprocess.run(
                [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", AXE],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"npm install {AXE} failed:\n{done.stderr[-2000:]}"
    return script.read_text(encoding="utf-8")


# The text a user sees: visible text nodes, placeholders, options, titles and aria-labels (what
# the user typed into a box is theirs, not the page's).
SEEN = """
const out = [];
const visible = (e) => e && e.getClientRects().length > 0 &&
  getComputedStyle(e).visibility !== "hidden";
const pageLang = document.documentElement.lang;
// Text marked as in another language (the language switch, Chinese data on the English page)
// is that language's, not the page's.
// The ticket system's own words ([data-verbatim]) are data too.
const other = (e) => {
  const l = e.closest("[lang]");
  return (l && l !== document.documentElement && l.lang !== pageLang)
    || e.closest("[data-verbatim]");
};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const s = n.nodeValue.trim();
  const p = n.parentElement;
  if (!s || !visible(p) || p.closest("script, style") || other(p)) continue;
  out.push(s);
}
for (const e of document.querySelectorAll("[aria-label], [title], [placeholder]")) {
  if (!visible(e) || other(e)) continue;
  for (const a of ["aria-label", "title", "placeholder"]) {
    if (e.getAttribute(a)) out.push(e.getAttribute(a));
  }
}
for (const s of document.querySelectorAll("select")) {
  if (visible(s)) for (const o of s.options) out.push(o.textContent.trim());
}
return out.filter(Boolean);
"""

# The outermost elements that reach past the viewport's right edge.
TOO_WIDE = """
const over = [...document.querySelectorAll("body *")].filter(
  (e) => e.getBoundingClientRect().right > innerWidth + 0.5
    && !(e.parentElement && e.parentElement.closest(".scroll, #tabs")));
return over.filter((e) => !over.includes(e.parentElement)).slice(0, 5)
  .map((e) => e.outerHTML.slice(0, 100));
"""

CJK = re.compile(r"[\u3400-\u9fff\uff01-\uff5e\u3000-\u303f]")
CODE = re.compile(r"\b[a-z][a-z0-9]*(?:[_.][a-z0-9]+)+\b")
ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}|\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]00:?00)\b|\bUTC\b"
)
WORD = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z]{3,}(?![A-Za-z0-9-])")
# A clock time shown without the zone it is in (when() writes "… 北京时间" / "… Beijing time").
BARE_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?! ?(?:北京时间|Beijing time|\d))")
ENGLISH = re.compile(r"[A-Za-z]{2,}(?:[ ,'-]+[A-Za-z]{2,}){2,}")
# Words that are names, not English: the product, platforms and standards.
NAMES = (
    "govbridge",
    "Open311",
    "GeoReport",
    "Weibo",
    "Mastodon",
    "English",
    "REST",
    "SLA",
    "CSV",
    "JSON",
    "Esc",
)


def problems(
    seen: list[str], lang: str, codes: set[str], departments: set[str], data: list[str]
) -> list[str]:
    found: list[str] = []
    for raw in seen:
        text = raw
        for d in sorted(data, key=len, reverse=True):
            if d:
                text = text.replace(d, " ")
        for name in NAMES:
            text = text.replace(name, " ")
        # handles, mail addresses, URLs and ids are data
        text = re.sub(r"@[\w.-]+|https?://\S+|\b(?:inq|rep|evt|cmd|inc)_[0-9a-z_-]+", " ", text)
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", text))
        if ISO.search(text) or BARE_TIME.search(text):
            found.append(f"time without a zone label: {raw[:120]!r}")
        # English words that are also codes (``help``, ``received``) are fine in English;
        # a department id is a code in both languages.
        for word in words & (codes if lang == "zh" else departments):
            found.append(f"internal code {word!r}: {raw[:120]!r}")
        for m in CODE.findall(text):
            found.append(f"internal code {m!r}: {raw[:120]!r}")
        if lang == "zh" and ENGLISH.search(text):
            found.append(f"English on the Chinese page: {raw[:120]!r}")
        elif lang == "zh" and WORD.search(text):
            found.append(f"English word on the Chinese page: {raw[:120]!r}")
        if lang == "en" and CJK.search(text):
            found.append(f"Chinese on the English page: {raw[:120]!r}")
    return sorted(set(found))


def axe_violations(page: Page, source: str) -> list[str]:
    if not page.d.execute_script("return typeof window.axe !== 'undefined'"):
        page.d.execute_script(source)
    result = page.d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then((r) => done(JSON.stringify(r.violations)),"
        " (e) => done(JSON.stringify([{id: 'axe-error', help: String(e), nodes: []}])));"
    )
    return [
        f"{v['id']} ({v.get('impact')}): {v['help']} — "
        + "; ".join(n["html"][:100] for n in v["nodes"][:3])
        for v in json.loads(result)
    ]


async def test_every_page_in_both_languages_and_widths(
    chrome: Any, axe_source: str, tmp_path: Path, world: World
) -> None:
    cfg = config(tmp_path, world)
    async with running_bridge(cfg) as daemon:
        api = await start(daemon, world)
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await add_operator(store, OPERATOR, "admin", PASSWORD, actor="系统管理员")
        ids = []
        for n, text in enumerate(TEXTS):
            external = await push(world, "env12345", text, n)
            ids.append(inquiry_id_for("hotline12345", "env12345", "mention", external))
        await eventually(lambda: count_state(daemon, "awaiting_approval", 3), timeout=30)
        replies = {r.inquiry_id: r for r in await store.list_replies(state="awaiting_approval")}
        early = ReplyRequest.model_validate_json(replies[ids[0]].request_json)
        await daemon.ctx.broker.publish("reply.requested.hotline12345", early)
        async with api.http:

            async def dead_letter_listed() -> bool:
                async with api.http.get(f"{api.base}/api/dead-letters", headers=AUTH) as resp:
                    items = (await resp.json())["dead_letters"]
                return any(d.get("stage") == "outbox" for d in items)

            await eventually(dead_letter_listed, timeout=20)
            async with api.http.get(f"{api.base}/api/labels", headers=AUTH) as resp:
                labels = await resp.json()
        late = (datetime.now(UTC) - timedelta(days=40)).isoformat()
        await store.db.execute(
            "UPDATE tickets SET created_at = ? WHERE inquiry_id = ?", (late, ids[1])
        )
        await reconciliation_item(store)

        # What the pages may show as data: names, citizens' words, drafts, the operator.
        data = [OPERATOR, "系统管理员", *TEXTS, *(r.text for r in replies.values())]
        codes: set[str] = set()
        departments: set[str] = set()
        for value in labels.values():
            if isinstance(value, dict):
                for code, name in value.items():
                    codes.add(str(code))
                    if isinstance(name, str):
                        data.append(name)
                    elif isinstance(name, dict):
                        data.extend(str(v) for v in name.values())
        for d in cfg.departments:
            codes.add(d.id)
            departments.add(d.id)
            data.append(d.name)
        codes -= {"hotline12345", "env12345"} | set(NAMES)
        data += [a.handle for a in cfg.accounts]

        page = Page(chrome, f"http://127.0.0.1:{daemon.http_port}")
        pages = [  # (shot name, hash, what shows the page's data has come)
            ("approvals", "approvals", "#approvals article.card"),
            ("inquiries", "inquiries", "#results table"),
            ("journey", "inquiries", "#journey li"),
            ("overdue", "overdue", "#overdue table"),
            ("incidents", "incidents", "#incidents *"),
            ("dead-letters", "dead", '#dead-letters button[data-dlq-action="replay"]'),
            ("accounts", "accounts", "#accounts table"),
            ("dashboard", "dashboard", "#dashboard svg"),
            ("ranking", "ranking", "#ranking table"),
            ("inspection", "inspection", "#inspection table"),
            ("audit", "audit", "#audit table"),
        ]
        shots: list[Path] = []

        def check(report: dict[str, list[str]], name: str, lang: str, width: str) -> None:
            inner = page.d.execute_script("return window.innerWidth")
            found = problems(page.d.execute_script(SEEN), lang, codes, departments, data)
            found += axe_violations(page, axe_source)
            if width == "phone":
                scroll = page.d.execute_script("return document.documentElement.scrollWidth")
                if scroll > inner:
                    wide = page.d.execute_script(TOO_WIDE)
                    found.append(f"page {scroll} px wide in a {inner} px viewport: {wide}")
            SHOTS.mkdir(parents=True, exist_ok=True)
            shot = SHOTS / f"console-walk-{name}-{lang}-{width}.png"
            page.d.save_screenshot(str(shot))
            shots.append(shot)
            if found:
                report[f"{name} {lang} {width}"] = found

        def walk() -> dict[str, list[str]]:
            report: dict[str, list[str]] = {}
            for lang in ("zh", "en"):
                for width, (w, h) in WIDTHS.items():
                    page.d.set_window_size(w, h)
                    page.d.get(page.base + "/")
                    page.d.delete_all_cookies()
                    page.d.execute_script("localStorage.setItem('gbLang', arguments[0])", lang)
                    page.d.get(page.base + "/#approvals")
                    page.d.refresh()
                    page.until(lambda: page.css("#signin-name").is_displayed())
                    check(report, "signin", lang, width)
                    page.css("#signin-name").send_keys(OPERATOR)
                    page.css("#signin-password").send_keys(PASSWORD + "\n")
                    for name, target, ready in pages:
                        if name != "journey":
                            page.d.get(page.base + "/#" + target)
                            page.until(
                                lambda t=target: not page.css(f"#page-{t}").get_attribute("hidden")
                            )
                        if name == "inquiries":
                            page.css('#search-form input[name="q"]').send_keys("烟囱")
                            page.css("#search-form button[type=submit]").click()
                        if name == "journey":
                            page.until(lambda: page.all("#results a[data-journey]"))
                            page.css("#results a[data-journey]").click()
                        page.until(lambda r=ready: page.all(r))
                        check(report, name, lang, width)
            return report

        report = await in_thread(walk)
        await in_thread(page.d.set_window_size, 1280, 1000)
    assert len(shots) == (len(pages) + 1) * 4
    for shot in shots:
        assert shot.stat().st_size > 5000, shot
    assert not report, json.dumps(report, ensure_ascii=False, indent=1)


async def test_surge_pages_in_both_languages_and_widths(
    chrome: Any,
    axe_source: str,
    tmp_path: Path,
    tickets: RestSimServer,
    platform: tuple[WebhookPlatformState, str],
) -> None:
    """The surge list, an incident with its cases and a merged case's journey (issue 24's
    pages, empty in the walk above), with the same checks and screenshots."""
    hotline, hotline_url = platform
    cfg = incidents_config(tmp_path, tickets, hotline_url + "/replies", "merge")
    now = datetime.now(UTC)
    async with running_bridge(cfg) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await add_operator(store, OPERATOR, "admin", PASSWORD, actor="系统管理员")
        await connect(daemon, hotline, tickets.state)
        texts = [burst(n) for n in range(4)]
        items = [
            item(f"b-{n}", t, 1000 + n, now - timedelta(minutes=9 - n)) for n, t in enumerate(texts)
        ]
        assert await hotline.push(items) == 202

        async def surged() -> bool:
            return len(await store.surged_incidents()) == 1 and len(hotline.reply_list()) == 4

        await eventually(surged, timeout=60)
        (surge,) = await store.surged_incidents()
        labels = {"departments": {d.id: d.name for d in cfg.departments}}
        codes = {d.id for d in cfg.departments} | {"complaint", "report", "help", "in_progress"}
        departments = {d.id for d in cfg.departments}
        data = [OPERATOR, "系统管理员", *texts, *labels["departments"].values()]
        data += [r.get("text", "") for r in hotline.reply_list()]
        page = Page(chrome, f"http://127.0.0.1:{daemon.http_port}")
        shots: list[Path] = []
        report: dict[str, list[str]] = {}

        def check(name: str, lang: str, width: str) -> None:
            inner = page.d.execute_script("return window.innerWidth")
            found = problems(page.d.execute_script(SEEN), lang, codes, departments, data)
            found += axe_violations(page, axe_source)
            scroll = page.d.execute_script("return document.documentElement.scrollWidth")
            if width == "phone" and scroll > inner:
                found.append(f"page {scroll} px wide in a {inner} px viewport")
            shot = SHOTS / f"console-walk-{name}-{lang}-{width}.png"
            page.d.save_screenshot(str(shot))
            shots.append(shot)
            if found:
                report[f"{name} {lang} {width}"] = found

        def walk() -> None:
            for lang in ("zh", "en"):
                for width, (w, h) in WIDTHS.items():
                    page.d.set_window_size(w, h)
                    page.d.get(page.base + "/")
                    page.d.delete_all_cookies()
                    page.d.execute_script("localStorage.setItem('gbLang', arguments[0])", lang)
                    page.d.get(page.base + "/#incidents")
                    page.d.refresh()
                    page.until(lambda: page.css("#signin-name").is_displayed())
                    page.css("#signin-name").send_keys(OPERATOR)
                    page.css("#signin-password").send_keys(PASSWORD + "\n")
                    button = f'#incidents button[data-incident="{surge.incident_id}"]'
                    page.until(lambda b=button: page.all(b))
                    check("surges", lang, width)
                    page.css(button).click()
                    page.until(lambda: page.all("#incident button[data-split]"))
                    check("incident", lang, width)

        await in_thread(walk)
        await in_thread(page.d.set_window_size, 1280, 1000)
    assert len(shots) == 8
    for shot in shots:
        assert shot.stat().st_size > 5000, shot
    assert not report, json.dumps(report, ensure_ascii=False, indent=1)


def test_the_checker_flags_what_it_should_and_passes_names() -> None:
    """The walk's text rules on their own (no browser): codes, stray language, bare times."""
    codes, departments = {"environment", "in_progress", "help"}, {"environment"}
    data = ["市生态环境局", "河道有臭味"]

    def flags(text: str, lang: str) -> list[str]:
        return problems([text], lang, codes, departments, data)

    assert flags("部门：environment", "zh") and flags("environment", "en")
    assert flags("状态 in_progress", "zh") and flags("inquiry.routed", "en")
    assert flags("2026-12-07T15:42:00+00:00", "zh") and flags("2026-12-07 23:36", "en")
    assert flags("the reply is not approved", "zh") and flags("client：127.0.0.1", "zh")
    assert flags("审批", "en")
    assert not flags("2026-12-07 23:36 北京时间 办理中", "zh")
    assert not flags("2026-12-07 23:36 Beijing time · Request for help", "en")
    assert not flags("12345 hotline env12345 (市生态环境局) · 河道有臭味", "en")
    assert not flags("govbridge 运营控制台 · Open311", "zh")
