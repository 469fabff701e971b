"""The ingest role against the Weibo simulator and the real RabbitMQ (issue 3, must-shows 2 and 5).

Each test serves ``tools/govbridge_tools/simulators/weibo.py`` on a free port, runs a Daemon with
role
``ingest`` (plus ``http`` or ``triage`` where the test needs them) and watches what reaches the
bus through its own exclusive queue bound to ``inquiry.received.#``. The simulator items are
split so that each one belongs to exactly one of the three timelines (a comment on an official
post → ``comments/to_me``; a citizen's post @-mentioning the account → ``statuses/mentions``; a
comment @-mentioning it under someone else's post → ``comments/mentions``), which lets a test
translate a stored cursor into the exact set of items it claims were handed on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from govbridge_tools.simulators.weibo import Limits, WeiboApiError, WeiboState, create_app
from govbridge_tools.testing import BusTap, ManualClock
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from bridge.daemon import Daemon
from schemas.config import GovbridgeConfig
from schemas.vocab import INQUIRY_DONE_STATES
from tests.conftest import AMQP_URL, bridge_config, eventually, running_bridge

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HANDLE = "北京交通"
ACCOUNT_KEY = f"weibo:{HANDLE}"
CURSOR_NAME = f"source:{ACCOUNT_KEY}"
ADMIN = {"Authorization": "Bearer test-admin-token"}
STREAMS = ("comments_to_me", "comments_mentions", "statuses_mentions")
DEPARTMENT = {
    "id": "transport",
    "name": "市交通委",
    "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}},
}


# --------------------------------------------------------------------------- the simulator


class CountingWeibo(WeiboState):
    """The simulator, counting the calls it served and the ones it refused for the token.

    ``expire_after`` expires the token once that many calls were served: a token that dies in
    the middle of a backlog, at a point the test chooses rather than by racing the poller.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.served = 0
        self.rejected = 0
        self.expire_after: int | None = None

    def authorise(self, token: str | None) -> int:
        if self.expire_after is not None and self.served >= self.expire_after:
            self.expire_after = None
            self.expire_token()
        try:
            return super().authorise(token)
        except WeiboApiError:
            self.rejected += 1
            raise

    def count_call(self, *, comment: bool = False) -> None:
        super().count_call(comment=comment)
        self.served += 1


class Backlog:
    """Citizens' items on the simulator, each remembered with the one timeline it is on."""

    def __init__(self, state: WeiboState) -> None:
        self.state = state
        self.stream_of: dict[str, str] = {}
        self._post: int | None = None

    def add(self, n: int, label: str = "") -> list[str]:
        ids: list[str] = []
        for _ in range(n):
            k = len(self.stream_of)
            citizen = f"市民{k % 37}"
            text = f"{label}第{k}号：小区门口的路灯坏了，晚上很黑，请尽快修理。"
            if k % 3 == 0:
                if self._post is None or k % 45 == 0:
                    self._post = self.state.add_official_post().id
                item = str(
                    self.state.add_citizen_comment(text, citizen=citizen, status_id=self._post).id
                )
                self.stream_of[item] = "comments_to_me"
            elif k % 3 == 1:
                item = str(self.state.add_mention_post(text, citizen=citizen).id)
                self.stream_of[item] = "statuses_mentions"
            else:
                item = str(self.state.add_comment_mention(text, citizen=citizen).id)
                self.stream_of[item] = "comments_mentions"
            ids.append(item)
        return ids

    @property
    def ids(self) -> set[str]:
        return set(self.stream_of)

    def covered(self, cursor: str | None) -> set[str]:
        return covered_by(cursor, self.stream_of)

    def newest(self) -> dict[str, int]:
        best: dict[str, int] = {}
        for item, stream in self.stream_of.items():
            best[stream] = max(best.get(stream, 0), int(item))
        return best


