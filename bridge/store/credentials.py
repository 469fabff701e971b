"""Replaced credentials (``credentials``): sealed by the caller's vault
(``bridge.runtime.credentials``), one row per subject and field, its version growing with
each replacement. The store never sees a secret in the clear."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bridge.store.base import StoreBase
from bridge.store.drivers import iso


class CredentialState(StrEnum):
    ACTIVE = "active"  # the replacement in use
    SUPERSEDED = "superseded"  # the config holds a newer value


@dataclass(frozen=True)
class StoredCredential:
    subject: str
    field: str
    version: int
    state: str
    secret: str
    replaced_by: str
    replaced_at: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.field)


class CredentialsStore(StoreBase):
    async def stored_credentials(self) -> list[StoredCredential]:
        rows = await self.db.fetchall(
            "SELECT subject, field, version, state, secret, replaced_by, replaced_at"
            " FROM credentials ORDER BY subject, field"
        )
        return [StoredCredential(**r) for r in rows]

    async def put_credential(
        self, subject: str, field: str, sealed: str, *, actor: str, now: datetime
    ) -> int:
        """Keep a replacement (the row's next version, active); the version it got."""
        await self.db.execute(
            "INSERT INTO credentials (subject, field, version, state, secret, replaced_by,"
            " replaced_at) VALUES (?, ?, 1, ?, ?, ?, ?) ON CONFLICT (subject, field) DO UPDATE SET"
            " version = credentials.version + 1, state = excluded.state, secret = excluded.secret,"
            " replaced_by = excluded.replaced_by, replaced_at = excluded.replaced_at",
            (subject, field, CredentialState.ACTIVE, sealed, actor, iso(now)),
        )
        rows = await self.db.fetchall(
            "SELECT version FROM credentials WHERE subject = ? AND field = ?", (subject, field)
        )
        return int(rows[0]["version"])

    async def supersede_credential(self, row: StoredCredential, *, actor: str, why: str) -> bool:
        """Mark the replacement ``row`` superseded (once: compare-and-set on its version),
        audited."""
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE credentials SET state = ? WHERE subject = ? AND field = ? AND version = ?"
                " AND state = ?",
                (
                    CredentialState.SUPERSEDED,
                    row.subject,
                    row.field,
                    row.version,
                    CredentialState.ACTIVE,
                ),
            )
            if n:
                await tx.record_audit(
                    "credential.superseded",
                    actor=actor,
                    subject=row.subject,
                    field=row.field,
                    version=row.version,
                    replaced_by=row.replaced_by,
                    why=why,
                )
        return bool(n)

    async def reseal_credentials(
        self, resealed: Sequence[tuple[StoredCredential, str]], *, actor: str
    ) -> None:
        """Each row's secret sealed anew (``(row, new secret)``), in one transaction,
        audited."""
        async with self.transaction() as tx:
            for row, secret in resealed:
                await tx.db.execute(
                    "UPDATE credentials SET secret = ? WHERE subject = ? AND field = ?"
                    " AND version = ?",
                    (secret, row.subject, row.field, row.version),
                )
            await tx.record_audit("credentials.rotated", actor=actor, count=len(resealed))
