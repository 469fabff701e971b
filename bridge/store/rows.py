"""Typed rows the store returns. States and statuses are kept as the column's string (the
enums of ``schemas.vocab`` are ``StrEnum``s and compare equal to them).

The inquiry, ticket and create-attempt rows list their columns in the table's order, so
``dataclasses.asdict`` gives the same dict (keys in the same order) that ``SELECT *`` did: the
HTTP API serves them as they were.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple


class AppliedEvent(NamedTuple):
    new: bool  # first time this event id was seen
    applied: bool  # it moved the ticket (now or when first seen)
    cycle: int  # the handling cycle it belongs to (0, then +1 per reopening)


def text_sha256(text: str) -> str:
    """How an approval names the exact text it approves (UTF-8, as the platform gets it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    version: int = 1
    """Grows whenever the draft's text or standing changes (a newer status supersedes it, an
    approver decides it): an approval names the version it saw."""
    looks: int = 0  # looks for an uncertain post's copy since its last call, or sweeps done
    sweep_at: str | None = None  # when to look once more for late copies (posted replies)

    @property
    def text(self) -> str:
        """The reply's text as it stands: the approver's, else the drafted one."""
        if self.final_text is not None:
            return self.final_text
        return str(json.loads(self.request_json).get("text", ""))


@dataclass(frozen=True)
class QueueCard:
    """One card of the approval queue: a conversation's live draft beside what the citizen
    wrote (redacted) and the ticket's status now; ``drafts``: how many drafts of that inquiry
    await approval (the others follow once this one is decided)."""

    reply: StoredReply
    original: str | None
    citizen_handle: str | None
    category: str | None
    ticket_status: str | None
    drafts: int


@dataclass(frozen=True)
class QueuePage:
    """A page of the approval queue and the total of cards that match the filters."""

    cards: list[QueueCard]
    total: int


@dataclass(frozen=True)
class ReplyCopy:
    """A row of ``reply_copies``: one post call the bridge made for a reply, what the call
    answered (``answer``: calling, posted, found, timed_out, refused, not_sent, or
    unattributed for a copy found that no call claims) and what became of the copy it made
    (``fate``, a ``CopyFate``), with its platform ids once known."""

    reply_id: str
    attempt: int
    answer: str
    fate: str
    external_ids: list[str]
    detail: str | None
    started_at: str
    updated_at: str


@dataclass(frozen=True)
class FollowUpDelivery:
    """A row of ``follow_up_deliveries``: how a citizen's follow-up reached the officials
    (``channel``: ticket, new_request, webhook or record), whether it did (``state``:
    attempted, delivered, unknown or recorded), and the linked request it made, if any."""

    inquiry_id: str
    department: str
    ticket_id: str
    channel: str
    state: str
    linked_id: str | None
    reference: str | None
    detail: str | None
    updated_at: str


@dataclass(frozen=True)
class AccountBacklog:
    """An account's outbox: replies waiting (approved or being posted), when the oldest of
    them was created, and failed ones."""

    platform: str
    account: str
    waiting: int
    oldest: str | None
    failed: int


@dataclass(frozen=True)
class ReplyClaim:
    """What the outbox may do next for an account.

    ``reply`` is leased to the caller (post it, then ``finish_post`` or ``release_post``);
    ``call_id`` is its slot in the account's posting quota. Without a reply, ``wait_until``
    says when the quota frees a slot (``None``: nothing is waiting). ``superseded`` lists
    replies of the same inquiry that the claimed one overtook (they will not be posted).
    ``owner`` is the claimant: the claim is settled only while it is still theirs.
    """

    reply: StoredReply | None
    call_id: str | None = None
    wait_until: datetime | None = None
    superseded: tuple[str, ...] = ()
    owner: str | None = None


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
    posted_at: str | None = None  # when the citizen posted it on the platform (their clock)


@dataclass(frozen=True)
class NewInquiry:
    """An inquiry to record: ``StoredInquiry`` without the times the store stamps."""

    inquiry_id: str
    platform: str
    account: str
    kind: str
    thread_key: str
    state: str
    reason: str | None = None
    department: str | None = None
    category: str | None = None
    ticket_id: str | None = None
    public_text: str | None = None
    citizen_handle: str | None = None
    visibility: str | None = None
    thread_json: str | None = None
    confidence: float | None = None
    explanation: str | None = None
    external_id: str | None = None
    author_id: str | None = None
    conversation: str | None = None
    posted_at: str | None = None


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


def stored_ticket(row: dict[str, Any]) -> StoredTicket:
    """A ``tickets`` row read whole, without ``clock_category`` (migration 29: the category
    the overdue page's windows read, kept by triggers from the inquiry's)."""
    return StoredTicket(**{k: v for k, v in row.items() if k != "clock_category"})


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


@dataclass(frozen=True)
class IncidentCase:
    """A row of ``incident_cases``: one inquiry's link to its incident. ``role`` is an
    ``IncidentRole``; ``lead_inquiry`` is the case whose ticket a ``merged`` case joined;
    ``similarity`` and ``matched`` say which earlier inquiry it resembled, and how much;
    ``written_at`` is when the citizen wrote it. ``seq`` orders the cases of one department as
    they were decided (every process catches up from it)."""

    seq: int
    inquiry_id: str
    incident_id: str
    department: str
    category: str
    role: str
    lead_inquiry: str | None
    similarity: float
    matched: str | None
    text: str
    """The public (masked) text the incident index compared: what other processes learn."""
    written_at: str
    joined_at: str


@dataclass(frozen=True)
class IncidentRow:
    """A row of ``incidents``: the incident (its id is its first inquiry's), the case whose
    ticket handles it, its span, and once it surged the surge and its 舆情 clock
    (``public_answer_due``). ``merged_into``: another incident it was found to be part of."""

    incident_id: str
    department: str
    lead_inquiry: str | None
    first_at: str
    last_at: str
    merged_into: str | None
    surge_category: str | None
    surge_at: str | None
    surge_size: int | None
    public_answer_due: str | None
    public_answer_at: str | None
    """When an official recorded the public answer given (the clock stopped), and who."""
    public_answer_by: str | None
    surge_announced: bool
    surge_by: str | None
    """The case whose arrival made the surge: its handler announces it (its redelivery too)."""
    places: str | None
    created_at: str


@dataclass(frozen=True)
class KnownCase:
    """A case as the incident index is rebuilt from it: its public text and its incident."""

    seq: int
    inquiry_id: str
    incident_id: str
    text: str
    written_at: str


@dataclass(frozen=True)
class CaseNote:
    """A row of ``case_notes``: an internal note on a case (never public)."""

    note_id: str
    inquiry_id: str
    author: str
    text: str
    created_at: str


@dataclass(frozen=True)
class CaseExtension:
    """A row of ``case_extensions``: a 延期 request and its decision."""

    extension_id: str
    inquiry_id: str
    department: str
    ticket_id: str
    cycle: int
    old_deadline: str
    new_deadline: str
    reason: str
    state: str
    requested_by: str
    requested_at: str
    decided_by: str | None = None
    decided_at: str | None = None
