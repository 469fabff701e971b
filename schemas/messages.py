"""Messages between stages. Bodies on the ``govbridge`` exchange are the JSON of these models.

Every message carries ``schema_version``; consumers ignore unknown fields so a newer producer
does not break an older consumer, and reject a message whose version they do not know.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from schemas.states import PostOutcome
from schemas.vocab import Category, InquiryKind, TicketStatus, Visibility

SCHEMA_VERSION = 1


# C0 and C1 control characters (NUL, ESC, …) and DEL: no platform's id contains them, a
# database may refuse them (PostgreSQL refuses NUL in text), and logs and consoles mangle them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def no_control_characters(value: str) -> str:
    """An id as it may travel: no control characters (``id_control_character`` otherwise)."""
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "id_control_character",
            "must not contain control characters (NUL, U+0001-U+001F, U+007F-U+009F)",
        )
    return value


# Every id a source hands in (the post, its author, its thread) is one of these, so every
# source (polled or pushed) is refused at the edge rather than deep in a stage or the store.
SafeId = Annotated[str, AfterValidator(no_control_characters)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def stable_id(prefix: str, *parts: str) -> str:
    """A deterministic id: the same parts always give the same id (re-fetch is a no-op)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"{prefix}_{digest}"


def inquiry_id_for(platform: str, account: str, kind: InquiryKind | str, external_id: str) -> str:
    return stable_id("inq", platform, account, str(kind), external_id)


def reference_for(inquiry_id: str) -> str:
    """The bridge's reference stored in the ticket system (stable per first inquiry)."""
    return "GB-" + inquiry_id.removeprefix("inq_")[:16].upper()


class Message(BaseModel):
    """Base of every message on the bus."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1] = 1


class Author(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: SafeId = Field(description="Platform user id, always a string (Weibo ids exceed 2^53).")
    handle: SafeId = Field(description="Screen name / acct used to address the citizen.")
    display_name: str | None = None
    is_official: bool = Field(
        default=False, description="The author is one of the bridge's own accounts."
    )


class PostRef(BaseModel):
    """A post above an inquiry in its reply chain, and who wrote it (when the platform says)."""

    model_config = ConfigDict(frozen=True)

    id: SafeId
    author_id: SafeId | None = None


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

    root_id: SafeId
    parent_id: SafeId | None = None
    conversation_id: SafeId | None = None
    reply_to: dict[str, SafeId] = Field(default_factory=dict)
    ancestors: list[PostRef] = Field(
        default_factory=list,
        description="The reply chain above this post, nearest first (may stop short of the root).",
    )


class Inquiry(Message):
    """A citizen's message to an official account, normalised. ``inquiry.received.<platform>``."""

    inquiry_id: SafeId
    platform: SafeId
    account: SafeId = Field(description="Handle of the official account that received it.")
    kind: InquiryKind
    external_id: SafeId
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

    @property
    def thread_key(self) -> str:
        """The thread it sits in (a Weibo post, a Mastodon reply tree, a DM thread)."""
        root = self.thread.conversation_id or self.thread.root_id
        return f"{self.platform}:{self.account}:{root}"


