"""Inquiries: what the bridge received and where each stands, and the conversations they
form (a follow-up names its conversation's first inquiry)."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso
from bridge.store.rows import NewInquiry, StoredInquiry
from schemas.vocab import InquiryState


class Keep(Enum):
    """``update_inquiry``: leave the field as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP
_INSERT_COLUMNS = ", ".join(
    [*(f.name for f in dataclasses.fields(NewInquiry)), "created_at", "updated_at"]
)
_INSERT_MARKS = ", ".join("?" for _ in _INSERT_COLUMNS.split(", "))


class InquiriesStore(StoreBase):
    async def _audit_inquiry(self, inquiry_id: str, fields: dict[str, Any], new: bool) -> None:
        """What an inquiry write means for the trail: received, ignored, routed, or moved."""
        if new:
            await self.record_audit(
                "inquiry.received",
                inquiry_id=inquiry_id,
                platform=fields.get("platform"),
                account=fields.get("account"),
                kind=fields.get("kind"),
            )
        state = fields.get("state")
        if state == InquiryState.IGNORED:
            await self.record_audit(
                "inquiry.ignored", inquiry_id=inquiry_id, reason=fields.get("reason")
            )
        elif fields.get("department"):
            how = json.loads(fields["explanation"]) if fields.get("explanation") else {}
            await self.record_audit(
                "inquiry.routed",
                inquiry_id=inquiry_id,
                subject=fields["department"],
                department=fields["department"],
                category=fields.get("category"),
                decided_by=how.get("decided_by") or ("conversation" if not new else None),
                confidence=fields.get("confidence"),
                conversation=fields.get("conversation"),
                state=state,
                held=fields.get("reason") if state == InquiryState.HELD_FOR_REVIEW else None,
            )
        elif state is not None or fields.get("category"):
            await self.record_audit(
                "inquiry.state",
                inquiry_id=inquiry_id,
                state=state,
                ticket_id=fields.get("ticket_id"),
                category=fields.get("category"),
            )

    async def record_inquiry(self, inquiry: NewInquiry) -> bool:
        """Insert an inquiry row; False if it was already there (dedupe by inquiry id)."""
        row = {**dataclasses.asdict(inquiry), "created_at": now_iso(), "updated_at": now_iso()}
        async with self.transaction() as tx:
            n = await tx.db.execute(
                f"INSERT INTO inquiries ({_INSERT_COLUMNS}) VALUES ({_INSERT_MARKS})"
                " ON CONFLICT (inquiry_id) DO NOTHING",
                tuple(row.values()),
            )
            if n > 0:
                await tx._audit_inquiry(inquiry.inquiry_id, row, new=True)
        return n > 0

    async def update_inquiry(
        self,
        inquiry_id: str,
        *,
        state: str | Keep | None = KEEP,
        reason: str | Keep | None = KEEP,
        department: str | Keep | None = KEEP,
        category: str | Keep | None = KEEP,
        ticket_id: str | Keep | None = KEEP,
        confidence: float | Keep | None = KEEP,
        explanation: str | Keep | None = KEEP,
        conversation: str | Keep | None = KEEP,
    ) -> None:
        """Set the named fields (``None`` writes NULL; a field not named is kept)."""
        given = {
            "state": state,
            "reason": reason,
            "department": department,
            "category": category,
            "ticket_id": ticket_id,
            "confidence": confidence,
            "explanation": explanation,
            "conversation": conversation,
        }
        fields = {k: v for k, v in given.items() if not isinstance(v, Keep)}
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)  # names from the list above only
        async with self.transaction() as tx:
            n = await tx.db.execute(
                f"UPDATE inquiries SET {sets}, updated_at = ? WHERE inquiry_id = ?",
                (*fields.values(), now_iso(), inquiry_id),
            )
            if n > 0:
                await tx._audit_inquiry(inquiry_id, fields, new=False)

    async def advance_inquiry(self, inquiry_id: str, from_state: str, state: str) -> bool:
        """Move an inquiry on only from ``from_state`` (a later stage may have moved it
        further already: triage's "routed" must not overwrite ticketing's "ticketed")."""
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE inquiries SET state = ?, updated_at = ? WHERE inquiry_id = ? AND state = ?",
                (state, now_iso(), inquiry_id, from_state),
            )
            if n > 0:
                await tx._audit_inquiry(inquiry_id, {"state": state}, new=False)
        return n > 0

    @staticmethod
    def _inquiry(row: dict[str, Any]) -> StoredInquiry:
        return StoredInquiry(**row)

    async def get_inquiry(self, inquiry_id: str) -> StoredInquiry | None:
        rows = await self.db.fetchall("SELECT * FROM inquiries WHERE inquiry_id = ?", (inquiry_id,))
        return self._inquiry(rows[0]) if rows else None

    async def inquiries_awaiting_acknowledgement(
        self, since: str, *, mark: str
    ) -> list[StoredInquiry]:
        """New conversations received since ``since`` that have no ticket, no reply of any
        kind and no ``mark`` in ``once_marks`` (their holding acknowledgement not published
        yet): the SLA role's candidates (``bridge/sla/acknowledge.py``). Few at any time:
        those in flight and those stuck (a ticket system down, a create in doubt, commands
        held for a refused key). Follow-ups are not among them (their ticket exists)."""
        rows = await self.db.fetchall(
            "SELECT i.* FROM inquiries i WHERE i.state IN (?, ?, ?) AND i.created_at >= ?"
            " AND i.ticket_id IS NULL"
            " AND (i.conversation IS NULL OR i.conversation = i.inquiry_id)"
            " AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.inquiry_id = i.inquiry_id)"
            " AND NOT EXISTS (SELECT 1 FROM once_marks m"
            " WHERE m.kind = ? AND m.key = i.inquiry_id)"
            " ORDER BY i.created_at",
            (
                InquiryState.TRIAGED,
                InquiryState.ROUTED,
                InquiryState.NEEDS_RECONCILIATION,
                since,
                mark,
            ),
        )
        return [self._inquiry(r) for r in rows]

    async def list_inquiries(self) -> list[StoredInquiry]:
        rows = await self.db.fetchall("SELECT * FROM inquiries ORDER BY created_at, inquiry_id")
        return [self._inquiry(r) for r in rows]

    # ---------------------------------------------------------------- conversations
    async def inquiry_by_post(
        self, platform: str, account: str, external_id: str
    ) -> StoredInquiry | None:
        """The inquiry that this platform post is (on this account), if the bridge has it."""
        rows = await self.db.fetchall(
            "SELECT * FROM inquiries WHERE platform = ? AND account = ? AND external_id = ?",
            (platform, account, external_id),
        )
        return self._inquiry(rows[0]) if rows else None

    async def inquiry_answered_by_post(
        self, platform: str, account: str, external_id: str
    ) -> StoredInquiry | None:
        """The inquiry that this platform post (one of the bridge's replies) answered."""
        rows = await self.db.fetchall(
            "SELECT i.* FROM reply_posts p JOIN inquiries i ON i.inquiry_id = p.inquiry_id"
            " WHERE p.platform = ? AND p.account = ? AND p.external_id = ?",
            (platform, account, external_id),
        )
        return self._inquiry(rows[0]) if rows else None

    async def conversation_inquiries(self, owner: str) -> list[StoredInquiry]:
        """Every inquiry of one conversation: the first (``owner``) and its follow-ups. Two
        index lookups joined (SQLite answered ``inquiry_id = ? OR conversation = ?`` by
        reading every inquiry in creation order: 200 ms at 100,000)."""
        rows = await self.db.fetchall(
            "SELECT * FROM inquiries WHERE inquiry_id = ?"
            " UNION SELECT * FROM inquiries WHERE conversation = ?"
            " ORDER BY created_at, inquiry_id",
            (owner, owner),
        )
        return [self._inquiry(r) for r in rows]
