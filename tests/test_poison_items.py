"""One bad item never blocks a stream (issue 9, must show 4).

An item a source cannot read (a lone UTF-16 surrogate from a truncated emoji, a missing field,
a number out of range, a body nested hundreds deep) is skipped with a metric, an alert and a
dead letter in ``<exchange>.ingest.dead`` an operator can list and replay; the cursor moves on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
from aiohttp.test_utils import TestServer
from govbridge_tools.simulators.mastodon import MastodonSimState
from govbridge_tools.simulators.weibo import Limits, WeiboState, create_app
from govbridge_tools.testing import BusTap

from adapters.weibo import WeiboConfig, WeiboSource
from bridge.cli.dlq import _replay_ingest
from bridge.ingest.rejected import ACCOUNT_HEADER
from bridge.runtime.broker import REASON_HEADER, Broker
from bridge.runtime.deadletters import describe
from bridge.runtime.topology import Topology
from schemas.config import GovbridgeConfig
from tests.conftest import AMQP_URL, bridge_config, eventually, running_bridge
from tests.test_ingest import metric

BACKLOG = 1_000
POISON_AT = 500
HANDLE = "市交通委"


@asynccontextmanager
async def weibo(state: WeiboState) -> AsyncIterator[str]:
    server = TestServer(create_app(state), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/2/"))
    finally:
        await server.close()


def config(tmp_path: Path, base_url: str, state: WeiboState) -> GovbridgeConfig:
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": HANDLE,
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
                "handle": HANDLE,
                "department": "transport",
                "token": state.token,
                "base_url": base_url,
                "poll": "100ms",
                "page_size": 200,
                "streams": ["comments_to_me"],
            }
        ],
    )


async def dead_letters(cfg: GovbridgeConfig) -> list[aio_pika.abc.AbstractIncomingMessage]:
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        queue = await ch.get_queue(Topology(cfg.broker).ingest_dead, ensure=False)
        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(message)
        return got


async def test_poison_in_a_1000_item_backlog(tmp_path: Path) -> None:
    state = WeiboState(official_name=HANDLE, quirks=True, limits=Limits(calls=100_000))
    post = state.add_official_post()
    ids = [
        state.add_citizen_comment(
            f"第{i}号：路灯不亮", citizen=f"市民{i % 50}", status_id=post.id
        ).id
        for i in range(BACKLOG)
    ]
    bad = ids[POISON_AT]
    state.poison[bad] = "missing"  # no created_at: it cannot become an inquiry
    async with weibo(state) as url:
        cfg = config(tmp_path, url, state)
        async with (
            BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap,
            running_bridge(cfg, ["ingest"]) as daemon,
        ):
            await eventually(lambda: _count(tap, BACKLOG - 1), 60)
            await eventually(lambda: _async(bool(daemon.alerts.active)), 10)
            assert (
                metric(
                    daemon,
                    "govbridge_messages_dead_lettered_total",
                    stage="ingest",
                    reason="unreadable",
                )
                == 1
            )
            assert ("ingest_rejected", f"weibo:{HANDLE}") in daemon.alerts.active
            assert daemon.ctx is not None
            store = daemon.ctx.store

            async def moved_past() -> bool:  # the cursor settles past the newest item
                raw = await store.get_cursor(f"source:weibo:{HANDLE}")
                stream = json.loads(raw or "{}").get("streams", {}).get("comments_to_me", {})
                return stream == {"since": str(max(ids))}

            await eventually(moved_past, 20)
            [letter] = await dead_letters(cfg)
        published = Counter(tap.values("external_id"))
        assert set(published) == {str(i) for i in ids if i != bad}
        assert max(published.values()) == 1  # each of the other 999 once
        info = describe("ingest", Topology(cfg.broker).ingest_dead, letter, 5)
        assert info.ids["external_id"] == str(bad)
        assert "KeyError" in info.reason and "created_at" in info.reason
        assert letter.headers[ACCOUNT_HEADER] == f"weibo:{HANDLE}"
        assert letter.headers[REASON_HEADER] == info.reason


async def test_every_kind_of_poison_is_skipped_with_its_reason() -> None:
    state = WeiboState(official_name=HANDLE, quirks=True)
    post = state.add_official_post()
    comments = [state.add_citizen_comment(f"第{i}号", status_id=post.id).id for i in range(6)]
    kinds = {comments[1]: "surrogate", comments[2]: "missing", comments[3]: "range"}
    kinds[comments[4]] = "nested"
    state.poison.update(kinds)
    async with weibo(state) as url:
        source = WeiboSource(
            WeiboConfig(
                adapter="weibo",
                handle=HANDLE,
                department="d",
                token=state.token,
                base_url=url,
                streams=["comments_to_me"],
            )
        )
        try:
            result = await source.fetch(None)
            while result.more:
                more = await source.fetch(result.cursor)
                result = type(result)(
                    items=result.items + more.items,
                    cursor=more.cursor,
                    more=more.more,
                    rejected=result.rejected + more.rejected,
                )
        finally:
            await source.close()
    got = {i.external_id: i for i in result.items}
    # The truncated emoji is sanitised at normalisation, not rejected.
    assert got[str(comments[1])].text.endswith("\ufffd")
    got[str(comments[1])].model_dump_json()
    assert set(got) == {str(c) for c in (comments[0], comments[1], comments[5])}
    reasons = {r.external_id: r.reason for r in result.rejected}
    assert set(reasons) == {str(comments[2]), str(comments[3]), str(comments[4])}
    assert all(r.startswith("weibo comments_to_me: ") for r in reasons.values())


async def test_replay_gives_the_item_back_to_its_adapter(tmp_path: Path) -> None:
    """A fixed item (here: one whose raw is now readable) is published; one still broken
    stays in the queue with the reason."""
    state = WeiboState(official_name=HANDLE)
    post = state.add_official_post()
    good = state.add_citizen_comment("路灯修好了吗", status_id=post.id)
    async with weibo(state) as url:
        cfg = config(tmp_path, url, state)
        broker = Broker(cfg.broker)
        await broker.connect()
        try:
            item = {"stream": "comments_to_me", "item": state.comment_json(good)}
            still_bad = {"stream": "comments_to_me", "item": {"id": 1}}
            for raw in (item, still_bad):
                body = {
                    "account": f"weibo:{HANDLE}",
                    "adapter": "weibo",
                    "handle": HANDLE,
                    "platform": "weibo",
                    "external_id": "x",
                    "raw": json.dumps(raw),
                }
                await broker.publish_raw(
                    broker.topology.dead_letter_exchange,
                    "ingest",
                    json.dumps(body).encode(),
                    headers={REASON_HEADER: "earlier bug"},
                )
            async with BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap:
                channel = await broker.channel()
                queue = await channel.get_queue(broker.topology.ingest_dead, ensure=False)
                messages: list[Any] = []
                while (m := await queue.get(no_ack=False, fail=False)) is not None:
                    messages.append(m)
                failures = await _replay_ingest(cfg, broker, queue.name, messages)
                await channel.close()
                assert failures == 1
                await eventually(lambda: _count(tap, 1), 10)
                assert tap.values("external_id") == [str(good.id)]
            left = await dead_letters(cfg)
            assert len(left) == 1 and left[0].headers[REASON_HEADER] == "earlier bug"
        finally:
            await broker.close()
            conn = await aio_pika.connect(AMQP_URL)
            async with conn:
                await Topology(cfg.broker).delete(await conn.channel())


async def test_mastodon_poison_is_skipped_and_the_cursor_moves() -> None:
    async with MastodonSimState(quirks=True) as sim:
        citizen = await sim.create_citizen()
        statuses = [await sim.mention(citizen, f"第{i}号诉求") for i in range(5)]
        sim.poison[str(statuses[1]["id"])] = "surrogate"
        sim.poison[str(statuses[2]["id"])] = "missing"
        sim.poison[str(statuses[3]["id"])] = "nested"
        from adapters.mastodon import MastodonConfig, MastodonSource

        source = MastodonSource(MastodonConfig.model_validate(sim.account_config()))
        try:
            items, rejected, cursor = [], [], None
            while True:
                result = await source.fetch(cursor)
                items += result.items
                rejected += result.rejected
                cursor = result.cursor
                if not result.more:
                    break
        finally:
            await source.close()
    assert {i.external_id for i in items} == {str(statuses[n]["id"]) for n in (0, 1, 4)}
    assert len(rejected) == 2 and all(r.reason.startswith("mastodon") for r in rejected)


async def _count(tap: BusTap, n: int) -> bool:
    return len(tap.bodies()) >= n


async def _async(value: bool) -> bool:
    return value
