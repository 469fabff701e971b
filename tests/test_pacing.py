"""Adaptive polling (issue 25, must-show 3): the pacer never spends over the account's budget,
polls faster while citizens write and slower when quiet, and keeps its spend across restarts.

- on a simulated clock (``govbridge_tools.bench.pacing``, the figures in docs/performance.md):
  a quiet hour, then 100 mentions on a 150-calls/hour account: no call refused, no window over
  budget, and the burst acknowledged sooner than with fixed 60 s polling;
- end to end, the bridge against the Weibo simulator with a short window: the polls of each
  window stay inside the budget (counted from the simulator's own log), every mention of a
  burst is answered, and ``/readyz`` shows the budget, the spend and the next poll.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from govbridge_tools.bench.pacing import Scenario, simulate
from govbridge_tools.simulators import open311 as open311_sim
from govbridge_tools.simulators.weibo import Limits
from govbridge_tools.testing import Simulators

from bridge.runtime.pacing import PollPacer
from tests.conftest import bridge_config, eventually, running_bridge

HANDLE = "jtw_paced"


def test_a_burst_is_polled_fast_and_a_quiet_account_slowly() -> None:
    pacer = PollPacer(budget=90, window=3600, base=60, fastest=10, slowest=600)
    now = 7200.0
    pacer.record(1, 0, now=now)
    assert pacer.wait(now=now) == 60  # quiet: the configured pace
    pacer.record(1, 5, now=now)
    hot = pacer.wait(now=now)
    assert 10 <= hot < 11  # items found: the fastest pace the budget allows
    pacer.record(1, 0, now=now + 10)
    assert 2 * hot <= pacer.wait(now=now + 10) < 2 * 11  # each empty poll doubles the wait


def test_the_pacer_never_spends_over_the_budget_however_busy() -> None:
    pacer = PollPacer(budget=30, window=3600, base=60, fastest=1, slowest=600)
    now, spent = 3600.0, Counter[int]()
    while now < 4 * 3600:
        if pacer.can_spend(3, now=now):
            spent[int(now // 3600)] += 3
            pacer.record(3, 10, now=now)  # every poll finds items
        now += max(pacer.wait(now=now), 0.001)
    assert max(spent.values()) <= 30 and pacer.over_budget == 0
    assert min(spent.values()) >= 27  # and the budget is used


def test_the_spend_survives_a_restart() -> None:
    first = PollPacer(budget=30, window=3600, base=60)
    first.record(3, 0, now=3700)
    second = PollPacer(budget=30, window=3600, base=60)
    second.load(first.dump(), now=3800)
    assert second.remaining(now=3800) == 27
    second.load(first.dump(), now=7300)  # another window: nothing spent yet
    assert second.remaining(now=7300) == 30


def test_must_show_3_quiet_hour_then_100_mentions_against_fixed_60s_polling() -> None:
    for streams in (1, 3):
        sc = Scenario(streams=streams, burst_at=20 * 60 + 17)
        adaptive, fixed = simulate("adaptive", sc), simulate("fixed", sc)
        assert adaptive.refused == 0
        assert max(adaptive.calls_per_window.values()) <= sc.budget
        assert len(adaptive.waits) == len(fixed.waits) == 100  # everyone answered, both ways
        # the burst's first acknowledgements (the posting quota's worth) come sooner
        assert adaptive.quantile(0.5, 60) < fixed.quantile(0.5, 60)
        assert adaptive.quantile(0.9, 60) < fixed.quantile(0.9, 60)


# --------------------------------------------------------------------------- end to end


async def test_paced_polls_stay_inside_the_budget_of_each_window(
    tmp_path: Path, sims: Simulators
) -> None:
    window = 15.0
    weibo = await sims.weibo(official_name=HANDLE, limits=Limits(calls=40, window=window))
    open311 = await sims.open311()
    state = weibo.state
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                "ticketing": {**open311_sim.demo_ticketing_config(open311.base_url), "poll": "1s"},
            }
        ],
        accounts=[
            {
                "adapter": "weibo",
                "handle": HANDLE,
                "department": "transport",
                "token": state.token,
                "base_url": weibo.url + "/2/",
                "poll": "3s",
                "poll_fastest": "500ms",
                "poll_slowest": "5s",
                "call_budget": {"max_calls": 40, "period": f"{window:g}s"},
                "reply_limit": {"max_calls": 16, "period": f"{window:g}s"},
            }
        ],
    )
    poll_budget = 40 - 16
    async with running_bridge(cfg) as daemon:
        await asyncio.sleep(window)  # quiet
        for i in range(20):
            state.add_mention_post(f"@{HANDLE} 公交站牌被撞坏了，第{i}处", citizen=f"市民{i}")
        await eventually(lambda: _answered(state, 20), 120)
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{daemon.http_port}/readyz",
                headers={"Authorization": "Bearer test-admin-token"},
            ) as resp,
        ):
            polling = (await resp.json())["polling"][f"weibo:{HANDLE}"]
        assert polling["budget"] == poll_budget and polling["next_poll_in_s"] is not None
    reads = Counter(
        int(at // window) for at, method, endpoint, _ in state.request_log if method == "GET"
    )
    print(
        f"\npolling calls per {window:g} s window (budget {poll_budget}): {sorted(reads.items())}"
    )
    assert max(reads.values()) <= poll_budget


async def _answered(state: Any, n: int) -> bool:
    return len(state.posted_replies()) >= n
