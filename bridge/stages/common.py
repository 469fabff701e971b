"""What several roles share: access to the daemon's adapters (one per account / department,
owned and closed by the daemon's ``AdapterPool``) and small helpers."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING

from adapters.base import Source, TicketSystem
from bridge.adapter_pool import account_key
from schemas.config import AccountConfig

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext


__all__ = ["account_key", "replace_source", "source_for", "sources", "ticket_systems"]


def sources(ctx: BridgeContext) -> dict[str, Source]:
    """One source adapter per configured account, shared by ingest and the reply outbox."""
    return ctx.adapters.sources()


def replace_source(ctx: BridgeContext, account: AccountConfig) -> tuple[Source, Source | None]:
    """Swap an account's adapter: the new one and the old one (the caller closes it)."""
    return ctx.adapters.replace_source(account)


def ticket_systems(ctx: BridgeContext) -> dict[str, TicketSystem]:
    return ctx.adapters.ticket_systems()


def source_for(ctx: BridgeContext, platform: str, handle: str) -> Source | None:
    """The adapter of a configured account on that platform (by adapter name or platform)."""
    return ctx.adapters.source_for(platform, handle)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early on stop; True when stopping."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    return stop.is_set()


def longest_delay(ctx: BridgeContext) -> timedelta:
    return ctx.cfg.broker.retry_delays[-1]
