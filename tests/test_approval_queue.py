"""The approval queue as the store pages it (issue 23): oldest first, one card per conversation
(its oldest draft awaiting approval, with how many wait behind it), the drafts of a ticket
already final at another status left out (and superseded, recorded, by the sweep),
filters (department, account, status, category, age) and a total that counts every
matching card, on SQLite and PostgreSQL.

The HTTP side (filters as query parameters, bulk approval through ``approval.decide``) is
driven against a running bridge in ``tests/test_browser_approval_queue.py``; here only the
queue's parameters are checked at the API (400s).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.store import NewInquiry, Store, open_store
from schemas.messages import ReplyRequest, ThreadRef
from schemas.vocab import InquiryState, ReplyState, TicketStatus
from tests.pg import pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = await open_store(f"sqlite:///{tmp_path}/queue.db")
        try:
            yield opened
        finally:
            await opened.close()
        return
    async with pg_database() as url:
        opened = await open_store(url)
        try:
            yield opened
        finally:
            await opened.close()


async def inquiry(store: Store, n: int, department: str, category: str, status: str | None) -> str:
    """An inquiry of ``department`` with a ticket at ``status`` (none: not filed yet)."""
    inquiry_id = f"inq-{n:04d}"
    ticket_id = f"T-{n:04d}" if status else None
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=inquiry_id,
            platform="hotline12345",
            account=f"{department}-acct",
            kind="mention",
            thread_key=f"thread-{n}",
            state=InquiryState.TICKETED if ticket_id else InquiryState.ROUTED,
            department=department,
            category=category,
            ticket_id=ticket_id,
            public_text=f"第{n}件诉求",
            citizen_handle=f"citizen{n}",
            visibility="public",
        )
    )
    if ticket_id and status:
        await store.record_ticket(
            department=department,
            ticket_id=ticket_id,
            reference=f"ref-{n}",
            inquiry_id=inquiry_id,
            thread_key=f"thread-{n}",
            status=status,
            status_rank=TicketStatus(status).rank,
            native_status=status,
            status_at=datetime.now(UTC).isoformat(),
        )
    return inquiry_id


async def draft(store: Store, inquiry_id: str, department: str, status: str | None, k: int) -> str:
    reply_id = f"{inquiry_id}-r{k}"
    request = ReplyRequest(
        reply_id=reply_id,
        inquiry_id=inquiry_id,
        platform="hotline12345",
        account=f"{department}-acct",
        department=department,
        thread=ThreadRef(root_id=inquiry_id),
        citizen_handle="citizen",
        visibility="public",
        text=f"您好，{inquiry_id} 的回复 {k}",
        status=TicketStatus(status) if status else None,
        templated=status is not None,
    )
    assert await store.add_reply(
        reply_id=reply_id,
        inquiry_id=inquiry_id,
        platform="hotline12345",
        account=f"{department}-acct",
        department=department,
        status=status,
        templated=status is not None,
        state=ReplyState.AWAITING_APPROVAL,
        request_json=request.model_dump_json(),
    )
    return reply_id


async def test_one_card_per_conversation_oldest_first_with_filters(store: Store) -> None:
    # inquiry 1: a status draft and an official's note behind it: one card, 2 drafts
    one = await inquiry(store, 1, "urban", "complaint", "received")
    first = await draft(store, one, "urban", "received", 1)
    await draft(store, one, "urban", None, 2)
    # inquiry 2: its ticket is closed, its "received" draft is obsolete: no card
    two = await inquiry(store, 2, "urban", "help", "closed")
    await draft(store, two, "urban", "received", 1)
    # inquiry 3: a newer status supersedes the older draft (the store does it when composed)
    three = await inquiry(store, 3, "transport", "help", "in_progress")
    await draft(store, three, "transport", "received", 1)
    live = await draft(store, three, "transport", "in_progress", 2)
    # inquiries 4..8: one draft each, environment
    for n in range(4, 9):
        await draft(
            store,
            await inquiry(store, n, "environment", "consultation", "received"),
            "environment",
            "received",
            1,
        )

    page = await store.approval_queue(limit=3)
    assert page.total == 7  # 1, 3 and 4..8; not 2
    assert [c.reply.reply_id for c in page.cards] == [first, live, "inq-0004-r1"]
    assert [c.drafts for c in page.cards] == [2, 1, 1]
    # the obsolete draft is superseded once, recorded (a new version, by the ticket)
    assert await store.supersede_obsolete_drafts() == 1
    assert await store.supersede_obsolete_drafts() == 0
    gone = await store.get_reply(f"{two}-r1")
    assert gone is not None and gone.state == ReplyState.SUPERSEDED
    assert gone.merged_into == "ticket:closed" and gone.version == 2
    assert (await store.approval_queue()).total == 7
    assert page.cards[0].original == "第1件诉求"
    assert page.cards[0].ticket_status == "received"

    rest = await store.approval_queue(limit=3, offset=3)
    assert [c.reply.reply_id for c in rest.cards] == [f"inq-000{n}-r1" for n in (5, 6, 7)]
    assert rest.total == 7
    last = await store.approval_queue(limit=3, offset=6)
    assert [c.reply.reply_id for c in last.cards] == ["inq-0008-r1"]

    env = await store.approval_queue(department="environment")
    assert env.total == 5 and {c.reply.department for c in env.cards} == {"environment"}
    acct = await store.approval_queue(platform="hotline12345", account="transport-acct")
    assert [c.reply.reply_id for c in acct.cards] == [live]
    assert (await store.approval_queue(status="in_progress")).total == 1
    assert (await store.approval_queue(category="complaint")).total == 1
    assert (await store.approval_queue(category="consultation", department="urban")).total == 0
    # age: every draft was written just now
    old = datetime.now(UTC) - timedelta(hours=1)
    assert (await store.approval_queue(created_before=old)).total == 0
    soon = datetime.now(UTC) + timedelta(minutes=1)
    assert (await store.approval_queue(created_before=soon)).total == 7

    # once the card's draft is decided, the conversation's next draft takes its place
    assert await store.decide_reply(first, decision="approve", actor="tester", version=1)
    after = await store.approval_queue(department="urban")
    assert [(c.reply.reply_id, c.drafts) for c in after.cards] == [(f"{one}-r2", 1)]
