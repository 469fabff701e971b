"""Ticketing commands held while the ticket system refuses the bridge's credentials.

A create (or follow-up) the ticket system refuses for its key is not parked in the longest
delay tier, where it would sit for an hour after the key was fixed: it is kept in the store's
``held_commands`` table (the broker message is acknowledged once the row is written) and put
back on the bus (``inquiry.routed.<department>``) as soon as there is reason to think the
credentials work again:

- they were replaced through the admin API, in any process (``bridge/runtime/credentials.py``);
- the config was reloaded (SIGHUP) with new ones;
- an operator pressed "retry now" (``POST /api/ticket-systems/{department}/retry``);
- a create of the same department succeeded (the key was fixed on the ticket system's side);
- ``ticketing.auth_recheck`` passed: the oldest one is tried alone, as a probe.

Every process can release every held command (the table is shared): a release claims each row
(compare-and-set, so two processes never publish the same row at once) and records the release
in the audit trail in one transaction, then publishes it with the broker's confirm, then deletes
it (a publish that fails unclaims it and is recorded as ``ticket.release_failed``). A process
that dies between the publish and the delete leaves a row whose claim runs out and is released
again: the create stage makes a second copy of a command harmless (one ticket per reference).
Rows hold the command as it was sent, the citizen's text with it, for as long as the key is
refused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from bridge.runtime.broker import PublishError
from bridge.store.held import HeldCommand
from schemas import routing
from schemas.messages import TicketCommand

if TYPE_CHECKING:
    from bridge.runtime.broker import Broker
    from bridge.store import Store

log = structlog.get_logger("govbridge.held")

CLAIM = timedelta(minutes=1)  # a release in progress; another process takes it after this


async def held_counts(store: Store) -> dict[str, dict[str, int]]:
    """Held commands per department and operation (``govbridge check`` reads this too)."""
    return await store.held_counts()


class HeldCommands:
    """The held commands of every department, shared by every process through the store."""

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        self.owner = f"held-{uuid.uuid4().hex[:12]}"
        # held commands per department and operation, as last read (refresh_counts) or held
        # here since: lets a successful create know cheaply whether anything waits
        self.known: dict[str, dict[str, int]] = {}

    async def hold(self, command: TicketCommand, reason: str) -> None:
        """Keep ``command`` until the credentials work (a second hold of it refreshes it)."""
        await self.store.hold_command(
            HeldCommand(
                command_id=command.command_id,
                department=command.department,
                operation=command.action,
                inquiry_id=command.inquiry.inquiry_id,
                reason=reason,
                command_json=command.model_dump_json(),
            ),
            now=datetime.now(UTC),
        )
        ops = self.known.setdefault(command.department, {})
        ops[command.action] = ops.get(command.action, 0) + 1

    async def counts(self) -> dict[str, dict[str, int]]:
        """Held commands per department and operation (also remembered in ``known``)."""
        self.known = await held_counts(self.store)
        return self.known

    def waiting(self, department: str, operation: str | None = None) -> int:
        ops = self.known.get(department, {})
        return ops.get(operation, 0) if operation is not None else sum(ops.values())

    async def release(
        self,
        department: str,
        *,
        why: str,
        actor: str = "bridge",
        operation: str | None = None,
        limit: int | None = None,
    ) -> int:
        """Put the department's held commands (oldest first; of one ``operation``, at most
        ``limit``) back on the bus; how many were."""
        now = datetime.now(UTC)
        released = 0
        rows = await self.store.releasable_commands(
            department, now=now, operation=operation, limit=limit
        )
        for row in rows:
            claimed = await self.store.claim_held(  # recorded first, then done
                row,
                owner=self.owner,
                now=now,
                until=now + CLAIM,
                department=department,
                actor=actor,
                why=why,
            )
            if not claimed:
                continue  # another process is releasing it
            command = TicketCommand.model_validate_json(row.command_json)
            try:
                await self.broker.publish(routing.inquiry_routed(department), command)
            except PublishError as exc:
                await self.store.unclaim_held(
                    row, owner=self.owner, department=department, actor=actor, error=str(exc)
                )
                log.warning("held command not released; kept", error=str(exc))
                break
            # A copy held again meanwhile (the key still refused) has lost our claim: kept.
            await self.store.drop_held(row.command_id, self.owner)
            released += 1
        if released:
            log.info("held commands released", department=department, count=released, why=why)
            await self.counts()
        return released
