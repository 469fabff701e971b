"""New conversations per author (``conversation_starts``): the flood limit's count
(``bridge.triage.flood``). The count and the new start are one transaction under a lock per
author, so parallel deliveries cannot slip past the limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.store.base import StoreBase
from bridge.store.drivers import iso


@dataclass(frozen=True)
class ConversationStart:
    inquiry_id: str
    platform: str
    author_id: str
    department: str


class FloodStore(StoreBase):
    async def admit_start(
        self,
        start: ConversationStart,
        *,
        now: datetime,
        window_start: datetime,
        overall: int,
        own: int,
    ) -> bool:
        """Count ``start`` as a new conversation of its author and say True, or say False
        when the author started ``overall`` (all departments) or ``own`` (this department)
        since ``window_start`` already (0: no limit). A start admitted once is admitted
        again."""
        async with self.transaction() as tx:
            await tx.db.lock(f"flood:{start.platform}:{start.author_id}")
            if await tx._admit_at_once(start, now, window_start, overall, own):
                return True
            # not admitted in one statement: over a limit, or admitted before. One read:
            # the author's starts per department within the window, those that have left
            # it, and whether this one was admitted already (a redelivery)
            rows = await tx.db.fetchall(
                "SELECT department,"
                " SUM(CASE WHEN started_at > ? THEN 1 ELSE 0 END) AS n,"
                " SUM(CASE WHEN started_at <= ? THEN 1 ELSE 0 END) AS expired,"
                " SUM(CASE WHEN inquiry_id = ? THEN 1 ELSE 0 END) AS mine"
                " FROM conversation_starts WHERE platform = ? AND author_id = ?"
                " GROUP BY department",
                (
                    iso(window_start),
                    iso(window_start),
                    start.inquiry_id,
                    start.platform,
                    start.author_id,
                ),
            )
            if any(int(r["mine"]) for r in rows):
                return True
            if any(int(r["expired"]) for r in rows):  # no longer needed
                await tx.db.execute(
                    "DELETE FROM conversation_starts WHERE platform = ? AND author_id = ?"
                    " AND started_at <= ?",
                    (start.platform, start.author_id, iso(window_start)),
                )
            started = {r["department"]: int(r["n"]) for r in rows}
            if overall and sum(started.values()) >= overall:
                return False
            if own and started.get(start.department, 0) >= own:
                return False
            await tx.db.execute(
                "INSERT INTO conversation_starts (inquiry_id, platform, author_id, department,"
                " started_at) VALUES (?, ?, ?, ?, ?)",
                (start.inquiry_id, start.platform, start.author_id, start.department, iso(now)),
            )
        return True

    async def _admit_at_once(
        self,
        start: ConversationStart,
        now: datetime,
        window_start: datetime,
        overall: int,
        own: int,
    ) -> bool:
        """The common case in one statement: the start is recorded when it is within both
        limits and new; its author's starts that have left the window are then deleted, if
        the same statement found any. False: nothing written (over a limit, or a
        redelivery), and the caller decides from a read."""
        within, params = [], []
        author = "platform = ? AND author_id = ?"
        if overall:
            within.append(
                f"(SELECT COUNT(*) FROM conversation_starts WHERE {author} AND started_at > ?) < ?"
            )
            params += [start.platform, start.author_id, iso(window_start), overall]
        if own:
            within.append(
                "(SELECT COUNT(*) FROM conversation_starts WHERE"
                f" {author} AND department = ? AND started_at > ?) < ?"
            )
            params += [start.platform, start.author_id, start.department, iso(window_start), own]
        rows = await self.db.fetchall(
            "INSERT INTO conversation_starts (inquiry_id, platform, author_id, department,"
            " started_at) SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT),"
            " CAST(? AS TEXT), CAST(? AS TEXT) WHERE "
            + (" AND ".join(within) or "1 = 1")
            + " ON CONFLICT (inquiry_id) DO NOTHING"
            f" RETURNING (SELECT COUNT(*) FROM conversation_starts WHERE {author}"
            " AND started_at <= ?) AS expired",
            (
                start.inquiry_id,
                start.platform,
                start.author_id,
                start.department,
                iso(now),
                *params,
                start.platform,
                start.author_id,
                iso(window_start),
            ),
        )
        if not rows:
            return False
        if int(rows[0]["expired"]):  # no longer needed
            await self.db.execute(
                "DELETE FROM conversation_starts WHERE platform = ? AND author_id = ?"
                " AND started_at <= ?",
                (start.platform, start.author_id, iso(window_start)),
            )
        return True
