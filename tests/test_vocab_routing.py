"""The shared vocabulary: routing keys built in one place, states as enums whose values are the
strings stored in the database (old rows keep meaning the same)."""

from __future__ import annotations

from bridge.topology import ROUTING_KEYS, STAGE_BINDINGS
from schemas import routing
from schemas.routing import Route
from schemas.vocab import (
    INQUIRY_DONE_STATES,
    REPLY_FINISHED_STATES,
    CreateState,
    InquiryState,
    ReplyState,
)


def test_routing_keys_are_the_public_contract() -> None:
    assert routing.inquiry_received("weibo") == "inquiry.received.weibo"
    assert routing.inquiry_routed("d1") == "inquiry.routed.d1"
    assert routing.ticket_created("d1") == "ticket.created.d1"
    assert routing.ticket_updated("d1") == "ticket.updated.d1"
    assert routing.reply_requested("mastodon") == "reply.requested.mastodon"
    assert routing.reply_posted("mastodon") == "reply.posted.mastodon"
    assert ROUTING_KEYS["inquiry.received"] == "inquiry.received.<platform>"
    assert ROUTING_KEYS["ticket.updated"] == "ticket.updated.<department>"
    assert ROUTING_KEYS["reply.posted"] == "reply.posted.<platform>"
    assert STAGE_BINDINGS["reply"] == ("ticket.created.*", "ticket.updated.*")
    assert Route.REPLY_REQUESTED.pattern == "reply.requested.*"


def test_state_values_are_the_stored_strings() -> None:
    assert InquiryState.NEEDS_RECONCILIATION == "needs_reconciliation"
    assert CreateState.NEEDS_RECONCILIATION == "needs_reconciliation"
    assert "kept_on_record" in INQUIRY_DONE_STATES  # a plain stored string is found
    assert InquiryState.TRIAGED not in INQUIRY_DONE_STATES  # its command may not be out yet
    assert "posted" in REPLY_FINISHED_STATES
    assert ReplyState.APPROVED not in REPLY_FINISHED_STATES