class PersonalDataFinding(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["mobile", "landline", "id_number", "email"]
    count: int


class TicketCommand(Message):
    """A triaged inquiry on its way to a ticket system. ``inquiry.routed.<department>``.

    ``action`` is ``create`` for a new ticket, ``append`` for a follow-up in a thread whose
    ticket is still open (``ticket_id`` set), ``reopen`` for a 回访 answer of 未解决 or 不满意
    on a final ticket (``ticket_id`` set; ``inquiry`` is the answer; 重办), ``reroute`` for an
    operator's 转派 of a ticketed case to another department (``department`` the new one,
    ``from_department`` and ``from_ticket_id`` the old ticket, ``reason`` why; ``reference``
    the new ticket's own).
    """

    command_id: str
    action: Literal["create", "append", "reopen", "reroute"]
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
    from_department: str | None = Field(
        default=None, description="For ``reroute``: the department that held the case."
    )
    from_ticket_id: str | None = Field(
        default=None, description="For ``reroute``: the old ticket, told of the transfer."
    )
    reason: str | None = Field(default=None, description="For ``reroute``: the operator's reason.")


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
    source: Literal["create", "poll", "callback", "follow_up", "reopen", "reroute", "return"] = (
        Field(
            default="poll",
            description="``follow_up``: a citizen's follow-up was added to the ticket"
            " (``status`` is the ticket's current one; nothing moves); the bridge acknowledges"
            " it. ``reopen``: the bridge reopened the ticket after a 回访 answer of 未解决 or"
            " 不满意 (``reopened``). ``reroute``: an operator re-routed the case (转派) and this"
            " is its new ticket (``referred``); the citizen is told once where it went."
            " ``return``: the department returned the case as not theirs (退单, ``returned``);"
            " it waits in the triage review.",
        )
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
    outcome: PostOutcome = PostOutcome.POSTED


class SlaEvent(Message):
    """A deadline warning or breach, or a supervisor's 督办 (``escalated``: ``actor`` and
    ``reason`` say who and why), or an approved 延期 (``extended``: ``deadline`` is the new
    one; the reply role tells the citizen). ``holding_reply`` without ``ticket_id``: an
    inquiry still has no ticket near its first-response limit (``deadline`` is that limit);
    the reply role acknowledges it without a number. ``sla.<event>.<department>``."""

    event: Literal["warning", "breached", "holding_reply", "escalated", "extended"]
    department: str
    inquiry_id: str
    ticket_id: str | None = None
    deadline: datetime
    category: Category
    actor: str | None = Field(default=None, description="For ``escalated``: the supervisor.")
    reason: str | None = Field(
        default=None, description="For ``escalated``: why (personal data redacted)."
    )


class AccountFlagged(Message):
    """An official account crossed a line of the inspection (巡检): ``flag`` is the line
    crossed (``dormant``: no own post for ``[inspection].dormant_after``; ``zombie``: inquiries
    left without any reply past the first-response limit; ``zero_activity``: never posted, never
    answered), ``flags`` every line it is over now. Counts and times only.
    ``account.flagged.<department>``."""

    department: str
    account: str = Field(description="The account's key: adapter:handle.")
    platform: str
    flag: Literal["dormant", "zombie", "zero_activity"]
    flags: list[Literal["dormant", "zombie", "zero_activity"]]
    last_post: datetime | None = None
    days_since_post: float | None = None
    received: int = Field(description="Inquiries over the inspected period (noise excluded).")
    answered: int
    unanswered: int = Field(description="Inquiries without any reply past the limit.")
    backlog: int = Field(description="Replies waiting for an approver or a posting slot.")
    inspected_at: datetime = Field(default_factory=utcnow)


class IncidentSurge(Message):
    """Many citizens write about one matter: ``incident.surge.<department>``, raised once per
    incident when ``[incidents] surge_threshold`` inquiries of one incident, department and
    category arrive within ``surge_window``. Carries counts and place names only, never a
    citizen's text or name."""

    incident_id: str = Field(description="The incident: the id of its first inquiry.")
    department: str
    category: Category
    size: int = Field(description="Inquiries of the incident in this category within the window.")
    first_at: datetime = Field(description="When the first of them was written.")
    raised_at: datetime
    growth_per_hour: float = Field(description="Of them, how many were written in the last hour.")
    places: list[str] = Field(
        default_factory=list, description="Places the inquiries name (streets, sites)."
    )
    public_answer_due: datetime = Field(
        description="The 舆情 clock: when a public answer is due ([incidents]"
        " public_answer_within after the surge)."
    )


MESSAGE_MODELS: dict[str, type[Message]] = {
    "Inquiry": Inquiry,
    "TicketCommand": TicketCommand,
    "TicketEvent": TicketEvent,
    "ReplyRequest": ReplyRequest,
    "ReplyPosted": ReplyPosted,
    "SlaEvent": SlaEvent,
    "AccountFlagged": AccountFlagged,
    "IncidentSurge": IncidentSurge,
}
