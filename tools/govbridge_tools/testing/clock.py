"""A clock the test moves by hand: rate-limit windows, circuit breakers and simulators' quotas
become deterministic. Anything that takes a ``clock: Callable[[], float]`` accepts it."""

from __future__ import annotations


class ManualClock:
    """Stands still at ``t`` (seconds) until the test moves it."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        """Move forward (never back) and return the new time."""
        if seconds < 0:
            raise ValueError("a manual clock only moves forward")
        self.t += seconds
        return self.t