def covered_by(cursor: str | None, stream_of: dict[str, str]) -> set[str]:
    """The items a stored cursor claims were handed on: per timeline every id up to
    ``since`` and, while a backlog is being drained, those in ``(max, top]``."""
    if cursor is None:
        return set()
    streams = json.loads(cursor)["streams"]
    out: set[str] = set()
    for item, stream in stream_of.items():
        c = streams.get(stream, {})
        i = int(item)
        if i <= int(c.get("since", 0)) or ("top" in c and int(c["max"]) < i <= int(c["top"])):
            out.add(item)
    return out


def assert_cursor_at_newest(backlog: Backlog, cursor: str | None) -> None:
    """Drained: every timeline's ``since`` is its newest item and no round is half done."""
    assert cursor is not None
    streams = json.loads(cursor)["streams"]
    for stream, newest in backlog.newest().items():
        assert int(streams[stream]["since"]) == newest, (stream, streams[stream])
        assert "top" not in streams[stream]


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def weibo_account(url: str, state: WeiboState, **extra: Any) -> dict[str, Any]:
    """The account block as ``tools/govbridge_tools/demo/data.py`` writes it, on a short poll."""
    return {
        "adapter": "weibo",
        "handle": HANDLE,
        "department": "transport",
        "token": state.token,
        "base_url": url + "/2/",
        "poll": "200ms",
        **extra,
    }


def config(tmp_path: Path, url: str, state: WeiboState, **extra: Any) -> GovbridgeConfig:
    return bridge_config(
        tmp_path, departments=[DEPARTMENT], accounts=[weibo_account(url, state, **extra)]
    )


# --------------------------------------------------------------------------- the bus


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.metrics.registry.get_sample_value(name, labels) or 0.0


async def cursor_of(daemon: Daemon) -> str | None:
    assert daemon.ctx is not None
    return await daemon.ctx.store.get_cursor(CURSOR_NAME)


# --------------------------------------------------------------------------- backlog


async def test_backlog_drains_through_the_poller_with_no_gap_and_no_duplicate(
    tmp_path: Path,
) -> None:
    state = CountingWeibo(official_name=HANDLE, limits=Limits(calls=100_000))
    backlog = Backlog(state)
    backlog.add(600)
    async with serve(create_app(state)) as url:
        cfg = config(tmp_path, url, state, page_size=50)
        async with (
            BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap,
            running_bridge(cfg, ["ingest"]) as daemon,
        ):
            await eventually(lambda: _has(tap, backlog.ids), 60)
            await eventually(lambda: _cursor_settled(daemon, backlog), 20)
            cursor = await cursor_of(daemon)
    got = tap.values("external_id")
    assert [i for i, n in Counter(got).items() if n > 1] == [], "an item was published twice"
    assert set(got) == backlog.ids, "an item was lost (or invented)"
    assert_cursor_at_newest(backlog, cursor)
    # It really was paged: at least 600/50 timeline pages, each page of a drain below the last.
    pages = [p for m, p in state.requests if m == "GET" and p != "account/get_uid.json"]
    assert len(pages) >= len(backlog.ids) // 50
    print(f"backlog: {len(backlog.ids)} items, {len(got)} published, {len(pages)} pages")


async def _has(tap: BusTap, ids: Iterable[str]) -> bool:
    return set(ids) <= set(tap.values("external_id"))


async def _cursor_settled(daemon: Daemon, backlog: Backlog) -> bool:
    cursor = await cursor_of(daemon)
    return cursor is not None and backlog.covered(cursor) == backlog.ids and '"top"' not in cursor


# --------------------------------------------------------------------------- 10023


