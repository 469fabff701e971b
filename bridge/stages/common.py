"""What several roles share: the adapter instances (one per account / department) and the
small helpers that turn adapter errors into runtime outcomes."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING

from adapters.base import Source, TicketSystem, make_source, make_ticket_system
from schemas.config import AccountConfig

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext


def account_key(adapter: str, handle: str) -> str:
    return f"{adapter}:{handle}"


def sources(ctx: BridgeContext) -> dict[str, Source]:
    """One source adapter per configured account, shared by ingest and the reply outbox."""
    found: dict[str, Source] | None = ctx.extras.get("sources")
    if found is None:
        found = {account_key(a.adapter, a.handle): make_source(a) for a in ctx.cfg.accounts}
        ctx.extras["sources"] = found
    return found


def replace_source(ctx: BridgeContext, account: AccountConfig) -> Source:
    """Swap an account's adapter (e.g. after the operator replaced an expired token)."""
    found = sources(ctx)
    key = account_key(account.adapter, account.handle)
    fresh = make_source(account)
    found[key] = fresh
    return fresh


def ticket_systems(ctx: BridgeContext) -> dict[str, TicketSystem]:
    found: dict[str, TicketSystem] | None = ctx.extras.get("ticket_systems")
    if found is None:
        found = {d.id: make_ticket_system(d) for d in ctx.cfg.departments}
        ctx.extras["ticket_systems"] = found
    return found


def source_for(ctx: BridgeContext, platform: str, handle: str) -> Source | None:
    """The adapter of a configured account on that platform (by adapter name or platform)."""
    found = sources(ctx)
    for acc in ctx.cfg.accounts:
        if acc.handle != handle:
            continue
        if platform in (acc.adapter, getattr(acc, "platform", acc.adapter)):
            return found[account_key(acc.adapter, acc.handle)]
    return None


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early on stop; True when stopping."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    return stop.is_set()


def longest_delay(ctx: BridgeContext) -> timedelta:
    return ctx.cfg.broker.retry_delays[-1]
