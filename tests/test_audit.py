"""The audit trail (bridge/store/audit.py) on SQLite and PostgreSQL: the store's writes leave their
records, the chain verifies untouched, the table refuses changes, and ``govbridge audit verify``
names the first record changed, deleted or rewritten directly in the database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.cli.audit import run_checkpoint, run_trace, run_verify
from bridge.security.keyring import Keyring
from bridge.store import NewInquiry, SqlStore, audit, open_store
from schemas.vocab import TicketStatus
from tests.conftest import bridge_config, config_toml
from tests.pg import PG_ADMIN, pg_database


async def journey_of_one(store: SqlStore, n: int = 1) -> str:
    """An inquiry through the store: received and routed, ticket, a status, three replies
    approved, edited and rejected. Returns its id."""
    inquiry_id = f"inq_{n}"
    await store.record_inquiry(
        NewInquiry(
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
    # the same edit with the hash recomputed: its HMAC (keyed by a secret the database does
    # not hold) gives it away
    rows = await store.db.fetchall("SELECT * FROM audit_log WHERE seq = 9")
    r = rows[0]
    forged = audit.record_hash(
        r["prev_hash"], 9, r["at"], r["actor"], r["action"], r["inquiry_id"], r["subject"], "{}"
    )
    await store.db.execute("UPDATE audit_log SET detail = '{}', hash = ? WHERE seq = 9", (forged,))
    verdict = await audit.verify(store.db)
    assert verdict.first_bad == 9
    assert "HMAC that does not match it: it was not written by the bridge" in str(verdict.problem)
    # …and with an HMAC of a key the forger made up
    made_up = audit.record_mac(Keyring("audit", ["a key the forger made up, 32 chars+"]), forged)
    await store.db.execute("UPDATE audit_log SET mac = ? WHERE seq = 9", (made_up,))
    verdict = await audit.verify(store.db)
    assert verdict.first_bad == 9 and "key that is not configured" in str(verdict.problem)
    # the whole tail rewritten consistently by someone holding the key: only a head noted
    # earlier tells
    keys = store.db.audit_keys
    prev = r["prev_hash"]
    for seq in (9, 10, 11):
        r = (await store.db.fetchall("SELECT * FROM audit_log WHERE seq = ?", (seq,)))[0]
        h = audit.record_hash(
            prev, seq, r["at"], r["actor"], r["action"], r["inquiry_id"], r["subject"], r["detail"]
        )
        await store.db.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ?, mac = ? WHERE seq = ?",
            (prev, h, audit.record_mac(keys, h), seq),
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
    assert "--checkpoint FILE" in out  # without a head kept elsewhere a cut tail is unseen
    Args.expect = out.splitlines()[0].rsplit(" ", 1)[-1]
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


# --------------------------------------------------------------------------- issue 20, must-show 5
# Someone with database access but not the audit key ([audit] keys, kept out of the store).


def is_sqlite(store: SqlStore) -> bool:
    return "sqlite" in type(store.database).__name__.lower()


async def forge_record(store: SqlStore, mac: str | None, **fields: str) -> int:
    """Append a record the way someone with INSERT on the table would: the next sequence
    number, a correct link and a correct SHA-256, and whatever ``mac`` they can come up with."""
    head = (await store.db.fetchall("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))[0]
    seq, prev = int(head["seq"]) + 1, str(head["hash"])
    row = {
        "at": "2026-12-01T02:03:04.000000+00:00",
        "actor": "王敏",  # a real approver's name
        "action": "reply.approved",
        "inquiry_id": "inq_1",
        "subject": "rep_1r",  # the reply 李强 rejected
        "detail": "{}",
        **fields,
    }
    digest = audit.record_hash(
        prev, seq, row["at"], row["actor"], row["action"], row["inquiry_id"], row["subject"],
        row["detail"],
    )  # fmt: skip
    await store.db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, inquiry_id, subject, detail, prev_hash,"
        " hash, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, row["at"], row["actor"], row["action"], row["inquiry_id"], row["subject"],
         row["detail"], prev, digest, mac(digest) if callable(mac) else mac),
    )  # fmt: skip
    return seq


MADE_UP = Keyring("audit", ["the forger's own key, long enough: 0123456789"])


@pytest.mark.parametrize(
    ("mac", "why"),
    [
        (None, "has no HMAC"),
        (lambda digest: audit.record_mac(MADE_UP, digest), "key that is not configured"),
        ("our-key-id", "HMAC that does not match it"),  # the bridge's key id, a guessed HMAC
    ],
    ids=["no-hmac", "made-up-key", "guessed-hmac"],
)
async def test_a_record_appended_with_database_access_alone_is_named(
    store: SqlStore, mac: Any, why: str
) -> None:
    """A ``reply.approved`` by a real approver's name, with a valid SHA-256 chain: the
    triggers allow INSERT, the hashes all fit, and ``verify`` names it."""
    await journey_of_one(store)
    assert (await audit.verify(store.db)).ok
    if mac == "our-key-id":
        kid = store.db.audit_keys.signing_id
        mac = f"{kid}:{'0' * 64}"
    seq = await forge_record(store, mac)
    assert seq == 12
    verdict = await audit.verify(store.db)
    assert not verdict.ok and verdict.first_bad == 12, verdict
    assert "record 12 (reply.approved by 王敏" in str(verdict.problem)
    assert why in str(verdict.problem) and "not written by the bridge" in str(verdict.problem)
    assert verdict.records == 11 and verdict.head_seq == 11
    # the bridge's own later records do not launder it
    await store.record_audit("reply.retried", inquiry_id="inq_1", subject="rep_1a")
    assert (await audit.verify(store.db)).first_bad == 12


async def _superuser_truncates(store: SqlStore) -> None:
    """What the owner of the database can still do: switch the guards off and cut."""
    if is_sqlite(store):
        await _drop_guards(store)
        await store.db.execute("DELETE FROM audit_log")
    else:
        await store.db.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await store.db.execute("TRUNCATE audit_log")
        await store.db.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


async def test_truncation_is_refused_and_one_done_as_superuser_is_caught_by_the_checkpoint(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await journey_of_one(store)
    url = (
        f"sqlite:///{store.database.path}"  # type: ignore[attr-defined]
        if is_sqlite(store)
        else store.database.dsn  # type: ignore[attr-defined]
    )
    cfg_path = tmp_path / "audit.toml"
    cfg_path.write_text(config_toml(bridge_config(tmp_path, store={"url": url})))
    checkpoint_file = tmp_path / "audit-checkpoint.json"

    class Args:
        config = str(cfg_path)
        out = str(checkpoint_file)
        expect: str | None = None
        checkpoint: str | None = None

    assert await run_checkpoint(Args()) == 0  # type: ignore[arg-type]
    saved = json.loads(checkpoint_file.read_text())
    assert saved["seq"] == 11 and len(saved["hash"]) == 64
    assert saved["mac"].startswith(store.db.audit_keys.signing_id + ":")

    # refused: TRUNCATE on PostgreSQL (a statement trigger), DELETE of everything on both
    if not is_sqlite(store):
        with pytest.raises(Exception, match="append-only"):
            await store.db.execute("TRUNCATE audit_log")
    with pytest.raises(Exception, match="append-only"):
        await store.db.execute("DELETE FROM audit_log")
    assert (await audit.verify(store.db)).records == 11

    await _superuser_truncates(store)
    alone = await audit.verify(store.db)
    assert alone.ok and alone.records == 0  # what remains is consistent: nothing
    Args.checkpoint = str(checkpoint_file)
    assert await run_verify(Args()) == 1  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "BROKEN at record 1: record 11 noted earlier is gone: the chain ends at 0" in err

    # the process that wrote them writes on: its chain continues from the head it holds
    # (issue 26: one chain per writer), so its next record names the cut, checkpoint or not
    await store.record_audit("reply.retried", inquiry_id="inq_1", subject="rep_1a")
    named = await audit.verify(store.db)
    assert not named.ok and "records before it were removed" in str(named.problem)

    # a bridge started afterwards writes on, with its key: a new chain, all genuine, and
    # still not the one noted
    later = await open_store(url)
    try:
        # (the record just above, gone the same way; SQLite's guards are gone already)
        if is_sqlite(later):
            await later.db.execute("DELETE FROM audit_log")
        else:
            await _superuser_truncates(later)
        await journey_of_one(later, 2)
        assert (await audit.verify(later.db)).ok
    finally:
        await later.close()
    assert await run_verify(Args()) == 1  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "BROKEN at record" in err
    assert "not the record noted earlier" in err or "record 11 of chain" in err, err

    # a checkpoint someone wrote without the key is refused as such
    forged = {**saved, "hash": "f" * 64}
    checkpoint_file.write_text(json.dumps(forged))
    assert await run_verify(Args()) == 2  # type: ignore[arg-type]
    assert "HMAC that does not match it" in capsys.readouterr().err


async def _move(store: SqlStore, moves: dict[int, int]) -> None:
    """Renumber records (``{from: to}``) through negative numbers: no key collides."""
    for old in moves:
        await store.db.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (-old, old))
    for old, new in moves.items():
        await store.db.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (new, -old))


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned-records"])
async def test_a_swap_names_the_first_record_out_of_place(store: SqlStore, signed: bool) -> None:
    """Records 5 and 6 trade places (and, separately, 3 and 8): the record now at 5 (or 3) is
    named, never the untouched record before it. Also for records written before the key."""
    await journey_of_one(store)
    await _drop_guards(store)
    if not signed:  # as in a database from before the audit key
        await store.db.execute("UPDATE audit_log SET mac = NULL")
        assert (await audit.verify(store.db)).unsigned == 11
    actions = {
        int(r["seq"]): r["action"] for r in await store.db.fetchall("SELECT * FROM audit_log")
    }
    await _move(store, {5: 6, 6: 5})
    verdict = await audit.verify(store.db)
    assert verdict.first_bad == 5, verdict
    assert f"record 5 ({actions[6]} by" in str(verdict.problem)
    assert verdict.records == 4
    await _move(store, {5: 6, 6: 5})  # put back
    assert (await audit.verify(store.db)).ok
    await _move(store, {3: 8, 8: 3})
    verdict = await audit.verify(store.db)
    assert verdict.first_bad == 3 and f"record 3 ({actions[8]} by" in str(verdict.problem)


async def test_records_from_before_the_key_stay_valid_and_are_pinned(store: SqlStore) -> None:
    """An upgraded database: its first records have no HMAC; the bridge's next record is
    signed, and an unsigned record after it is not the bridge's."""
    await journey_of_one(store)
    await _drop_guards(store)
    await store.db.execute("UPDATE audit_log SET mac = NULL")  # as migration 10 finds them
    await store.record_audit("reply.retried", inquiry_id="inq_1", subject="rep_1a")
    verdict = await audit.verify(store.db)
    assert verdict.ok and verdict.records == 12 and verdict.unsigned == 11
    seq = await forge_record(store, None)
    verdict = await audit.verify(store.db)
    assert verdict.first_bad == seq == 13 and "has no HMAC" in str(verdict.problem)


