"""Who is editing which draft now (``draft_editing``): an approver's console says so when the
focus enters a draft's box and renews it while it stays there; the mark lapses by itself at
``until`` (a closed tab leaves nothing behind). Read by the approval queue's live stream, so
a second approver's page marks the card, whichever process either page talks to."""

from __future__ import annotations

from bridge.store.base import StoreBase


class EditingStore(StoreBase):
    async def mark_editing(self, reply_id: str, operator: str, until: str, now: str) -> None:
        """``operator`` edits ``reply_id`` until ``until`` (renewed by calling again); marks
        that lapsed before ``now`` are cleared on the way."""
        await self.db.execute("DELETE FROM draft_editing WHERE until <= ?", (now,))
        await self.db.execute(
            "INSERT INTO draft_editing (reply_id, operator, until) VALUES (?, ?, ?)"
            " ON CONFLICT (reply_id, operator) DO UPDATE SET until = excluded.until",
            (reply_id, operator, until),
        )

    async def stop_editing(self, reply_id: str, operator: str) -> None:
        await self.db.execute(
            "DELETE FROM draft_editing WHERE reply_id = ? AND operator = ?", (reply_id, operator)
        )

    async def editing_now(self, now: str) -> list[tuple[str, str]]:
        """``(reply_id, operator)`` of every mark not lapsed at ``now``, in a stable order."""
        rows = await self.db.fetchall(
            "SELECT reply_id, operator FROM draft_editing WHERE until > ?"
            " ORDER BY reply_id, operator",
            (now,),
        )
        return [(r["reply_id"], r["operator"]) for r in rows]
