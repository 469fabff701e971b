"""A new ticket system from one module plus config, with nothing in ``bridge/`` touched:
``tests/ledger_tickets.py`` is registered the way an installed package's entry point would be,
a department names it in its ``ticketing`` block, and an inquiry goes the whole way: triage,
a ticket filed in the ledger, an official's change learnt by polling, the citizen's replies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from schemas import routing
from schemas.config import GovbridgeConfig
from schemas.messages import Inquiry
from schemas.vocab import InquiryKind, TicketStatus
from tests import ledger_tickets
from tests.conftest import bridge_config, eventually, running_bridge

HANDLE = "parks12345"


def parks_config(tmp_path: Path, ledger: str) -> GovbridgeConfig:
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "parks",
                "name": "市园林局",
                "approval": "all-manual",  # replies wait for an official: nothing is posted
                "ticketing": {"adapter": "ledger", "ledger": ledger, "poll": "200ms"},
            }
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": HANDLE,
                "department": "parks",
                "platform": "hotline",
                "secret": "push-secret",
                "reply_url": "http://127.0.0.1:9/replies",
            }
        ],
    )


async def test_an_inquiry_goes_through_a_ticket_system_added_from_one_module(
    tmp_path: Path,
) -> None:
    ledger_tickets.register()
    name = f"parks-{uuid.uuid4().hex[:8]}"
    cfg = parks_config(tmp_path, name)
    inquiry = Inquiry.create(
        platform="hotline",
        account=HANDLE,
        kind=InquiryKind.MENTION,
        external_id=f"ext-{name}",
        author={"id": "c1", "handle": "citizen1"},
        text="公园里的路灯坏了好几天了，晚上很黑，请尽快修理",
        created_at=datetime.now(UTC),
        thread={"root_id": f"ext-{name}"},
    )
    async with running_bridge(
        cfg, ["triage", "ticketing", "sync", "reply"], in_memory=True
    ) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await daemon.ctx.broker.publish(routing.inquiry_received("hotline"), inquiry)
        ledger = ledger_tickets.LEDGERS[name]

        async def filed() -> bool:
            return bool(ledger.tickets)

        await eventually(filed)
        [ticket] = ledger.tickets.values()
        row = await store.get_inquiry(inquiry.inquiry_id)
        assert row is not None
        assert (row.state, row.ticket_id) == ("ticketed", ticket.ticket_id)
        assert ticket.category == row.category

        ledger.move("parks", ticket.ticket_id, TicketStatus.RESOLVED)  # an official's change

        async def answered() -> bool:
            replies = await store.list_replies(inquiry_id=inquiry.inquiry_id)
            return {r.status for r in replies} == {"received", "resolved"}

        await eventually(answered)
        stored = await store.get_ticket("parks", ticket.ticket_id)
        assert stored is not None and stored.status == "resolved"
        replies = await store.list_replies(inquiry_id=inquiry.inquiry_id)
        # the "resolved" draft supersedes the "received" one nobody approved yet
        assert {(r.status, r.state) for r in replies} == {
            ("received", "superseded"),
            ("resolved", "awaiting_approval"),
        }
    assert ledger.closed == 1