async def test_another_audit_key_does_not_verify(store: SqlStore) -> None:
    """``verify`` with the wrong key (a config that lost the real one) names the first record;
    with the old key kept among the keys (rotation) everything verifies."""
    await journey_of_one(store)
    other = Keyring("audit", ["a different audit key of 32 characters or more"])
    verdict = await audit.verify(store.db, keys=other)
    assert verdict.first_bad == 1 and "key that is not configured" in str(verdict.problem)
    rotated = Keyring(
        "audit", ["a different audit key of 32 characters or more", *_development_key()]
    )
    assert (await audit.verify(store.db, keys=rotated)).ok


def _development_key() -> list[str]:
    from bridge.security.keyring import DEVELOPMENT_KEYS

    return [DEVELOPMENT_KEYS["audit"]]


# The PostgreSQL privileges README.md ("Production") documents for the daemon's role, run by
# the owner of the schema after the migrations ({role} is the daemon's role).
POSTGRES_RUNTIME_ROLE = (
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};",
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {role};",
)


def test_the_readme_gives_the_daemons_role_these_privileges() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for statement in POSTGRES_RUNTIME_ROLE:
        assert statement.format(role="govbridge") in readme


async def test_the_daemons_postgresql_role_cannot_change_the_trail() -> None:
    """The documented grants, applied to a role of the test's own: the store opens and
    appends as that role (no DDL when the schema is current) and UPDATE, DELETE and TRUNCATE
    of the trail are refused by privilege, before any trigger."""
    async with pg_database() as url:
        import asyncpg

        owner = await open_store(url)  # the owner (here the superuser) migrates
        await journey_of_one(owner)
        role = f"gbrole_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f"CREATE ROLE {role} LOGIN")
            for statement in POSTGRES_RUNTIME_ROLE:
                await admin.execute(statement.format(role=role))
            as_daemon = url.replace("://postgres@", f"://{role}@")
            assert role in as_daemon
            store = await open_store(as_daemon)
            try:
                await store.record_audit("reply.retried", inquiry_id="inq_1", subject="rep_1a")
                for sql in (
                    "UPDATE audit_log SET actor = 'x' WHERE seq = 1",
                    "DELETE FROM audit_log WHERE seq = 12",
                    "TRUNCATE audit_log",
                ):
                    with pytest.raises(Exception, match="permission denied"):
                        await store.db.execute(sql)
                verdict = await audit.verify(store.db)
                assert verdict.ok and verdict.records == 12
            finally:
                await store.close()
        finally:
            await owner.close()
            await admin.execute(f"DROP OWNED BY {role}")
            await admin.close()
            conn = await asyncpg.connect(PG_ADMIN)
            try:
                await conn.execute(f"DROP ROLE IF EXISTS {role}")
            finally:
                await conn.close()
