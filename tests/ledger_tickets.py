"""A ticket system written the way a third party would add one: this module and a
``departments.ticketing`` block with ``adapter = "ledger"``, nothing in ``bridge/``.

The "backend" is a ledger kept in the process (``LEDGERS`` by name), so a test can play the
department's officials: read what was filed, move a ticket on, and see the bridge learn it
through ``changes_since`` like any polled ticket system.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import ConfigDict, Field

from adapters.base import (
    ChangesResult,
    CreatedTicket,
    PermanentError,
    TicketCapabilities,
    ticket_systems,
)
from schemas.config import DepartmentConfig, TicketingConfig
from schemas.messages import TicketCommand, TicketEvent
from schemas.vocab import TicketStatus


@dataclass
class LedgerTicket:
    ticket_id: str
    reference: str
    category: str
    status: TicketStatus = TicketStatus.RECEIVED
    notes: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """One department's backend: tickets, the change feed, and how often it was closed."""

    tickets: dict[str, LedgerTicket] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    changes: list[TicketEvent] = field(default_factory=list)
    closed: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def move(self, department: str, ticket_id: str, status: TicketStatus) -> None:
        """An official moves a ticket on; the bridge learns it from the change feed."""
        ticket = self.tickets[ticket_id]
        ticket.status = status
        self.changes.append(
            TicketEvent(
                event_id=f"{ticket_id}:{len(self.changes)}",
                department=department,
                ticket_id=ticket_id,
                reference=ticket.reference,
                status=status,
                native_status=status.value,
                occurred_at=datetime.now(UTC),
            )
        )


LEDGERS: dict[str, Ledger] = {}


class LedgerConfig(TicketingConfig):
    """``departments.ticketing`` for ``adapter = "ledger"``."""

    model_config = ConfigDict(extra="forbid")

    ledger: str = Field(min_length=1, description="Which in-process ledger is the backend.")


class LedgerTickets:
    name: ClassVar[str] = "ledger"
    Config: ClassVar[type[TicketingConfig]] = LedgerConfig

    def __init__(self, cfg: LedgerConfig, department: DepartmentConfig) -> None:
        self.cfg = cfg
        self.department = department.id
        self.ledger = LEDGERS.setdefault(cfg.ledger, Ledger())
        self.capabilities = TicketCapabilities(
            idempotent_create=True,
            search_by_reference=True,
            callbacks=False,
            extended_statuses=True,
        )

    async def create(self, command: TicketCommand, idempotency_key: str) -> CreatedTicket:
        ticket_id = self.ledger.by_key.get(idempotency_key)
        if ticket_id is None:
            ticket_id = f"L-{next(self.ledger._ids)}"
            self.ledger.by_key[idempotency_key] = ticket_id
            self.ledger.tickets[ticket_id] = LedgerTicket(
                ticket_id, command.reference, command.category.value
            )
        return CreatedTicket(ticket_id=ticket_id, native_status="received")

    async def find_by_reference(self, reference: str) -> CreatedTicket | None:
        for t in self.ledger.tickets.values():
            if t.reference == reference:
                return CreatedTicket(ticket_id=t.ticket_id, status=t.status)
        return None

    async def append(self, ticket_id: str, command: TicketCommand) -> None:
        self.ledger.tickets[ticket_id].notes.append(command.public_text)

    async def changes_since(self, cursor: str | None) -> ChangesResult:
        start = int(cursor or 0)
        return ChangesResult(self.ledger.changes[start:], str(len(self.ledger.changes)))

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        raise PermanentError("the ledger sends no callbacks")

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self.ledger.closed += 1


def register() -> None:
    """What an entry point in ``govbridge.ticket_systems`` does for an installed package."""
    ticket_systems.register(LedgerTickets.name, LedgerTickets)
