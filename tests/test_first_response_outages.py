"""Answered within the first-response limit even when something is down (issue 25, must show 4):
three bridge processes on PostgreSQL, and

- ``two SIGKILLs during creates``: the Open311 server is slow to answer a create (a second),
  and twice the process waiting for such an answer is killed (the simulator names it) and
  restarted. Its creates are taken over as soon as its database session is gone (the create
  lease), not after ``create_lease``. For the first kill the server has stored the ticket before
  answering (the takeover finds it at once); for the second it stores it only when it answers,
  a second after the request, whether or not the client is still there (the takeover does not
  find it at once, looks again after ``create_settle`` and finds it; the citizen meanwhile has
  the holding acknowledgement when the limit's half comes first);
- ``an outage far longer than the limit``: the ticket system answers 503 for 10/3 of the
  first-response limit while citizens keep writing. Each citizen gets the holding
  acknowledgement (no number yet) within the limit, then 已受理 with the number once the system
  is back.

Counted from the simulators' own records: the time of each citizen's post and of every comment
the official account made under it (Weibo), and the tickets by the bridge's reference (Open311):
every post's first answer (the holding acknowledgement or 已受理) within the limit of the post,
exactly one 已受理 per post naming a ticket of its own, at most one holding acknowledgement and
only before the 已受理, no other reply, no duplicate ticket.

Scaled clock: the issue's limit is 3 minutes and its outage 10 minutes. Here every duration of
the service is a twentieth of its real value (``GOVBRIDGE_FIRST_RESPONSE_SCALE``, 0.05): the
limit 9 s, the outage 30 s, the acknowledgement due at half the limit (4.5 s) and looked for
every 0.5 s (10 s real), the outbox lease, settle waits and the ticket system's breaker
cool-down a twentieth of their defaults (``create_settle`` 4 s, above the adapter's 3 s
timeout); ``create_lease`` (the wait for a live holder that got no answer) is left at ten
minutes, so no create here is saved by waiting it out. ``GOVBRIDGE_FIRST_RESPONSE_SCALE=1``
runs the issue's own minutes (about half an hour).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import PID, Cluster
from tests.conftest import eventually
from tests.pg import PG_ADMIN
from tests.pg import pg_available as _pg_available

SCALE = float(os.environ.get("GOVBRIDGE_FIRST_RESPONSE_SCALE", "0.05"))
LIMIT = round(180 * SCALE)  # seconds: the first-response limit, 3 minutes scaled
OUTAGE = 600 * SCALE  # the ticket system down 10 minutes, scaled
CREATE_ANSWER = max(1.0, 20 * SCALE)  # how long the slow Open311 takes to answer a create

pytestmark = pytest.mark.timeout(max(300.0, 40 * OUTAGE))  # slow: conftest SLOW_SUITES

ACK = "正在登记转办"
RECEIVED = "已受理"
NUMBER = re.compile(r"工单号(\S+?)，")


def _s(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def scaled_cluster(tmp_path: Path) -> Cluster:
    """Three accounts, one department on Open311, every clock of the service scaled."""
    return Cluster(
        tmp_path,
        extra_config={
            "ranking": {"first_response": f"{LIMIT}s"},
            "sla": {"check_every": _s(5), "acknowledge_every": _s(10 * SCALE)},
            "outbox": {
                "lease": _s(max(3.0, 120 * SCALE)),
                "scan_every": _s(max(0.1, 2 * SCALE)),
                "settle": [_s(s * SCALE) for s in (5, 15, 45, 135)],
            },
            "broker": {"retry_delays": ["250ms", "500ms", "1s", "1500ms", "3s", "5s"]},
        },
        ticketing={
            # only for a live holder without an answer: a dead holder's create must not
            # wait for it (the run waited 300 s), so it is left long, unscaled
            "create_lease": "10m",
            # above the adapter's timeout, as in production (20 s > 15 s)
            "create_settle": _s(max(4.0, 20 * SCALE)),
            "breaker_cooldown": _s(30 * SCALE),
            "timeout": _s(max(3.0, 15 * SCALE)),
        },
    )


def answers(cluster: Cluster) -> dict[tuple[str, int], list[tuple[float, str]]]:
    """Every post -> the official account's comments under it: (seconds after the post, text),
    in the order posted. From the Weibo simulator's own records."""
    out: dict[tuple[str, int], list[tuple[float, str]]] = {p: [] for p in cluster.posts}
    for account in cluster.accounts:
        state = account.state
        for c in sorted(state.comments.values(), key=lambda c: (c.created_at, c.id)):
            if c.user_id != state.official_uid or c.deleted:
                continue
            key = (account.handle, c.status_id)
            post = state.statuses[c.status_id]
            out.setdefault(key, []).append((c.created_at - post.created_at, c.text))
    return out


