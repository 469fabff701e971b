"""What a contract harness provides, so one suite can test every adapter of a kind.

Each adapter ships ``tests/contract/harness_<name>.py`` defining ``HARNESS`` (a class
implementing ``SourceHarness`` or ``TicketSystemHarness``); the contract suites import every
such module and run the same tests against each.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from adapters.base import Source, TicketSystem
from schemas.messages import ReplyRequest, TicketCommand


class SourceHarness(Protocol):
    """A running fake (or third-party mock) platform plus an adapter pointed at it."""

    name: str
    # items in the draining test's backlog: enough for several pages and restarts mid-way
    backlog: int

    def running(self) -> AbstractAsyncContextManager[SourceHarness]:
        """Start the platform fake; stop and clean up on exit."""
        ...

    def adapter(self) -> Source:
        """A fresh adapter for the harness's official account."""
        ...

    async def add_citizen_items(self, n: int) -> list[str]:
        """Make ``n`` citizens write to the account; return their external ids (oldest first)."""
        ...

    async def reply_request_for(self, external_id: str, reply_id: str, text: str) -> ReplyRequest:
        """A reply request answering the item with that external id."""
        ...

    async def posted_replies(self) -> list[dict[str, str]]:
        """Replies the platform holds from the official account (each with at least ``text``)."""
        ...

    async def exhaust_rate_limit(self) -> None:
        """Make the platform answer the next calls with its rate-limit error."""
        ...

    async def reset_rate_limit(self) -> None: ...

    async def break_token(self) -> None:
        """Make the platform reject the account's token (expired/revoked)."""
        ...


class TicketSystemHarness(Protocol):
    name: str

    def running(self) -> AbstractAsyncContextManager[TicketSystemHarness]: ...

    def adapter(self) -> TicketSystem: ...

    def command(self, n: int) -> TicketCommand:
        """A distinct create command (n-th), routed to the harness's department."""
        ...

    async def tickets(self) -> list[dict[str, str]]:
        """All tickets in the backend (each with at least ``id`` and ``reference``)."""
        ...

    async def set_status(self, ticket_id: str, native_status: str, note: str | None) -> None:
        """Operator control: move a ticket in the backend."""
        ...

    async def set_outage(self, mode: str | None) -> None:
        """``"503"``, ``"refuse"`` (connection refused) or ``None`` to recover."""
        ...
