"""Account inspection, 巡检 (issue 22, must-show 5): ``govbridge inspect`` flags a simulated
Weibo account silent for 15 days (its own timeline read from the simulator, strict and quirks)
and a 12345 webhook account with unanswered inquiries, and not a busy Mastodon account
(mastodon-mock, strict and quirks) whose answers wait for an approver; an account that never
did anything is flagged as empty. The Weibo and Mastodon adapters read the own timeline."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from govbridge_tools.simulators.mastodon import MastodonSimState

from adapters.base import ReadsOwnTimeline
from adapters.mastodon import MastodonConfig, MastodonSource
from bridge.cli.inspect import run_inspect
from bridge.inspect.inspection import OwnTimeline, inspect_accounts
from bridge.inspect.role import InspectRole
from bridge.store import NewInquiry, SqlStore, open_store
from tests.conftest import AMQP_URL, bridge_config, config_toml, eventually, running_bridge
from tests.contract.harness_weibo import WeiboHarness


@dataclass
class World:
    weibo: WeiboHarness
    mastodon: MastodonSimState
    cfg: Any
    path: Path


@pytest.fixture(params=["strict", "quirks"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    quirks = request.param == "quirks"
    weibo = WeiboHarness(quirks=quirks)
    async with weibo.running(), MastodonSimState(quirks=quirks) as mastodon:
        now = weibo.state.now()
        weibo.state.add_official_post("【通告】十一月地铁运营调整", at=now - 15 * 86400)
        older = weibo.state.add_official_post("【通告】十月公交线路调整", at=now - 40 * 86400)
        if quirks:  # an unreadable post in the timeline is passed over, not taken for news
            weibo.state.poison[older.id] = "missing"
            weibo.state.add_official_post("【通告】坏掉的时间", at=now - 1 * 86400)
            weibo.state.poison[max(weibo.state.statuses)] = "missing"
        await mastodon.announce("本周水务公告：欢迎留言咨询。")
        cfg = bridge_config(
            tmp_path,
            departments=[
                {
                    "id": "urban",
                    "name": "市城管委",
                    "ticketing": {
                        "adapter": "rest",
                        "base_url": "http://127.0.0.1:9",
                        "auth": {"bearer": "t"},
                    },
                }
            ],
            accounts=[
                {
                    "adapter": "weibo",
                    "handle": weibo.state.official_name,
                    "department": "urban",
                    "token": weibo.state.token,
                    "base_url": weibo.base_url,
                },
                mastodon.account_config("urban")
                | {"token": mastodon.official_token.get_secret_value()},
                {
                    "adapter": "webhook",
                    "handle": "hotline",
                    "department": "urban",
                    "platform": "hotline12345",
                    "secret": "s" * 16,
                    "reply_url": "http://127.0.0.1:9/replies",
                },
                {
                    "adapter": "webhook",
                    "handle": "empty",
                    "department": "urban",
                    "platform": "hotline12345",
                    "secret": "s" * 16,
                    "reply_url": "http://127.0.0.1:9/replies",
                },
            ],
        )
        path = tmp_path / "govbridge.toml"
        path.write_text(config_toml(cfg))
        yield World(weibo, mastodon, cfg, path)


async def seed(store: SqlStore, weibo: str, mastodon: str, now: datetime) -> None:
    """weibo (silent): one inquiry 20 days ago, answered in 1 min. mastodon (busy): six in
    the last two days, three answered (2, 4 and 6 min), two whose replies await approval,
    one approved and waiting for a posting slot. hotline: one answered 2 days ago (10 min),
    two never answered (30 and 26 hours old), one 20 hours old (not yet a day without an
    answer); one noise item. empty: nothing."""
    rows: list[tuple[str, str, str, timedelta, str | None, float | None]] = [
        ("w1", "weibo", weibo, timedelta(days=20), "posted", 1),
        ("m1", "mastodon", mastodon, timedelta(days=2), "posted", 2),
        ("m2", "mastodon", mastodon, timedelta(days=1), "posted", 4),
        ("m3", "mastodon", mastodon, timedelta(hours=20), "posted", 6),
        ("m4", "mastodon", mastodon, timedelta(hours=10), "awaiting_approval", None),
        ("m5", "mastodon", mastodon, timedelta(hours=5), "awaiting_approval", None),
        ("m6", "mastodon", mastodon, timedelta(hours=1), "approved", None),
        ("h1", "hotline12345", "hotline", timedelta(days=2), "posted", 10),
        ("h2", "hotline12345", "hotline", timedelta(hours=30), None, None),
        ("h3", "hotline12345", "hotline", timedelta(hours=26), None, None),
        ("h4", "hotline12345", "hotline", timedelta(hours=20), None, None),
    ]
    for iid, platform, account, age, reply, minutes in rows:
        received = now - age
        await store.record_inquiry(
            NewInquiry(
                inquiry_id=iid,
                platform=platform,
                account=account,
                kind="comment",
                thread_key=iid,
                state="ticketed",
                department="urban",
                category="complaint",
            )
        )
        await store.db.execute(
            "UPDATE inquiries SET created_at = ? WHERE inquiry_id = ?", (received.isoformat(), iid)
        )
        if reply is None:
            continue
        await store.add_reply(
            reply_id=f"r-{iid}",
            inquiry_id=iid,
            platform=platform,
            account=account,
            department="urban",
            status="received",
            templated=True,
            state="approved" if reply == "posted" else reply,
            request_json="{}",
        )
        if reply == "posted":
            assert minutes is not None
            await store.mark_reply(f"r-{iid}", "posted", external_ids=["x"])
            posted = received + timedelta(minutes=minutes)
            await store.db.execute(
                "UPDATE replies SET posted_at = ? WHERE reply_id = ?",
                (posted.isoformat(), f"r-{iid}"),
            )
    await store.record_inquiry(
        NewInquiry(
            inquiry_id="spam",
            platform="hotline12345",
            account="hotline",
            kind="comment",
            thread_key="spam",
            state="ignored",
            reason="spam",
        )
    )


def args(path: Path, fmt: str, **kw: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "config": str(path),
        "since": None,
        "dormant_days": None,
        "offline": False,
        "format": fmt,
        "json": False,
        "output": None,
    }
    return argparse.Namespace(**{**values, **kw})


async def test_inspect_flags_the_silent_and_the_unanswering_not_the_busy(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    store = await open_store(world.cfg.store.url)
    weibo_handle = world.weibo.state.official_name
    await seed(store, weibo_handle, world.mastodon.official, now)
    await store.close()

    assert await run_inspect(args(world.path, "json")) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["account"]: r for r in doc["accounts"]}
    weibo = rows[f"weibo:{weibo_handle}"]
    mastodon = rows[f"mastodon:{world.mastodon.official}"]
    hotline, empty = rows["webhook:hotline"], rows["webhook:empty"]

    # weibo: its newest readable post is 15 days old (the simulator's user_timeline)
    assert weibo["last_post_source"] == "timeline" and weibo["timeline_error"] is None
    assert 14.99 <= weibo["days_since_post"] <= 15.01
    assert weibo["flags"] == ["dormant"]
    assert (weibo["received"], weibo["answered"], weibo["unanswered"]) == (1, 1, 0)
    assert weibo["median_first_response_s"] == 60.0

    # mastodon: posted today (accounts/:id/statuses); busy, with a backlog of three
    assert mastodon["last_post_source"] == "timeline" and mastodon["days_since_post"] < 0.1
    assert mastodon["flags"] == []
    assert (mastodon["received"], mastodon["answered"], mastodon["unanswered"]) == (6, 3, 0)
    assert (mastodon["awaiting_approval"], mastodon["waiting_to_post"], mastodon["backlog"]) == (
        2,
        1,
        3,
    )
    assert mastodon["answer_rate"] == 0.5 and mastodon["median_first_response_s"] == 240.0

    # hotline (webhook: judged by the last reply the bridge posted, 2 days ago): two inquiries
    # without interaction for over a day; the 20-hour-old one not yet; noise not counted
    assert hotline["last_post_source"] == "replies" and 1.99 <= hotline["days_since_post"] <= 2.01
    assert hotline["flags"] == ["zombie"]
    assert (hotline["received"], hotline["answered"], hotline["unanswered"]) == (4, 1, 2)
    assert hotline["answer_rate"] == 0.25 and hotline["median_first_response_s"] == 600.0

    assert empty["flags"] == ["zero_activity"] and empty["days_since_post"] is None
    assert doc["dormant_after_days"] == 14

    assert await run_inspect(args(world.path, "table")) == 0
    table = capsys.readouterr().out
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert lines[f"weibo:{weibo_handle}"].rstrip().endswith("睡眠 dormant")
    assert lines["webhook:hotline"].rstrip().endswith("僵尸 zombie")
    assert lines["webhook:empty"].rstrip().endswith("零活动 zero")
    assert lines[f"mastodon:{world.mastodon.official}"].rstrip().endswith("ok")
    assert (
        f"mastodon:{world.mastodon.official}: backlog 3 (2 awaiting approval, 1 waiting to be"
        " posted), not counted as unanswered" in table
    )
    # citizens' handles and text are not in an inspection
    assert "spam" not in table and "h2" not in table

    # --offline: the platforms are not asked; weibo is judged by its last reply (20 days ago)
    assert await run_inspect(args(world.path, "json", offline=True)) == 0
    offline = {r["account"]: r for r in json.loads(capsys.readouterr().out)["accounts"]}
    assert offline[f"weibo:{weibo_handle}"]["last_post_source"] == "replies"
    assert offline[f"weibo:{weibo_handle}"]["flags"] == ["dormant"]
    assert offline[f"mastodon:{world.mastodon.official}"]["flags"] == []


async def test_the_console_inspection_page_and_its_api(world: World) -> None:
    """``GET /api/inspection``: the same inspection, the daemon's own sources reading the
    simulators' timelines; the console has a page for it."""
    store = await open_store(world.cfg.store.url)
    await seed(store, world.weibo.state.official_name, world.mastodon.official, datetime.now(UTC))
    await store.close()
    async with running_bridge(world.cfg, ["http"]) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with http.get(base + "/api/inspection") as resp:
            assert resp.status == 401
        auth = {"Authorization": "Bearer test-admin-token"}
        async with http.get(base + "/api/inspection", headers=auth) as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.get(base + "/api/inspection?since=400d", headers=auth) as resp:
            assert resp.status == 400
        async with http.get(base + "/") as resp:
            page = await resp.text()
        async with http.get(base + "/console.js") as resp:
            script = await resp.text()
    flags = {a["account"]: a["flags"] for a in body["accounts"]}
    assert flags == {
        f"weibo:{world.weibo.state.official_name}": ["dormant"],
        f"mastodon:{world.mastodon.official}": [],
        "webhook:hotline": ["zombie"],
        "webhook:empty": ["zero_activity"],
    }
    busy = next(a for a in body["accounts"] if a["account"].startswith("mastodon:"))
    assert (busy["backlog"], busy["last_post_source"]) == (3, "timeline")
    assert 'href="#inspection"' in page and "/api/inspection" in script


