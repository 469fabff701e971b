"""Reply rate limits on the in-memory broker: 200 replies for one Weibo account under a limit
of 60 per (shortened) window are spread out — measured on the posting times the platform
simulator recorded — and none is lost or duplicated; a platform rate-limit error (Weibo's
10023) backs off and the reply is posted later, not dropped."""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.weibo import E_USER_RATE, Limits, WeiboState
from govbridge_tools.testing import Running, Simulators

from bridge.daemon import Daemon
from bridge.reply.role import queue_reply
from schemas.messages import ReplyRequest, ThreadRef
from schemas.vocab import TicketStatus, Visibility
from tests.conftest import bridge_config, eventually, running_bridge

HANDLE = "北京交通"
WINDOW_S = 2.0
MAX_PER_WINDOW = 60
N_REPLIES = 200


@dataclass
class WeiboSim:
    state: WeiboState
    server: Running[WeiboState]

    def official_comments(self) -> list[Any]:
        """The official account's comments (the bridge's replies), oldest first."""
        return sorted(
            (c for c in self.state.comments.values() if c.user_id == self.state.official_uid),
            key=lambda c: c.created_at,
        )


@pytest.fixture
async def weibo(sims: Simulators) -> WeiboSim:
    limits = Limits(calls=1_000_000, comments=1_000_000)
    server = await sims.weibo(official_name=HANDLE, limits=limits)
    return WeiboSim(server.state, server)


def config(tmp_path: Path, sim: WeiboSim, reply_limit: dict[str, Any]) -> Any:
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                # never called here: only the reply role runs
                "ticketing": {**demo_ticketing_config("http://127.0.0.1:9"), "poll": "0s"},
            }
        ],
        accounts=[
            {
                "adapter": "weibo",
                "handle": HANDLE,
                "department": "transport",
                "token": sim.state.token,
                "base_url": sim.server.url + "/2/",
                "reply_limit": reply_limit,
            }
        ],
    )


def citizen_threads(sim: WeiboSim, n: int) -> list[ThreadRef]:
    """``n`` citizens each commenting on a post of the official account."""
    threads = []
    for i in range(n):
        c = sim.state.add_citizen_comment(
            f"第{i}位市民：公交站台的候车亭顶棚漏雨，请尽快修理", citizen=f"市民{i:03d}"
        )
        threads.append(
            ThreadRef(
                root_id=str(c.status_id),
                parent_id=str(c.id),
                reply_to={"id": str(c.status_id), "cid": str(c.id)},
            )
        )
    return threads


def reply_for(i: int, thread: ThreadRef) -> ReplyRequest:
    return ReplyRequest(
        reply_id=f"rep-rate-{i:03d}",
        inquiry_id=f"inq-rate-{i:03d}",
        platform="weibo",
        account=HANDLE,
        department="transport",
        thread=thread,
        citizen_handle=f"市民{i:03d}",
        visibility=Visibility.PUBLIC,
        text=f"您好，您反映的问题已受理，工单号T-{i:06d}，市交通委将尽快答复。",
        status=TicketStatus.RECEIVED,
        ticket_id=f"T-{i:06d}",
    )


def busiest_window(times: list[float], width: float) -> int:
    """The most posts in any half-open window ``[t, t + width)``: windows starting at each post
    cover every maximum."""
    times = sorted(times)
    return max(
        (bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)),
        default=0,
    )


async def posted_count(daemon: Daemon) -> int:
    assert daemon.ctx is not None
    return len(await daemon.ctx.store.list_replies(state="posted"))


async def test_200_replies_under_60_per_window_are_spread_out_none_lost(
    tmp_path: Path, weibo: WeiboSim
) -> None:
    cfg = config(tmp_path, weibo, {"max_calls": MAX_PER_WINDOW, "period": f"{WINDOW_S}s"})
    threads = citizen_threads(weibo, N_REPLIES)
    async with running_bridge(cfg, roles=("reply",), in_memory=True) as daemon:
        assert daemon.ctx is not None
        # 200 replies composed at once (as the reply stage records and requests them).
        for i, t in enumerate(threads):
            await queue_reply(daemon.ctx, reply_for(i, t), "none")
        await eventually(lambda: _all_posted(daemon), timeout=60)
        stored = await daemon.ctx.store.list_replies()

    posts = weibo.official_comments()
    times = [c.created_at for c in posts]
    busiest = busiest_window(times, WINDOW_S)
    span = times[-1] - times[0]
    print(
        f"\n{len(posts)} replies posted over {span:.2f} s; busiest {WINDOW_S:g} s window held"
        f" {busiest} (limit {MAX_PER_WINDOW})"
    )
    # Spread out: no window of the limit's length holds more than the limit.
    assert busiest <= MAX_PER_WINDOW
    # None lost: every reply is on the platform, once, in its own thread.
    assert len(posts) == N_REPLIES
    targets = Counter(c.reply_cid for c in posts)
    assert set(targets) == {int(t.reply_to["cid"]) for t in threads}
    assert max(targets.values()) == 1
    assert {s.state for s in stored} == {"posted"} and len(stored) == N_REPLIES