def numbered(cluster: Cluster) -> bool:
    return all(any(RECEIVED in t for _, t in got) for got in answers(cluster).values())


def judge(cluster: Cluster, name: str) -> dict[str, Any]:
    """The outcome, counted from the simulators; the figures printed (docs/reliability.md)."""
    got = answers(cluster)
    tickets = cluster.tickets_by_reference()
    firsts = [replies[0][0] for replies in got.values() if replies]
    acked = [r for replies in got.values() for r in replies if ACK in r[1]]
    numbers = [
        m.group(1) for replies in got.values() for _, t in replies if (m := NUMBER.search(t))
    ]
    figures = {
        "scenario": name,
        "inquiries": len(cluster.posts),
        "tickets": len(tickets),
        "tickets_duplicated": sum(n - 1 for n in tickets.values() if n > 1),
        "unanswered": sum(1 for replies in got.values() if not replies),
        "first_answer_over_limit": sum(1 for s in firsts if s > LIMIT),
        "first_answer_s_median": round(statistics.median(firsts), 2) if firsts else None,
        "first_answer_s_max": round(max(firsts), 2) if firsts else None,
        "holding_acknowledgements": len(acked),
        "acknowledgement_s_max": round(max(s for s, _ in acked), 2) if acked else None,
        "number_s_max": max(
            (s for replies in got.values() for s, t in replies if RECEIVED in t), default=None
        ),
        "numbers_told": len(numbers),
        "numbers_distinct": len(set(numbers)),
        "limit_s": LIMIT,
    }
    if figures["number_s_max"] is not None:
        figures["number_s_max"] = round(figures["number_s_max"], 2)
    print(json.dumps(figures, ensure_ascii=False), flush=True)
    # No duplicate ticket, and one ticket per inquiry.
    assert figures["tickets"] == figures["inquiries"], figures
    assert figures["tickets_duplicated"] == 0, figures
    # Everyone answered within the limit of their own post.
    assert figures["unanswered"] == 0, figures
    late = {p: r for p, r in got.items() if r and r[0][0] > LIMIT}
    if late:
        print("late:", late, "\n", cluster.log_tails(80), flush=True)
    assert figures["first_answer_over_limit"] == 0, (figures, late, cluster.log_tails(60))
    # Each number told once, in its own citizen's thread, and it is a ticket of the system's.
    assert len(numbers) == len(set(numbers)) == len(cluster.posts), figures
    assert set(numbers) == set(cluster.open311.tickets), figures
    for post, replies in got.items():
        texts = [t for _, t in replies]
        kinds = ["ack" if ACK in t else "received" if RECEIVED in t else "other" for t in texts]
        # at most one holding acknowledgement, only before the number; nothing else
        assert kinds in (["received"], ["ack", "received"]), (post, texts)
    return figures


async def start(cluster: Cluster) -> None:
    """Three bridge processes, each started (all its roles running) before citizens write."""
    await cluster.start()
    for _ in range(3):
        await cluster.spawn()

    async def all_started() -> bool:
        logs = [cluster.workdir / f"bridge{k}.log" for k in range(len(cluster.procs))]
        return all(log.exists() and "govbridge started" in log.read_text() for log in logs)

    await eventually(all_started, timeout=120)


