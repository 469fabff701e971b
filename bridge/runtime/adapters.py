"""The daemon's adapters: one source per configured account, one ticket system per department.

Owned by the daemon, not by a role: they are made once on first use (whatever roles the
process runs), shared by every stage, and closed once when the daemon stops, after the roles.
A process running only ``sync`` closes its HTTP sessions like one running everything.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from adapters.base import Source, TicketSystem, make_source, make_ticket_system
from schemas.config import AccountConfig, DepartmentConfig, GovbridgeConfig

log = structlog.get_logger("govbridge.adapters")

# A replaced adapter is closed this long after it was replaced: calls in flight on it (a create,
# a post) finish first instead of being cut off with an outcome nobody knows.
RETIRE_GRACE_S = 60.0


class AdapterPool:
    def __init__(self, cfg: GovbridgeConfig) -> None:
        self.cfg = cfg
        self._sources: dict[str, Source] | None = None
        self._systems: dict[str, TicketSystem] | None = None
        self._retired: list[Source | TicketSystem] = []  # a list: adapters need not hash
        self._closing: set[asyncio.Task[None]] = set()
        self.closed = False

    def sources(self) -> dict[str, Source]:
        """By account key (``AccountConfig.key``); made on first use."""
        if self._sources is None:
            self._sources = {a.key: make_source(a) for a in self.cfg.accounts}
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
        old = found.get(account.key)
        found[account.key] = make_source(account)
        return found[account.key], old

    def replace_ticket_system(self, department: DepartmentConfig) -> TicketSystem:
        """Swap a department's ticket system (its credentials were replaced); the old one is
        retired (closed after the grace)."""
        found = self.ticket_systems()
        old = found.get(department.id)
        found[department.id] = make_ticket_system(department)
        if old is not None:
            self.retire(old)
        return found[department.id]

    def existing_ticket_system(self, dept_id: str) -> TicketSystem | None:
        """The department's ticket system if this process made it (none is made to ask)."""
        return (self._systems or {}).get(dept_id)

    def retire(self, adapter: Source | TicketSystem) -> None:
        """Close a replaced adapter after ``RETIRE_GRACE_S`` (or when the pool closes)."""
        self._retired.append(adapter)

        async def later() -> None:
            await asyncio.sleep(RETIRE_GRACE_S)
            if any(a is adapter for a in self._retired):
                self._retired = [a for a in self._retired if a is not adapter]
                with contextlib.suppress(Exception):
                    await adapter.close()

        task = asyncio.get_running_loop().create_task(later())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def source_for(self, platform: str, handle: str) -> Source | None:
        """The adapter of a configured account on that platform (by adapter name or platform)."""
        account = self.cfg.account_on(platform, handle)
        return self.sources()[account.key] if account is not None else None

    async def close(self) -> None:
        """Close every adapter once; a failure is logged and the others still close."""
        if self.closed:
            return
        self.closed = True
        for task in list(self._closing):
            task.cancel()
        adapters: list[Source | TicketSystem] = [
            *(self._sources or {}).values(),
            *(self._systems or {}).values(),
            *self._retired,
        ]
        self._retired.clear()
        for adapter in adapters:
            try:
                await adapter.close()
            except Exception as exc:
                log.warning("closing an adapter failed", adapter=adapter.name, error=repr(exc))
