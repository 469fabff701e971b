"""The console's costly pages as counted (``kept_answers``, ``bridge.web.kept``): one row per
page and query, written by the process that counted it, read by the others and by the next
process to start. Nothing but the console reads or writes it; the rows are a cache (a lost
or unreadable one is counted again)."""

from __future__ import annotations

from datetime import datetime

from bridge.store.base import StoreBase
from bridge.store.drivers import iso


class KeptAnswersStore(StoreBase):
    async def kept_answer(self, key: str) -> tuple[str, str] | None:
        """When the answer kept under ``key`` was counted (ISO text, as written) and its body
        (JSON text), if one is kept."""
        rows = await self.db.fetchall(
            "SELECT counted_at, body FROM kept_answers WHERE key = ?", (key,)
        )
        if not rows:
            return None
        return str(rows[0]["counted_at"]), str(rows[0]["body"])

    async def keep_answer(self, key: str, counted_at: datetime, body: str) -> None:
        """Keep an answer counted at ``counted_at`` under ``key``, unless one counted later is
        kept already (two processes counting at once: the younger stays)."""
        await self.db.execute(
            "INSERT INTO kept_answers (key, counted_at, body) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET counted_at = excluded.counted_at,"
            " body = excluded.body WHERE kept_answers.counted_at < excluded.counted_at",
            (key, iso(counted_at), body),
        )