async def test_rate_limit_mid_backlog_pauses_until_the_window_resets_and_loses_nothing(
    tmp_path: Path,
) -> None:
    # 6 calls per 1-second window on a clock that only the test moves: the limit strikes in
    # the middle of the drain, and the window resets exactly when the test says so.
    clock = ManualClock(1_700_000_000.0)
    state = CountingWeibo(official_name=HANDLE, limits=Limits(calls=6, window=1.0), clock=clock)
    backlog = Backlog(state)
    backlog.add(240)
    pauses = 0
    async with serve(create_app(state)) as url:
        cfg = config(tmp_path, url, state, page_size=20)
        with capture_logs() as logs:
            async with (
                BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap,
                running_bridge(cfg, ["ingest"]) as daemon,
            ):

                def limited() -> float:
                    return metric(
                        daemon,
                        "govbridge_inquiries_total",
                        platform="weibo",
                        outcome="rate_limited",
                    )

                async def drained() -> bool:
                    return await _has(tap, backlog.ids) and await _cursor_settled(daemon, backlog)

                def limited_or_drained(seen: float) -> Callable[[], Awaitable[bool]]:
                    async def check() -> bool:
                        return limited() > seen or await drained()

                    return check

                def limited_again(seen: float) -> Callable[[], Awaitable[bool]]:
                    return lambda: _async(limited() >= seen + 2)

                while True:
                    seen = limited()
                    await eventually(limited_or_drained(seen), 30)
                    if limited() == seen:
                        break  # drained
                    pauses += 1
                    # Paused: the poller waits for the window; retried after it, it is refused
                    # again (the clock stands still) and nothing more is served meanwhile.
                    served = state.served
                    await eventually(limited_again(seen), 10)
                    assert state.served == served, "the poller fetched while rate limited"
                    # The stored cursor claims exactly what reached the bus, nothing beyond.
                    covered = backlog.covered(await cursor_of(daemon))
                    await eventually(partial(_has, tap, covered), 10)
                    assert covered == set(tap.values("external_id")), "the cursor skipped or lagged"
                    clock.t += state.seconds_to_reset()  # the window resets
                final_cursor = await cursor_of(daemon)
    assert pauses >= 2, "the rate limit never struck mid-backlog: nothing was tested"
    got = tap.values("external_id")
    assert [i for i, n in Counter(got).items() if n > 1] == []
    assert set(got) == backlog.ids
    assert_cursor_at_newest(backlog, final_cursor)
    waits = [e["wait_s"] for e in logs if e["event"] == "rate limited; waiting for the window"]
    assert waits and set(waits) == {1.0}, "the wait is not the window the platform announced"
    print(f"rate limit: {pauses} pauses mid-backlog, {len(got)} published of {len(backlog.ids)}")


async def _async(value: bool) -> bool:
    return value


# --------------------------------------------------------------------------- 21327


