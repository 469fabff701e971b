"""Typed rows the store returns. States and statuses are kept as the column's string (the
enums of ``schemas.vocab`` are ``StrEnum``s and compare equal to them).

The inquiry, ticket and create-attempt rows list their columns in the table's order, so
``dataclasses.asdict`` gives the same dict (keys in the same order) that ``SELECT *`` did: the
HTTP API serves them as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class AppliedEvent(NamedTuple):
    new: bool  # first time this event id was seen
    applied: bool  # it moved the ticket (now or when first seen)
    cycle: int  # the handling cycle it belongs to (0, then +1 per reopening)


@dataclass(frozen=True)
class StoredReply:
    reply_id: str
    inquiry_id: str
    platform: str
    account: str
    department: str
    status: str | None
    templated: bool
    state: str
    request_json: str
    final_text: str | None
    decided_by: str | None
    decided_at: str | None
    decision: str | None
    created_at: str
    posted_at: str | None
    external_ids: list[str]
    cycle: int = 0
    post_attempts: int = 0
    uncertain: bool = False
    failure: str | None = None
    merged_into: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class ReplyClaim:
    """What the outbox may do next for an account.

    ``reply`` is leased to the caller (post it, then ``finish_post`` or ``release_post``);
    ``call_id`` is its slot in the account's posting quota. Without a reply, ``wait_until``
    says when the quota frees a slot (``None``: nothing is waiting). ``superseded`` lists
    replies of the same inquiry that the claimed one overtook (they will not be posted).
    """

    reply: StoredReply | None
    call_id: str | None = None
    wait_until: datetime | None = None
    superseded: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredInquiry:
    """A row of ``inquiries``: what the bridge received, and where it stands (``state``, an
    ``InquiryState``)."""

    inquiry_id: str
    platform: str
    account: str
    kind: str
    thread_key: str
    state: str
    reason: str | None
    department: str | None
    category: str | None
    ticket_id: str | None
    public_text: str | None
    citizen_handle: str | None
    visibility: str | None
    thread_json: str | None
    created_at: str
    updated_at: str
    confidence: float | None = None  # triage's, with its ``explanation`` (JSON)
    explanation: str | None = None
    external_id: str | None = None  # the post on the platform
    author_id: str | None = None
    conversation: str | None = None  # the first inquiry of its conversation (follow-ups)


@dataclass(frozen=True)
class StoredTicket:
    """A row of ``tickets``: a department's ticket for an inquiry, at its latest status
    (``status``, a ``TicketStatus``) in handling cycle ``cycle``."""

    department: str
    ticket_id: str
    reference: str
    inquiry_id: str
    thread_key: str
    status: str
    status_rank: int
    native_status: str
    status_at: str
    created_at: str
    cycle: int = 0
    reopened_at: str | None = None


@dataclass(frozen=True)
class CreateAttempt:
    """A row of ``create_attempts``: the durable note that a ticket is being created for
    ``reference`` (``state``, a ``CreateState``), and an official's settling of it."""

    reference: str
    department: str
    inquiry_id: str
    state: str
    ticket_id: str | None
    attempts: int
    detail: str | None
    updated_at: str
    command_json: str | None = None  # the command, so an operator can have it run again
    decided_by: str | None = None
    decided_at: str | None = None
    decision: str | None = None
