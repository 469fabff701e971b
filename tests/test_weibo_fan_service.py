"""Weibo fan-service push, a mode of the Weibo source (issue 25, must-show 1), against the real
RabbitMQ and the Weibo simulator, counted from the simulator's own records (``push_log``: every
delivery with its status and seconds to the answer; ``dm_replies``: every fan-service reply).

- the URL verification echoes ``echostr`` only when the signature is right;
- a push with a bad signature is refused (403) and publishes nothing;
- a retry storm (quirks: each message delivered three times, two at once and one late), every
  other body XML: each message is one inquiry on the bus and is answered once through
  ``messages/reply/biz.json``; the same account's comments are still polled and answered;
- while the broker is slow (every chunk to and from RabbitMQ held 4 s by a proxy) a push is
  still answered 200 within 5 s, and the message is published once the broker confirms;
- kept, not lost: a push answered while the broker is unreachable is in the store before the
  200; the process is then SIGKILLed and another started: it publishes the push, once, and a
  late duplicate is still dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import tomli_w
from govbridge_tools.simulators import open311 as open311_sim
from govbridge_tools.testing import BusTap, Simulators
from govbridge_tools.testing.ports import free_port_range
from govbridge_tools.testing.sims import Running

from adapters import fanservice
from adapters.base import PermanentError
from adapters.weibo import WeiboSource
from bridge.store import SqlStore, open_store
from bridge.store.pushes import KeptPush
from schemas.config import GovbridgeConfig
from schemas.messages import ReplyRequest
from schemas.states import PostOutcome
from schemas.vocab import InquiryKind, Visibility
from tests.conftest import AMQP_URL, bridge_config, delete_topology, eventually, running_bridge
from tests.tcp_proxy import TcpProxy

HANDLE = "jtw_weibo"
APPSECRET = "fan-service-appsecret-for-tests"


def weibo_account(weibo: Running[Any], **fan: Any) -> dict[str, Any]:
    return {
        "adapter": "weibo",
        "handle": HANDLE,
        "department": "transport",
        "token": weibo.state.token,
        "base_url": weibo.url + "/2/",
        "poll": "300ms",
        "reply_limit": {"max_calls": 100_000, "period": "1s"},
        "fan_service": {
            "appsecret": APPSECRET,
            "uid": str(weibo.state.official_uid),
            **fan,
        },
    }


def config(tmp_path: Path, weibo: Running[Any], open311_url: str, **broker: Any) -> GovbridgeConfig:
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                "ticketing": {**open311_sim.demo_ticketing_config(open311_url), "poll": "300ms"},
            }
        ],
        accounts=[weibo_account(weibo)],
        broker=broker,
    )


# --------------------------------------------------------------------------- adapter


def source(**fan: Any) -> WeiboSource:
    cfg = {
        "adapter": "weibo",
        "handle": HANDLE,
        "department": "transport",
        "token": "t",
        "fan_service": {"appsecret": APPSECRET, "uid": "1900000001", **fan},
    }
    return WeiboSource(WeiboSource.Config.model_validate(cfg))


def test_signature_is_sha1_of_the_sorted_three_strings() -> None:
    expected = hashlib.sha1("".join(sorted([APPSECRET, "1700000000", "n0nce"])).encode())
    sig = fanservice.signature(APPSECRET, "1700000000", "n0nce")
    assert sig == expected.hexdigest()
    src = source()
    good = {"signature": sig, "timestamp": "1700000000", "nonce": "n0nce"}
    assert src.push_signature_ok(good)
    assert not src.push_signature_ok(good | {"nonce": "other"})
    assert not src.push_signature_ok({"timestamp": "1700000000", "nonce": "n0nce"})


def test_json_and_xml_bodies_are_one_private_inquiry_each() -> None:
    src = source()
    json_body = (
        b'{"type":"text","receiver_id":1900000001,"sender_id":5000000000000123,'
        b'"created_at":"Mon Dec 07 10:00:00 +0800 2026","text":"\xe5\x85\xac\xe4\xba\xa4",'
        b'"id":4900000000000001}'
    )
    xml_body = (
        "<xml><ToUserName>1900000001</ToUserName><FromUserName>5000000000000123</FromUserName>"
        "<CreateTime>1796608800</CreateTime><MsgType>text</MsgType>"
        "<Content><![CDATA[公交]]></Content><MsgId>4900000000000001</MsgId></xml>"
    ).encode()
    [a] = src.parse_push(json_body)
    [b] = src.parse_push(xml_body)
    for inq in (a, b):
        assert inq.kind is InquiryKind.DIRECT_MESSAGE
        assert inq.visibility is Visibility.PRIVATE
        assert inq.author.id == "5000000000000123"
        assert inq.text == "公交"
        assert inq.thread.reply_to["receiver_id"] == "5000000000000123"
    # the same message (sender, time, id) in either format is the same inquiry
    assert a.created_at == b.created_at and a.inquiry_id == b.inquiry_id


def test_xml_with_a_doctype_and_other_receivers_are_refused() -> None:
    src = source()
    with pytest.raises(PermanentError, match="DOCTYPE"):
        src.parse_push(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Content>&a;</Content></xml>')
    with pytest.raises(PermanentError, match="receiver_id"):
        src.parse_push(
            b'{"type":"text","receiver_id":7,"sender_id":5,"created_at":1796608800,"text":"x"}'
        )


# --------------------------------------------------------------------------- must-show 1


@pytest.fixture
async def quirky(quirky_sims: Simulators) -> AsyncIterator[tuple[Running[Any], str]]:
    weibo = await quirky_sims.weibo(quirks=True, appsecret=APPSECRET, late_after=1.5)
    open311 = await quirky_sims.open311()
    yield weibo, open311.base_url


async def test_must_show_1_verification_signatures_retry_storm_xml(
    tmp_path: Path, quirky: tuple[Running[Any], str]
) -> None:
    weibo, open311_url = quirky
    state = weibo.state
    cfg = config(tmp_path, weibo, open311_url)
    async with (
        BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap,
        running_bridge(cfg) as daemon,
    ):
        state.hook_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/{HANDLE}"

        # URL verification: echostr as-is with the right signature, 403 otherwise
        status, text = await state.verify_hook()
        assert status == 200 and len(text) == 12
        assert (await state.verify_hook(bad_signature=True))[0] == 403

        # a bad signature: refused, nothing published (all later counts include it)
        citizens = [state.citizen(f"市民{i}") for i in range(6)]
        assert await state.push_message(
            citizens[0], "伪造的私信", bad_signature=True, copies=1
        ) == [403]

        # polling kept on the same account: a citizen's comment on an official post
        post = state.add_official_post("地铁4号线今日起调整首班车时间")
        state.add_citizen_comment("请问周末首班车几点？", citizen="地铁通勤族", status_id=post.id)

        # the retry storm: six messages, each delivered three times (two at once, one late),
        # every other one XML
        results = await asyncio.gather(
            *(
                state.push_message(uid, f"公交卡充值后余额不显示，第{i}次咨询，怎么办")
                for i, uid in enumerate(citizens)
            )
        )
        assert all(r == [200, 200, 200] for r in results), results
        assert Counter(d["format"] for d in state.push_log if d["status"] == 200) == {
            "json": 9,
            "xml": 9,
        }
        slowest = max(d["seconds"] for d in state.push_log)
        print(
            f"\nfan-service push: {len(state.push_log)} deliveries, slowest answer {slowest:.3f} s"
        )
        assert slowest < 5

        dms = "inquiry.received.weibo"
        await tap.wait_for(7, dms, timeout=30)
        await eventually(lambda: _true(len(state.dm_replies) >= 6), 60)
        await eventually(lambda: _true(len(state.posted_replies()) >= 1), 60)
        await asyncio.sleep(2)  # anything extra would show up now

        bodies = tap.bodies(dms)
        direct = [b for b in bodies if b["kind"] == "direct_message"]
        # each message exactly one inquiry, published once (the 12 extra deliveries dropped)
        assert Counter(b["inquiry_id"] for b in direct).most_common(1)[0][1] == 1
        assert sorted(b["author"]["id"] for b in direct) == sorted(str(c) for c in citizens)
        assert "伪造的私信" not in [b["text"] for b in bodies]
        assert [b["kind"] for b in bodies].count("comment") == 1
        # each answered once, through the fan-service reply API, to its own citizen
        assert sorted(r["receiver_id"] for r in state.dm_replies) == sorted(
            str(c) for c in citizens
        )
        assert len(state.posted_replies()) == 1


async def test_must_show_1_push_answered_in_time_while_the_broker_is_slow(
    tmp_path: Path, sims: Simulators
) -> None:
    weibo = await sims.weibo(appsecret=APPSECRET)
    open311 = await sims.open311()
    state = weibo.state
    host, port = AMQP_URL.rsplit("@", 1)[1].split("/")[0].split(":")
    async with TcpProxy(host, int(port)) as proxy:
        cfg = config(tmp_path, weibo, open311.base_url, url=proxy.url(), confirm_timeout="60s")
        async with (
            BusTap(cfg.broker, "inquiry.received.#", declare=True, url=AMQP_URL) as tap,
            running_bridge(cfg, ["ingest", "triage", "ticketing", "reply", "http"]) as daemon,
        ):
            state.hook_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/{HANDLE}"
            citizen = state.citizen("夜班司机")
            proxy.latency = 4.0  # each chunk to and from RabbitMQ: a confirm takes >= 8 s
            statuses = await state.push_message(citizen, "末班车提前发车，能否恢复原时刻？")
            [delivery] = state.push_log
            print(
                f"\npush while the broker is slow: answered {delivery['status']} "
                f"in {delivery['seconds']:.3f} s"
            )
            assert statuses == [200]  # answered once: Weibo had no reason to retry
            assert delivery["seconds"] < 5
            assert tap.bodies("inquiry.received.weibo") == []  # not yet confirmed
            proxy.latency = 0.0
            # kept, not lost: published once the broker confirms
            await tap.wait_for(1, "inquiry.received.weibo", timeout=60)
            [inq] = tap.bodies("inquiry.received.weibo")
            assert inq["author"]["id"] == str(citizen)


def write_config(path: Path, cfg: GovbridgeConfig, weibo: Running[Any], port: int) -> None:
    """``cfg`` as a config file for a ``govbridge run`` process (HTTP on ``port``)."""
    b = cfg.broker
    doc = {
        "broker": {
            "exchange": b.exchange,
            "retry_delays": [f"{int(d.total_seconds() * 1000)}ms" for d in b.retry_delays],
            "delivery_limit": b.delivery_limit,
            "confirm_timeout": f"{int(b.confirm_timeout.total_seconds())}s",
        },
        "store": {"url": cfg.store.url},
        "http": {"listen": f"127.0.0.1:{port}", "admin_token": "test-admin-token"},
        "departments": [
            {
                "id": "transport",
                "name": "市交通委",
                "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9",
                              "auth": {"bearer": "t"}},
            }
        ],
        "accounts": [weibo_account(weibo)],
    }  # fmt: skip
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")


async def test_must_show_1_a_kept_push_survives_an_absent_broker_and_a_sigkill(
    tmp_path: Path, sims: Simulators
) -> None:
    weibo = await sims.weibo(appsecret=APPSECRET)
    state = weibo.state
    host, port = AMQP_URL.rsplit("@", 1)[1].split("/")[0].split(":")
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "ticketing": {
                    "adapter": "rest",
                    "base_url": "http://127.0.0.1:9",
                    "auth": {"bearer": "t"},
                },
            }
        ],
        accounts=[weibo_account(weibo)],
    )
    http_port = free_port_range()
    toml, log = tmp_path / "bridge.toml", tmp_path / "bridge.log"
    write_config(toml, cfg, weibo, http_port)
    citizen = state.citizen("夜班司机")
    async with (
        TcpProxy(host, int(port)) as proxy,
        BusTap(cfg.broker, "inquiry.received.#", declare=True, url=AMQP_URL) as tap,
    ):
        env = {**os.environ, "GOVBRIDGE_AMQP_URL": proxy.url()}
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(toml),
                "--roles", "ingest,http",
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        try:
            await eventually(lambda: _ready(http_port, proc), 60)
            assert proc.returncode is None, log.read_text()[-2000:]
            proxy.refuse(True)  # the broker is gone for the bridge process
            proxy.cut()
            state.hook_url = f"http://127.0.0.1:{http_port}/hooks/sources/{HANDLE}"
            statuses = await state.push_message(citizen, "末班车提前发车，能否恢复原时刻？")
            [delivery] = state.push_log
            print(
                f"\npush, broker unreachable: {delivery['status']} in {delivery['seconds']:.3f} s"
            )
            # answered once (Weibo retries what is not answered 200 within 5 s), and kept
            assert statuses == [200]
            store = await open_store(cfg.store.url, migrate=False)
            try:
                assert await store.unpublished_pushes() == 1
            finally:
                await store.close()
            proc.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert tap.bodies("inquiry.received.weibo") == []  # never published
        proxy.refuse(False)

        # another process starts: once the dead one's claim lapses, it publishes the push
        async with running_bridge(cfg, ["ingest", "http"]) as daemon:
            await tap.wait_for(1, "inquiry.received.weibo", timeout=90)
            state.hook_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/{HANDLE}"
            assert await state.redeliver_last() == 200  # a late duplicate: dropped
            await asyncio.sleep(1)  # anything extra would show up now
            [inq] = tap.bodies("inquiry.received.weibo")
            assert inq["author"]["id"] == str(citizen) and inq["kind"] == "direct_message"
            assert await daemon.ctx.store.unpublished_pushes() == 0
        await delete_topology(cfg.broker)


async def _ready(port: int, proc: asyncio.subprocess.Process) -> bool:
    if proc.returncode is not None:
        return True
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_kept_pushes_are_claimed_once_and_handed_over(store: SqlStore) -> None:
    """The store's side, on SQLite and PostgreSQL: a push is kept once (a duplicate changes
    nothing), its owner's live claim keeps others off, a lapsed or given-up claim lets another
    process take it, and a published one is nobody's to publish."""
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    push = KeptPush("k1", "fan-service push", "[]", now.isoformat())
    until = now + timedelta(seconds=15)
    assert await store.keep_push(push, owner="a", until=until)
    assert not await store.keep_push(push, owner="b", until=until)  # a retry: dropped
    assert await store.unpublished_pushes() == 1
    assert await store.claim_unpublished_pushes(owner="b", now=now, until=until) == []
    later = now + timedelta(seconds=20)  # a's claim lapsed (a died)
    [taken] = await store.claim_unpublished_pushes(
        owner="b", now=later, until=later + (until - now)
    )
    assert taken.push_key == "k1"
    assert await store.release_push_claims("b", "k1") == 1  # b's broker refused: given up
    [again] = await store.claim_unpublished_pushes(
        owner="c", now=later, until=later + (until - now)
    )
    assert again == taken
    await store.push_published("k1", now=later)
    assert await store.is_push_published("k1") is True
    assert await store.unpublished_pushes() == 0
    assert (
        await store.claim_unpublished_pushes(
            owner="d", now=later + timedelta(hours=1), until=later + timedelta(hours=2)
        )
        == []
    )
    assert await store.forget_published_pushes(before=later + timedelta(days=4)) == 1
    assert await store.is_push_published("k1") is None