async def test_expired_token_pauses_with_alert_and_resumes_after_replacement(
    tmp_path: Path,
) -> None:
    state = CountingWeibo(official_name=HANDLE, limits=Limits(calls=100_000))
    backlog = Backlog(state)
    backlog.add(150)
    state.expire_after = 5  # get_uid + one round of three pages + one page of the next
    old_token = state.token
    async with serve(create_app(state)) as url:
        cfg = config(tmp_path, url, state, page_size=20)
        with capture_logs() as logs:
            async with (
                BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap,
                running_bridge(cfg, ["ingest", "http"]) as daemon,
                aiohttp.ClientSession() as http,
            ):
                base = f"http://127.0.0.1:{daemon.http_port}"
                await eventually(lambda: _async(bool(daemon.alerts.active)), 20)

                # Visible: a log line, a metric at 1, the alert in /readyz.
                alerts = [e for e in logs if e["event"].startswith("ALERT")]
                assert [(e["alert"], e["name"]) for e in alerts] == [("account_auth", ACCOUNT_KEY)]
                assert "21327" in alerts[0]["reason"]
                assert await alert_gauge(http, base) == 1.0
                async with http.get(f"{base}/readyz", headers=ADMIN) as resp:
                    ready = await resp.json()
                assert [(a["kind"], a["name"]) for a in ready["alerts"]] == [
                    ("account_auth", ACCOUNT_KEY)
                ]

                # Paused mid-backlog: nothing fetched while paused, even once a recheck ran.
                cursor = await cursor_of(daemon)
                covered = backlog.covered(cursor)
                assert 0 < len(covered) < len(backlog.ids)
                await eventually(lambda: _has(tap, covered), 10)
                served, rejected, published = state.served, state.rejected, len(tap.bodies())
                during = backlog.add(5, "暂停期间")
                await eventually(lambda: _async(state.rejected > rejected), 15)
                assert state.served == served, "the paused account was fetched"
                assert len(tap.bodies()) == published
                assert await cursor_of(daemon) == cursor
                assert daemon.alerts.active

                # The operator re-authorises at Weibo and gives the bridge the new token.
                new_token = state.replace_token()
                path = f"{base}/api/accounts/weibo/{quote(HANDLE)}/token"
                async with http.put(path, json={"token": new_token}) as resp:
                    assert resp.status == 401  # no bearer token
                async with http.put(path, json={"token": new_token}, headers=ADMIN) as resp:
                    assert resp.status == 200, await resp.text()

                await eventually(lambda: _has(tap, backlog.ids), 30)
                await eventually(lambda: _cursor_settled(daemon, backlog), 20)
                assert daemon.alerts.active == {}
                assert await alert_gauge(http, base) == 0.0
                async with http.get(f"{base}/readyz", headers=ADMIN) as resp:
                    assert (await resp.json())["alerts"] == []
                final_cursor = await cursor_of(daemon)
    got = tap.values("external_id")
    assert [i for i, n in Counter(got).items() if n > 1] == [], "resumed from scratch"
    assert set(got) == backlog.ids and set(during) <= set(got)
    assert_cursor_at_newest(backlog, final_cursor)
    assert any(e["event"] == "alert cleared" for e in logs)
    text = repr(logs)
    assert old_token not in text and new_token not in text, "a token reached the log"
    print(
        f"token: paused after {len(covered)}/{len(backlog.ids) - len(during)} items,"
        f" {len(during)} added while paused, {len(got)} published, {served} calls served"
    )


async def alert_gauge(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "govbridge_alert"
        and s.labels.get("kind") == "account_auth"
        and s.labels.get("name") == ACCOUNT_KEY
    ]
    assert values, "no govbridge_alert sample for the account"
    return max(values)


# --------------------------------------------------------------------------- echo


async def test_the_official_accounts_own_posts_and_comments_are_never_published(
    tmp_path: Path,
) -> None:
    state = CountingWeibo(official_name=HANDLE, limits=Limits(calls=100_000))
    backlog = Backlog(state)
    me = state.official_uid
    own: dict[str, str] = {}  # the official account's items -> the timeline that lists them
    for k in range(10):
        backlog.add(3)
        post = state.add_official_post(f"【通告】第{k}期")
        # Its replies on its own post and under a citizen's comment: comments/to_me lists both.
        c = state.add_comment(state.citizen("市民甲"), post.id, f"问题{k}")
        backlog.stream_of[str(c.id)] = "comments_to_me"
        own[str(state.add_comment(me, post.id, f"您好，已收到{k}").id)] = "comments_to_me"
        reply = state.add_comment(me, post.id, f"回复市民{k}", reply_cid=c.id)
        own[str(reply.id)] = "comments_to_me"
        # Its own post and comment @-mentioning itself: listed by the mention timelines.
        own[str(state.add_status(me, f"@{HANDLE} 提醒{k}").id)] = "statuses_mentions"
        other = state.add_status(state.citizen("路人乙"), f"路况{k}")
        mention = state.add_comment(me, other.id, f"@{HANDLE} 已转{k}")
        own[str(mention.id)] = "comments_mentions"
    control = backlog.add(3, "最后")
    async with serve(create_app(state)) as url:
        cfg = config(tmp_path, url, state, page_size=20)
        async with (
            BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap,
            running_bridge(cfg, ["ingest"]) as daemon,
        ):
            await eventually(lambda: _has(tap, backlog.ids), 30)

            async def own_items_read() -> bool:  # read and dropped, not merely not reached
                return covered_by(await cursor_of(daemon), own) == set(own)

            await eventually(own_items_read, 20)
    assert set(control) <= set(tap.values("external_id"))
    assert set(tap.values("external_id")) == backlog.ids
    assert set(own).isdisjoint(tap.values("external_id"))
    assert all(b["author"]["handle"] != HANDLE for b in tap.bodies())


