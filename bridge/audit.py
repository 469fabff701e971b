"""The audit trail: an append-only, hash-chained record of what happened to every inquiry and
of every operator action, each with its actor and time.

Each record's hash covers its own content and the previous record's hash, so changing,
deleting or inserting a record anywhere breaks the chain from there on; ``verify`` walks the
chain and names the first record that does not fit. The table also refuses UPDATE and DELETE
(triggers, see the store's migration 8): the chain is what proves it afterwards, even against
someone who could drop the triggers. Someone able to rewrite the whole chain from a record on
could make it consistent again; ``verify --expect`` checks that a head noted earlier (printed
by every ``verify``) is still there, unchanged.

Records hold identifiers, states and actors, never citizens' text or personal data.
Appends are serialised (a lock in the caller's transaction, taken as it commits), so the record
of a change commits with the change itself or not at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.store import Executor

GENESIS = "0" * 64
LOCK_KEY = "audit_log"
PAGE = 1000

# what a record can say happened (``action``)
ACTIONS = (
    "inquiry.received",
    "inquiry.ignored",
    "inquiry.routed",
    "inquiry.state",
    "triage.checked",
    "ticket.created",
    "ticket.status",
    "reconciliation.settled",
    "reply.drafted",
    "reply.approved",
    "reply.edited",
    "reply.rejected",
    "reply.posted",
    "reply.undeliverable",
    "reply.failed",
    "reply.retried",
    "dead_letter.replayed",
    "dead_letter.dropped",
    "operator.signed_in",
    "operator.added",
    "operator.changed",
    "account.token_replaced",
)

TABLE = """
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        inquiry_id TEXT,
        subject TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_log_inquiry ON audit_log (inquiry_id);
