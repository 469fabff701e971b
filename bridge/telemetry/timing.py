"""Where each stage's time goes (store, broker, HTTP, classification), for ``govbridge bench``
and ``/metrics``.

The runtime names the stage a coroutine works for (``stage``); the store, the broker and the
stages add the seconds of each call to that stage's part (``timed``). Totals are exported as
``govbridge_time_spent_seconds_total{stage, part}``: a stage's handler time minus these parts
is its own CPU (validation, JSON, templates) and waiting.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

current_stage: ContextVar[str] = ContextVar("govbridge_stage", default="other")
_totals: defaultdict[tuple[str, str], float] = defaultdict(float)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Work done inside is counted for stage ``name``."""
    token = current_stage.set(name)
    try:
        yield
    finally:
        current_stage.reset(token)


class timed:  # lower case: used as a function, ``with timed("store"):``
    """Add the block's wall time to ``part`` of the current stage. A class, not a
    ``@contextmanager`` generator: it wraps every store call and every publish, and a
    generator's context manager costs several times as much to enter and leave."""

    __slots__ = ("_part", "_started")

    def __init__(self, part: str) -> None:
        self._part = part
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        _totals[(current_stage.get(), self._part)] += time.perf_counter() - self._started


def totals() -> dict[tuple[str, str], float]:
    return dict(_totals)


class TimeSpentCollector(Collector):
    """Exports the totals of this process."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "govbridge_time_spent_seconds",
            "Wall time spent per stage in the store, the broker, HTTP calls and classification",
            labels=["stage", "part"],
        )
        for (stage_name, part), seconds in sorted(_totals.items()):
            family.add_metric([stage_name, part], seconds)
        yield family
