"""Polling that spends an account's call budget where it matters (issue 25, must-show 3).

A platform gives each account a budget of calls per window (Weibo's test tier: 150 calls an
hour, posts included, counted per clock hour). A fixed interval either wastes it on a quiet
account or runs out of it in a burst. :class:`PollPacer` picks the wait before each poll:

- **never over budget**: the polls' share of the window (the budget less what posting may
  take, ``reserve``) is counted, and a poll that would overrun it waits for the next window;
- **fast while citizens write**: after a poll that found items the next comes after
  ``fastest``, or later if that pace would spend the rest of the window too soon (at most
  ``hot_share`` of the even spread that is left: ``hot_share * time left / polls left``);
  each empty poll after that doubles the wait, back towards the quiet pace;
- **slow when quiet**: the configured ``poll`` interval, or the even spread of what is left if
  that is slower, at most ``slowest``. What a quiet start leaves unspent is there for a burst.

Windows are aligned on multiples of the period since the epoch (clock hours for an hour), as
Weibo's and the simulator's are. The spend is kept in the store (``pace:<account>``, beside the
cursor) so a restart or another process taking the account over starts from the true count.

The pacer is pure (a clock is passed in): ``govbridge_tools.bench.pacing`` runs it on a
simulated clock for the figures in docs/performance.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class PollPacer:
    budget: int  # calls per window for polls (posting's reserve already taken off)
    window: float  # seconds
    base: float  # the account's configured poll interval (the quiet pace)
    fastest: float = 10.0
    slowest: float = 600.0
    hot_share: float = 0.25
    clock: Callable[[], float] = field(default=lambda: 0.0)
    window_index: int = field(default=-1, init=False)
    spent: int = field(default=0, init=False)
    cost: float = field(default=1.0, init=False)  # calls one poll took lately
    empty_polls: int = field(default=1_000, init=False)  # since the last that found items
    next_at: float | None = field(default=None, init=False)
    over_budget: int = field(default=0, init=False)  # polls that overran (should stay 0)

    def _roll(self, now: float) -> None:
        index = int(now // self.window)
        if index != self.window_index:
            self.window_index, self.spent = index, 0

    def remaining(self, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        self._roll(now)
        return max(0, self.budget - self.spent)

    def record(self, calls: int, found: int, *, now: float | None = None) -> None:
        """A poll happened: ``calls`` spent, ``found`` new items."""
        now = self.clock() if now is None else now
        self._roll(now)
        self.spent += calls
        if self.spent > self.budget:
            self.over_budget += 1
        if calls > 0:
            self.cost = 0.7 * self.cost + 0.3 * calls if self.cost else float(calls)
        self.empty_polls = 0 if found else self.empty_polls + 1

    def can_spend(self, calls: float | None = None, *, now: float | None = None) -> bool:
        """Whether a poll of ``calls`` (default: the recent cost) fits in this window."""
        need = max(1, math.ceil(self.cost if calls is None else calls))
        return self.remaining(now) >= need

    def wait(self, *, more: bool = False, now: float | None = None) -> float:
        """Seconds until the next poll; ``more``: a backlog is being drained (at once while
        the window allows)."""
        now = self.clock() if now is None else now
        self._roll(now)
        window_end = (self.window_index + 1) * self.window
        left = window_end - now
        need = max(1, math.ceil(self.cost))
        remaining = self.budget - self.spent
        if remaining < need:
            wait = left + 0.5  # nothing left in this window: the next one
        elif more:
            wait = 0.0
        else:
            even = left / (remaining / need)  # spreading what is left evenly
            quiet = min(self.slowest, max(self.base, even))
            hot = max(self.fastest, self.hot_share * even)
            wait = min(quiet, hot * 2**self.empty_polls) if self.empty_polls < 30 else quiet
        self.next_at = now + wait
        return wait

    # ------------------------------------------------------------ kept in the store
    def dump(self) -> str:
        return json.dumps({"window": self.window_index, "spent": self.spent})

    def load(self, text: str | None, *, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._roll(now)
        if not text:
            return
        try:
            kept = json.loads(text)
            if int(kept["window"]) == self.window_index:
                self.spent = max(self.spent, int(kept["spent"]))
        except (ValueError, KeyError, TypeError):
            return

    def describe(self, now: float | None = None) -> dict[str, object]:
        now = self.clock() if now is None else now
        return {
            "budget": self.budget,
            "spent": self.spent if int(now // self.window) == self.window_index else 0,
            "window_s": self.window,
            "next_poll_in_s": None if self.next_at is None else round(self.next_at - now, 1),
        }
