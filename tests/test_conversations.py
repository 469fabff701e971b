"""Conversations per citizen, through the whole bridge on the in-memory broker, on every source.

The scene on each platform (counts from the simulators' own records):
- 50 citizens answer one official announcement: 50 conversations, 50 tickets;
- 20 citizens answer another citizen's inquiry ("me too"): each their own conversation;
- 10 citizens answer under the bridge's own answers: the 5 who answer under the answer to
  their own inquiry are follow-ups (appended to their ticket, acknowledged once), the 5 who
  answer under the answer to someone else start their own conversations.
Every inquiry is answered in its own thread: nobody is left unanswered because someone else
asked first.

Then a follow-up whose text matches another department's content route is appended to the
ticket that holds the conversation, in that ticket's department and system.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from govbridge_tools.simulators.open311 import demo_ticketing_config as open311_config
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.simulators.weibo import Limits, WeiboState
from govbridge_tools.testing import Simulators

from bridge.daemon import Daemon
from tests.conftest import bridge_config, eventually, running_bridge

ANNOUNCEMENT = "【公告】欢迎市民留言反映身边的交通问题，我们将逐一答复。"
ON_ANNOUNCEMENT, ME_TOO, UNDER_ANSWERS = 50, 20, 10
ACK = "已补充到工单"
SECRET = "conversation-test-secret"

ASKS = (
    "{n}路公交车晚点严重，早上等了四十分钟",
    "第{n}号路口的红绿灯坏了好几天了",
    "小区门口第{n}个井盖松动，晚上很危险",
    "地铁{n}号线早高峰太挤，能不能加车",
    "{n}号公交站台顶棚漏雨",
)


def ask(n: int) -> str:
    return ASKS[n % len(ASKS)].format(n=n + 1)


@dataclass
class Expect:
    """What the scene must produce: inquiries by their platform id."""

    new: set[str] = field(default_factory=set)  # each starts a conversation
    follow_ups: set[str] = field(default_factory=set)  # each continues the author's own


def rest_department(server: RestSimServer, dept_id: str = "transport", **extra: Any) -> Any:
    return {
        "id": dept_id,
        "name": "市交通委" if dept_id == "transport" else "市城管委",
        "approval": "none",
        "ticketing": {**demo_ticketing_config(server.url), "poll": "0s"},
        **extra,
    }


@pytest.fixture
async def tickets(sims: Simulators) -> RestSimServer:
    return await sims.rest()


async def settle(daemon: Daemon, expect: Expect, answered: Any) -> None:
    """Wait until every expected inquiry is ticketed or appended and answered."""
    assert daemon.ctx is not None
    store = daemon.ctx.store

    async def done() -> bool:
        states = Counter(r.state for r in await store.list_inquiries())
        return (
            states["ticketed"] == len(expect.new)
            and states["appended"] == len(expect.follow_ups)
            and await answered()
        )

    try:
        await eventually(done, timeout=90)
    except AssertionError:
        rows = await store.list_inquiries()
        states = Counter(r.state for r in rows)
        raise AssertionError(
            f"not settled: inquiries {dict(states)}, expected {len(expect.new)} tickets and"
            f" {len(expect.follow_ups)} follow-ups; answered: {await answered()}"
        ) from None


async def check_store(daemon: Daemon, expect: Expect, tickets: RestTicketState) -> None:
    """One ticket per conversation; follow-ups appended to their own author's ticket."""
    assert daemon.ctx is not None
    rows = {r.external_id: r for r in await daemon.ctx.store.list_inquiries()}
    assert {k for k, r in rows.items() if r.state == "ticketed"} == expect.new
    assert {k for k, r in rows.items() if r.state == "appended"} == expect.follow_ups
    ticket_ids = [rows[k].ticket_id for k in expect.new]
    assert len(set(ticket_ids)) == len(expect.new) == len(tickets.tickets)
    by_inquiry = {r.inquiry_id: r for r in rows.values()}
    for k in expect.follow_ups:
        owner = by_inquiry[rows[k].conversation]
        assert owner.author_id == rows[k].author_id  # only the same citizen
        assert rows[k].ticket_id == owner.ticket_id
    appended = Counter(
        ticket_id for ticket_id, t in tickets.tickets.items() for _ in t.get("comments", [])
    )
    assert sum(appended.values()) == len(expect.follow_ups)
    assert max(appended.values(), default=1) == 1


# --------------------------------------------------------------------------- Weibo


