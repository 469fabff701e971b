"""The store's boundary: SQL lives in ``bridge/store/`` only, roles ask the ``Store`` protocol
(no driver, no fault hooks), and no state is spelled as a quoted literal inside the store's
SQL (states are bound parameters from their enums). Each check is shown failing on a planted
example, so it is known to be able to fail.

The second half runs what moved into the store (operators, held commands, credentials,
operation status, triage holds, the flood count, reports) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from bridge.store import NewInquiry, SqlStore, Store
from bridge.store.credentials import CredentialState
from bridge.store.flood import ConversationStart
from bridge.store.held import HeldCommand
from bridge.store.operations import OperationRow
from bridge.store.operators import OperatorChange
from bridge.store.reports import InquirySearch
from bridge.store.reviews import ReviewHold
from schemas import states, vocab

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "bridge" / "store"

SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM)\b")
DRIVER = re.compile(r"\bstore\.db\b|\.db\.(execute|fetchall|transaction|lock)\(|\.fault\(")


def sql_outside_store(root: Path = ROOT) -> list[str]:
    """Lines of ``bridge/``, ``adapters/`` and ``schemas/`` under ``root`` (outside
    ``bridge/store/``) that hold SQL or reach for the store's driver or fault hooks."""
    store = root / "bridge" / "store"
    hits = []
    for top in ("bridge", "adapters", "schemas"):
        for path in sorted((root / top).rglob("*.py")):
            if store in path.parents:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if SQL.search(line) or DRIVER.search(line):
                    hits.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    return hits


def test_no_sql_and_no_driver_outside_the_store() -> None:
    assert sql_outside_store() == []


def test_the_sql_check_finds_planted_sql(tmp_path: Path) -> None:
    planted = tmp_path / "bridge" / "triage" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(
        "async def f(store, db):\n"
        '    await db.fetchall("SELECT * FROM triage_reviews")\n'
        '    await store.db.execute("DELETE FROM inquiries WHERE x = ?")\n'
        '    store.fault("here")\n'
    )
    inside = tmp_path / "bridge" / "store" / "fine.py"
    inside.parent.mkdir(parents=True)
    inside.write_text('SQL = "UPDATE replies SET state = ?"\n')
    assert sql_outside_store(tmp_path) == [
        'bridge/triage/planted.py:2: await db.fetchall("SELECT * FROM triage_reviews")',
        'bridge/triage/planted.py:3: await store.db.execute("DELETE FROM inquiries WHERE x = ?")',
        'bridge/triage/planted.py:4: store.fault("here")',
    ]


def test_the_store_protocol_has_no_driver_and_no_fault_hook() -> None:
    names = set(dir(Store)) | set(getattr(Store, "__annotations__", {}))
    assert not {"db", "fault", "fault_hook"} & names
    assert "fault" not in dir(SqlStore) and "fault_hook" not in dir(SqlStore)


# ------------------------------------------------------------------- state literals in SQL
def _state_values() -> set[str]:
    """Every value of every state enum (schemas.vocab, schemas.states, the store's own)."""
    values: set[str] = set()
    for module in (vocab, states):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, StrEnum) and obj is not StrEnum:
                values |= {m.value for m in obj}
    values |= {m.value for m in CredentialState}
    # not states: platforms, kinds, categories and visibilities are never compared in SQL,
    # but they are values too; keep them: a quoted one in SQL is just as wrong
    return values


STATE_VALUES = _state_values()
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|WHERE|SET|VALUES|CASE|WHEN)\b")
QUOTED = re.compile(r"'([a-z_]+)'")


def quoted_states(source: str) -> list[str]:
    """State values quoted inside the SQL strings of one module (string constants that read
    as SQL, f-strings' literal parts included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if SQL_WORDS.search(text) or text.lstrip().startswith(("AND", "OR", "(")):
                found += [q for q in QUOTED.findall(text) if q in STATE_VALUES]
    return found


def test_no_state_literal_inside_the_stores_sql() -> None:
    hits = {}
    for path in sorted(STORE.glob("*.py")):
        if path.name == "migrations.py":  # the schema's DDL (a column's default)
            continue
        if found := quoted_states(path.read_text(encoding="utf-8")):
            hits[path.name] = found
    assert hits == {}
    assert len(STATE_VALUES) > 40  # the enums were found


def test_the_state_literal_check_finds_planted_literals() -> None:
    planted = """
async def f(db, reply_id):
    await db.execute(
        "UPDATE replies SET state = 'posted', outcome = ?"
        " WHERE reply_id = ? AND state IN ('approved', 'posting')",
        ("already_posted", reply_id),
    )
    ready = " AND q.state = 'awaiting_approval'"
    return await db.fetchall(f"SELECT * FROM triage_reviews WHERE state = 'pending' {ready}")
