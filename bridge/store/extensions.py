"""延期 extension requests (``case_extensions``): ``pending`` until an approver decides
(``approved`` or ``refused``); the latest approved one of a ticket's handling cycle is its
deadline (the SLA clock reads ``approved_deadlines``)."""

from __future__ import annotations

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso
from bridge.store.rows import CaseExtension
from schemas.states import ExtensionState


class ExtensionsStore(StoreBase):
    async def request_extension(self, ext: CaseExtension) -> CaseExtension:
        """Record a pending request (a repeated id changes nothing); the stored row."""
        await self.db.execute(
            "INSERT INTO case_extensions (extension_id, inquiry_id, department, ticket_id, cycle,"
            " old_deadline, new_deadline, reason, state, requested_by, requested_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (extension_id) DO NOTHING",
            (
                ext.extension_id,
                ext.inquiry_id,
                ext.department,
                ext.ticket_id,
                ext.cycle,
                ext.old_deadline,
                ext.new_deadline,
                ext.reason,
                ExtensionState.PENDING,
                ext.requested_by,
                ext.requested_at,
            ),
        )
        found = await self.get_extension(ext.extension_id)
        assert found is not None
        return found

    async def get_extension(self, extension_id: str) -> CaseExtension | None:
        rows = await self.db.fetchall(
            "SELECT * FROM case_extensions WHERE extension_id = ?", (extension_id,)
        )
        return CaseExtension(**rows[0]) if rows else None

    async def decide_extension(self, extension_id: str, state: str, actor: str) -> bool:
        """A pending request approved or refused; False when it was not pending."""
        n = await self.db.execute(
            "UPDATE case_extensions SET state = ?, decided_by = ?, decided_at = ?"
            " WHERE extension_id = ? AND state = ?",
            (state, actor, now_iso(), extension_id, ExtensionState.PENDING),
        )
        return n > 0

    async def extensions_for(self, inquiry_id: str) -> list[CaseExtension]:
        """A case's extension requests, oldest first (the journey shows them)."""
        rows = await self.db.fetchall(
            "SELECT * FROM case_extensions WHERE inquiry_id = ? ORDER BY requested_at",
            (inquiry_id,),
        )
        return [CaseExtension(**r) for r in rows]

    async def approved_deadlines(self) -> dict[tuple[str, str, int], str]:
        """(department, ticket, cycle) -> the deadline its latest approved extension set."""
        rows = await self.db.fetchall(
            "SELECT department, ticket_id, cycle, new_deadline FROM case_extensions"
            " WHERE state = ? ORDER BY decided_at",
            (ExtensionState.APPROVED,),
        )
        return {(r["department"], r["ticket_id"], r["cycle"]): r["new_deadline"] for r in rows}
