"""One contract for the state store, run on SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio

from bridge.store import AppliedEvent, NewInquiry, ReplyClaim, SqlStore
from schemas.vocab import TicketStatus


async def test_migrate_is_idempotent(store: SqlStore) -> None:
    version = await store.migrate()
    assert version == await store.migrate()
    rows = await store.db.fetchall("SELECT version FROM schema_version")
    assert rows == [{"version": version}]


async def test_cursor_roundtrip(store: SqlStore) -> None:
    assert await store.get_cursor("source:weibo:x") is None
    await store.set_cursor("source:weibo:x", '{"since": "4900000000000001"}')
    await store.set_cursor("source:weibo:x", '{"since": "4900000000000002"}')
    assert await store.get_cursor("source:weibo:x") == '{"since": "4900000000000002"}'


def _inquiry_row(inquiry_id: str, thread: str = "weibo:acc:1") -> dict[str, str]:
    return {
        "inquiry_id": inquiry_id,
        "platform": "weibo",
        "account": "acc",
        "kind": "comment",
        "thread_key": thread,
        "state": "received",
    }


async def test_inquiry_recorded_once(store: SqlStore) -> None:
    assert await store.record_inquiry(NewInquiry(**_inquiry_row("inq_1"))) is True
    assert await store.record_inquiry(NewInquiry(**_inquiry_row("inq_1"))) is False
    await store.update_inquiry("inq_1", state="routed", department="transport")
    row = await store.get_inquiry("inq_1")
    assert row is not None and row.state == "routed" and row.department == "transport"


async def test_thread_claimed_by_exactly_one_inquiry(store: SqlStore) -> None:
    refs = await asyncio.gather(
        *(store.claim_thread("weibo:acc:root", f"inq_{i}", f"GB-{i}") for i in range(20))
    )
    assert len(set(refs)) == 1  # everyone agrees on the owner's reference
    owner = refs[0]
    # once the owner's ticket is final, the next inquiry starts a new ticket
    await store.record_ticket(
        department="d",
        ticket_id="T1",
        reference=owner,
        inquiry_id="inq_x",
        thread_key="weibo:acc:root",
        status="resolved",
        status_rank=40,
        native_status="fixed",
        status_at="2026-01-01T00:00:00+00:00",
    )
    assert await store.claim_thread("weibo:acc:root", "inq_new", "GB-new") == "GB-new"


async def test_status_never_goes_backwards(store: SqlStore) -> None:
    await store.record_ticket(
        department="d",
        ticket_id="T1",
        reference="GB-1",
        inquiry_id="inq_1",
        thread_key="t",
        status="received",
        status_rank=10,
        native_status="open",
        status_at="2026-01-01T00:00:00+00:00",
    )

    async def apply(
        event_id: str, status: str, rank: int, at: str = "2026-01-01T01:00:00+00:00"
    ) -> AppliedEvent:
        return await store.apply_status(
            department="d",
            ticket_id="T1",
            event_id=event_id,
            status=status,
            status_rank=rank,
            native_status=status,
            occurred_at=at,
        )

    assert await apply("e3", "resolved", 40) == (True, True, 0)
    assert await apply("e2", "in_progress", 30) == (True, False, 0)  # late: recorded, no move
    assert await apply("e3", "resolved", 40) == (False, True, 0)  # replay of an applied event
    assert await apply("e2", "in_progress", 30) == (False, False, 0)  # replay of a late one
    ticket = await store.get_ticket("d", "T1")
    assert ticket is not None and ticket.status == "resolved"
    applied = await store.db.fetchall(
        "SELECT event_id FROM ticket_events WHERE applied = 1 ORDER BY event_id"
    )
    assert [r["event_id"] for r in applied] == ["e3"]


async def test_create_attempts(store: SqlStore) -> None:
    assert await store.claim_create("GB-1", "d", "inq_1") is True
    assert await store.claim_create("GB-1", "d", "inq_1") is False  # someone holds it
    claims = await asyncio.gather(*(store.claim_create("GB-2", "d", "inq_2") for _ in range(10)))
    assert claims.count(True) == 1  # exactly one claimant, across concurrent deliveries
    await store.set_create_state("GB-2", "not_sent")
    assert await store.claim_create("GB-2", "d", "inq_2") is True  # nothing reached the backend
    held = await store.get_create_attempt("GB-1")
    assert held is not None
    assert await store.claim_create("GB-1", "d", "inq_1", expected_updated_at="stale") is False
    assert await store.claim_create(
        "GB-1", "d", "inq_1", expected_updated_at=held.updated_at
    )  # compare-and-set on the record just inspected
    again = await store.get_create_attempt("GB-1")
    assert again is not None and again.attempts == 2
    await store.set_create_state("GB-1", "needs_reconciliation", detail="uncertain")
    flagged = await store.list_create_attempts("needs_reconciliation")
    assert [r.reference for r in flagged] == ["GB-1"]


async def test_reply_decisions_recorded(store: SqlStore) -> None:
    common = {
        "inquiry_id": "inq_1",
        "platform": "weibo",
        "account": "acc",
        "department": "d",
        "status": "received",
        "templated": True,
        "request_json": "{}",
    }
    assert await store.add_reply(reply_id="r1", state="awaiting_approval", **common)
    assert not await store.add_reply(reply_id="r1", state="approved", **common)
    assert await store.decide_reply("r1", decision="edit", actor="王科长", text="改过的")
    assert not await store.decide_reply("r1", decision="reject", actor="李四")  # decided already
    reply = await store.get_reply("r1")
    assert reply is not None
    assert (reply.state, reply.decided_by, reply.final_text) == ("approved", "王科长", "改过的")
    assert reply.decided_at is not None
    assert await store.mark_reply("r1", "posted", external_ids=["1", "2"], outcome="posted")
    reply = await store.get_reply("r1")
    assert reply is not None and reply.external_ids == ["1", "2"] and reply.posted_at


async def test_reopened_ticket_is_handled_again_in_a_new_cycle(store: SqlStore) -> None:
    await store.record_ticket(
        department="d",
        ticket_id="T1",
        reference="GB-1",
        inquiry_id="inq_1",
        thread_key="t",
        status="received",
        status_rank=10,
        native_status="open",
        status_at="2026-01-01T00:00:00+00:00",
    )

    async def apply(event_id: str, status: str, at: str) -> AppliedEvent:
        return await store.apply_status(
            department="d",
            ticket_id="T1",
            event_id=event_id,
            status=status,
            status_rank=TicketStatus(status).rank,
            native_status=status,
            occurred_at=f"2026-01-0{at}+00:00",
        )

    assert await apply("a", "reopened", "1T01:00:00") == (True, False, 0)  # not resolved yet
    assert await apply("b", "resolved", "2T00:00:00") == (True, True, 0)
    assert await apply("c", "reopened", "3T00:00:00") == (True, True, 1)  # 重办: cycle 1
    assert await apply("d", "in_progress", "2T12:00:00") == (True, False, 1)  # of cycle 0: late
    assert await apply("e", "in_progress", "4T00:00:00") == (True, True, 1)
    assert await apply("f", "resolved", "5T00:00:00") == (True, True, 1)
    assert await apply("c", "reopened", "3T00:00:00") == (False, True, 1)  # replay
    ticket = await store.get_ticket("d", "T1")
    assert ticket is not None and (ticket.status, ticket.cycle) == ("resolved", 1)


async def test_posting_quota_is_measured_on_the_outbox_clock(store: SqlStore) -> None:
    """The limiter takes its time from the caller (the outbox's injectable clock): a quota of
    one post a minute binds at 10:00:01 and frees at 10:01:00, without waiting a minute."""
    from datetime import UTC, datetime, timedelta

    for n in (1, 2):
        await store.add_reply(
            reply_id=f"q{n}",
            inquiry_id=f"inq_q{n}",
            platform="weibo",
            account="acc",
            department="d",
            status="received",
            templated=True,
            state="approved",
            request_json="{}",
        )
    t0 = datetime(2031, 5, 1, 10, 0, tzinfo=UTC)
    quota = (1, timedelta(minutes=1))
    lease = timedelta(seconds=30)

    async def claim(at: datetime) -> ReplyClaim:
        return await store.claim_reply("weibo", "acc", owner="o", lease=lease, quota=quota, now=at)

    first = await claim(t0)
    assert first.reply is not None
    await store.finish_post(first, state="posted", external_ids=["1"], outcome="posted", now=t0)
    bound = await claim(t0 + timedelta(seconds=1))
    assert bound.reply is None and bound.wait_until == t0 + timedelta(minutes=1)
    freed = await claim(t0 + timedelta(minutes=1))
    assert freed.reply is not None and freed.reply.reply_id != first.reply.reply_id


async def test_a_released_post_waits_again_on_both_engines(store: SqlStore) -> None:
    """``release_post`` (a timeout, a rate limit, a look into the thread): on PostgreSQL its
    flag was once bound as an integer where a boolean was inferred, so every release failed
    and the reply waited for its lease to run out."""
    from datetime import timedelta

    await store.add_reply(
        reply_id="r1",
        inquiry_id="inq_r1",
        platform="weibo",
        account="acc",
        department="d",
        status="received",
        templated=True,
        state="approved",
        request_json="{}",
    )
    claim = await store.claim_reply("weibo", "acc", owner="o", lease=timedelta(minutes=2))
    assert claim.reply is not None
    await store.release_post(claim, uncertain=True, counts=False)
    row = await store.get_reply("r1")
    assert row is not None and (row.state, row.uncertain, row.post_attempts) == (
        "approved",
        True,
        0,
    )
