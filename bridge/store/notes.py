"""Internal notes on a case (``case_notes``): written by operators for operators, shown in the
journey, never composed into a reply nor put on the bus (nothing reads them but the API)."""

from __future__ import annotations

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso
from bridge.store.rows import CaseNote


class NotesStore(StoreBase):
    async def add_note(self, note_id: str, inquiry_id: str, author: str, text: str) -> CaseNote:
        """Record a note (a repeated ``note_id``, a retried request, changes nothing)."""
        await self.db.execute(
            "INSERT INTO case_notes (note_id, inquiry_id, author, text, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (note_id) DO NOTHING",
            (note_id, inquiry_id, author, text, now_iso()),
        )
        rows = await self.db.fetchall("SELECT * FROM case_notes WHERE note_id = ?", (note_id,))
        return CaseNote(**rows[0])

    async def notes_for(self, inquiry_id: str) -> list[CaseNote]:
        """A case's notes, oldest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM case_notes WHERE inquiry_id = ? ORDER BY created_at, note_id",
            (inquiry_id,),
        )
        return [CaseNote(**r) for r in rows]
