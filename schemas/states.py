"""States of the officials' checks and decisions, shared by the store and the roles that ask it.

``ReviewState``: a triage hold (``triage_reviews.state``). ``Decision``: what an approver
decided about a reply draft (``replies.decision``) or how an official settled an uncertain
create (``create_attempts.decision``). ``PostOutcome``: what a platform call made of a reply
(``replies.outcome``, ``PostedReply.outcome``). ``SurveyOutcome``: how a 回访 of one handling
cycle ended (``survey_results.outcome``). Each is a ``StrEnum``: equal to the column's
string, so rows keep their strings and compare with these.
"""

from __future__ import annotations

from enum import StrEnum


class ReviewState(StrEnum):
    """Where an inquiry held for an official's category check stands."""

    PENDING = "pending"
    CORRECTED = "corrected"  # an official chose another category before it was filed
    CONFIRMED = "confirmed"  # an official agreed with the model before it was filed
    TIMED_OUT = "timed_out"  # nobody checked in time: filed with the model's guess
    CORRECTED_LATE = "corrected_late"  # checked after the timeout, ticket already filed
    DISMISSED = "dismissed"  # an official found a flood hold not worth a ticket


class ReviewReason(StrEnum):
    """Why an inquiry is held."""

    UNSURE = "unsure"  # the classifier's confidence was below review_below
    FLOOD = "flood"  # its author started too many conversations (never filed by the timeout)
    # 退单: a department returned a ticketed case as not theirs; never filed by the timeout,
    # settled by an official's 转派 (POST /api/cases/{inquiry_id}/reroute)
    RETURNED = "returned"


class Decision(StrEnum):
    """An official's decision: on a reply draft (approve, edit, reject) or on an uncertain
    ticket create (attached to an existing ticket, or not created: the create runs again)."""

    APPROVE = "approve"
    EDIT = "edit"
    REJECT = "reject"
    ATTACHED = "attached"
    NOT_CREATED = "not_created"


class PostOutcome(StrEnum):
    """What a platform call made of a reply."""

    POSTED = "posted"
    ALREADY_POSTED = "already_posted"  # a copy of an earlier call was found: not posted again
    FALLBACK_ROOT = "fallback_root"  # posted on the thread's root (the comment was gone)
    UNDELIVERABLE = "undeliverable"


class DeliveryState(StrEnum):
    """Where a follow-up's delivery to the officials stands (``follow_up_deliveries.state``)."""

    ATTEMPTED = "attempted"  # noted before the call
    DELIVERED = "delivered"
    RECORDED = "recorded"  # kept on the bridge's record only
    UNKNOWN = "unknown"  # the call's outcome is not known
    NOT_SENT = "not_sent"  # refused or certainly not sent: a later delivery may try again


class CopyAnswer(StrEnum):
    """What one post call for a reply answered (``reply_copies.answer``)."""

    CALLING = "calling"  # the call is being made (or its process died during it)
    POSTED = "posted"
    FOUND = "found"  # an earlier copy was found instead of posting
    TIMED_OUT = "timed_out"
    REFUSED = "refused"
    NOT_SENT = "not_sent"
    UNATTRIBUTED = "unattributed"  # a copy found that no call claims


class SurveyOutcome(StrEnum):
    """How the 回访 of one ticket's handling cycle ended (``survey_results.outcome``)."""

    ANSWERED = "answered"  # the citizen's answer said solved or not, or how satisfied, or both
    UNRATED = "unrated"  # still unclear after the one re-ask (sarcasm, a contradiction, …)
    NO_RESPONSE = "no_response"  # silence for the configured period
    NOT_ASKED = "not_asked"  # an approver rejected the question: no result, counted nowhere


class SurveyAskState(StrEnum):
    """Where the 回访 of one ticket cycle stands (``survey_asks.state``)."""

    SCHEDULED = "scheduled"  # the ticket is final; the question goes out at due_at
    ASKED = "asked"  # the question is recorded as a reply (approval and quota as any reply)
    REASK_DUE = "reask_due"  # the answer was unclear: the one polite re-ask is due
    REASKED = "reasked"  # the re-ask is recorded as a reply
    DONE = "done"  # the result is in survey_results (answered, unrated or no response)


class ExtensionState(StrEnum):
    """A 延期 request (``case_extensions.state``): waiting for an approver, or decided."""

    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"
