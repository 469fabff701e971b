"""Canonical vocabularies shared by every stage and adapter.

Enum values are ASCII (they appear in routing keys, config and JSON); each carries its
Chinese label, which is what citizens and officials read.
"""

from __future__ import annotations

from enum import StrEnum


class Platform(StrEnum):
    """Built-in source platforms. Plugins may add others, so messages carry plain strings."""

    WEIBO = "weibo"
    MASTODON = "mastodon"
    WEBHOOK = "webhook"


class InquiryKind(StrEnum):
    MENTION = "mention"
    COMMENT = "comment"
    DIRECT_MESSAGE = "direct_message"

    @property
    def label(self) -> str:
        return {"mention": "@提及", "comment": "评论", "direct_message": "私信"}[self.value]


class Visibility(StrEnum):
    """Who can see a message: a private question always gets a private answer."""

    PUBLIC = "public"
    PRIVATE = "private"


class Category(StrEnum):
    """Inquiry categories of the 12345 hotline system."""

    CONSULTATION = "consultation"
    HELP = "help"
    COMPLAINT = "complaint"
    REPORT = "report"
    SUGGESTION = "suggestion"
    PRAISE = "praise"
    OTHER = "other"

    @property
    def label(self) -> str:
        return CATEGORY_LABELS[self]


CATEGORY_LABELS: dict[Category, str] = {
    Category.CONSULTATION: "咨询",
    Category.HELP: "求助",
    Category.COMPLAINT: "投诉",
    Category.REPORT: "举报",
    Category.SUGGESTION: "建议",
    Category.PRAISE: "表扬",
    Category.OTHER: "其他",
}


class TicketStatus(StrEnum):
    """The ticket lifecycle (12345 work-order closed loop)."""

    RECEIVED = "received"
    REFERRED = "referred"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    RETURNED = "returned"
    REOPENED = "reopened"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return STATUS_LABELS[self]

    @property
    def rank(self) -> int:
        """Position in the lifecycle; a status never follows one of a higher rank."""
        return STATUS_RANK[self]

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


STATUS_LABELS: dict[TicketStatus, str] = {
    TicketStatus.RECEIVED: "已受理",
    TicketStatus.REFERRED: "已转办",
    TicketStatus.IN_PROGRESS: "办理中",
    TicketStatus.RESOLVED: "已办结",
    TicketStatus.REJECTED: "不予受理",
    TicketStatus.RETURNED: "退回",
    TicketStatus.REOPENED: "重办",
    TicketStatus.CLOSED: "已关闭",
}

# Lifecycle order. "returned" (a unit sends the order back) sits before in_progress because the
# order is then re-dispatched; resolved/rejected are outcomes of handling; reopened follows an
# outcome (dissatisfied follow-up); closed ends everything.
STATUS_RANK: dict[TicketStatus, int] = {
    TicketStatus.RECEIVED: 10,
    TicketStatus.REFERRED: 20,
    TicketStatus.RETURNED: 25,
    TicketStatus.IN_PROGRESS: 30,
    TicketStatus.RESOLVED: 40,
    TicketStatus.REJECTED: 40,
    TicketStatus.REOPENED: 50,
    TicketStatus.CLOSED: 60,
}

FINAL_STATUSES = frozenset({TicketStatus.RESOLVED, TicketStatus.REJECTED, TicketStatus.CLOSED})

# A reopened ticket (重办: a dissatisfied follow-up) starts a new handling cycle: inside it the
# ticket stands just after "received", so referral, handling and resolution can follow again.
REOPENED_RANK_IN_CYCLE = 15


def rank_in_cycle(status: TicketStatus) -> int:
    """Where a status sits within one handling cycle (reopened opens the next cycle)."""
    return REOPENED_RANK_IN_CYCLE if status is TicketStatus.REOPENED else status.rank


class InquiryState(StrEnum):
    """Where an inquiry stands in the bridge (the ``inquiries.state`` column)."""

    TRIAGED = "triaged"  # classified, its ticket command not yet published
    ROUTED = "routed"  # a ticket command is on its way to the department
    IGNORED = "ignored"  # noise: recorded, never routed
    HELD_FOR_REVIEW = "held_for_review"  # waits for an official's category check
    TICKETED = "ticketed"  # a ticket was created for it
    APPENDED = "appended"  # a follow-up added to its conversation's ticket
    KEPT_ON_RECORD = "kept_on_record"  # a follow-up kept on the ticket's record (no update API)
    # a follow-up the ticket system could not take, delivered another way the department
    # configured (a linked new request, or its handling unit's webhook)
    FORWARDED = "forwarded"
    NEEDS_RECONCILIATION = "needs_reconciliation"  # a create whose outcome is unknown
    # an answer to a 回访 question: read (bridge/triage/survey.py), its reading recorded,
    # never appended as a follow-up (a 未解决 or 不满意 reopens the case instead)
    SURVEY_ANSWER = "survey_answer"