async def _true(value: bool) -> bool:
    return value


def dm_reply(inquiry: Any, text: str = "您好，您的诉求已收到。") -> ReplyRequest:
    return ReplyRequest(
        reply_id=f"rep_{inquiry.inquiry_id}",
        inquiry_id=inquiry.inquiry_id,
        platform="weibo",
        account=HANDLE,
        department="transport",
        thread=inquiry.thread,
        citizen_handle=inquiry.author.handle,
        visibility=Visibility.PRIVATE,
        text=text,
    )


async def test_replies_go_through_the_fan_service_api_within_the_window(sims: Simulators) -> None:
    weibo = await sims.weibo(appsecret=APPSECRET)
    state = weibo.state
    cfg = {
        "adapter": "weibo",
        "handle": HANDLE,
        "department": "transport",
        "token": state.token,
        "base_url": weibo.url + "/2/",
        "fan_service": {"appsecret": APPSECRET, "uid": str(state.official_uid)},
    }
    src = WeiboSource(WeiboSource.Config.model_validate(cfg))
    try:
        citizen = state.citizen("夜班司机")
        state._dm_last[str(citizen)] = state.now()
        [fresh] = src.parse_push(state.fan_message(citizen, "末班车几点？"))
        posted = await src.post_reply(dm_reply(fresh))
        assert posted.outcome is PostOutcome.POSTED
        assert state.dm_replies == [
            {
                "id": posted.external_ids[0],
                "receiver_id": str(citizen),
                "text": "您好，您的诉求已收到。",
            }
        ]
        # a message older than reply_window (48 h): not sent at all, recorded undeliverable
        state.advance_time(-49 * 3600)
        [old] = src.parse_push(state.fan_message(citizen, "上周的问题"))
        late = await src.post_reply(dm_reply(old))
        assert late.outcome is PostOutcome.UNDELIVERABLE
        assert len(state.dm_replies) == 1
    finally:
        await src.close()