async def test_two_sigkills_during_creates_everyone_answered_within_the_limit(
    tmp_path: Path,
) -> None:
    if not await _pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    cluster = scaled_cluster(tmp_path)
    cluster.open311.create_delay = CREATE_ANSWER
    await start(cluster)
    kills: list[float] = []
    try:
        killed = 0
        for round_ in range(2):
            # second round: a slow commit (stored only when answered, even to a dead client)
            cluster.open311.create_commits_late = round_ == 1
            # Citizens write; once a process is waiting for a create's answer, it dies.
            cluster.add_inquiries(6)

            async def mid_create() -> bool:
                alive = {p.pid for p in cluster.alive()}
                return any(
                    (m := PID.search(agent)) and int(m.group(1)) in alive
                    for agent in list(cluster.open311.answering)
                )

            await eventually(mid_create, timeout=60)
            pids = [int(m.group(1)) for a in cluster.open311.answering if (m := PID.search(a))]
            victim = next(p for p in cluster.alive() if p.pid in pids)
            kills.append(time.time())
            await cluster.sigkill(victim)
            killed += 1
            cluster.add_inquiries(6)
            await cluster.spawn()  # the supervisor restarts it
            await asyncio.sleep(LIMIT / 3)
        assert killed == 2
        await eventually(lambda: _true(numbered(cluster)), timeout=30 * LIMIT)
        await asyncio.sleep(2.0)  # a late duplicate would land now
        figures = judge(cluster, "two SIGKILLs during creates")
        assert figures["inquiries"] == 24
        # The dead processes' creates were taken over (found by reference: one POST each).
        takeovers = taken_over(cluster)
        after = [round(min((t - k for t in takeovers if t >= k), default=-1), 2) for k in kills]
        print(f"creates taken over: {len(takeovers)}, first after each kill (s): {after}")
        assert takeovers and all(a >= 0 for a in after), (takeovers, kills)
        assert cluster.open311.requests_by_route["POST /requests.{fmt}"] == 24
    finally:
        await cluster.close()


async def test_ticket_system_down_far_longer_than_the_limit_holding_then_number(
    tmp_path: Path,
) -> None:
    if not await _pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    cluster = scaled_cluster(tmp_path)
    await start(cluster)
    try:
        await cluster.open311.set_outage("503")
        down = time.time()
        # Citizens keep writing while it is down, each with a whole limit of outage ahead.
        batches = 8
        for _ in range(batches):
            cluster.add_inquiries(3)
            await asyncio.sleep((OUTAGE - LIMIT) / batches)
        await asyncio.sleep(max(0.0, down + OUTAGE - time.time()))
        # Before it comes back: everyone has had the holding acknowledgement, nobody a number.
        during = answers(cluster)
        assert not cluster.open311.tickets
        assert all([ACK in t for _, t in replies] == [True] for replies in during.values()), during
        await cluster.open311.set_outage(None)
        up = time.time()
        await eventually(lambda: _true(numbered(cluster)), timeout=30 * LIMIT)
        told = time.time() - up
        await asyncio.sleep(2.0)  # a late duplicate would land now
        figures = judge(cluster, f"Open311 answering 503 for {OUTAGE:.0f} s")
        print(f"every number told {told:.1f} s after the ticket system came back", flush=True)
        assert figures["holding_acknowledgements"] == figures["inquiries"] == 24
    finally:
        await cluster.close()


def taken_over(cluster: Cluster) -> list[float]:
    """When a bridge process took over a create whose holder was gone (from their logs)."""
    out = []
    for k in range(len(cluster.procs)):
        for line in (cluster.workdir / f"bridge{k}.log").read_text().splitlines():
            if "create taken over" in line and line.startswith("{"):
                at = json.loads(line)["timestamp"].replace("Z", "+00:00")
                out.append(datetime.fromisoformat(at).timestamp())
    return sorted(out)


async def _true(value: bool) -> bool:
    return value
