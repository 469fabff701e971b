"""A citizen's direct messages to one official account are one conversation while its ticket
is open (issue 19, must show 4), through the whole bridge on the in-memory broker; counts from
the ticket system simulator's own records (its tickets and their comments) and from the
platform simulators' (the replies the citizen reads).

On Mastodon a DM is a new status with visibility ``direct`` (each its own thread); on a
webhook platform a DM may come with no thread at all. Either way: two DMs while the first
case is open make one ticket, the second appended to it; another citizen's DM is their own
case; once the ticket is closed, the citizen's next DM opens a new ticket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.testing import Simulators

from bridge.daemon import Daemon
from tests.conftest import bridge_config, eventually, running_bridge

SECRET = "direct-message-test-secret"
FIRST = "私信反映：我家楼下的路灯已经坏了两周，晚上完全看不见路"
SECOND = "再补充一句，路灯的编号是BJ-0420，就在3号楼东侧"
THIRD = "您好，另一件事：小区门口的人行道砖翘起来了，老人容易绊倒"
OTHER = "我是另一位市民，私信反映公交站台的广告牌松动了"


@pytest.fixture
async def tickets(sims: Simulators) -> RestSimServer:
    return await sims.rest()


def transport(tickets: RestSimServer) -> dict[str, Any]:
    return {
        "id": "transport",
        "name": "市交通委",
        "approval": "none",
        "ticketing": {**demo_ticketing_config(tickets.url), "poll": "200ms"},
    }


async def scene(
    daemon: Daemon,
    tickets: RestTicketState,
    send: Callable[[str, str], Awaitable[str]],
    answered: Callable[[str], Awaitable[list[str]]],
) -> None:
    """The citizen "a" writes twice, "b" once, the ticket of "a" is closed, "a" writes again.
    ``send(citizen, text)`` → the DM's platform id; ``answered(id)`` → the bridge's replies
    to it, as the platform shows them."""
    assert daemon.ctx is not None
    store = daemon.ctx.store

    async def replied(post: str) -> bool:
        return bool(await answered(post))

    first = await send("a", FIRST)
    await eventually(lambda: replied(first), 60)
    assert len(tickets.tickets) == 1
    (ticket_id,) = tickets.tickets

    second = await send("a", SECOND)
    other = await send("b", OTHER)
    await eventually(lambda: replied(second), 60)
    await eventually(lambda: replied(other), 60)
    # one ticket for "a", the second DM appended to it; "b" has their own
    assert len(tickets.tickets) == 2
    assert [SECOND in c["body"] for c in tickets.tickets[ticket_id]["comments"]] == [True]
    assert any("已补充到工单" in text for text in await answered(second))

    await tickets.move(ticket_id, "CLOSED")

    async def closed() -> bool:
        stored = await store.get_ticket("transport", ticket_id)
        return stored is not None and stored.status == "closed"

    await eventually(closed, 60)
    third = await send("a", THIRD)
    await eventually(lambda: replied(third), 60)
    assert len(tickets.tickets) == 3  # a new matter after the close: a new ticket
    new = [t for i, t in tickets.tickets.items() if THIRD in t["body"]]
    assert len(new) == 1 and new[0]["comments"] == []
    comments = tickets.tickets[ticket_id]["comments"]
    assert [SECOND in c["body"] for c in comments] == [True]  # nothing more appended
    rows = {r.external_id: r for r in await store.list_inquiries()}
    assert rows[first].state == "ticketed" and rows[third].state == "ticketed"
    assert rows[second].state == "appended" and rows[second].conversation == rows[first].inquiry_id
    assert rows[third].conversation == rows[third].inquiry_id
    assert rows[other].ticket_id not in (rows[first].ticket_id, rows[third].ticket_id)


async def test_mastodon_direct_messages_join_the_open_case(
    tmp_path: Path, tickets: RestSimServer, sims: Simulators
) -> None:
    masto = (await sims.mastodon(quirks=True)).state
    citizens = {n: await masto.create_citizen(f"dm_{n}") for n in ("a", "b")}
    account = {**masto.account_config("transport"), "poll": "200ms"}
    cfg = bridge_config(tmp_path, departments=[transport(tickets)], accounts=[account])

    async def send(who: str, text: str) -> str:  # a new status, not a reply
        return str((await masto.direct_message(citizens[who], text))["id"])

    async def answered(post: str) -> list[str]:
        return [
            r["text"]
            for r in await masto.official_replies()
            if r["in_reply_to_id"] == post and r["visibility"] == "direct"
        ]

    async with running_bridge(cfg, in_memory=True) as daemon:
        await scene(daemon, tickets.state, send, answered)


async def test_webhook_direct_messages_without_a_thread_join_the_open_case(
    tmp_path: Path, tickets: RestSimServer, sims: Simulators
) -> None:
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    server = await sims.webhook(platform)
    account = {
        "adapter": "webhook",
        "handle": "hotline",
        "department": "transport",
        "secret": SECRET,
        "reply_url": server.url + "/replies",
        "platform": "hotline",
    }
    cfg = bridge_config(tmp_path, departments=[transport(tickets)], accounts=[account])
    sent: list[str] = []

    async def send(who: str, text: str) -> str:
        external_id = f"dm-{len(sent) + 1}"
        sent.append(external_id)
        item = {
            "external_id": external_id,
            "kind": "direct_message",
            "author": {"id": f"uid-{who}", "handle": f"citizen_{who}"},
            "text": text,
            "created_at": "2026-12-01T09:30:00+08:00",
        }
        assert await platform.push([item]) == 202
        return external_id

    async def answered(post: str) -> list[str]:
        return [
            r["text"]
            for r in platform.reply_list()
            if r["thread"]["reply_to"]["external_id"] == post
        ]

    async with running_bridge(cfg, in_memory=True) as daemon:
        platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
        await scene(daemon, tickets.state, send, answered)
