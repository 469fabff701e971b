"""A small per-system circuit breaker.

While a backend is down, every queued message would otherwise make its own doomed request (and
wait for its own timeout). The breaker opens after ``failure_threshold`` consecutive transient
failures; while open it raises ``TransientError`` at once without touching the network, so the
runtime's retry tiers back off and the backend sees a bounded number of requests. After
``cooldown`` one probe call is let through (half-open): success closes the circuit, failure
opens it again for another cool-down.

Only ``TransientError`` (not ``RateLimited``) counts as a failure: an auth or validation error
proves the backend is up, and a rate limit is the backend working as designed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Literal, Protocol, TypeVar, runtime_checkable

import structlog

from adapters.base import AdapterError, RateLimited, TransientError

T = TypeVar("T")
CircuitState = Literal["closed", "open", "half_open"]

log = structlog.get_logger(__name__)


class CircuitBreaker:
    """Consecutive-failure breaker; safe to share between concurrent tasks of one event loop."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        cooldown: float | timedelta = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown.total_seconds() if isinstance(cooldown, timedelta) else cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.short_circuited = 0  # calls refused without a request (for metrics and tests)

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def _admit(self) -> bool:
        """Let a call through or raise; return True when the call is the half-open probe."""
        if self._opened_at is None:
            return False
        remaining = self.cooldown - (self._clock() - self._opened_at)
        if remaining > 0 or self._probing:
            self.short_circuited += 1
            wait = max(remaining, 0.0) if not self._probing else self.cooldown
            raise TransientError(
                f"{self.name}: circuit open after {self._failures} consecutive failures",
                retry_after=timedelta(seconds=wait),
                not_sent=True,
            )
        self._probing = True
        return True

    def _record_success(self) -> None:
        if self._opened_at is not None:
            log.info("circuit_closed", system=self.name)
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def _record_failure(self, probe: bool) -> None:
        self._failures += 1
        if probe or (self._opened_at is None and self._failures >= self.failure_threshold):
            if self._opened_at is None:
                log.warning("circuit_opened", system=self.name, failures=self._failures)
            self._opened_at = self._clock()
        if probe:
            self._probing = False

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """``async with breaker.guard(): await do_request()`` — same rules as ``call``."""
        probe = self._admit()
        try:
            yield
        except RateLimited:
            self._record_success()
            raise
        except TransientError:
            self._record_failure(probe)
            raise
        except AdapterError:
            # Auth or validation errors prove the backend answered.
            self._record_success()
            raise
        except BaseException:
            # A bug or a cancellation says nothing about the backend: only free the probe slot.
            if probe:
                self._probing = False
            raise
        else:
            self._record_success()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` through the breaker."""
        async with self.guard():
            return await fn()


@runtime_checkable
class ReportsHealth(Protocol):
    """Optional for ticket systems behind a circuit breaker: while the circuit is not closed the
    backend is judged down, and work waiting for it does not count its attempts."""

    breaker: CircuitBreaker
