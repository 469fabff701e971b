"""Operation status: what each operation of each adapter, ticket system or stage last did,
shared by every process (the alerts' view, ``bridge.runtime.alerts``)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store.base import StoreBase


@dataclass(frozen=True)
class OperationRow:
    """A row of ``operation_status``; times are fixed-width UTC text."""

    kind: str
    name: str
    operation: str
    last_ok_at: str | None = None
    last_failed_at: str | None = None
    failure: str | None = None
    cleared_at: str | None = None
    cleared_by: str | None = None


class OperationsStore(StoreBase):
    async def write_operation_status(self, row: OperationRow) -> None:
        """Move the row's times forward to ``row``'s (never back)."""
        await self.db.execute(
            "INSERT INTO operation_status (kind, name, operation, last_ok_at, last_failed_at,"
            " failure, cleared_at, cleared_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, name, operation) DO UPDATE SET"
            " last_ok_at = CASE WHEN operation_status.last_ok_at IS NULL"
            "  OR excluded.last_ok_at > operation_status.last_ok_at"
            "  THEN COALESCE(excluded.last_ok_at, operation_status.last_ok_at)"
            "  ELSE operation_status.last_ok_at END,"
            " failure = CASE WHEN excluded.last_failed_at IS NOT NULL AND"
            "  (operation_status.last_failed_at IS NULL"
            "   OR excluded.last_failed_at >= operation_status.last_failed_at)"
            "  THEN excluded.failure ELSE operation_status.failure END,"
            " last_failed_at = CASE WHEN operation_status.last_failed_at IS NULL"
            "  OR excluded.last_failed_at > operation_status.last_failed_at"
            "  THEN COALESCE(excluded.last_failed_at, operation_status.last_failed_at)"
            "  ELSE operation_status.last_failed_at END,"
            " cleared_by = CASE WHEN excluded.cleared_at IS NOT NULL AND"
            "  (operation_status.cleared_at IS NULL"
            "   OR excluded.cleared_at >= operation_status.cleared_at)"
            "  THEN excluded.cleared_by ELSE operation_status.cleared_by END,"
            " cleared_at = CASE WHEN operation_status.cleared_at IS NULL"
            "  OR excluded.cleared_at > operation_status.cleared_at"
            "  THEN COALESCE(excluded.cleared_at, operation_status.cleared_at)"
            "  ELSE operation_status.cleared_at END",
            (
                row.kind,
                row.name,
                row.operation,
                row.last_ok_at,
                row.last_failed_at,
                row.failure,
                row.cleared_at,
                row.cleared_by,
            ),
        )

    async def operation_statuses(self) -> list[OperationRow]:
        rows = await self.db.fetchall(
            "SELECT kind, name, operation, last_ok_at, last_failed_at, failure, cleared_at,"
            " cleared_by FROM operation_status"
        )
        return [OperationRow(**r) for r in rows]
