"""Follow-up deliveries: how a citizen's follow-up reached the officials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso
from bridge.store.rows import (
    FollowUpDelivery,
)
from schemas.states import DeliveryState


class FollowUpsStore(StoreBase):
    @staticmethod
    def _delivery(row: dict[str, Any]) -> FollowUpDelivery:
        return FollowUpDelivery(**row)

    async def get_follow_up_delivery(self, inquiry_id: str) -> FollowUpDelivery | None:
        rows = await self.db.fetchall(
            "SELECT * FROM follow_up_deliveries WHERE inquiry_id = ?", (inquiry_id,)
        )
        return self._delivery(rows[0]) if rows else None

    async def follow_up_deliveries(self, inquiry_ids: Sequence[str]) -> list[FollowUpDelivery]:
        if not inquiry_ids:
            return []
        marks = ", ".join("?" for _ in inquiry_ids)
        rows = await self.db.fetchall(
            f"SELECT * FROM follow_up_deliveries WHERE inquiry_id IN ({marks})",
            tuple(inquiry_ids),
        )
        return [self._delivery(r) for r in rows]

    async def claim_follow_up_delivery(
        self,
        *,
        inquiry_id: str,
        department: str,
        ticket_id: str,
        channel: str,
        reference: str | None,
        expected_updated_at: str | None,
    ) -> bool:
        """Record "delivery attempted" before the call (compare-and-set: a first attempt, or
        taking over the attempt last seen at ``expected_updated_at``). False if another
        delivery holds it."""
        stamp = now_iso()
        if expected_updated_at is None:
            n = await self.db.execute(
                "INSERT INTO follow_up_deliveries (inquiry_id, department, ticket_id, channel,"
                " state, reference, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (inquiry_id) DO NOTHING",
                (
                    inquiry_id,
                    department,
                    ticket_id,
                    channel,
                    DeliveryState.ATTEMPTED,
                    reference,
                    stamp,
                ),
            )
        else:
            n = await self.db.execute(
                "UPDATE follow_up_deliveries SET state = ?, updated_at = ?, detail = NULL"
                " WHERE inquiry_id = ? AND updated_at = ? AND state IN (?, ?)",
                (
                    DeliveryState.ATTEMPTED,
                    stamp,
                    inquiry_id,
                    expected_updated_at,
                    DeliveryState.ATTEMPTED,
                    DeliveryState.NOT_SENT,
                ),
            )
        return n > 0

    async def settle_follow_up_delivery(
        self,
        inquiry_id: str,
        *,
        state: str,
        department: str,
        ticket_id: str,
        channel: str,
        linked_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Where the follow-up's delivery stands: delivered, recorded only, unknown, or
        not_sent (refused or certainly not sent: a later delivery may try again)."""
        async with self.transaction() as tx:
            await tx.db.execute(
                "INSERT INTO follow_up_deliveries (inquiry_id, department, ticket_id, channel,"
                " state, linked_id, detail, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (inquiry_id) DO UPDATE SET state = excluded.state,"
                " linked_id = excluded.linked_id, detail = excluded.detail,"
                " updated_at = excluded.updated_at",
                (inquiry_id, department, ticket_id, channel, state, linked_id, detail, now_iso()),
            )
            action = {
                "delivered": "follow_up.delivered",
                "recorded": "follow_up.recorded",
                "unknown": "follow_up.unknown",
            }.get(state)
            if action is not None:  # settled (not a refusal that will be tried again)
                await tx.record_audit(
                    action,
                    inquiry_id=inquiry_id,
                    department=department,
                    subject=ticket_id,
                    channel=channel,
                    linked_id=linked_id,
                )
