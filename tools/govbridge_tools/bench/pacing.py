"""Adaptive polling against fixed polling on a simulated clock (issue 25, must-show 3).

One Weibo account with the test tier's budget (150 calls an hour, posts included, counted per
clock hour; at most 60 comments an hour), a quiet hour, then a burst of citizens' mentions.
The bridge's own :class:`bridge.runtime.pacing.PollPacer` decides when to poll; the fixed
poller polls every ``fixed`` seconds and, when the platform refuses it (error 10023), waits
for the next window as the bridge does. Every mention is acknowledged ``pipeline`` seconds
after the poll that read it, when the posting quota of the window allows, else in the next
window. What is measured: post -> first acknowledgement for the burst's mentions, the calls
spent per window, and how many calls the platform refused.

    govbridge-sim pacing    (or: python -m govbridge_tools.bench.pacing)
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from dataclasses import dataclass, field

from bridge.runtime.pacing import PollPacer

HOUR = 3600.0


@dataclass
class Scenario:
    budget: int = 150  # calls per hour, posts included
    comments: int = 60  # posts per hour (the reply quota)
    streams: int = 1  # calls one poll takes (Weibo: one per timeline read)
    page_size: int = 50
    quiet: float = HOUR  # a quiet hour first
    burst: int = 100  # then this many mentions
    burst_span: float = 300.0  # arriving over this long
    burst_at: float = 20 * 60  # minutes into the hour after the quiet one
    pipeline: float = 1.0  # seconds from the poll to the acknowledgement posted
    fixed: float = 60.0  # the fixed poller's interval
    base: float = 60.0  # the adaptive poller's quiet pace (the account's `poll`)
    fastest: float = 10.0
    slowest: float = 600.0
    seed: int = 25


@dataclass
class Outcome:
    mode: str
    waits: list[float]  # post -> first acknowledgement, the burst's mentions, in ack order
    calls_per_window: dict[int, int] = field(default_factory=dict)
    refused: int = 0
    polls: int = 0

    def quantile(self, q: float, first: int | None = None) -> float:
        values = sorted(self.waits[: first or len(self.waits)])
        if not values:
            return math.nan
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    def within(self, seconds: float) -> float:
        return sum(w <= seconds for w in self.waits) / max(1, len(self.waits))


def simulate(mode: str, sc: Scenario | None = None) -> Outcome:
    """Run one poller (``adaptive`` or ``fixed``) through the scenario."""
    sc = sc or Scenario()
    rng = random.Random(sc.seed)
    start = sc.quiet + sc.burst_at
    posted = sorted(start + rng.uniform(0, sc.burst_span) for _ in range(sc.burst))
    end = start + 3 * HOUR
    calls: dict[int, int] = {}
    comments: dict[int, int] = {}
    out = Outcome(mode, [], calls)
    reserve = sc.comments  # posting keeps its quota
    pacer = PollPacer(
        budget=sc.budget - reserve,
        window=HOUR,
        base=sc.base,
        fastest=sc.fastest,
        slowest=sc.slowest,
    )
    read = 0  # mentions read so far (posted in order)
    queue: list[tuple[float, float]] = []  # (read at, posted at) awaiting acknowledgement
    t = 0.0

    def spend(now: float, n: int) -> bool:
        w = int(now // HOUR)
        if calls.get(w, 0) + n > sc.budget:
            out.refused += 1
            return False
        calls[w] = calls.get(w, 0) + n
        return True

    def acknowledge(until: float) -> None:
        """Post the acknowledgements due by ``until`` as the posting quota allows."""
        while queue and queue[0][0] + sc.pipeline <= until:
            read_at, posted_at = queue[0]
            at = read_at + sc.pipeline
            while True:
                w = int(at // HOUR)
                if comments.get(w, 0) < sc.comments and calls.get(w, 0) < sc.budget:
                    break
                at = (w + 1) * HOUR + 1.0  # the next window
            if at > until:
                return
            w = int(at // HOUR)
            comments[w] = comments.get(w, 0) + 1
            calls[w] = calls.get(w, 0) + 1
            out.waits.append(at - posted_at)
            queue.pop(0)

    while t < end and (read < len(posted) or queue):
        acknowledge(t)
        # one poll at t: every stream once, then a page more while a full page came back
        cost = sc.streams
        if mode == "adaptive" and not pacer.can_spend(cost, now=t):
            t += pacer.wait(now=t)
            continue
        if not spend(t, cost):
            t = (int(t // HOUR) + 1) * HOUR + 0.5  # 10023: wait for the window
            continue
        out.polls += 1
        new = [p for p in posted[read:] if p <= t]
        pages = max(1, math.ceil(len(new) / sc.page_size))
        extra = pages - 1 + (1 if len(new) >= sc.page_size else 0)  # drain to an empty page
        taken = len(new)
        if extra and not spend(t, extra):
            taken = 0  # refused mid-drain: read again in the next window
        read += taken
        queue.extend((t, p) for p in new[:taken])
        if mode == "adaptive":
            pacer.record(cost + (extra if taken else 0), taken, now=t)
            t += max(pacer.wait(now=t), 0.001)
        else:
            t += sc.fixed
    acknowledge(end + 10 * HOUR)
    return out


def report(sc: Scenario, offsets: list[float]) -> list[str]:
    rows = []
    for mode in ("fixed", "adaptive"):
        runs = [simulate(mode, Scenario(**{**sc.__dict__, "burst_at": o})) for o in offsets]
        first = sc.comments  # the posting quota's worth: what one hour can acknowledge
        p50 = statistics.mean(r.quantile(0.5, first) for r in runs)
        p90 = statistics.mean(r.quantile(0.9, first) for r in runs)
        first_ack = statistics.mean(r.waits[0] for r in runs)
        within = statistics.mean(r.within(180) for r in runs)
        most = max(max(r.calls_per_window.values()) for r in runs)
        refused = sum(r.refused for r in runs)
        rows.append(
            f"| {mode} | {first_ack:.0f} s | {p50:.0f} s | {p90:.0f} s | {within:.0%} |"
            f" {most} / {sc.budget} | {refused} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--burst", type=int, default=100)
    args = p.parse_args(argv)
    sc = Scenario(streams=args.streams, burst=args.burst)
    offsets = [m * 60.0 + (m * 23) % 60 for m in range(0, 60, 5)]  # not on a poll tick
    print(
        f"{sc.burst} mentions over {sc.burst_span:.0f} s after a quiet hour;"
        f" {sc.budget} calls/h ({sc.comments} of them posts), {sc.streams} call(s) a poll;"
        f" mean over {len(offsets)} burst starts (about every 5 min of the hour)"
    )
    print(
        "| polling | first mention acknowledged | p50 (first 60) | p90 (first 60) |"
        " within 3 min (all) | most calls in a window | calls refused |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in report(sc, offsets):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
