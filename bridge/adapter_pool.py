"""The daemon's adapters: one source per configured account, one ticket system per department.

Owned by the daemon, not by a role: they are made once on first use (whatever roles the
process runs), shared by every stage, and closed once when the daemon stops, after the roles.
A process running only ``sync`` closes its HTTP sessions like one running everything.
"""

from __future__ import annotations

import structlog

from adapters.base import Source, TicketSystem, make_source, make_ticket_system
from schemas.config import AccountConfig, GovbridgeConfig

log = structlog.get_logger("govbridge.adapters")


def account_key(adapter: str, handle: str) -> str:
    return f"{adapter}:{handle}"


class AdapterPool:
    def __init__(self, cfg: GovbridgeConfig) -> None:
        self.cfg = cfg
        self._sources: dict[str, Source] | None = None
        self._systems: dict[str, TicketSystem] | None = None
        self.closed = False

    def sources(self) -> dict[str, Source]:
        """By ``account_key``; made on first use."""
        if self._sources is None:
            self._sources = {
                account_key(a.adapter, a.handle): make_source(a) for a in self.cfg.accounts
            }
        return self._sources

    def ticket_systems(self) -> dict[str, TicketSystem]:
        """By department id; made on first use."""
        if self._systems is None:
            self._systems = {d.id: make_ticket_system(d) for d in self.cfg.departments}
        return self._systems

    def replace_source(self, account: AccountConfig) -> tuple[Source, Source | None]:
        """Swap an account's adapter (after the operator replaced an expired token): the new
        one and the one it replaces, which the caller closes (nothing it does can succeed)."""
        found = self.sources()
        key = account_key(account.adapter, account.handle)
        old = found.get(key)
        found[key] = make_source(account)
        return found[key], old

    def source_for(self, platform: str, handle: str) -> Source | None:
        """The adapter of a configured account on that platform (by adapter name or platform)."""
        found = self.sources()
        for acc in self.cfg.accounts:
            if acc.handle == handle and platform in (acc.adapter, acc.platform_name):
                return found[account_key(acc.adapter, acc.handle)]
        return None

    async def close(self) -> None:
        """Close every adapter once; a failure is logged and the others still close."""
        if self.closed:
            return
        self.closed = True
        adapters: list[Source | TicketSystem] = [
            *(self._sources or {}).values(),
            *(self._systems or {}).values(),
        ]
        for adapter in adapters:
            try:
                await adapter.close()
            except Exception as exc:
                log.warning("closing an adapter failed", adapter=adapter.name, error=repr(exc))
