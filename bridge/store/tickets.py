"""Tickets: the threads that own them, their rows and the events that move them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store.base import StoreBase
from bridge.store.drivers import now_iso
from bridge.store.rows import (
    AppliedEvent,
    StoredTicket,
    stored_ticket,
)
from schemas.vocab import (
    FINAL_STATUSES,
    REOPENED_RANK_IN_CYCLE,
    TicketStatus,
)

FINAL_RANK = TicketStatus.RESOLVED.rank  # resolved, rejected and closed can be reopened


class TicketsStore(StoreBase):
    async def claim_thread(self, thread_key: str, inquiry_id: str, reference: str) -> str:
        """The reference of the ticket this thread's inquiries belong to.

        The first inquiry of a thread claims it (a unique key makes this atomic across
        processes); later ones get the owner's reference and are appended. Once the owner's
        ticket is final, the next inquiry takes the thread over and gets a new ticket.
        """
        await self.db.execute(
            "INSERT INTO threads (thread_key, reference, inquiry_id, claimed_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (thread_key) DO NOTHING",
            (thread_key, reference, inquiry_id, now_iso()),
        )
        rows = await self.db.fetchall(
            "SELECT reference, inquiry_id FROM threads WHERE thread_key = ?", (thread_key,)
        )
        owner = rows[0]
        if owner["inquiry_id"] == inquiry_id:
            return str(owner["reference"])
        ticket = await self.ticket_by_reference(owner["reference"])
        if ticket is not None and ticket.status in FINAL_STATUSES:
            await self.db.execute(
                "UPDATE threads SET reference = ?, inquiry_id = ?, claimed_at = ?"
                " WHERE thread_key = ? AND reference = ?",
                (reference, inquiry_id, now_iso(), thread_key, owner["reference"]),
            )
            return await self.claim_thread(thread_key, inquiry_id, reference)
        return str(owner["reference"])

    async def thread_owner(self, thread_key: str) -> str | None:
        """The inquiry that holds a claimed thread."""
        rows = await self.db.fetchall(
            "SELECT inquiry_id FROM threads WHERE thread_key = ?", (thread_key,)
        )
        return str(rows[0]["inquiry_id"]) if rows else None

    @staticmethod
    def _ticket(row: dict[str, Any]) -> StoredTicket:
        return stored_ticket(row)

    async def get_ticket(self, department: str, ticket_id: str) -> StoredTicket | None:
        rows = await self.db.fetchall(
            "SELECT * FROM tickets WHERE department = ? AND ticket_id = ?",
            (department, ticket_id),
        )
        return self._ticket(rows[0]) if rows else None

    async def ticket_by_reference(self, reference: str) -> StoredTicket | None:
        rows = await self.db.fetchall("SELECT * FROM tickets WHERE reference = ?", (reference,))
        return self._ticket(rows[0]) if rows else None

    async def record_ticket(
        self,
        *,
        department: str,
        ticket_id: str,
        reference: str,
        inquiry_id: str,
        thread_key: str,
        status: str,
        status_rank: int,
        native_status: str,
        status_at: str,
    ) -> bool:
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "INSERT INTO tickets (department, ticket_id, reference, inquiry_id, thread_key,"
                " status, status_rank, native_status, status_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (department, ticket_id) DO NOTHING",
                (
                    department,
                    ticket_id,
                    reference,
                    inquiry_id,
                    thread_key,
                    status,
                    status_rank,
                    native_status,
                    status_at,
                    now_iso(),
                ),
            )
            if n > 0:
                await tx.record_audit(
                    "ticket.created",
                    inquiry_id=inquiry_id,
                    subject=f"{department}/{ticket_id}",
                    department=department,
                    ticket_id=ticket_id,
                    reference=reference,
                    status=status,
                )
        return n > 0

    async def list_tickets(self, department: str | None = None) -> list[StoredTicket]:
        if department is None:
            rows = await self.db.fetchall("SELECT * FROM tickets ORDER BY created_at")
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM tickets WHERE department = ? ORDER BY created_at", (department,)
            )
        return [self._ticket(r) for r in rows]

    async def open_native_statuses(self, department: str, final: Sequence[str]) -> dict[str, str]:
        """The department's tickets not in a ``final`` status: id → the native status the
        bridge knows (what a ticket system that watches tickets by id is told at each poll;
        two columns of the open tickets, not every ticket whole)."""
        marks = ", ".join("?" for _ in final)
        rows = await self.db.fetchall(
            "SELECT ticket_id, native_status FROM tickets WHERE department = ?"
            f" AND status NOT IN ({marks}) ORDER BY created_at",
            (department, *final),
        )
        return {r["ticket_id"]: r["native_status"] for r in rows}

    async def open_tickets_after(
        self, after: tuple[str, str] | None, limit: int, final: Sequence[str]
    ) -> list[tuple[StoredTicket, str | None]]:
        """A page of the tickets not in a ``final`` status whose inquiry is stored, in key
        order after ``after`` (department, ticket id), each with its inquiry's category: the
        SLA scan reads the open tickets a page at a time (every ticket of the store at once,
        and one read of its inquiry each, cost a process ~1 kB a ticket and 100,000 reads)."""
        marks = ", ".join("?" for _ in final)
        where = f"t.status NOT IN ({marks})"
        params: list[Any] = [*final]
        if after is not None:
            where += " AND (t.department > ? OR (t.department = ? AND t.ticket_id > ?))"
            params += [after[0], after[0], after[1]]
        rows = await self.db.fetchall(
            "SELECT t.*, i.category AS inquiry_category FROM tickets t"
            f" JOIN inquiries i ON i.inquiry_id = t.inquiry_id WHERE {where}"
            " ORDER BY t.department, t.ticket_id LIMIT ?",
            (*params, limit),
        )
        out = []
        for row in rows:
            category = row.pop("inquiry_category")
            out.append((self._ticket(row), category))
        return out

    async def apply_status(
        self,
        *,
        department: str,
        ticket_id: str,
        event_id: str,
        status: str,
        status_rank: int,
        native_status: str,
        occurred_at: str,
        read: StoredTicket | None = None,
    ) -> AppliedEvent:
        """Record a ticket event and apply it if it takes the ticket forward.

        An event seen before (same event id), or one whose status is not past the current
        one in the lifecycle (a late or out-of-order event), is recorded but changes nothing:
        status never goes backwards. Lifecycle rank decides, not timestamps: backends report
        times to the second, so a change made in the second of creation would look "older".

        ``reopened`` (重办) on a resolved/rejected/closed ticket opens the next handling cycle;
        from then on only events that happened at or after the reopening can move it, so a
        late event of the earlier cycle cannot.

        One transaction (and part of the caller's, when it holds one): the reply stage
        records the event, moves the ticket and decides the replies together, so a crash
        between any two statements leaves either nothing or everything.

        ``read``: the ticket as the caller read it just before; when the event does not move
        the ticket, its cycle is the one read (not read again). The cycle of an event that
        moves it is the moved row's.
        """
        async with self.transaction() as tx:
            return await tx._apply_status(
                department,
                ticket_id,
                event_id,
                status,
                status_rank,
                native_status,
                occurred_at,
                read,
            )

    async def _apply_status(
        self,
        department: str,
        ticket_id: str,
        event_id: str,
        status: str,
        status_rank: int,
        native_status: str,
        occurred_at: str,
        read: StoredTicket | None = None,
    ) -> AppliedEvent:
        inserted = await self.db.execute(
            "INSERT INTO ticket_events (department, event_id, ticket_id, status, native_status,"
            " occurred_at, applied, recorded_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)"
            " ON CONFLICT (department, event_id) DO NOTHING",
            (department, event_id, ticket_id, status, native_status, occurred_at, now_iso()),
        )
        if inserted == 0:  # seen before: report whether it was applied then, and in which cycle
            rows = await self.db.fetchall(
                "SELECT applied, cycle FROM ticket_events WHERE department = ? AND event_id = ?",
                (department, event_id),
            )
            row = rows[0] if rows else {"applied": 0, "cycle": None}
            return AppliedEvent(False, bool(row["applied"]), int(row["cycle"] or 0))
        if status == "reopened":
            rows = await self.db.fetchall(
                "UPDATE tickets SET status = ?, status_rank = ?, native_status = ?,"
                " status_at = ?, cycle = cycle + 1, reopened_at = ?"
                " WHERE department = ? AND ticket_id = ? AND status_rank >= ?"
                " AND (reopened_at IS NULL OR reopened_at <= ?) RETURNING cycle, inquiry_id",
                (
                    status,
                    REOPENED_RANK_IN_CYCLE,
                    native_status,
                    occurred_at,
                    occurred_at,
                    department,
                    ticket_id,
                    FINAL_RANK,
                    occurred_at,
                ),
            )
        else:
            rows = await self.db.fetchall(
                "UPDATE tickets SET status = ?, status_rank = ?, native_status = ?, status_at = ?"
                " WHERE department = ? AND ticket_id = ? AND status_rank < ?"
                " AND (reopened_at IS NULL OR reopened_at <= ?) RETURNING cycle, inquiry_id",
                (
                    status,
                    status_rank,
                    native_status,
                    occurred_at,
                    department,
                    ticket_id,
                    status_rank,
                    occurred_at,
                ),
            )
        moved = len(rows)
        if not moved and read is not None:
            rows = [{"cycle": read.cycle, "inquiry_id": read.inquiry_id}]
        elif not moved:
            rows = await self.db.fetchall(
                "SELECT cycle, inquiry_id FROM tickets WHERE department = ? AND ticket_id = ?",
                (department, ticket_id),
            )
        cycle = int(rows[0]["cycle"]) if rows else 0
        if moved:
            await self.db.execute(
                "UPDATE ticket_events SET applied = 1, cycle = ?"
                " WHERE department = ? AND event_id = ?",
                (cycle, department, event_id),
            )
            await self.record_audit(
                "ticket.status",
                inquiry_id=rows[0]["inquiry_id"] if rows else None,
                subject=f"{department}/{ticket_id}",
                status=status,
                native_status=native_status,
                event_id=event_id,
                occurred_at=occurred_at,
                cycle=cycle,
            )
        return AppliedEvent(True, moved > 0, cycle)