async def test_weibo_every_citizen_under_one_post_gets_their_own_answer(
    tmp_path: Path, tickets: RestSimServer, sims: Simulators
) -> None:
    weibo = WeiboState(official_name="北京交通", limits=Limits(calls=10**6, comments=10**6))
    server = await sims.weibo(weibo)
    cfg = bridge_config(
        tmp_path,
        departments=[rest_department(tickets)],
        accounts=[
            {
                "adapter": "weibo",
                "handle": "北京交通",
                "department": "transport",
                "token": weibo.token,
                "base_url": server.url + "/2/",
                "poll": "200ms",
                "page_size": 200,
                "reply_limit": {"max_calls": 100_000, "period": "1s"},  # not what is tested here
            }
        ],
    )
    official = weibo.official_uid
    expect = Expect()

    def answers() -> list[Any]:
        return [c for c in weibo.comments.values() if c.user_id == official]

    def answered_each(ids: set[str]) -> Any:
        async def check() -> bool:
            return {str(c.reply_cid) for c in answers()} >= ids

        return check

    async with running_bridge(cfg, in_memory=True) as daemon:
        post = weibo.add_official_post(ANNOUNCEMENT)
        first = [
            weibo.add_citizen_comment(ask(n), citizen=f"市民{n:03d}", status_id=post.id)
            for n in range(ON_ANNOUNCEMENT)
        ]
        # "me too" under the first citizen's comment, each from another citizen
        me_too = [
            weibo.add_citizen_comment(
                f"我也遇到了，{ask(n)}", citizen=f"路人{n:03d}", reply_cid=first[0].id
            )
            for n in range(ME_TOO)
        ]
        expect.new |= {str(c.id) for c in first + me_too}
        await settle(daemon, expect, answered_each(expect.new))

        # under the bridge's answers: 5 to their own, 5 to someone else's
        answer_to = {c.reply_cid: c for c in answers()}
        for k in range(UNDER_ANSWERS // 2):
            own = first[10 + k]
            c = weibo.add_citizen_comment(
                f"补充一下，位置在第{k + 1}个出口附近",
                citizen=f"市民{10 + k:03d}",
                reply_cid=answer_to[own.id].id,
            )
            expect.follow_ups.add(str(c.id))
            c = weibo.add_citizen_comment(
                f"我这边也是，{ask(k + 100)}",
                citizen=f"新市民{k:03d}",
                reply_cid=answer_to[first[20 + k].id].id,
            )
            expect.new.add(str(c.id))
        await settle(daemon, expect, answered_each(expect.new | expect.follow_ups))
        await check_store(daemon, expect, tickets.state)

    per_target = Counter(str(c.reply_cid) for c in answers())
    assert set(per_target) == expect.new | expect.follow_ups
    assert set(per_target.values()) == {1}  # once each, in its own thread
    acks = {str(c.reply_cid) for c in answers() if ACK in c.text}
    assert acks == expect.follow_ups


# --------------------------------------------------------------------------- Mastodon


async def test_mastodon_replies_to_one_announcement_are_separate_conversations(
    tmp_path: Path, tickets: RestSimServer, sims: Simulators
) -> None:
    masto = (await sims.mastodon(filter_private_mentions=False)).state
    cfg = bridge_config(
        tmp_path,
        departments=[rest_department(tickets)],
        accounts=[{**masto.account_config("transport"), "poll": "200ms"}],
    )
    expect = Expect()

    async def replies_to(ids: set[str]) -> bool:
        posted = {str(r["in_reply_to_id"]) for r in await masto.official_replies()}
        return posted >= ids

    def answered_each(ids: set[str]) -> Any:
        return lambda: replies_to(ids)

    async with running_bridge(cfg, in_memory=True) as daemon:
        announcement = await masto.announce(ANNOUNCEMENT)
        citizens = [await masto.create_citizen(f"citizen{n:03d}") for n in range(70)]
        first = [
            await masto.mention(citizens[n], ask(n), in_reply_to_id=announcement["id"])
            for n in range(ON_ANNOUNCEMENT)
        ]
        me_too = [
            await masto.mention(
                citizens[ON_ANNOUNCEMENT + n], f"同问，{ask(n)}", in_reply_to_id=first[0]["id"]
            )
            for n in range(ME_TOO)
        ]
        expect.new |= {str(s["id"]) for s in first + me_too}
        await settle(daemon, expect, answered_each(expect.new))

        answer_to = {str(r["in_reply_to_id"]): r for r in await masto.official_replies()}
        newcomers = [await masto.create_citizen(f"newcomer{k}") for k in range(5)]
        for k in range(UNDER_ANSWERS // 2):
            s = await masto.mention(
                citizens[10 + k],
                f"补充：位置在第{k + 1}个出口附近",
                in_reply_to_id=answer_to[str(first[10 + k]["id"])]["id"],
            )
            expect.follow_ups.add(str(s["id"]))
            s = await masto.mention(
                newcomers[k],
                f"我这也一样，{ask(k + 100)}",
                in_reply_to_id=answer_to[str(first[20 + k]["id"])]["id"],
            )
            expect.new.add(str(s["id"]))
        await settle(daemon, expect, answered_each(expect.new | expect.follow_ups))
        await check_store(daemon, expect, tickets.state)

    replies = [r for r in await masto.official_replies() if r["in_reply_to_id"]]
    per_target = Counter(str(r["in_reply_to_id"]) for r in replies)
    assert set(per_target) == expect.new | expect.follow_ups
    assert set(per_target.values()) == {1}
    assert {str(r["in_reply_to_id"]) for r in replies if ACK in r["text"]} == (expect.follow_ups)


# --------------------------------------------------------------------------- webhook


def push_item(n: int, text: str, author: str, **thread: Any) -> dict[str, Any]:
    return {
        "external_id": f"c-{n}",
        "kind": "comment",
        "author": {"id": author, "handle": f"user{author}"},
        "text": text,
        "created_at": "2026-11-30T08:00:00+08:00",
        "thread": {"root_id": "ann-1", "root_author_id": "official", **thread},
    }


async def test_webhook_items_sharing_a_root_are_one_conversation_per_citizen(
    tmp_path: Path, tickets: RestSimServer, sims: Simulators
) -> None:
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    server = await sims.webhook(platform)
    cfg = bridge_config(
        tmp_path,
        departments=[rest_department(tickets)],
        accounts=[
            {
                "adapter": "webhook",
                "handle": "hotline",
                "department": "transport",
                "secret": SECRET,
                "reply_url": server.url + "/replies",
                "platform": "hotline",
            }
        ],
    )
    expect = Expect()

    def answered_each(ids: set[str]) -> Any:
        async def check() -> bool:
            got = {r["thread"]["reply_to"]["external_id"] for r in platform.reply_list()}
            return got >= ids

        return check

    async with running_bridge(cfg, in_memory=True) as daemon:
        platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
        items = [push_item(n, ask(n), f"{1000 + n}") for n in range(ON_ANNOUNCEMENT)]
        items += [
            push_item(
                100 + n,
                f"同问，{ask(n)}",
                f"{2000 + n}",
                parent_id="c-0",
                parent_author_id="1000",
            )
            for n in range(ME_TOO)
        ]
        assert await platform.push(items) == 202
        expect.new |= {i["external_id"] for i in items}
        await settle(daemon, expect, answered_each(expect.new))

        # the bridge's answers are posts on the platform too (the ids it returned)
        answer_to = {r["thread"]["reply_to"]["external_id"]: r["id"] for r in platform.reply_list()}
        more = []
        for k in range(UNDER_ANSWERS // 2):
            more.append(
                push_item(
                    200 + k,
                    f"补充：在第{k + 1}个出口",
                    f"{1000 + 10 + k}",
                    parent_id=answer_to[f"c-{10 + k}"],
                )
            )
            expect.follow_ups.add(f"c-{200 + k}")
            more.append(
                push_item(
                    300 + k,
                    f"我这也是，{ask(k + 100)}",
                    f"{3000 + k}",
                    parent_id=answer_to[f"c-{20 + k}"],
                )
            )
            expect.new.add(f"c-{300 + k}")
        assert await platform.push(more) == 202
        await settle(daemon, expect, answered_each(expect.new | expect.follow_ups))
        await check_store(daemon, expect, tickets.state)

    per_target = Counter(r["thread"]["reply_to"]["external_id"] for r in platform.reply_list())
    assert set(per_target) == expect.new | expect.follow_ups
    assert set(per_target.values()) == {1}


# --------------------------------------------------------------------------- routing


async def test_follow_up_goes_to_the_owning_ticket_whatever_its_text_routes_to(
    tmp_path: Path, tickets: RestSimServer, sims: Simulators
) -> None:
    """A follow-up that mentions 垃圾 (routed to the urban department by content) still goes
    to the transport ticket that holds the conversation, in transport's system."""
    other = await sims.rest()
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    server = await sims.webhook(platform)
    cfg = bridge_config(
        tmp_path,
        departments=[rest_department(tickets), rest_department(other, "urban")],
        accounts=[
            {
                "adapter": "webhook",
                "handle": "hotline",
                "department": "transport",
                "secret": SECRET,
                "reply_url": server.url + "/replies",
                "platform": "hotline",
            }
        ],
        routes=[{"keywords": ["垃圾"], "department": "urban"}],
    )
    async with running_bridge(cfg, in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
        assert await platform.push([push_item(1, "公交站台顶棚漏雨", "42")]) == 202

        async def ticketed() -> bool:
            return len(tickets.state.tickets) == 1 and len(platform.replies) == 1

        await eventually(ticketed)
        follow_up = push_item(2, "补充：站台旁边还堆满了垃圾", "42", parent_id="c-1")
        assert await platform.push([follow_up]) == 202

        async def acknowledged() -> bool:
            return any(ACK in r["text"] for r in platform.reply_list())

        await eventually(acknowledged)
        rows = {r.external_id: r for r in await store.list_inquiries()}
    ticket = next(iter(tickets.state.tickets.values()))
    assert len(ticket["comments"]) == 1  # appended in the owning (transport) system
    assert "垃圾" in ticket["comments"][0]["body"]
    assert other.state.tickets == {}  # nothing went to the urban system
    assert rows["c-2"].state == "appended"
    assert rows["c-2"].department == "transport"
    assert rows["c-2"].ticket_id == rows["c-1"].ticket_id


# --------------------------------------------------------------------------- no update API


async def test_follow_up_on_a_server_without_updates_is_kept_acknowledged_and_shown(
    tmp_path: Path, sims: Simulators
) -> None:
    """A plain GeoReport server (no servicerequestupdates) and no other channel configured:
    the citizen's follow-up cannot reach the ticket system, so the bridge keeps it on the
    ticket's record, tells the citizen truthfully that it was recorded and that they may call
    (never that it will be handled), and shows it to officials with the conversation.
    (tests/test_follow_up_channels.py: the channels a department can configure instead.)"""
    backend = await sims.open311(agency="市交通委", quirks=True)
    weibo = WeiboState(official_name="北京交通", limits=Limits(calls=10**6, comments=10**6))
    server = await sims.weibo(weibo)
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                "ticketing": {**open311_config(backend.base_url), "poll": "0s"},
            }
        ],
        accounts=[
            {
                "adapter": "weibo",
                "handle": "北京交通",
                "department": "transport",
                "token": weibo.token,
                "base_url": server.url + "/2/",
                "poll": "200ms",
            }
        ],
    )
    async with running_bridge(cfg, in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        first = weibo.add_citizen_comment("公交站台顶棚漏雨", citizen="市民甲")

        def answers() -> list[Any]:
            return [c for c in weibo.comments.values() if c.user_id == weibo.official_uid]

        async def received() -> bool:
            return any(c.reply_cid == first.id for c in answers())

        await eventually(received)
        follow = weibo.add_citizen_comment(
            "补充：是东口那个站台", citizen="市民甲", reply_cid=first.id
        )

        async def acknowledged() -> bool:
            return any(c.reply_cid == follow.id for c in answers())

        await eventually(acknowledged)
        ack = [c.text for c in answers() if c.reply_cid == follow.id]
        rows = {r.external_id: r for r in await store.list_inquiries()}
        owner = rows[str(first.id)]
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer test-admin-token"}) as http,
            http.get(f"{base}/api/inquiries/{owner.inquiry_id}") as resp,
        ):
            trace = await resp.json()
    assert rows[str(follow.id)].state == "kept_on_record"
    assert rows[str(follow.id)].ticket_id == owner.ticket_id
    assert len(backend.state.tickets) == 1  # one ticket; the follow-up went nowhere else
    assert len(ack) == 1
    assert f"已记录在案（工单{owner.ticket_id}）" in ack[0] and "请致电市交通委" in ack[0]
    assert ACK not in ack[0] and "会一并办理" not in ack[0]  # it reached nobody who handles it
    assert [(c["state"], c["first"]) for c in trace["conversation"]] == [
        ("ticketed", True),
        ("kept_on_record", False),
    ]
    assert trace["conversation"][1]["follow_up"]["channel"] == "record"
    assert "东口" in trace["conversation"][1]["public_text"]