# Triage has nothing more to do for an inquiry in one of these states (a redelivery is a no-op).
INQUIRY_DONE_STATES = frozenset(
    {
        InquiryState.ROUTED,
        InquiryState.IGNORED,
        InquiryState.TICKETED,
        InquiryState.APPENDED,
        InquiryState.KEPT_ON_RECORD,
        InquiryState.FORWARDED,
        InquiryState.NEEDS_RECONCILIATION,
        InquiryState.HELD_FOR_REVIEW,
        InquiryState.SURVEY_ANSWER,
    }
)

# A follow-up went into its conversation's ticket (appended, forwarded another way, or kept on
# its record).
FOLLOW_UP_STATES = frozenset(
    {InquiryState.APPENDED, InquiryState.FORWARDED, InquiryState.KEPT_ON_RECORD}
)


class ReplyState(StrEnum):
    """A reply's way through approval and the outbox (the ``replies.state`` column)."""

    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"  # waits in the outbox for a posting slot
    POSTING = "posting"  # leased by an outbox process
    POSTED = "posted"
    UNDELIVERABLE = "undeliverable"  # the platform can never deliver it (e.g. deleted post)
    FAILED = "failed"  # dead-lettered after its attempts; an operator may replay it
    REJECTED = "rejected"  # an official declined it
    SUPERSEDED = "superseded"  # a later status of the same inquiry was posted instead


# A reply in one of these states is its account's backlog, not an inquiry left unanswered:
# waiting for an approver, or approved and waiting for a posting slot.
REPLY_AWAITING_STATES = (ReplyState.AWAITING_APPROVAL,)
REPLY_QUEUED_STATES = (ReplyState.APPROVED, ReplyState.POSTING)

# A reply in one of these states is never posted again.
REPLY_FINISHED_STATES = frozenset(
    {ReplyState.POSTED, ReplyState.REJECTED, ReplyState.SUPERSEDED, ReplyState.UNDELIVERABLE}
)


class CreateState(StrEnum):
    """A ticket create attempt (the ``create_attempts.state`` column)."""

    ATTEMPTED = "attempted"  # sent, outcome not yet known
    CREATED = "created"
    NOT_SENT = "not_sent"  # provably not created: the create may run again
    REJECTED = "rejected"  # the ticket system refused it for good
    NEEDS_RECONCILIATION = "needs_reconciliation"  # maybe created: an official must settle it


class CopyFate(StrEnum):
    """What became of the copy one post call made (the ``reply_copies.fate`` column)."""

    PENDING = "pending"  # the call's outcome is not known yet (it timed out; no copy seen yet)
    KEPT = "kept"  # the copy the citizen sees: the reply's own posts
    DELETED = "deleted"  # an extra copy (a late commit), deleted by the bridge
    EXTRA = "extra"  # an extra copy the platform would not delete: visible, and recorded
    NONE = "none"  # the call made no copy (refused, not sent, or none seen by the last look)
    UNKNOWN = "unknown"  # the platform cannot be searched: its idempotency guards a repeat


class FollowUpChannel(StrEnum):
    """How a citizen's follow-up reaches the officials (``follow_up_deliveries.channel``)."""

    TICKET = "ticket"  # appended to the ticket by the ticket system's own API
    NEW_REQUEST = "new_request"  # a new request in the ticket system naming the original
    WEBHOOK = "webhook"  # a signed HTTP POST to the handling unit's configured URL
    RECORD = "record"  # nowhere configured: kept on the bridge's record only


class IncidentRole(StrEnum):
    """What one case is to its incident (``bridge/triage/incident_links.py``): the ``lead``
    holds the ticket the incident is handled on; in ``merge`` mode later cases are ``merged``
    into it (appended to its ticket, answered on its status changes); otherwise they are
    ``linked`` (a ticket of their own, shown as one incident)."""

    LEAD = "lead"
    MERGED = "merged"
    LINKED = "linked"
