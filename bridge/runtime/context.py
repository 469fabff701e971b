"""What every role runs with: the daemon's shared context (config, broker, store, metrics,
alerts, the HTTP app for hooks, adapters, credentials, held commands, leases) and the small
protocol a role implements (``create(ctx) -> Role`` in ``bridge/<role>/role.py``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from bridge.runtime.adapters import AdapterPool
from bridge.runtime.alerts import Alerts
from bridge.runtime.broker import Broker
from bridge.runtime.credentials import Credentials
from bridge.runtime.held import HeldCommands
from bridge.runtime.push import PushPipeline
from bridge.runtime.worker import Worker
from bridge.store import Store
from bridge.store.leases import Leases, LocalLeases
from bridge.telemetry.metrics import Metrics
from schemas.config import GovbridgeConfig


class Role(Protocol):
    name: str
    workers: list[Worker[Any]]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class BridgeContext:
    """What roles share. Roles add HTTP routes to ``app`` before it starts."""

    cfg: GovbridgeConfig
    broker: Broker
    store: Store
    metrics: Metrics
    alerts: Alerts
    app: web.Application
    adapters: AdapterPool
    push: PushPipeline
    # credentials as configured or replaced through the API (bridge/runtime/credentials.py)
    credentials: Credentials
    # ticketing commands held while a ticket system refuses the credentials
    # (bridge/runtime/held.py)
    held: HeldCommands
    roles: dict[str, Role] = field(default_factory=dict)
    # unreadable items skipped per account since start (the ingest_rejected alert says it)
    rejected_counts: dict[str, int] = field(default_factory=dict)
    # who polls what: exactly one process per account and per ticket system (bridge.runtime.polling)
    leases: Leases = field(default_factory=LocalLeases)
    # named readiness details a role adds to /readyz (they never make it "not ready")
    details: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = field(default_factory=dict)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early on stop; True when stopping."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    return stop.is_set()
