"""Ticketing commands held while a ticket system refuses the bridge's credentials
(``held_commands``; the rules are ``bridge.runtime.held``'s). A release claims a row
(compare-and-set on its claim) and records it in the audit trail in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.store.base import StoreBase
from bridge.store.drivers import iso


@dataclass(frozen=True)
class HeldCommand:
    """A command to hold (``command_json``: the command as it was sent)."""

    command_id: str
    department: str
    operation: str
    inquiry_id: str
    reason: str
    command_json: str


@dataclass(frozen=True)
class HeldRow:
    """A held command waiting to be released."""

    command_id: str
    inquiry_id: str
    command_json: str


class HeldStore(StoreBase):
    async def hold_command(self, command: HeldCommand, *, now: datetime) -> None:
        """Keep ``command`` (a second hold of it refreshes it and drops its claim), audited."""
        async with self.transaction() as tx:
            await tx.db.execute(
                "INSERT INTO held_commands (command_id, department, operation, inquiry_id,"
                " reason, command_json, held_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (command_id) DO UPDATE SET reason = excluded.reason,"
                " command_json = excluded.command_json, held_at = excluded.held_at,"
                " claimed_by = NULL, claimed_until = NULL",
                (
                    command.command_id,
                    command.department,
                    command.operation,
                    command.inquiry_id,
                    command.reason[:300],
                    command.command_json,
                    iso(now),
                ),
            )
            await tx.record_audit(
                "ticket.held",
                inquiry_id=command.inquiry_id,
                subject=command.department,
                operation=command.operation,
                reason=command.reason[:200],
            )

    async def held_counts(self) -> dict[str, dict[str, int]]:
        """Held commands per department and operation."""
        rows = await self.db.fetchall(
            "SELECT department, operation, COUNT(*) AS n FROM held_commands"
            " GROUP BY department, operation"
        )
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r["department"], {})[r["operation"]] = int(r["n"])
        return out

    async def releasable_commands(
        self,
        department: str,
        *,
        now: datetime,
        operation: str | None = None,
        limit: int | None = None,
    ) -> list[HeldRow]:
        """The department's unclaimed held commands (of one ``operation``, at most
        ``limit``), oldest first."""
        sql = (
            "SELECT command_id, inquiry_id, command_json FROM held_commands WHERE department = ?"
            " AND (claimed_until IS NULL OR claimed_until < ?)"
        )
        params: list[object] = [department, iso(now)]
        if operation is not None:
            sql += " AND operation = ?"
            params.append(operation)
        sql += " ORDER BY held_at"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [HeldRow(**r) for r in await self.db.fetchall(sql, params)]

    async def claim_held(
        self,
        row: HeldRow,
        *,
        owner: str,
        now: datetime,
        until: datetime,
        department: str,
        actor: str,
        why: str,
    ) -> bool:
        """Claim a held command for its release (False: another process holds it), and
        record the release, in one transaction."""
        async with self.transaction() as tx:
            claimed = await tx.db.execute(
                "UPDATE held_commands SET claimed_by = ?, claimed_until = ?"
                " WHERE command_id = ? AND (claimed_until IS NULL OR claimed_until < ?)",
                (owner, iso(until), row.command_id, iso(now)),
            )
            if claimed:
                await tx.record_audit(
                    "ticket.released",
                    actor=actor,
                    inquiry_id=row.inquiry_id,
                    subject=department,
                    why=why,
                )
        return claimed > 0

    async def unclaim_held(
        self, row: HeldRow, *, owner: str, department: str, actor: str, error: str
    ) -> None:
        """A release whose publish failed: the command is kept, unclaimed, and the failure
        recorded."""
        async with self.transaction() as tx:
            await tx.db.execute(
                "UPDATE held_commands SET claimed_by = NULL, claimed_until = NULL"
                " WHERE command_id = ? AND claimed_by = ?",
                (row.command_id, owner),
            )
            await tx.record_audit(
                "ticket.release_failed",
                actor=actor,
                inquiry_id=row.inquiry_id,
                subject=department,
                error=error[:200],
            )

    async def drop_held(self, command_id: str, owner: str) -> None:
        """A released command is gone (unless held again meanwhile: that copy lost the claim)."""
        await self.db.execute(
            "DELETE FROM held_commands WHERE command_id = ? AND claimed_by = ?",
            (command_id, owner),
        )
