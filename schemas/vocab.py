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
