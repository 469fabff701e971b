"""A Mastodon-API server that commits posts late and ignores ``Idempotency-Key`` (issue 19,
must show 2), through the whole bridge on the in-memory broker; counts from the simulator's own
records (the statuses the official account has, and every POST it took).

Scaled clock: the issue's server commits 20 s and 50 s late against a 15 s client timeout,
and the bridge looks again after 5, 15, 45 and 135 s. Here every figure is a tenth of that
(commits 2.0 s and 5.0 s late, client timeout 1.5 s, looks after 0.5, 1.5, 4.5 and 13.5 s):
the same order of events (timeout < commit delay < the last look), in a test of seconds.
``GOVBRIDGE_LATE_SCALE=1`` runs the issue's own seconds (about four minutes).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.simulators.rest import demo_ticketing_config
from govbridge_tools.testing import Simulators

from bridge.daemon import Daemon
from bridge.reply.role import record_reply
from schemas.messages import ReplyRequest, ThreadRef
from schemas.vocab import CopyFate, TicketStatus, Visibility
from tests.conftest import bridge_config, eventually, running_bridge

SCALE = float(os.environ.get("GOVBRIDGE_LATE_SCALE", "0.1"))  # of the seconds
CLIENT_TIMEOUT = 15 * SCALE
LATE = (20 * SCALE, 50 * SCALE)
SETTLE = [f"{s * SCALE:g}s" for s in (5, 15, 45, 135)]
WAIT = max(1.0, SCALE * 10)  # waits grow with the clock
ASKS = (
    "东四十条地铁站B口的扶梯停了一个星期了，老人上下很不方便",
    "朝阳路和青年路交叉口红绿灯一直闪黄灯，早高峰特别乱",
    "我们小区门口公交站的站牌被撞歪了，晚上看不清站名",
    "安定门内大街有辆共享单车倒在盲道上好几天没人管",
)
WORDS = {"received": "已受理", "in_progress": "正在办理中", "resolved": "已办结"}


async def copies_of(daemon: Daemon) -> list[Any]:
    assert daemon.ctx is not None
    store = daemon.ctx.store
    return [c for r in await store.list_replies() for c in await store.list_copies(r.reply_id)]


@pytest.mark.timeout(300 * WAIT)
async def test_late_commits_leave_one_visible_reply_per_status_and_every_copy_recorded(
    tmp_path: Path, sims: Simulators
) -> None:
    tickets = await sims.rest()
    masto = (await sims.mastodon(quirks=True, filter_private_mentions=False)).state
    citizens = [await masto.create_citizen(f"shimin{n}") for n in range(len(ASKS))]
    account = {**masto.account_config("transport"), "poll": "200ms"}
    account["token"] = account["token"].get_secret_value()
    account["timeout"] = f"{CLIENT_TIMEOUT:g}s"
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                "ticketing": {**demo_ticketing_config(tickets.url), "poll": "200ms"},
            }
        ],
        accounts=[account],
        outbox={"lease": f"{20 * WAIT:g}s", "scan_every": "100ms", "settle": SETTLE},
    )
    # every status the official account posts is committed 2.0 s or 5.0 s late, in turn
    masto.commit_late(*(LATE * 40), every=LATE[1])
    async with running_bridge(cfg, in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        asked = [await masto.mention(c, text) for c, text in zip(citizens, ASKS, strict=True)]
        asked_ids = {str(s["id"]) for s in asked}

        async def posted(n: int) -> bool:
            rows = await store.list_replies()
            return sum(r.state == "posted" for r in rows) >= n

        await eventually(lambda: posted(len(ASKS)), 120 * WAIT)
        for native in ("IN_PROGRESS", "DONE"):
            for ticket_id in list(tickets.state.tickets):
                await tickets.state.move(ticket_id, native)
        await eventually(lambda: posted(3 * len(ASKS)), 180 * WAIT)

        async def settled() -> bool:  # no later look is due, nothing in flight
            rows = await store.list_replies()
            return all(r.sweep_at is None for r in rows) and masto.posts_in_flight == 0

        await eventually(settled, 120 * WAIT)
        copies = await copies_of(daemon)
        replies = await store.list_replies()
    visible = [r for r in await masto.official_replies() if r["in_reply_to_id"] in asked_ids]
    server_posts = list(masto.posts)

    # The citizen's view: one reply per status change under each inquiry, no copy.
    per_status = Counter(
        (r["in_reply_to_id"], next(k for k, w in WORDS.items() if w in r["text"])) for r in visible
    )
    assert set(per_status) == {(s, k) for s in asked_ids for k in WORDS}
    assert set(per_status.values()) == {1}, per_status
    assert len(visible) == 3 * len(ASKS)
    assert Counter(r.state for r in replies) == {"posted": 3 * len(ASKS)}
    assert {r.status for r in replies} == {
        TicketStatus.RECEIVED,
        TicketStatus.IN_PROGRESS,
        TicketStatus.RESOLVED,
    }

    # The server's own record: every POST was committed late, after the client gave up.
    made = {p.status_id for p in server_posts}
    assert None not in made and all(p.wait in LATE for p in server_posts)
    assert len(server_posts) >= 3 * len(ASKS)

    # Every copy the server made is accounted for in the store, once; the visible ones are the
    # replies' own ("kept"), any other was deleted; nothing is left unknown.
    recorded = Counter(i for c in copies for i in c.external_ids)
    assert set(recorded) == made and set(recorded.values()) == {1}
    kept = {i for c in copies if c.fate == CopyFate.KEPT for i in c.external_ids}
    assert kept == {r["id"] for r in visible} == {i for r in replies for i in r.external_ids}
    assert {c.fate for c in copies} <= {CopyFate.KEPT, CopyFate.DELETED, CopyFate.NONE}
    deleted = {i for c in copies if c.fate == CopyFate.DELETED for i in c.external_ids}
    assert deleted == made - kept
    # The first call of every reply timed out (the scenario really happened).
    firsts = [c for c in copies if c.attempt == 1]
    assert len(firsts) == 3 * len(ASKS) and {c.answer for c in firsts} == {"timed_out"}
    print(
        f"\nlate commits: {len(server_posts)} POSTs for {len(replies)} replies,"
        f" {Counter(c.answer for c in copies)} answers, {Counter(c.fate for c in copies)} fates"
    )


async def test_a_copy_committed_after_the_repost_is_deleted(
    tmp_path: Path, sims: Simulators
) -> None:
    """The first post is held past every look (the server commits it only after the bridge
    posted again and got its answer): the late copy appears under the citizen's post and is
    deleted at the next look; the store records both calls, one kept and one deleted."""
    settle = ["500ms", "1s", "4s"]
    masto = (await sims.mastodon(quirks=True, filter_private_mentions=False)).state
    citizen = await masto.create_citizen("shimin_late")
    status = await masto.mention(citizen, "光华路上的井盖松了，车一压就响")
    gate = asyncio.Event()
    masto.commit_late(gate)  # the first post waits for the gate, the rest commit at once
    account = {**masto.account_config("urban"), "poll": "0s", "timeout": "1s"}
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "urban",
                "name": "市城管委",
                "approval": "none",
                "ticketing": {
                    "adapter": "rest",
                    "base_url": "http://127.0.0.1:9",
                    "auth": {"bearer": "t"},
                },
            }
        ],
        accounts=[account],
        outbox={"lease": "20s", "scan_every": "100ms", "settle": settle},
    )
    async with running_bridge(cfg, ["reply"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        request = ReplyRequest(
            reply_id="rep_late",
            inquiry_id="inq_late",
            platform="mastodon",
            account=masto.official,
            department="urban",
            thread=ThreadRef(
                root_id=str(status["id"]),
                reply_to={"status_id": str(status["id"]), "acct": citizen.acct},
            ),
            citizen_handle=citizen.acct,
            visibility=Visibility.PUBLIC,
            text="您好，您反映的问题已受理，工单号T-9。",
            status=TicketStatus.RECEIVED,
            ticket_id="T-9",
        )
        assert await record_reply(store, request, "none")
        await daemon.ctx.broker.publish("reply.requested.mastodon", request)

        async def reposted() -> bool:
            stored = await store.get_reply("rep_late")
            return stored is not None and stored.state == "posted"

        await eventually(reposted, 60 * WAIT)
        before = [r["id"] for r in await masto.official_replies() if r["in_reply_to_id"]]
        gate.set()  # the server commits the first post now, late
        await masto.posts_settled()

        async def swept() -> bool:
            stored = await store.get_reply("rep_late")
            return stored is not None and stored.sweep_at is None

        await eventually(swept, 60 * WAIT)
        stored = await store.get_reply("rep_late")
        copies = await store.list_copies("rep_late")
    visible = [r for r in await masto.official_replies() if r["in_reply_to_id"]]
    server_posts = list(masto.posts)
    assert stored is not None
    assert len(before) == 1  # the repost, while the first was held
    assert [r["id"] for r in visible] == before == stored.external_ids
    assert len(server_posts) == 2 and all(p.status_id for p in server_posts)
    first, second = (p.status_id for p in server_posts)
    assert [(c.attempt, c.answer, c.fate, c.external_ids) for c in copies] == [
        (1, "timed_out", CopyFate.DELETED, [first]),
        (2, "posted", CopyFate.KEPT, [second]),
    ]