# --------------------------------------------------------------------------- SIGKILL


def read_journal(path: Path) -> list[tuple[str, int, list[str]]]:
    out: list[tuple[str, int, list[str]]] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break
            kind, pid, ids = line.split()
            out.append((kind, int(pid), ids.split(",")))
    return out


def stored_cursor(db: Path) -> str | None:
    """The cursor as the dead (or live) ingest process left it in its SQLite store."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT cursor FROM cursors WHERE name = ?", (CURSOR_NAME,)).fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def write_toml(path: Path, cfg: GovbridgeConfig, account: dict[str, Any], store: Path) -> None:
    b = cfg.broker
    delays = ", ".join(f'"{int(d.total_seconds() * 1000)}ms"' for d in b.retry_delays)
    acc = "\n".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in account.items())
    path.write_text(
        f"""
[broker]
url = "{AMQP_URL}"
exchange = "{b.exchange}"
retry_delays = [{delays}]
delivery_limit = {b.delivery_limit}
prefetch = {b.prefetch}

[store]
url = "sqlite:///{store}"

[http]
listen = "127.0.0.1:0"

[[departments]]
id = "transport"
name = "市交通委"
ticketing = {{ adapter = "rest", base_url = "http://127.0.0.1:9", auth = {{ bearer = "t" }} }}

