"""One citizen cannot flood a department (issue 20, must-show 6: the flood case).

On the in-memory broker, a webhook platform simulator and the REST ticket-system simulator:
one handle sends 250 new inquiries within a minute. The ticket system receives at most the
limit of tickets and the platform at most the limit of public replies (counted in the
simulators' own records); every other inquiry is held with reason ``flood``, listed in
``/api/triage/review``, never dropped and never filed by a timeout; another citizen, and the
flooder's follow-up in a conversation already open, go through as usual. An official files
one held inquiry (a ticket and a reply follow) and dismisses another (recorded, no ticket).

The limit itself (``bridge.triage.flood.FloodGate``) is also run with 60 parallel deliveries of one
author on SQLite and PostgreSQL: exactly the limit is admitted, overall and per department.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.daemon import Daemon
from bridge.store import SqlStore
from bridge.triage.flood import FloodGate
from schemas.config import GovbridgeConfig
from schemas.messages import Author, Inquiry, ThreadRef, inquiry_id_for
from schemas.vocab import InquiryKind
from tests.conftest import eventually, running_bridge
from tests.test_approval import AUTH, World, config, start, world

__all__ = ["world"]  # the fixture, used by name

LIMIT = 20
FLOOD = 250
HANDLE = "tr12345"  # the transport department's account: templated replies go out at once
FLOODER = {"id": "7700001", "handle": "路过的热心人"}
PLACES = ["东直门", "西单", "国贸", "望京", "中关村", "五道口", "天通苑", "回龙观", "亦庄", "通州"]


def complaint(n: int) -> str:
    """What a flooder writes: the same grievance, reworded each time so no filter sees a
    repeat."""
    place = PLACES[n % len(PLACES)]
    return f"第{n + 1}次反映！{place}地铁站出口的共享单车堆成山，堵住盲道，天天没人管，必须马上处理"


def flood_config(tmp_path: Path, world: World) -> GovbridgeConfig:
    cfg: GovbridgeConfig = config(tmp_path, world)
    cfg.triage = cfg.triage.model_copy(update={"max_new_conversations_per_hour": LIMIT})
    return cfg


def replies_to(world: World, handle: str) -> list[dict[str, Any]]:
    return [r for r in world.replies(HANDLE) if r["citizen_handle"] == handle]


async def states(daemon: Daemon) -> Counter[str]:
    assert daemon.ctx is not None
    return Counter(i.state for i in await daemon.ctx.store.list_inquiries())


@pytest.mark.timeout(600)
async def test_one_handle_sending_250_inquiries_gets_at_most_the_limit_of_tickets_and_replies(
    tmp_path: Path, world: World
) -> None:
    platform = world.platforms[HANDLE]
    tickets = world.tickets["transport"]
    async with running_bridge(flood_config(tmp_path, world), in_memory=True) as daemon:
        api = await start(daemon, world)
        async with api.http:
            items = [
                platform.citizen_item(n, author=FLOODER, text=complaint(n)) for n in range(FLOOD)
            ]
            for batch in range(0, FLOOD, 25):  # ten pushes, a few seconds in all
                assert await platform.push(items[batch : batch + 25]) == 202
            neighbour = platform.citizen_item(9000, text="公交站台的顶棚被风刮坏了，下雨没法等车")
            assert await platform.push([neighbour]) == 202

            async def settled() -> bool:
                counted = await states(daemon)
                return (
                    counted["held_for_review"] == FLOOD - LIMIT
                    and counted["ticketed"] == LIMIT + 1
                    and len(world.replies(HANDLE)) == LIMIT + 1
                )

            await eventually(settled, 240)

            # At the far edge: the ticket system and the platform saw the limit, no more.
            flooder_tickets = [
                t for t in tickets.tickets.values() if "共享单车" in str(t.get("body"))
            ]
            assert len(flooder_tickets) == LIMIT
            assert len(tickets.tickets) == LIMIT + 1  # and the neighbour's
            assert len(replies_to(world, FLOODER["handle"])) == LIMIT
            assert len(replies_to(world, "citizen9000")) == 1
            assert daemon.ctx is not None
            waiting = await daemon.ctx.store.list_replies()
            assert len(waiting) == LIMIT + 1  # nothing composed for the held ones

            # The rest are held for an official, with the reason, none dropped or filed.
            async with api.http.get(f"{api.base}/api/triage/review", headers=AUTH) as resp:
                held = (await resp.json())["held"]
            assert len(held) == FLOOD - LIMIT
            assert {(h["reason"], h["department"], h["release_after"]) for h in held} == {
                ("flood", "transport", None)
            }
            held_ids = {h["inquiry_id"] for h in held}
            every = {
                inquiry_id_for("hotline12345", HANDLE, "mention", i["external_id"]) for i in items
            }
            rows = {i.inquiry_id: i for i in await daemon.ctx.store.list_inquiries()}
            ticketed = {i for i in every if rows[i].state == "ticketed"}
            assert len(ticketed) == LIMIT and held_ids == every - ticketed
            assert {rows[i].reason for i in held_ids} == {"flood"}
            review = daemon.ctx.roles["triage"].review  # type: ignore[attr-defined]
            assert await review.sweep() == 0  # a timeout never files a flood hold

            # The flooder's follow-up in a conversation already open goes on as usual.
            first = next(
                i
                for i in items
                if inquiry_id_for("hotline12345", HANDLE, "mention", i["external_id"]) in ticketed
            )
            follow = platform.citizen_item(
                1,
                author=FLOODER,
                text="补充一下，早高峰最严重",
                thread={
                    "root_id": first["external_id"],
                    "parent_id": first["external_id"],
                    "parent_author_id": FLOODER["id"],
                },
            )
            assert await platform.push([follow]) == 202
            follow_id = inquiry_id_for("hotline12345", HANDLE, "mention", follow["external_id"])

            async def followed() -> bool:
                row = await daemon.ctx.store.get_inquiry(follow_id)  # type: ignore[union-attr]
                return row is not None and row.state in ("appended", "kept_on_record")

            await eventually(followed, 60)

            # An official files one held inquiry and dismisses another.
            filed, dismissed = sorted(held_ids)[:2]
            async with api.http.post(
                f"{api.base}/api/triage/review/{filed}",
                json={"category": "complaint"},
                headers=AUTH,
            ) as resp:
                assert resp.status == 200 and (await resp.json())["filed"] == "filed now"
            async with api.http.post(
                f"{api.base}/api/triage/review/{dismissed}", json={"dismiss": True}, headers=AUTH
            ) as resp:
                assert resp.status == 200 and (await resp.json())["state"] == "dismissed"
            async with api.http.post(
                f"{api.base}/api/triage/review/{dismissed}", json={"dismiss": True}, headers=AUTH
            ) as resp:
                assert resp.status == 409

            async def filed_and_answered() -> bool:
                return (
                    len(tickets.tickets) == LIMIT + 2
                    and len(replies_to(world, FLOODER["handle"])) == LIMIT + 1
                )

            await eventually(filed_and_answered, 60)
            assert (await daemon.ctx.store.get_inquiry(dismissed)).state == "ignored"  # type: ignore[union-attr]
            async with api.http.get(f"{api.base}/api/triage/review", headers=AUTH) as resp:
                assert len((await resp.json())["held"]) == FLOOD - LIMIT - 2
    print(
        f"{FLOOD} inquiries from one handle: {LIMIT} tickets and replies, "
        f"{FLOOD - LIMIT} held with reason flood"
    )


def inquiry(n: int, author: str = "7700001") -> Inquiry:
    return Inquiry.create(
        platform="hotline12345",
        account=HANDLE,
        kind=InquiryKind.MENTION,
        external_id=f"c-{author}-{n}",
        author=Author(id=author, handle=f"citizen{author}"),
        text=complaint(n),
        created_at="2026-05-01T08:00:00+08:00",
        thread=ThreadRef(root_id=f"c-{author}-{n}"),
    )


async def test_parallel_deliveries_of_one_author_admit_exactly_the_limit(
    store: SqlStore, tmp_path: Path, world: World
) -> None:
    cfg = config(tmp_path, world)
    triage = cfg.triage.model_copy(update={"max_new_conversations_per_hour": 12})
    transport = cfg.department("transport").model_copy(update={"max_new_conversations_per_hour": 5})
    environment = cfg.department("environment")
    gate = FloodGate(store, triage)

    async def admit(n: int, dept: Any, author: str = "7700001") -> bool:
        return await gate.admit(inquiry(n, author), dept)

    # the department's own limit: 5 of 30 parallel deliveries to transport
    in_transport = await asyncio.gather(*(admit(n, transport) for n in range(30)))
    assert sum(in_transport) == 5
    # the overall limit counts every department: 7 more in environment, not 30
    in_environment = await asyncio.gather(*(admit(100 + n, environment) for n in range(30)))
    assert sum(in_environment) == 12 - 5
    # a redelivery of an admitted inquiry is admitted again; another author is untouched
    admitted = next(n for n, ok in enumerate(in_transport) if ok)
    assert await admit(admitted, transport)
    assert await admit(0, transport, author="7700002")
    # no limit configured: everything passes
    open_gate = FloodGate(store, triage.model_copy(update={"max_new_conversations_per_hour": 0}))
    assert all([await open_gate.admit(inquiry(500 + n), environment) for n in range(30)])
