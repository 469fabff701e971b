"""Create attempts: the durable note that a ticket is being created, and an official's
settling of an uncertain one."""

from __future__ import annotations

from typing import Any

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso
from bridge.store.rows import (
    CreateAttempt,
)
from schemas.states import Decision
from schemas.vocab import (
    CreateState,
)


class CreatesStore(StoreBase):
    @staticmethod
    def _attempt(row: dict[str, Any]) -> CreateAttempt:
        return CreateAttempt(**row)

    async def get_create_attempt(self, reference: str) -> CreateAttempt | None:
        rows = await self.db.fetchall(
            "SELECT * FROM create_attempts WHERE reference = ?", (reference,)
        )
        return self._attempt(rows[0]) if rows else None

    async def claim_create(
        self,
        reference: str,
        department: str,
        inquiry_id: str,
        *,
        expected_updated_at: str | None = None,
        command_json: str | None = None,
    ) -> bool:
        """Durably note, before the call, that this delivery will create the ticket.

        Atomic across processes: True for exactly one claimant. A first attempt inserts the
        record; a later one takes it over only from ``not_sent`` (nothing reached the
        backend), ``rejected`` (the backend refused it: a replay after a fix may create) or,
        with ``expected_updated_at``, from the ``attempted`` record it has just inspected
        (compare-and-set: the earlier attempt's holder is gone and the ticket was not found;
        its ``detail`` is cleared, so the new attempt starts without an earlier "no answer").
        ``command_json`` keeps the command so an operator can have it run again.
        """
        now = now_iso()
        inserted = await self.db.execute(
            "INSERT INTO create_attempts (reference, department, inquiry_id, state, attempts,"
            " updated_at, command_json) VALUES (?, ?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (reference) DO NOTHING",
            (reference, department, inquiry_id, CreateState.ATTEMPTED, now, command_json),
        )
        if inserted:
            return True
        if expected_updated_at is not None:
            taken = await self.db.execute(
                "UPDATE create_attempts SET attempts = attempts + 1, updated_at = ?,"
                " detail = NULL WHERE reference = ? AND state = ? AND updated_at = ?",
                (now, reference, CreateState.ATTEMPTED, expected_updated_at),
            )
        else:
            taken = await self.db.execute(
                "UPDATE create_attempts SET attempts = attempts + 1, state = ?,"
                " updated_at = ?, command_json = COALESCE(?, command_json)"
                " WHERE reference = ? AND state IN (?, ?)",
                (
                    CreateState.ATTEMPTED,
                    now,
                    command_json,
                    reference,
                    CreateState.NOT_SENT,
                    CreateState.REJECTED,
                ),
            )
        return taken > 0

    async def decide_reconciliation(
        self, reference: str, *, decision: str, actor: str, ticket_id: str | None = None
    ) -> bool:
        """An official settles an uncertain create: ``attached`` to an existing ticket (state
        ``created``) or ``not_created`` (state ``not_sent``: the create may run again).
        False unless the attempt awaits reconciliation (compare-and-set)."""
        state = CreateState.CREATED if decision == Decision.ATTACHED else CreateState.NOT_SENT
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE create_attempts SET state = ?, ticket_id = COALESCE(?, ticket_id),"
                " decision = ?, decided_by = ?, decided_at = ?, updated_at = ?"
                " WHERE reference = ? AND state = ?",
                (
                    state,
                    ticket_id,
                    decision,
                    actor,
                    now_iso(),
                    now_iso(),
                    reference,
                    CreateState.NEEDS_RECONCILIATION,
                ),
            )
            if n > 0:
                rows = await tx.db.fetchall(
                    "SELECT inquiry_id, department FROM create_attempts WHERE reference = ?",
                    (reference,),
                )
                await tx.record_audit(
                    "reconciliation.settled",
                    actor=actor,
                    inquiry_id=rows[0]["inquiry_id"],
                    subject=reference,
                    department=rows[0]["department"],
                    decision=decision,
                    ticket_id=ticket_id,
                )
        return n > 0

    async def create_attempt_for_inquiry(self, inquiry_id: str) -> CreateAttempt | None:
        rows = await self.db.fetchall(
            "SELECT * FROM create_attempts WHERE inquiry_id = ?", (inquiry_id,)
        )
        return self._attempt(rows[0]) if rows else None

    async def creates_in_flight(self, department: str) -> bool:
        """A create whose ticket id is not known yet: an event for an unknown ticket may be
        its (a callback racing the create's answer)."""
        rows = await self.db.fetchall(
            "SELECT 1 AS x FROM create_attempts WHERE department = ? AND state IN (?, ?) LIMIT 1",
            (department, CreateState.ATTEMPTED, CreateState.NEEDS_RECONCILIATION),
        )
        return bool(rows)

    async def set_create_state(
        self, reference: str, state: str, ticket_id: str | None = None, detail: str | None = None
    ) -> None:
        await self.db.execute(
            "UPDATE create_attempts SET state = ?, ticket_id = COALESCE(?, ticket_id),"
            " detail = ?, updated_at = ? WHERE reference = ?",
            (state, ticket_id, detail, now_iso(), reference),
        )

    async def list_create_attempts(self, state: str | None = None) -> list[CreateAttempt]:
        if state is None:
            rows = await self.db.fetchall("SELECT * FROM create_attempts ORDER BY updated_at")
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM create_attempts WHERE state = ? ORDER BY updated_at", (state,)
            )
        return [self._attempt(r) for r in rows]