async def test_the_adapters_read_their_own_timeline(world: World) -> None:
    weibo = world.weibo.adapter()
    source = MastodonSource(MastodonConfig.model_validate(world.mastodon.account_config("urban")))
    try:
        assert isinstance(weibo, ReadsOwnTimeline) and isinstance(source, ReadsOwnTimeline)
        seen = await weibo.last_own_post()
        expected = datetime.fromtimestamp(world.weibo.state.now() - 15 * 86400, UTC)
        assert seen is not None and abs((seen - expected).total_seconds()) < 2
        assert ("GET", "statuses/user_timeline.json") in world.weibo.state.requests
        posted = await source.last_own_post()
        assert posted is not None and abs((datetime.now(UTC) - posted).total_seconds()) < 120
        # the official account's reply to a citizen is not an update of its own
        citizen = await world.mastodon.create_citizen()
        asked = await world.mastodon.mention(citizen, "请问停水到几点？")
        before = posted
        await world.mastodon._api(
            "POST",
            "/api/v1/statuses",
            world.mastodon.official_token,
            data={"status": f"@{citizen.username} 今晚八点恢复", "in_reply_to_id": asked["id"]},
        )
        assert await source.last_own_post() == before
    finally:
        await weibo.close()
        await source.close()


async def test_a_refused_timeline_is_unknown_not_dormant(tmp_path: Path) -> None:
    """Fourteen days is the line; a platform that cannot be asked leaves the post time
    unknown and flags nothing on it."""
    now = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
    hook = {
        "adapter": "webhook",
        "department": "urban",
        "platform": "hotline12345",
        "secret": "s" * 16,
        "reply_url": "http://127.0.0.1:9/replies",
    }
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "urban",
                "name": "市城管委",
                "ticketing": {
                    "adapter": "rest",
                    "base_url": "http://127.0.0.1:9",
                    "auth": {"bearer": "t"},
                },
            }
        ],
        accounts=[{**hook, "handle": h} for h in ("thirteen", "fourteen", "refused")],
    )
    store = await open_store(cfg.store.url)
    try:
        rows = await inspect_accounts(
            store,
            cfg,
            {
                "webhook:thirteen": OwnTimeline(now - timedelta(days=13, hours=23), "timeline"),
                "webhook:fourteen": OwnTimeline(now - timedelta(days=14), "timeline"),
                "webhook:refused": OwnTimeline(None, "unknown", "AuthError: token revoked"),
            },
            now,
        )
    finally:
        await store.close()
    flags = {r.account: r.flags for r in rows}
    assert flags == {
        "webhook:thirteen": [],
        "webhook:fourteen": ["dormant"],
        "webhook:refused": [],
    }
    refused = next(r for r in rows if r.account == "webhook:refused")
    assert refused.timeline_error == "AuthError: token revoked" and refused.last_post is None


