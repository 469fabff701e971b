"""Pushes kept before they are answered (``push_inbox``): a pushed body the bridge has verified
and parsed is written here first, then answered, then published from here (by the process that
took it, or, once its claim has lapsed, by any process: ``bridge.runtime.push``). The row is
also the push's dedupe record: a retry or a late duplicate finds it and is dropped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.store.base import StoreBase
from bridge.store.drivers import iso


@dataclass(frozen=True)
class KeptPush:
    """A push waiting for its publish: ``messages_json`` as ``bridge.runtime.push`` wrote it."""

    push_key: str
    source: str
    messages_json: str
    received_at: str


class PushesStore(StoreBase):
    async def keep_push(
        self,
        push: KeptPush,
        *,
        owner: str,
        until: datetime,
    ) -> bool:
        """Keep a push, claimed by ``owner`` until ``until``; False when it was kept before
        (a duplicate: nothing changes)."""
        n = await self.db.execute(
            "INSERT INTO push_inbox (push_key, source, messages_json, received_at,"
            " claimed_by, claimed_until) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (push_key) DO NOTHING",
            (push.push_key, push.source, push.messages_json, push.received_at, owner, iso(until)),
        )
        return n > 0

    async def push_published(self, push_key: str, *, now: datetime) -> None:
        """The broker confirmed the push's messages."""
        await self.db.execute(
            "UPDATE push_inbox SET published_at = ?, claimed_by = NULL, claimed_until = NULL"
            " WHERE push_key = ? AND published_at IS NULL",
            (iso(now), push_key),
        )

    async def is_push_published(self, push_key: str) -> bool | None:
        """None: not kept; else whether it is published."""
        rows = await self.db.fetchall(
            "SELECT published_at FROM push_inbox WHERE push_key = ?", (push_key,)
        )
        return None if not rows else rows[0]["published_at"] is not None

    async def claim_unpublished_pushes(
        self, *, owner: str, now: datetime, until: datetime, limit: int = 100
    ) -> list[KeptPush]:
        """Claim (for ``owner``, until ``until``) up to ``limit`` kept pushes not yet published
        whose earlier claim has lapsed or was given up, oldest first."""
        rows = await self.db.fetchall(
            "SELECT push_key, source, messages_json, received_at FROM push_inbox"
            " WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < ?)"
            " ORDER BY received_at LIMIT ?",
            (iso(now), limit),
        )
        claimed = []
        for r in rows:
            n = await self.db.execute(
                "UPDATE push_inbox SET claimed_by = ?, claimed_until = ? WHERE push_key = ?"
                " AND published_at IS NULL AND (claimed_until IS NULL OR claimed_until < ?)",
                (owner, iso(until), r["push_key"], iso(now)),
            )
            if n:
                claimed.append(KeptPush(**r))
        return claimed

    async def release_push_claims(self, owner: str, push_key: str | None = None) -> int:
        """Give up ``owner``'s claims (all, or the one on ``push_key``): any process may
        publish them now."""
        sql = (
            "UPDATE push_inbox SET claimed_by = NULL, claimed_until = NULL"
            " WHERE claimed_by = ? AND published_at IS NULL"
        )
        params: tuple[str, ...] = (owner,)
        if push_key is not None:
            sql += " AND push_key = ?"
            params = (owner, push_key)
        return await self.db.execute(sql, params)

    async def unpublished_pushes(self) -> int:
        """How many kept pushes wait for their publish."""
        rows = await self.db.fetchall(
            "SELECT COUNT(*) AS n FROM push_inbox WHERE published_at IS NULL"
        )
        return int(rows[0]["n"])

    async def forget_published_pushes(self, *, before: datetime) -> int:
        """Drop the dedupe records of pushes published before ``before``."""
        return await self.db.execute(
            "DELETE FROM push_inbox WHERE published_at IS NOT NULL AND published_at < ?",
            (iso(before),),
        )
