"""The audit trail (bridge/audit.py) on SQLite and PostgreSQL: the store's writes leave their
records, the chain verifies untouched, the table refuses changes, and ``govbridge audit verify``
names the first record changed, deleted or rewritten directly in the database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge import audit
from bridge.cmd_audit import run_trace, run_verify
from bridge.store import SqlStore, open_store
from schemas.vocab import TicketStatus
from tests.conftest import bridge_config, config_toml
from tests.pg import pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        s = await open_store(f"sqlite:///{tmp_path}/store.db")
        yield s
        await s.close()
        return
    async with pg_database() as url:
        s = await open_store(url)
        yield s
        await s.close()


async def journey_of_one(store: SqlStore, n: int = 1) -> str:
    """An inquiry through the store: received and routed, ticket, a status, three replies
    approved, edited and rejected. Returns its id."""
    inquiry_id = f"inq_{n}"
    await store.record_inquiry(
        inquiry_id=inquiry_id,
        platform="weibo",
        account="acc",
        kind="comment",
        thread_key=f"weibo:acc:{n}",
        state="triaged",
        department="environment",
        category="complaint",
        confidence=0.91,
        explanation=json.dumps({"decided_by": "model", "confidence": 0.91}),
        public_text="河道有臭味",
    )
    await store.advance_inquiry(inquiry_id, "triaged", "routed")
    await store.record_ticket(
        department="environment",
        ticket_id=f"T-{n}",
        reference=f"ref-{n}",
        inquiry_id=inquiry_id,
        thread_key=f"weibo:acc:{n}",
        status="received",
        status_rank=TicketStatus.RECEIVED.rank,
        native_status="NEW",
        status_at="2026-11-30T01:00:00.000000+00:00",
    )
    await store.apply_status(
        department="environment",
        ticket_id=f"T-{n}",
        event_id=f"ev-{n}",
        status="in_progress",
        status_rank=TicketStatus.IN_PROGRESS.rank,
        native_status="ASSIGNED",
        occurred_at="2026-11-30T02:00:00.000000+00:00",
    )
    for key in ("a", "e", "r"):
        await store.add_reply(
            reply_id=f"rep_{n}{key}",
            inquiry_id=inquiry_id,
            platform="weibo",
            account="acc",
            department="environment",
            status="received",
            templated=True,
            state="awaiting_approval",
            request_json="{}",
        )
    await store.decide_reply(f"rep_{n}a", decision="approve", actor="王敏")
    await store.decide_reply(f"rep_{n}e", decision="edit", actor="王敏", text="您好，已受理。")
    await store.decide_reply(f"rep_{n}r", decision="reject", actor="李强", reason="重复答复")
    return inquiry_id


async def test_every_step_is_recorded_with_actor_and_time(store: SqlStore) -> None:
    inquiry_id = await journey_of_one(store)
    records = await audit.records_for(store.db, inquiry_id)
    assert [(r["action"], r["actor"]) for r in records] == [
        ("inquiry.received", "bridge"),
        ("inquiry.routed", "bridge"),
        ("inquiry.state", "bridge"),
        ("ticket.created", "bridge"),
        ("ticket.status", "bridge"),
        ("reply.drafted", "bridge"),
        ("reply.drafted", "bridge"),
        ("reply.drafted", "bridge"),
        ("reply.approved", "王敏"),
        ("reply.edited", "王敏"),
        ("reply.rejected", "李强"),
    ]
    assert [r["seq"] for r in records] == list(range(1, 12))
    routed = records[1]["detail"]
    assert routed == {
        "category": "complaint",
        "confidence": 0.91,
        "decided_by": "model",
        "department": "environment",
        "state": "triaged",
    }
    assert records[4]["detail"]["status"] == "in_progress"
    assert records[4]["subject"] == "environment/T-1"
    assert records[10]["detail"]["reason"] == "重复答复"
    # the edited text is proved by its hash; no citizen's text is in the trail
    assert len(records[9]["detail"]["text_sha256"]) == 64
    assert "河道" not in json.dumps(records, ensure_ascii=False)
    assert all(r["at"] for r in records)
    # a write that changes nothing leaves no record (a redelivered inquiry, a replayed event)
    await store.record_ticket(
        department="environment",
        ticket_id="T-1",
        reference="ref-1",
        inquiry_id=inquiry_id,
        thread_key="weibo:acc:1",
        status="received",
        status_rank=TicketStatus.RECEIVED.rank,
        native_status="NEW",
        status_at="2026-11-30T01:00:00.000000+00:00",
    )
    assert not await store.decide_reply("rep_1a", decision="reject", actor="x")
    assert len(await audit.records_for(store.db, inquiry_id)) == 11
    verdict = await audit.verify(store.db)
    assert verdict.ok and verdict.records == 11 and verdict.head_seq == 11


async def test_records_of_concurrent_writers_form_one_chain(store: SqlStore) -> None:
    await asyncio.gather(*(journey_of_one(store, n) for n in range(1, 9)))
    verdict = await audit.verify(store.db)
    assert verdict.ok, verdict.problem
    assert verdict.records == 8 * 11


async def test_the_table_refuses_changes(store: SqlStore) -> None:
    await journey_of_one(store)
    with pytest.raises(Exception, match="append-only"):
        await store.db.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 9")
    with pytest.raises(Exception, match="append-only"):
        await store.db.execute("DELETE FROM audit_log WHERE seq = 11")
    assert (await audit.verify(store.db)).ok


async def _drop_guards(store: SqlStore) -> None:
    """What someone with full access to the database can do first."""
    if "sqlite" in type(store.database).__name__.lower():
        await store.db.execute("DROP TRIGGER audit_log_no_update")
        await store.db.execute("DROP TRIGGER audit_log_no_delete")
    else:
        await store.db.execute("DROP TRIGGER audit_log_append_only ON audit_log")


async def test_verify_names_the_first_altered_record(store: SqlStore) -> None:
    await journey_of_one(store)
    head = (await audit.verify(store.db)).head
    await _drop_guards(store)
    # the approver of record 9 changed; then, later, record 10 as well: 9 is named
    await store.db.execute("UPDATE audit_log SET actor = '张三' WHERE seq = 9")
    await store.db.execute("UPDATE audit_log SET detail = '{}' WHERE seq = 10")
    verdict = await audit.verify(store.db)
    assert not verdict.ok
    assert verdict.first_bad == 9
    assert "record 9 (reply.approved by 张三" in str(verdict.problem)
    assert verdict.records == 8
    # the same edit with the hash recomputed: the next record's link gives it away
    await store.db.execute("UPDATE audit_log SET detail = '{}' WHERE seq = 10")
    rows = await store.db.fetchall("SELECT * FROM audit_log WHERE seq = 9")
    r = rows[0]
    forged = audit.record_hash(
        r["prev_hash"], 9, r["at"], r["actor"], r["action"], r["inquiry_id"], r["subject"], "{}"
    )
    await store.db.execute("UPDATE audit_log SET detail = '{}', hash = ? WHERE seq = 9", (forged,))
    verdict = await audit.verify(store.db)
    assert verdict.first_bad == 9
    assert "next record links to a different hash" in str(verdict.problem)
    # the whole tail rewritten consistently: only a head noted earlier tells
    prev = forged
    for seq in (10, 11):
        r = (await store.db.fetchall("SELECT * FROM audit_log WHERE seq = ?", (seq,)))[0]
        h = audit.record_hash(
            prev, seq, r["at"], r["actor"], r["action"], r["inquiry_id"], r["subject"], r["detail"]
        )
        await store.db.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, seq)
        )
        prev = h
    assert (await audit.verify(store.db)).ok
    verdict = await audit.verify(store.db, expect=head)
    assert verdict.first_bad == 11 and "not the record noted earlier" in str(verdict.problem)


async def test_verify_names_a_deleted_record(store: SqlStore) -> None:
    await journey_of_one(store)
    await _drop_guards(store)
    await store.db.execute("DELETE FROM audit_log WHERE seq = 4")
    verdict = await audit.verify(store.db)
    assert verdict.first_bad == 4 and "missing" in str(verdict.problem)
    head = "11:" + "0" * 64
    await store.db.execute("DELETE FROM audit_log WHERE seq >= 4")
    assert (await audit.verify(store.db)).ok  # a cut tail is consistent…
    verdict = await audit.verify(store.db, expect=head)  # …but the noted head is gone
    assert not verdict.ok and "gone" in str(verdict.problem)


async def test_audit_verify_command_on_a_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``govbridge audit verify`` passes untouched and names the record edited with the
    sqlite3 module (as someone with the file would); ``govbridge trace`` prints the journey."""
    cfg = bridge_config(tmp_path)
    path = tmp_path / "govbridge.toml"
    path.write_text(config_toml(cfg))
    store = await open_store(cfg.store.url)
    inquiry_id = await journey_of_one(store)
    await store.close()

    class Args:
        config = str(path)
        expect: str | None = None
        json = True

    assert await run_verify(Args()) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "audit trail intact: 11 records; head 11:" in out
    Args.expect = out.strip().rsplit(" ", 1)[-1]
    assert await run_verify(Args()) == 0  # type: ignore[arg-type]

    db = sqlite3.connect(tmp_path / "govbridge.db")
    with db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET actor = 'nobody' WHERE seq = 10")
    db.close()
    assert await run_verify(Args()) == 1  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "BROKEN at record 10" in err and "reply.edited by nobody" in err
    assert "the 9 records before it are intact" in err

    Args.inquiry_id = inquiry_id  # type: ignore[attr-defined]
    assert await run_trace(Args()) == 0  # type: ignore[arg-type]
    data = json.loads(capsys.readouterr().out)
    assert data["inquiry"]["inquiry_id"] == inquiry_id
    assert data["ticket"]["ticket_id"] == "T-1" and data["ticket"]["status"] == "in_progress"
    assert [e["status"] for e in data["events"]] == ["in_progress"]
    assert {r["reply_id"]: r["decided_by"] for r in data["replies"]} == {
        "rep_1a": "王敏",
        "rep_1e": "王敏",
        "rep_1r": "李强",
    }
    assert [a["action"] for a in data["audit"]][-3:] == [
        "reply.approved",
        "reply.edited",
        "reply.rejected",
    ]
    Args.json = False
    assert await run_trace(Args()) == 0  # type: ignore[arg-type]
    text = capsys.readouterr().out
    assert "ticket     environment/T-1  now in_progress (ASSIGNED)" in text
    assert "by 李强 (reject)" in text


async def test_records_of_a_transaction_are_written_as_it_commits_or_not_at_all(
    store: SqlStore,
) -> None:
    """In a transaction the records wait for its commit (so the chain's shared lock is held
    only then), keep their order, and vanish with a rollback."""
    before = (await audit.verify(store.db)).records

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with store.transaction() as tx:
            await tx.record_audit("reply.retried", inquiry_id="inq_gone", subject="r1")
            raise Crash
    assert (await audit.verify(store.db)).records == before

    async with store.transaction() as tx:
        await tx.record_audit("reply.retried", inquiry_id="inq_kept", subject="first")
        await tx.record_audit("reply.retried", inquiry_id="inq_kept", subject="second")
        # not yet written: the lock is not taken until the commit
        rows = await tx.db.fetchall("SELECT seq FROM audit_log WHERE inquiry_id = 'inq_kept'")
        assert rows == []
    rows = await store.db.fetchall(
        "SELECT subject FROM audit_log WHERE inquiry_id = 'inq_kept' ORDER BY seq"
    )
    assert [r["subject"] for r in rows] == ["first", "second"]
    verdict = await audit.verify(store.db)
    assert verdict.ok and verdict.records == before + 2