async def test_the_inspect_role_alerts_and_publishes_each_crossing_once(world: World) -> None:
    """The ``inspect`` role: an alert per line crossed (``/readyz``), ``account.flagged.<dept>``
    once per crossing however often it runs, nothing for the busy account; an account back
    under the line clears its alert."""
    now = datetime.now(UTC)
    async with running_bridge(world.cfg, ["inspect"]) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await seed(store, world.weibo.state.official_name, world.mastodon.official, now)
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            ch = await conn.channel()
            ex = await ch.get_exchange(world.cfg.broker.exchange)
            watch = await ch.declare_queue(exclusive=True)
            await watch.bind(ex, "account.flagged.#")
            role = daemon.ctx.roles["inspect"]
            assert isinstance(role, InspectRole)
            first = await role.scan()
            second = await role.scan()  # nothing is announced twice
            alerts = dict(daemon.alerts.active)
            # the hotline answers its two inquiries: no longer a zombie, its alert clears
            for iid in ("h2", "h3"):
                await store.add_reply(
                    reply_id=f"r-{iid}",
                    inquiry_id=iid,
                    platform="hotline12345",
                    account="hotline",
                    department="urban",
                    status="received",
                    templated=True,
                    state="approved",
                    request_json="{}",
                )
                await store.mark_reply(f"r-{iid}", "posted", external_ids=["y"])
            third = await role.scan()
            cleared = dict(daemon.alerts.active)
            got: list[tuple[str, dict[str, Any]]] = []

            async def three() -> bool:
                while (msg := await watch.get(fail=False, no_ack=True)) is not None:
                    got.append((msg.routing_key or "", json.loads(msg.body)))
                return len(got) >= 3

            await eventually(three, 10)
    weibo = f"weibo:{world.weibo.state.official_name}"
    assert sorted((e.account, e.flag) for e in first) == [
        ("webhook:empty", "zero_activity"),
        ("webhook:hotline", "zombie"),
        (weibo, "dormant"),
    ]
    assert second == [] and third == []
    assert sorted((key, body["account"], body["flag"]) for key, body in got) == [
        ("account.flagged.urban", "webhook:empty", "zero_activity"),
        ("account.flagged.urban", "webhook:hotline", "zombie"),
        ("account.flagged.urban", weibo, "dormant"),
    ]
    zombie = next(body for _, body in got if body["flag"] == "zombie")
    assert (zombie["unanswered"], zombie["received"], zombie["backlog"]) == (2, 4, 0)
    assert "spam" not in json.dumps(got) and "h2" not in json.dumps(got)
    assert alerts[("account_flagged", "webhook:hotline")].startswith("2 inquiries without")
    assert alerts[("account_flagged", weibo)] == "no own post for 15 days"
    assert ("account_flagged", f"mastodon:{world.mastodon.official}") not in alerts
    assert ("account_flagged", "webhook:hotline") not in cleared
    assert ("account_flagged", weibo) in cleared