async def _all_posted(daemon: Daemon) -> bool:
    return await posted_count(daemon) >= N_REPLIES


async def test_platform_rate_limit_backs_off_and_posts_later(
    tmp_path: Path, weibo: WeiboSim
) -> None:
    """The platform allows 4 comments per 3 s window; the bridge's own limit is generous, so the
    platform answers 10023 and the bridge must wait for the window instead of dropping."""
    weibo.state.limits = Limits(calls=1_000_000, comments=4, window=3.0)
    n = 10
    cfg = config(tmp_path, weibo, {"max_calls": 1000, "period": "1s"})
    threads = citizen_threads(weibo, n)
    async with running_bridge(cfg, roles=("reply",), in_memory=True) as daemon:
        assert daemon.ctx is not None
        for i, t in enumerate(threads):
            await queue_reply(daemon.ctx, reply_for(i, t), "none")
        await eventually(lambda: _n_posted(daemon, n), timeout=30)
        stored = await daemon.ctx.store.list_replies()

    posts = weibo.official_comments()
    attempts = sum(1 for _, endpoint in weibo.state.requests if endpoint == "comments/reply.json")
    limited = attempts - len(posts)  # every other answer was the rate-limit error
    windows = Counter(int(c.created_at // 3.0) for c in posts)
    print(
        f"\n{len(posts)} replies posted; platform refusals with {E_USER_RATE}: {limited};"
        f" posts per platform window: {sorted(windows.values())}"
    )
    assert limited >= 1  # the platform did refuse at least once
    assert len(posts) == n
    assert Counter(c.reply_cid for c in posts) == Counter(int(t.reply_to["cid"]) for t in threads)
    assert {s.state for s in stored} == {"posted"}
    assert max(windows.values()) <= 4


async def _n_posted(daemon: Daemon, n: int) -> bool:
    return await posted_count(daemon) >= n


async def test_quota_spends_itself_on_first_acknowledgements_before_second_replies(
    tmp_path: Path, weibo: WeiboSim
) -> None:
    """200 inquiries on one Weibo account limited to 60 comments per (shortened) window,
    while officials already move every ticket on: every inquiry hears from the bridge before
    any inquiry hears twice; pending statuses of one ticket become one reply; nothing lost."""
    tickets = RestSimServer(RestTicketState())
    await tickets.start()
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
        accounts=[
            {
                "adapter": "weibo",
                "handle": HANDLE,
                "department": "transport",
                "token": weibo.state.token,
                "base_url": weibo.server.url + "/2/",
                "poll": "200ms",
                "page_size": 200,
                "reply_limit": {"max_calls": MAX_PER_WINDOW, "period": f"{WINDOW_S}s"},
            }
        ],
    )
    comments = [
        weibo.state.add_citizen_comment(f"第{i}处路灯不亮，请尽快修理", citizen=f"市民{i:03d}")
        for i in range(N_REPLIES)
    ]
    try:
        async with running_bridge(cfg, in_memory=True) as daemon:
            assert daemon.ctx is not None
            store = daemon.ctx.store

            async def all_ticketed() -> bool:
                return len(tickets.state.tickets) == N_REPLIES

            await eventually(all_ticketed, timeout=60)
            for ticket_id in list(tickets.state.tickets):  # officials start work at once
                await tickets.state.move(ticket_id, "IN_PROGRESS", None)

            async def everyone_told_in_progress() -> bool:
                rows = await store.list_replies(state="posted")
                return sum(1 for r in rows if r.status == "in_progress") == N_REPLIES

            await eventually(everyone_told_in_progress, timeout=120)
            await asyncio.sleep(0.5)
            stored = await store.list_replies()
    finally:
        await tickets.close()

    posts = weibo.official_comments()
    by_target: dict[int, list[Any]] = {}
    for c in posts:
        by_target.setdefault(c.reply_cid, []).append(c)
    assert set(by_target) == {c.id for c in comments}  # every inquiry answered in its thread
    last_first = max(replies[0].created_at for replies in by_target.values())
    seconds = [r.created_at for replies in by_target.values() for r in replies[1:]]
    print(
        f"\n{len(posts)} posts for {N_REPLIES} inquiries; {len(seconds)} second replies, the"
        f" first of them {min(seconds) - last_first:.2f} s after the last first reply"
    )
    assert seconds and min(seconds) > last_first  # all first replies before any second
    assert busiest_window([c.created_at for c in posts], WINDOW_S) <= MAX_PER_WINDOW
    # nothing lost: every status is posted or was overtaken by the later one posted instead
    states = Counter((r.status, r.state) for r in stored)
    assert states[("in_progress", "posted")] == N_REPLIES
    assert states[("received", "posted")] + states[("received", "superseded")] == N_REPLIES
    assert states[("received", "superseded")] > 0  # merged where both were pending
    assert all(r.merged_into for r in stored if r.state == "superseded")
    assert len(posts) == len([r for r in stored if r.state == "posted"])