"""
    assert sorted(quoted_states(planted)) == [
        "approved",
        "awaiting_approval",
        "pending",
        "posted",
        "posting",
    ]
    bound = planted.replace("'posted'", "?").replace("('approved', 'posting')", "(?, ?)")
    bound = bound.replace("'awaiting_approval'", "?").replace("'pending'", "?")
    assert quoted_states(bound) == []  # a value passed as a parameter is not a literal


# ------------------------------------------------------------------- the moved queries

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


async def test_operators_sessions_and_failed_sign_ins(store: SqlStore) -> None:
    assert await store.add_operator("li", "viewer", "hash-1", actor="t", now=NOW)
    assert not await store.add_operator("li", "admin", "hash-2", actor="t", now=NOW)
    await store.open_session(
        "s1", "li", "csrf", now=NOW, expires=NOW + timedelta(hours=1), client=None
    )
    session = await store.session("s1")
    assert session is not None and (session.operator, session.role) == ("li", "viewer")
    change = OperatorChange(role="approver", disabled=True)
    assert await store.change_operator("li", change, actor="t", now=NOW)
    assert await store.session("s1") is None  # a change ends the sessions
    assert not await store.change_operator("nobody", change, actor="t", now=NOW)
    [row] = await store.list_operators()
    assert (row.name, row.role, row.disabled) == ("li", "approver", 1)
    found = await store.operator_credentials("li")
    assert found is not None and found.password_hash == "hash-1"
    keys = ("name:li", "addr:1.2.3.4")
    for _ in range(3):
        await store.record_signin_failure(
            keys, now=NOW, forget_before=NOW - timedelta(hours=1), name="li",
            client="1.2.3.4", failures=1, locked=False,
        )  # fmt: skip
    failures = await store.signin_failures(keys, NOW - timedelta(minutes=1))
    assert {k: n for k, (n, _) in failures.items()} == {"name:li": 3, "addr:1.2.3.4": 3}
    await store.forget_signin_failures("name:li")
    assert set(await store.signin_failures(keys, NOW - timedelta(minutes=1))) == {"addr:1.2.3.4"}
    actions = [r["action"] for r in await store.recent_audit(limit=20)]
    assert actions.count("operator.sign_in_failed") == 3 and "operator.changed" in actions
    assert (await store.verify_audit()).ok


async def test_held_commands_claimed_once(store: SqlStore) -> None:
    cmd = HeldCommand("c1", "urban", "create", "inq_1", "401", '{"x": 1}')
    await store.hold_command(cmd, now=NOW)
    await store.hold_command(cmd, now=NOW)  # a second hold refreshes it
    assert await store.held_counts() == {"urban": {"create": 1}}
    [row] = await store.releasable_commands("urban", now=NOW, operation="create", limit=5)
    claim = dict(
        owner="a", now=NOW, until=NOW + timedelta(minutes=1), department="urban", actor="t", why="w"
    )
    assert await store.claim_held(row, **claim)
    assert not await store.claim_held(row, **{**claim, "owner": "b"})
    assert await store.releasable_commands("urban", now=NOW) == []
    await store.unclaim_held(row, owner="a", department="urban", actor="t", error="down")
    assert len(await store.releasable_commands("urban", now=NOW)) == 1
    assert await store.claim_held(row, **claim)
    await store.drop_held("c1", "a")
    assert await store.held_counts() == {}


async def test_credentials_versions_supersession_and_reseal(store: SqlStore) -> None:
    assert (
        await store.put_credential("account:weibo:x", "token", "sealed-1", actor="t", now=NOW) == 1
    )
    assert (
        await store.put_credential("account:weibo:x", "token", "sealed-2", actor="t", now=NOW) == 2
    )
    [row] = await store.stored_credentials()
    assert (row.version, row.state, row.secret) == (2, CredentialState.ACTIVE, "sealed-2")
    assert await store.supersede_credential(row, actor="t", why="config")
    assert not await store.supersede_credential(row, actor="t", why="config")  # once
    await store.reseal_credentials([(row, "sealed-3")], actor="t")
    [row] = await store.stored_credentials()
    assert (row.state, row.secret) == (CredentialState.SUPERSEDED, "sealed-3")


async def test_operation_status_moves_forward_only(store: SqlStore) -> None:
    await store.write_operation_status(
        OperationRow(
            "adapter", "weibo:x", "fetch", last_failed_at="2026-12-07T08:00:00", failure="503"
        )
    )
    await store.write_operation_status(
        OperationRow(
            "adapter", "weibo:x", "fetch", last_failed_at="2026-12-07T07:00:00", failure="old"
        )
    )
    [row] = await store.operation_statuses()
    assert (row.last_failed_at, row.failure) == ("2026-12-07T08:00:00", "503")


async def test_triage_holds_checked_expired_dismissed(store: SqlStore) -> None:
    def hold(inquiry_id: str, reason: states.ReviewReason, release_after: str) -> ReviewHold:
        return ReviewHold(
            inquiry_id, "urban", "other", 0.4, "路灯不亮", "{}", NOW, release_after, reason
        )

    past, never = "2000-01-01T00:00:00+00:00", "9999-12-31T00:00:00+00:00"
    await store.hold_review(hold("a", states.ReviewReason.UNSURE, past))
    await store.hold_review(hold("b", states.ReviewReason.UNSURE, never))
    await store.hold_review(hold("c", states.ReviewReason.FLOOD, never))
    P = states.ReviewState
    assert [r.inquiry_id for r in await store.reviews_in([P.PENDING])] == ["a", "b", "c"]
    assert await store.expire_reviews() == 1  # a: past its timeout
    assert await store.check_review(
        "a", "help", actor="x", from_state=P.TIMED_OUT, to_state=P.CORRECTED_LATE
    )
    assert await store.check_review("b", "other", actor="x", from_state=P.PENDING, to_state=None)
    assert not await store.dismiss_review("b", "x")  # not pending any more
    assert await store.dismiss_review("c", "x")
    got = {r.inquiry_id: r.state for r in await store.reviews_in(list(P))}
    assert got == {"a": P.CORRECTED_LATE, "b": P.CONFIRMED, "c": P.DISMISSED}
    assert [r.inquiry_id for r in await store.reviews_in([P.CONFIRMED], unreleased=True)] == ["b"]
    await store.mark_review_released("b")
    assert await store.reviews_in([P.CONFIRMED], unreleased=True) == []


async def test_flood_count_per_author(store: SqlStore) -> None:
    def start(n: int, dept: str = "urban") -> ConversationStart:
        return ConversationStart(f"inq_{n}", "weibo", "author", dept)

    window = dict(now=NOW, window_start=NOW - timedelta(hours=1), overall=2, own=0)
    assert await store.admit_start(start(1), **window)
    assert await store.admit_start(start(2, "water"), **window)
    assert not await store.admit_start(start(3), **window)
    assert await store.admit_start(start(1), **window)  # admitted once
    later = dict(window, now=NOW + timedelta(hours=2), window_start=NOW + timedelta(hours=1))
    assert await store.admit_start(start(3), **later)


async def test_reports_search_events_and_backlog(store: SqlStore) -> None:
    await store.record_inquiry(
        NewInquiry(
            "inq_1",
            "weibo",
            "acc",
            "comment",
            "t1",
            "routed",
            department="urban",
            public_text="100% 路灯",
            citizen_handle="wang",
        )
    )
    await store.record_inquiry(
        NewInquiry("inq_2", "weibo", "acc", "comment", "t2", "ignored", public_text="路灯")
    )
    await store.record_ticket(
        department="urban",
        ticket_id="T1",
        reference="GB-1",
        inquiry_id="inq_1",
        thread_key="t1",
        status="received",
        status_rank=0,
        native_status="new",
        status_at="2026-12-07T08:00:00",
    )
    await store.update_inquiry("inq_1", ticket_id="T1")
    for part in ("wang", "WAN", "an"):  # a part of the handle, in any case
        found = await store.search_inquiries(InquirySearch(handle=part))
        assert [r["inquiry_id"] for r in found] == ["inq_1"], part
    assert await store.search_inquiries(InquirySearch(handle="w_ng")) == []  # _ is itself
    found = await store.search_inquiries(InquirySearch(text="100%"))
    assert [r["inquiry_id"] for r in found] == ["inq_1"]  # % is itself, not a wildcard
    assert [
        r["inquiry_id"] for r in await store.search_inquiries(InquirySearch(status="received"))
    ] == ["inq_1"]
    assert [r["inquiry_id"] for r in await store.search_inquiries(InquirySearch(text="路灯"))] == [
        "inq_2",
        "inq_1",
    ]
    await store.apply_status(
        department="urban",
        ticket_id="T1",
        event_id="e1",
        status="resolved",
        status_rank=vocab.TicketStatus.RESOLVED.rank,
        native_status="done",
        occurred_at="2026-12-07T09:00:00",
    )
    [event] = await store.ticket_events("urban", "T1")
    assert (event.status, event.applied) == ("resolved", True)
    assert list(await store.first_applied(["resolved", "rejected", "closed"])) == [("urban", "T1")]
    assert await store.applied_statuses() == {("urban", "T1"): ["resolved"]}
    assert [t.ticket_id for t in await store.tickets_of_inquiry("inq_1")] == ["T1"]
    await store.add_reply(
        reply_id="r1",
        inquiry_id="inq_1",
        platform="weibo",
        account="acc",
        department="urban",
        status=None,
        templated=True,
        state=vocab.ReplyState.APPROVED,
        request_json="{}",
    )
    [backlog] = await store.outbox_backlog()
    assert (backlog.waiting, backlog.failed) == (1, 0) and backlog.oldest is not None
    assert await store.post_calls_used("weibo", "acc", NOW) == 0
    assert await store.mark_reply(
        "r1", vocab.ReplyState.POSTED, external_ids=["p1"], only_from=[vocab.ReplyState.APPROVED]
    )
    reply = await store.get_reply("r1")
    assert reply is not None and reply.posted_at is not None
    assert [r.reply_id for r in await store.unannounced_posts()] == ["r1"]