"""

# Migration 8, per dialect: the table, and triggers that refuse changing or deleting records.
MIGRATION = {
    "sqlite": TABLE
    + """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    """,
    "postgresql": TABLE
    + """
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
    """,
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def record_hash(
    prev_hash: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    inquiry_id: str | None,
    subject: str | None,
    detail: str,
) -> str:
    """sha256 over the previous hash and the record's fields (canonical JSON)."""
    body = json.dumps(
        [prev_hash, seq, at, actor, action, inquiry_id, subject, detail],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


async def append(
    db: Executor,
    action: str,
    *,
    actor: str = "bridge",
    inquiry_id: str | None = None,
    subject: str | None = None,
    **detail: Any,
) -> None:
    """Append one record. In a transaction it is written as the transaction commits, so the
    chain's lock (which every appending transaction shares, across processes) is held for
    the commit only, not for the whole transaction; outside one, at once."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    text = json.dumps(
        {k: v for k, v in detail.items() if v is not None}, ensure_ascii=False, sort_keys=True
    )

    async def write(tx: Executor) -> None:
        await tx.lock(LOCK_KEY)
        rows = await tx.fetchall("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (int(rows[0]["seq"]) + 1, str(rows[0]["hash"])) if rows else (1, GENESIS)
        at = _now()
        digest = record_hash(prev, seq, at, actor, action, inquiry_id, subject, text)
        await tx.execute(
            "INSERT INTO audit_log (seq, at, actor, action, inquiry_id, subject, detail,"
            " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, actor, action, inquiry_id, subject, text, prev, digest),
        )

    if not db.defer(write):
        async with db.transaction() as tx:
            await write(tx)


@dataclass(frozen=True)
class Verdict:
    """The outcome of ``verify``: ``first_bad`` is the first record that does not fit."""

    records: int
    head_seq: int
    head_hash: str
    first_bad: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    @property
    def head(self) -> str:
        return f"{self.head_seq}:{self.head_hash}"


def _computed(row: dict[str, Any]) -> str:
    return record_hash(
        str(row["prev_hash"]),
        int(row["seq"]),
        str(row["at"]),
        str(row["actor"]),
        str(row["action"]),
        row["inquiry_id"],
        row["subject"],
        str(row["detail"]),
    )


def _describe(row: dict[str, Any]) -> str:
    return f"record {row['seq']} ({row['action']} by {row['actor']} at {row['at']})"


async def verify(db: Executor, expect: str | None = None) -> Verdict:
    """Walk the chain from the first record; the first record that was changed, deleted or
    inserted is named. ``expect`` (``SEQ:HASH``, a head printed earlier) must still be there."""
    expected: tuple[int, str] | None = None
    if expect:
        seq_text, _, hash_text = expect.partition(":")
        if not seq_text.isdigit() or len(hash_text) != 64:
            raise ValueError("--expect takes SEQ:HASH as printed by an earlier verify")
        expected = (int(seq_text), hash_text.lower())
    prev_row: dict[str, Any] | None = None
    count, last = 0, 0
    while True:
        rows = await db.fetchall(
            "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (last, PAGE)
        )
        for row in rows:
            seq = int(row["seq"])
            want_seq = 1 if prev_row is None else int(prev_row["seq"]) + 1
            want_prev = GENESIS if prev_row is None else str(prev_row["hash"])
            intact = _computed(row) == row["hash"]
            head_seq, head_hash = (0, GENESIS) if prev_row is None else (count, want_prev)
            if seq != want_seq:
                return Verdict(
                    count,
                    head_seq,
                    head_hash,
                    want_seq,
                    f"record {want_seq} is missing (deleted): the chain jumps to {seq}",
                )
            if row["prev_hash"] != want_prev and prev_row is not None:
                relinked = {**row, "prev_hash": want_prev}
                if _computed(relinked) == row["hash"]:  # only this record's link was edited
                    return Verdict(
                        count,
                        head_seq,
                        head_hash,
                        seq,
                        f"{_describe(row)} was altered: its link to the previous record",
                    )
                # The link this record holds is what the previous record's hash was when
                # this one was written: the previous record was rewritten since.
                return Verdict(
                    count - 1,
                    int(prev_row["seq"]) - 1,
                    str(prev_row["prev_hash"]),
                    int(prev_row["seq"]),
                    f"{_describe(prev_row)} was altered: the next record links to a different hash",
                )
            if not intact or row["prev_hash"] != want_prev:
                return Verdict(
                    count,
                    head_seq,
                    head_hash,
                    seq,
                    f"{_describe(row)} was altered: its content does not match its hash",
                )
            if expected is not None and seq == expected[0] and row["hash"] != expected[1]:
                return Verdict(
                    count,
                    head_seq,
                    head_hash,
                    seq,
                    f"{_describe(row)} is not the record noted earlier (its hash differs):"
                    " the chain was rewritten up to here",
                )
            prev_row = row
            count += 1
        if len(rows) < PAGE:
            break
        last = int(rows[-1]["seq"])
    head_seq = 0 if prev_row is None else int(prev_row["seq"])
    head_hash = GENESIS if prev_row is None else str(prev_row["hash"])
    if expected is not None and expected[0] > head_seq:
        return Verdict(
            count,
            head_seq,
            head_hash,
            head_seq + 1,
            f"record {expected[0]} noted earlier is gone: the chain ends at {head_seq}",
        )
    return Verdict(count, head_seq, head_hash)


async def records_for(db: Executor, inquiry_id: str) -> list[dict[str, Any]]:
    """An inquiry's records, oldest first, with their detail decoded."""
    rows = await db.fetchall(
        "SELECT seq, at, actor, action, subject, detail FROM audit_log WHERE inquiry_id = ?"
        " ORDER BY seq",
        (inquiry_id,),
    )
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


async def recent(
    db: Executor, limit: int = 100, actions: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The latest records, newest first (the console's audit page)."""
    sql, params = "SELECT * FROM audit_log", []
    if actions:
        sql += f" WHERE action IN ({', '.join('?' for _ in actions)})"
        params += list(actions)
    rows = await db.fetchall(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit))
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]
