"""Messages between stages. Bodies on the ``govbridge`` exchange are the JSON of these models.

Every message carries ``schema_version``; consumers ignore unknown fields so a newer producer
does not break an older consumer, and reject a message whose version they do not know.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.vocab import Category, InquiryKind, TicketStatus, Visibility

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def stable_id(prefix: str, *parts: str) -> str:
    """A deterministic id: the same parts always give the same id (re-fetch is a no-op)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"{prefix}_{digest}"


def inquiry_id_for(platform: str, account: str, kind: InquiryKind | str, external_id: str) -> str:
    return stable_id("inq", platform, account, str(kind), external_id)


class Message(BaseModel):
    """Base of every message on the bus."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1] = 1


class Author(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Platform user id, always a string (Weibo ids exceed 2^53).")
    handle: str = Field(description="Screen name / acct used to address the citizen.")
    display_name: str | None = None
    is_official: bool = Field(
        default=False, description="The author is one of the bridge's own accounts."
    )


class PostRef(BaseModel):
    """A post above an inquiry in its reply chain, and who wrote it (when the platform says)."""

    model_config = ConfigDict(frozen=True)

    id: str
    author_id: str | None = None


class ThreadRef(BaseModel):
    """Where an inquiry sits, and everything needed to answer in the same place.

    ``root_id`` is the post that started the thread (a Weibo status, a Mastodon status at the
    top of the reply chain, a DM conversation). Sharing a root does NOT make two inquiries one
    conversation: many citizens answer one official post. ``ancestors`` is the reply chain
    above the inquiry, nearest first, as far as the platform shows it, with each post's
    author: triage finds a citizen's follow-up by looking for their own earlier inquiry (or
    the bridge's answer to it) in that chain. ``reply_to`` holds platform-specific fields the
    source adapter needs to post an answer.
    """

    model_config = ConfigDict(frozen=True)

    root_id: str
    parent_id: str | None = None
    conversation_id: str | None = None
    reply_to: dict[str, str] = Field(default_factory=dict)
    ancestors: list[PostRef] = Field(
        default_factory=list,
        description="The reply chain above this post, nearest first (may stop short of the root).",
    )


class Inquiry(Message):
    """A citizen's message to an official account, normalised. ``inquiry.received.<platform>``."""

    inquiry_id: str
    platform: str
    account: str = Field(description="Handle of the official account that received it.")
    kind: InquiryKind
    external_id: str
    author: Author
    text: str
    created_at: datetime
    thread: ThreadRef
    visibility: Visibility = Visibility.PUBLIC
    url: str | None = None
    received_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def create(
        cls,
        *,
        platform: str,
        account: str,
        kind: InquiryKind,
        external_id: str,
        **fields: object,
    ) -> Inquiry:
        """Build an inquiry whose id is derived from (platform, account, kind, external id)."""
        return cls.model_validate(
            {
                "inquiry_id": inquiry_id_for(platform, account, kind, external_id),
                "platform": platform,
                "account": account,
                "kind": kind,
                "external_id": external_id,
                **fields,
            }
        )


class PersonalDataFinding(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["mobile", "id_number", "email"]
    count: int


class TicketCommand(Message):
    """A triaged inquiry on its way to a ticket system. ``inquiry.routed.<department>``.

    ``action`` is ``create`` for a new ticket, ``append`` for a follow-up in a thread whose
    ticket is still open (``ticket_id`` set).
    """

    command_id: str
    action: Literal["create", "append"]
    inquiry: Inquiry
    department: str
    category: Category
    reference: str = Field(description="The bridge's own reference, stored in the backend.")
    description: str = Field(
        description="Text for the ticket; personal data per department policy."
    )
    public_text: str = Field(description="The inquiry text with personal data redacted.")
    personal_data: list[PersonalDataFinding] = Field(default_factory=list)
    ticket_id: str | None = None


class TicketEvent(Message):
    """A ticket came into being or changed: ``ticket.created.<dept>``, ``ticket.updated.<dept>``."""

    event_id: str = Field(description="Stable per change (e.g. Open311 update_id): dedupe key.")
    department: str
    ticket_id: str
    reference: str | None = Field(default=None, description="The bridge reference, when known.")
    status: TicketStatus
    native_status: str = Field(description="The backend's own status code, kept verbatim.")
    occurred_at: datetime
    note: str | None = Field(default=None, description="An official's public note, if any.")
    source: Literal["create", "poll", "callback", "follow_up"] = Field(
        default="poll",
        description="``follow_up``: a citizen's follow-up was added to the ticket (``status``"
        " is the ticket's current one; nothing moves); the bridge acknowledges it.",
    )
    inquiry_id: str | None = Field(
        default=None, description="For ``follow_up``: the follow-up inquiry to acknowledge."
    )


class ReplyRequest(Message):
    """A reply waiting to be posted to a citizen. ``reply.requested.<platform>``."""

    reply_id: str = Field(description="Idempotency key: one per (inquiry, status) or note.")
    inquiry_id: str
    platform: str
    account: str
    department: str
    thread: ThreadRef
    citizen_handle: str
    visibility: Visibility
    text: str
    status: TicketStatus | None = None
    ticket_id: str | None = None
    templated: bool = True
    cycle: int = Field(default=0, description="Handling cycle: 0, then +1 per reopening (重办).")


class ReplyPosted(Message):
    """A reply is on the platform. ``reply.posted.<platform>``."""

    reply_id: str
    inquiry_id: str
    platform: str
    account: str
    external_ids: list[str]
    posted_at: datetime = Field(default_factory=utcnow)
    outcome: Literal["posted", "already_posted", "fallback_root", "undeliverable"] = "posted"


class SlaEvent(Message):
    """A deadline warning or breach. ``sla.<event>.<department>``."""

    event: Literal["warning", "breached", "holding_reply"]
    department: str
    inquiry_id: str
    ticket_id: str | None = None
    deadline: datetime
    category: Category


MESSAGE_MODELS: dict[str, type[Message]] = {
    "Inquiry": Inquiry,
    "TicketCommand": TicketCommand,
    "TicketEvent": TicketEvent,
    "ReplyRequest": ReplyRequest,
    "ReplyPosted": ReplyPosted,
    "SlaEvent": SlaEvent,
}
