"""The shared vocabulary: routing keys built in one place, states as enums whose values are the
strings stored in the database (old rows keep meaning the same)."""

from __future__ import annotations

from pathlib import Path

from bridge.runtime.topology import ROUTING_KEYS, STAGE_BINDINGS
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


def test_stages_are_declared_once_for_topology_and_runtime(tmp_path: Path) -> None:
    from unittest.mock import MagicMock

    from bridge.reply import role as reply
    from bridge.runtime.topology import ROUTE_PUBLISHERS
    from bridge.ticketing import role as ticketing
    from bridge.triage import role as triage
    from schemas import stages
    from tests.conftest import bridge_config

    assert STAGE_BINDINGS == {
        "triage": ("inquiry.received.*",),
        "ticketing": ("inquiry.routed.*",),
        "reply": ("ticket.created.*", "ticket.updated.*"),
        "holding": ("sla.holding_reply.*", "sla.extended.*"),
        "outbox": ("reply.requested.*",),
    }
    assert ROUTE_PUBLISHERS["inquiry.received"] == ("ingest",)
    assert ROUTE_PUBLISHERS["ticket.updated"] == ("ticketing", "sync")
    assert ROUTE_PUBLISHERS["sla"] == ("sla",)
    # each consuming role's workers decode what its declaration names
    ctx = MagicMock()
    ctx.cfg = bridge_config(tmp_path)
    workers = {}
    for module in (triage, ticketing, reply):
        role = module.create(ctx)
        workers.update({w.name: w.stage.model for w in role.workers})
    assert workers == {s.name: s.consumes for s in stages.CONSUMING}
