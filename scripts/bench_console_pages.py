"""Every console page's data, drawn in Chromium, on a big store (issue 23, must-show 2): a
measurement by a browser script, not a test.

    .venv/bin/python scripts/bench_console_pages.py [--inquiries N] [--pending N] [--rounds N]
        [--postgresql URL_OF_AN_ADMIN_DATABASE] [--width 1440] [--starts N] [--no-warm]
        [--settle SECONDS]

Fills a store as ``scripts/bench_approval_queue.py`` does (INQUIRIES made-up inquiries of 12
departments and 24 accounts, each with a ticket; PENDING template drafts awaiting approval,
the rest posted), runs a bridge with the http role only (the broker an in-memory stand-in:
an approval's publish is recorded, not confirmed by RabbitMQ), signs in as an admin in headless
Chromium and, ROUNDS times, opens every page from the navigation: the time from the click
(the address's #fragment changing) until the page has drawn what its requests returned (the
console marks ``<body data-rendered>`` once a page's data is on screen; then one more frame).
Inquiry search (a text and a department) and one inquiry's journey are timed the same way.
Then approves the first card ROUNDS times, as an approver presses the button; its server time
is the ``Server-Timing`` the bridge puts on every ``/api/`` answer, read from the browser's
resource timings, beside the whole click-to-redrawn time.

With ``--starts N`` the bridge is started N times on the same store, each start walked as
above (the browser opened as soon as the bridge listens, or ``--settle`` seconds later): each
page's first visit after a start is reported apart from the visits after it, with how many
seconds after the start it came. ``--no-warm`` starts the bridge with ``http.warm_pages`` off.

Prints each page's median and slowest, the server time of its requests, the load average
before and after, and the machine; docs/performance.md keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import bench_approval_queue as seed  # noqa: E402
from govbridge_tools.testing import MemoryBroker  # noqa: E402

from bridge.config import parse_config  # noqa: E402
from bridge.daemon import Daemon  # noqa: E402
from bridge.store import open_store  # noqa: E402
from bridge.telemetry.logging import configure_logging  # noqa: E402
from bridge.telemetry.metrics import Metrics  # noqa: E402
from bridge.web.operators import add_operator  # noqa: E402
from schemas.config import GovbridgeConfig  # noqa: E402

PASSWORD = "bench-console-password"
PAGES = (
    "approvals", "overdue", "incidents", "dead", "accounts", "dashboard", "ranking",
    "inspection", "audit",
)  # fmt: skip

# One visit: click the page's link, wait for the console to say the page's data is drawn,
# then one more animation frame; the time, and each /api/ request's server time.
VISIT = """
const [how, arg, done] = arguments;
const body = document.body;
const before = Number(body.dataset.renders || 0);
performance.clearResourceTimings();
const t0 = performance.now();
how(arg);
(function wait() {
  if (Number(body.dataset.renders || 0) > before) {
    requestAnimationFrame(() => setTimeout(() => {
      const ms = performance.now() - t0;
      const api = performance.getEntriesByType("resource")
        .filter((e) => e.name.includes("/api/"))
        .map((e) => ({ url: e.name.replace(location.origin, ""), ms: e.duration,
          server: ((e.serverTiming || []).find((s) => s.name === "app") || {}).duration }));
      const alert = document.querySelector("main section:not([hidden]) [role=alert].bad");
      done({ ms, api, what: body.dataset.rendered, error: alert ? alert.textContent : "" });
    }, 0));
  } else setTimeout(wait, 2);
})();
"""
CLICK_LINK = "(page) => document.querySelector(`#tabs a[href='#${page}']`).click()"
SEARCH = """(q) => { const f = document.getElementById("search-form");
  f.elements.q.value = q.text; f.elements.department.value = q.department;
  f.requestSubmit(); }"""
JOURNEY = "(n) => document.querySelectorAll('#results a[data-journey]')[n].click()"
APPROVE = """(n) => document.querySelector('#approvals button[data-decision="approve"]').click()"""


def config(url: str, warm: bool = True) -> GovbridgeConfig:
    """The departments and accounts of ``bench_approval_queue.config``, served over HTTP."""
    departments = [
        {"id": f"d{k}", "name": f"部门{k}", "sla": {"complaint": "5wd"}, "ticketing": seed.REST}
        for k in range(12)
    ]
    accounts = [
        {
            "adapter": "webhook",
            "handle": f"a{k}",
            "department": f"d{k % 12}",
            "platform": "hotline12345",
            "secret": "s" * 16,
            "reply_url": "http://127.0.0.1:9/r",
        }
        for k in range(24)
    ]
    data = {
        "store": {"url": url},
        "http": {
            "listen": "127.0.0.1:0",
            "admin_token": "bench-admin-token-0123456789",
            "warm_pages": warm,
        },
        "broker": {"url": "amqp://guest:guest@127.0.0.1:5672/", "exchange": "gbbench"},
        "departments": departments,
        "accounts": accounts,
    }
    return parse_config(data, "<bench>", env={})


def browser(width: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=zh-CN"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},900")
    driver = webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver"), options=options
    )
    driver.set_script_timeout(120)
    return driver


def walk(base: str, rounds: int, width: int, started: float) -> dict[str, list[dict[str, Any]]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser(width)
    seen: dict[str, list[dict[str, Any]]] = {}
    try:
        d.get(base + "/")
        wait = WebDriverWait(d, 60)
        wait.until(lambda _: d.find_element(By.ID, "signin-name").is_displayed())
        d.find_element(By.ID, "signin-name").send_keys("bench")
        d.find_element(By.ID, "signin-password").send_keys(PASSWORD + "\n")
        wait.until(lambda _: d.execute_script("return document.body.dataset.rendered"))

        def visit(name: str, how: str, arg: Any) -> None:
            got = d.execute_async_script(
                f"const fn = {how};" + VISIT.replace("how(arg)", "fn(arg)"), None, arg
            )
            got["after_start"] = time.monotonic() - started - got["ms"] / 1000
            seen.setdefault(name, []).append(got)

        for _ in range(rounds):
            for page in PAGES:
                visit(page, CLICK_LINK, page)
            visit("inquiries", CLICK_LINK, "inquiries")
            visit("search", SEARCH, {"text": "路灯", "department": "d3"})
            visit("journey", JOURNEY, len(seen["journey"]) if "journey" in seen else 0)
        visit("approvals", CLICK_LINK, "approvals")
        for _ in range(rounds):
            visit("approve", APPROVE, 0)
    finally:
        d.quit()
    return seen


def report(label: str, seen: dict[str, list[dict[str, Any]]]) -> None:
    for name, visits in seen.items():
        if not visits:
            continue
        times = [v["ms"] for v in visits]
        server: dict[str, list[float]] = {}
        for v in visits:
            for r in v["api"]:
                path = r["url"].split("?")[0]
                if r.get("server") is not None:
                    server.setdefault(path, []).append(r["server"])
        parts = ", ".join(
            f"{path} {statistics.median(s):.0f} ms (slowest {max(s):.0f})"
            for path, s in sorted(server.items())
        )
        errors = {v["error"] for v in visits if v.get("error")}
        print(
            f"{label}: {name}: drawn in median {statistics.median(times):.0f} ms,"
            f" slowest {max(times):.0f} ms ({len(times)} visits); server: {parts or '-'}"
            + (f"; ERRORS {errors}" if errors else "")
        )


async def run(
    url: str, label: str, rounds: int, width: int, starts: int, warm: bool, settle: float
) -> None:
    cfg = config(url, warm)
    walks = []
    for n in range(starts):
        metrics = Metrics()
        daemon = Daemon(cfg, ["http"], metrics=metrics, broker=MemoryBroker(cfg.broker, metrics))
        started = time.monotonic()
        await daemon.start()
        try:
            assert daemon.ctx is not None
            if n == 0:
                await add_operator(daemon.ctx.store, "bench", "admin", PASSWORD, actor="bench")
            await asyncio.sleep(settle)
            base = f"http://127.0.0.1:{daemon.http_port}"
            walks.append(await asyncio.to_thread(walk, base, rounds, width, started))
        finally:
            await daemon.stop()
    if starts == 1:
        report(label, walks[0])
        return
    names = list(walks[0])
    report(f"{label}, first visit after each of {starts} starts", {
        k: [w[k][0] for w in walks if w.get(k)] for k in names
    })  # fmt: skip
    for k in names:
        at = ", ".join(f"{w[k][0]['after_start']:.1f}" for w in walks if w.get(k))
        print(f"{label}: {k}: first visit {at} s after the start")
    report(
        f"{label}, later visits", {k: [v for w in walks for v in w.get(k, [])[1:]] for k in names}
    )


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f}"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--inquiries", type=int, default=100_000)
    p.add_argument("--pending", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--width", type=int, default=1440)
    p.add_argument("--postgresql", help="an admin database URL: PostgreSQL instead of SQLite")
    p.add_argument("--starts", type=int, default=1, help="bridge starts on the same store")
    p.add_argument("--no-warm", action="store_true", help="http.warm_pages off")
    p.add_argument("--settle", type=float, default=0.0, help="seconds before the browser")
    args = p.parse_args()
    configure_logging("warning")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(var, None)
    started = time.perf_counter()
    extra = (args.starts, not args.no_warm, args.settle)
    data = seed.rows(args.inquiries, args.pending)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs; {load()}")
    if not args.postgresql:
        folder = Path(tempfile.mkdtemp(prefix="govbridge-pages-"))
        url = f"sqlite:///{folder / 'pages.db'}"
        await (await open_store(url)).close()  # the schema
        seed.fill_sqlite(folder / "pages.db", data)
        print(f"filled SQLite in {time.perf_counter() - started:.0f} s")
        await run(url, f"SQLite, {args.inquiries} inquiries", args.rounds, args.width, *extra)
    else:
        import asyncpg

        name = f"gbpages_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(args.postgresql)
        await admin.execute(f"CREATE DATABASE {name}")
        pg = args.postgresql.rsplit("/", 1)[0] + f"/{name}"
        try:
            await (await open_store(pg)).close()
            await seed.fill_postgresql(pg, data)
            print(f"filled PostgreSQL in {time.perf_counter() - started:.0f} s")
            await run(
                pg, f"PostgreSQL, {args.inquiries} inquiries", args.rounds, args.width, *extra
            )
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {load()}")


if __name__ == "__main__":
    asyncio.run(main())