[[accounts]]
{acc}
""",
        encoding="utf-8",
    )


async def spawn_ingest(config: Path, journal: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "GOVBRIDGE_AMQP_URL": AMQP_URL}
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            PYTHON, str(ROOT / "tests" / "ingest_process.py"), str(config), str(journal),
            "0.3", "0.6",
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


async def kill_when(
    proc: asyncio.subprocess.Process,
    journal: Path,
    ready: Callable[[list[tuple[str, int, list[str]]]], bool],
) -> list[str]:
    """SIGKILL once ``ready(journal lines of this process)``; the ids of its last line."""
    try:
        await eventually(
            lambda: _async(ready(_own(journal, proc.pid)) or proc.returncode is not None), 40
        )
        assert proc.returncode is None, "the ingest process died on its own"
        last = _own(journal, proc.pid)[-1][2]
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
        return last
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _own(journal: Path, pid: int) -> list[tuple[str, int, list[str]]]:
    return [line for line in read_journal(journal) if line[1] == pid]


async def test_sigkill_between_fetch_and_confirm_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    state = CountingWeibo(official_name=HANDLE, limits=Limits(calls=100_000))
    backlog = Backlog(state)
    backlog.add(240)
    app = create_app(state)

    @web.middleware
    async def slow(request: web.Request, handler: Any) -> web.StreamResponse:
        if "/2/" in request.path and "account/" not in request.path:
            await asyncio.sleep(0.1)  # pages are in flight for a while
        return await handler(request)

    app.middlewares.append(slow)
    # triage routes by the receiving account, so it knows the account too (never contacted)
    triage_cfg = bridge_config(
        tmp_path,
        departments=[DEPARTMENT],
        accounts=[weibo_account("http://127.0.0.1:9", state)],
    )
    store = tmp_path / "ingest.db"
    journal, log, toml = tmp_path / "journal", tmp_path / "ingest.log", tmp_path / "ingest.toml"
    async with (
        serve(app) as url,
        running_bridge(triage_cfg, ["triage"]) as triage,
        BusTap(triage_cfg.broker, "inquiry.received.#", declare=True) as tap,
        BusTap(triage_cfg.broker, "inquiry.routed.#", declare=True) as routed,
    ):
        write_toml(toml, triage_cfg, weibo_account(url, state, page_size=20), store)

        # Run 1: killed after a page was confirmed, before its cursor was stored.
        proc = await spawn_ingest(toml, journal, log)
        confirmed = await kill_when(
            proc,
            journal,
            lambda own: sum(k == "confirmed" for k, _, _ in own) >= 2 and own[-1][0] == "confirmed",
        )
        covered = backlog.covered(stored_cursor(store))
        assert covered.isdisjoint(confirmed), "the kill came after the cursor was stored"
        await eventually(lambda: _has(tap, covered), 10)  # never past an unpublished item
        await eventually(partial(_has, tap, confirmed), 10)  # it was published
        late = backlog.add(6, "停机期间")  # arrives while no ingest process runs

        # Run 2: killed after a page was fetched, before it was confirmed.
        proc = await spawn_ingest(toml, journal, log)
        fetched = await kill_when(
            proc,
            journal,
            lambda own: any(k == "confirmed" for k, _, _ in own) and own[-1][0] == "fetched",
        )
        covered = backlog.covered(stored_cursor(store))
        assert covered.isdisjoint(fetched), "a fetched, unconfirmed page moved the cursor"
        await eventually(lambda: _has(tap, covered), 10)

        # Run 3: drains the rest and stops cleanly.
        proc = await spawn_ingest(toml, journal, log)
        try:
            await eventually(lambda: _has(tap, backlog.ids), 60)
            await eventually(
                lambda: _async(backlog.covered(stored_cursor(store)) == backlog.ids), 20
            )
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()[-2000:]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert_cursor_at_newest(backlog, stored_cursor(store))

        # Triage, on the same exchange all along, records each inquiry once.
        deliveries = len(tap.bodies())
        await eventually(
            lambda: _async(
                metric(triage, "govbridge_messages_acked_total", stage="triage") >= deliveries
            ),
            60,
        )
        assert triage.ctx is not None
        rows = await triage.ctx.store.list_inquiries()
        routed_ids = [b["inquiry"]["inquiry_id"] for b in routed.bodies()]

    got = Counter(tap.values("external_id"))
    assert set(got) == backlog.ids, "an item was lost"
    assert set(late) <= set(got)
    redelivered = {i for i, n in got.items() if n > 1}
    assert set(confirmed) <= redelivered  # published before the kill, re-read after it
    inquiry_of = {b["external_id"]: b["inquiry_id"] for b in tap.bodies()}
    assert len(set(inquiry_of.values())) == len(backlog.ids)  # deterministic ids per item
    assert all(b["inquiry_id"] == inquiry_of[b["external_id"]] for b in tap.bodies())
    assert Counter(r.inquiry_id for r in rows) == Counter(set(inquiry_of.values()))
    assert all(r.state in INQUIRY_DONE_STATES for r in rows)
    dupes = metric(triage, "govbridge_inquiries_total", platform="weibo", outcome="duplicate")
    assert dupes == sum(got.values()) - len(got)  # every re-delivery recognised as one
    assert [i for i, n in Counter(routed_ids).items() if n > 1] == [], "routed twice"
    assert set(routed_ids) == {r.inquiry_id for r in rows if r.state != "ignored"}
    print(
        f"kill: {len(backlog.ids)} items, {sum(got.values())} deliveries,"
        f" {len(redelivered)} re-delivered, triage rows {len(rows)}, duplicates seen {dupes:g},"
        f" routed {len(routed_ids)}; killed after confirm of {len(confirmed)},"
        f" after fetch of {len(fetched)}"
    )
