"""What every part of the repository shares: the driver it runs on (``db``), transactions, the
store's lifecycle and the audit trail. Each aggregate's queries are a subclass of ``StoreBase``
in its own module (``inquiries``, ``tickets``, ``replies`` …); ``bridge.store.sql.SqlStore``
puts them together.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

from bridge.security.keyring import Keyring
from bridge.store.audit import Checkpoint, Verdict, append, checkpoint, recent, records_for, verify
from bridge.store.drivers import Database, Executor
from bridge.store.migrations import migrate


class StoreBase:
    """The driver (``db``: the database, or one open transaction) and what every aggregate
    uses. ``transaction()`` gives a store whose statements commit together."""

    def __init__(self, db: Executor, *, database: Database | None = None) -> None:
        self.db = db
        self._database = database

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """A store whose statements commit together, or not at all."""
        async with self.db.transaction() as tx:
            yield type(self)(tx, database=self._database)

    # ---------------------------------------------------------------- lifecycle
    @property
    def database(self) -> Database:
        assert self._database is not None, "not a store opened on a database"
        return self._database

    async def migrate(self) -> int:
        return await migrate(self.db, self.database)

    async def ping(self) -> None:
        await self.db.fetchall("SELECT 1 AS ok")

    async def close(self) -> None:
        await self.database.close()

    # ---------------------------------------------------------------- audit trail
    async def record_audit(self, action: str, **fields: Any) -> None:
        """Append to the audit trail, in this store's transaction when it holds one (written
        as it commits; ``bridge.store.audit.append``: actor, inquiry_id, subject and detail
        fields)."""
        await append(self.db, action, **fields)

    async def verify_audit(
        self, expect: str | Checkpoint | None = None, keys: Keyring | None = None
    ) -> Verdict:
        """Walk the audit trail's chain (``bridge.store.audit.verify``)."""
        return await verify(self.db, expect=expect, keys=keys)

    async def audit_checkpoint(self) -> Checkpoint:
        """The head of the intact chain, to keep elsewhere (``bridge.store.audit.checkpoint``)."""
        return await checkpoint(self.db)

    async def audit_records_for(self, inquiry_id: str) -> list[dict[str, Any]]:
        """An inquiry's audit records, oldest first."""
        return await records_for(self.db, inquiry_id)

    async def recent_audit(
        self, limit: int = 100, actions: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The latest audit records, newest first."""
        return await recent(self.db, limit=limit, actions=actions)
