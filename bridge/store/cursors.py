"""Cursors (where a poller left off) and once-marks (done once across processes)."""

from __future__ import annotations

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso

ANY_CURSOR = object()  # set_cursor without compare-and-set


class CursorsStore(StoreBase):
    async def get_cursor(self, name: str) -> str | None:
        rows = await self.db.fetchall("SELECT cursor FROM cursors WHERE name = ?", (name,))
        return rows[0]["cursor"] if rows else None

    async def set_cursor(
        self, name: str, cursor: str | None, *, expected: object = ANY_CURSOR
    ) -> bool:
        """Store a cursor. With ``expected`` (the cursor the caller read) it is a
        compare-and-set: it writes only if the cursor is still that one and returns whether
        it did, so a poller that lost its lease never moves a cursor back or over a newer
        holder's."""
        if expected is ANY_CURSOR:
            n = await self.db.execute(
                "UPDATE cursors SET cursor = ?, updated_at = ? WHERE name = ?",
                (cursor, now_iso(), name),
            )
            if n == 0:
                await self.db.execute(
                    "INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?)",
                    (name, cursor, now_iso()),
                )
            return True
        n = await self.db.execute(
            "UPDATE cursors SET cursor = ?, updated_at = ?"
            " WHERE name = ? AND cursor IS NOT DISTINCT FROM ?",
            (cursor, now_iso(), name, expected),
        )
        if n == 0 and expected is None:
            n = await self.db.execute(
                "INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, cursor, now_iso()),
            )
        return n == 1

    async def record_once(self, kind: str, key: str) -> bool:
        """True the first time (kind, key) is marked, across processes; False after."""
        n = await self.db.execute(
            "INSERT INTO once_marks (kind, key, marked_at) VALUES (?, ?, ?)"
            " ON CONFLICT (kind, key) DO NOTHING",
            (kind, key, now_iso()),
        )
        return n > 0
