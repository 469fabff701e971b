"""The audit trail: an append-only, hash-chained record of what happened to every inquiry and
of every operator action, each with its actor and time.

Each record's hash covers its own content and the previous record's hash, so changing,
deleting or inserting a record anywhere breaks the chain from there on; ``verify`` walks the
chain and names the first record that does not fit. Each record also carries an HMAC of its
hash under the audit key (``[audit] keys``), a secret that is not in the database: someone who
can write to the database but does not hold the key cannot add a record, nor rewrite one and
recompute the hashes after it, without ``verify`` naming it. The table refuses UPDATE and DELETE
(triggers, migration 8) and on PostgreSQL TRUNCATE (migration 10); the chain is what proves it
afterwards, even against someone who could drop the triggers. What the key cannot show is a
cut tail (the records left are all genuine): ``checkpoint`` exports the head (sequence, hash,
HMAC) to keep elsewhere, and ``verify --checkpoint`` (or ``--expect SEQ:HASH``) checks that it
is still there, unchanged.

Records written before the key existed (an upgraded database) have no HMAC; they are accepted
only as the chain's first records, and the first signed record pins them (its HMAC covers its
link to them). A record without an HMAC after a signed one is not the bridge's.

Records hold identifiers, states and actors, never citizens' text or personal data.
Appends are serialised (a lock in the caller's transaction, taken as it commits), so the record
of a change commits with the change itself or not at all. A transaction's records are written in
one statement, linked to the head this process wrote last (``ChainHead``): the INSERT only
happens while the table still ends there, so another process's append costs a read and a retry.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.security.keyring import Keyring
from bridge.store.chainhead import GENESIS

if TYPE_CHECKING:
    from bridge.store.drivers import Executor

LOCK_KEY = "audit_log"
PAGE = 1000
_MAC_DOMAIN = b"govbridge-audit-v1:"
CHECKPOINT_FORMAT = "govbridge-audit-checkpoint/1"

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
    "reply.superseded",
    "reply.masked",
    "reply.posted",
    "reply.undeliverable",
    "reply.failed",
    "reply.retried",
    "reply.copies_settled",
    "follow_up.delivered",
    "follow_up.recorded",
    "follow_up.unknown",
    "dead_letter.replayed",
    "dead_letter.replay_failed",
    "dead_letter.dropped",
    "message.unauthenticated",
    "operator.signed_in",
    "operator.sign_in_failed",
    "operator.added",
    "operator.changed",
    "account.token_replaced",
    "ticketing.credentials_replaced",
    "credential.applied",
    "credential.superseded",
    "credential.reloaded",
    "credentials.rotated",
    "ticket.held",
    "ticket.released",
    "ticket.release_failed",
    "survey.recorded",
    "incident.linked",
    "incident.surge",
    "incident.split",
    "incident.merged",
    "incident.answered",
    "case.rerouted",
    "case.returned",
    "case.escalated",
    "case.noted",
    "case.extension_requested",
    "case.extension_decided",
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

# Migration 10: each record's HMAC under the audit key; on PostgreSQL TRUNCATE refused too
# (row triggers do not see it). A superuser can still disable triggers: the checkpoint is what
# shows a cut afterwards.
KEYED_MIGRATION = {
    "sqlite": "ALTER TABLE audit_log ADD COLUMN mac TEXT;",
    "postgresql": """
    ALTER TABLE audit_log ADD COLUMN mac TEXT;
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
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


def record_mac(keys: Keyring, digest: str) -> str:
    """``KEYID:HMAC`` of a record's hash under the signing audit key (the hash covers the
    record's content, its sequence number and its link to the previous record)."""
    kid, mac = keys.sign(_MAC_DOMAIN, digest.encode())
    return f"{kid}:{mac}"


def mac_problem(keys: Keyring, digest: str, mac: str | None) -> str | None:
    """Why ``mac`` does not prove a record with hash ``digest`` was written with one of
    ``keys``, or None when it does."""
    if mac is None:
        return "has no HMAC"
    kid, _, value = mac.partition(":")
    if not keys.has(kid):
        return f"is signed with a key that is not configured (key id {kid[:8]!r})"
    if not keys.check(kid, value, _MAC_DOMAIN, digest.encode()):
        return "has an HMAC that does not match it"
    return None


_COLUMNS = "seq, at, actor, action, inquiry_id, subject, detail, prev_hash, hash, mac"
_ROW = "(CAST(? AS INTEGER), ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# one statement per transaction, whatever its number of records (statement text cached by size)
_INSERTS: dict[int, str] = {}


def _insert_sql(n: int) -> str:
    sql = _INSERTS.get(n)
    if sql is None:
        sql = _INSERTS[n] = (
            f"INSERT INTO audit_log ({_COLUMNS}) SELECT * FROM (VALUES "
            + ", ".join([_ROW] * n)
            + ") AS v WHERE (SELECT COALESCE(MAX(seq), 0) FROM audit_log) = CAST(? AS INTEGER)"
        )
    return sql


Pending = tuple[str, str, str | None, str | None, str]  # actor, action, inquiry, subject, detail
# Records waiting for their transaction's commit, per open transaction.
_PENDING: weakref.WeakKeyDictionary[Any, list[Pending]] = weakref.WeakKeyDictionary()


async def _write(tx: Executor, records: list[Pending]) -> None:
    """Append ``records`` under the chain's lock, in one INSERT: linked to the head this
    process wrote last, or (when another process moved it, or it is not known yet) to the
    head read then."""
    await tx.lock(LOCK_KEY)
    head = tx.audit_head
    for attempt in range(2):
        if head.seq is None or attempt:
            rows = await tx.fetchall("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            head.seq, head.hash = (
                (int(rows[0]["seq"]), str(rows[0]["hash"])) if rows else (0, GENESIS)
            )
        seq, prev = head.seq, head.hash
        assert seq is not None
        params: list[Any] = []
        at = _now()
        for actor, action, inquiry_id, subject, text in records:
            seq += 1
            digest = record_hash(prev, seq, at, actor, action, inquiry_id, subject, text)
            mac = record_mac(tx.audit_keys, digest)
            params += [seq, at, actor, action, inquiry_id, subject, text, prev, digest, mac]
            prev = digest
        params.append(head.seq)
        if await tx.execute(_insert_sql(len(records)), params) == len(records):
            head.seq, head.hash = seq, prev
            return
        head.forget()  # another process appended since: read the head and try again
    raise RuntimeError("the audit chain's head moved while its lock was held")


async def append(
    db: Executor,
    action: str,
    *,
    actor: str = "bridge",
    inquiry_id: str | None = None,
    subject: str | None = None,
    **detail: Any,
) -> None:
    """Append one record. In a transaction it is written as the transaction commits, with
    every other record of that transaction in one statement, so the chain's lock (which every
    appending transaction shares, across processes) is held for the commit only, not for the
    whole transaction; outside one, at once. The record is signed with the executor's audit
    key (given when the store was opened)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    text = json.dumps(
        {k: v for k, v in detail.items() if v is not None}, ensure_ascii=False, sort_keys=True
    )
    record: Pending = (actor, action, inquiry_id, subject, text)
    pending = _PENDING.get(db)
    if pending is not None:
        pending.append(record)
        return
    records = [record]

    async def write(tx: Executor) -> None:
        _PENDING.pop(db, None)
        await _write(tx, records)

    if db.defer(write):
        _PENDING[db] = records
    else:
        async with db.transaction() as tx:
            await _write(tx, records)


@dataclass(frozen=True)
class Verdict:
    """The outcome of ``verify``: ``first_bad`` is the first record that does not fit.
    ``unsigned`` counts the records at the start of the chain written before the audit key
    existed (accepted, pinned by the first signed record)."""

    records: int
    head_seq: int
    head_hash: str
    first_bad: int | None = None
    problem: str | None = None
    unsigned: int = 0

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    @property
    def head(self) -> str:
        return f"{self.head_seq}:{self.head_hash}"


@dataclass(frozen=True)
class Checkpoint:
    """A head kept outside the database: a later ``verify`` finds it there, unchanged."""

    seq: int
    hash: str
    mac: str | None = None
    at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "mac": self.mac,
            "at": self.at,
        }

    @classmethod
    def parse_expect(cls, text: str) -> Checkpoint:
        """``SEQ:HASH`` as printed by ``verify``."""
        seq_text, _, hash_text = text.partition(":")
        if not seq_text.isdigit() or len(hash_text) != 64:
            raise ValueError("--expect takes SEQ:HASH as printed by an earlier verify")
        return cls(int(seq_text), hash_text.lower())

    @classmethod
    def load(cls, text: str, keys: Keyring) -> Checkpoint:
        """A checkpoint file's content; its HMAC must be one of ``keys``' (a checkpoint of the
        empty chain has none)."""
        try:
            doc = json.loads(text)
        except ValueError:
            raise ValueError("the checkpoint is not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"the checkpoint is not a {CHECKPOINT_FORMAT} document")
        seq, digest, mac = doc.get("seq"), doc.get("hash"), doc.get("mac")
        if (
            not isinstance(seq, int)
            or isinstance(seq, bool)
            or seq < 0
            or not isinstance(digest, str)
            or len(digest) != 64
            or not (mac is None or isinstance(mac, str))
        ):
            raise ValueError("the checkpoint needs seq (a number), hash (64 hex) and mac")
        if seq > 0:
            problem = mac_problem(keys, digest, mac)
            if problem is not None:
                raise ValueError(f"the checkpoint {problem}: it was not made with the audit key")
        at = doc.get("at")
        return cls(seq, digest.lower(), mac, at if isinstance(at, str) else None)


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


async def verify(
    db: Executor,
    expect: str | Checkpoint | None = None,
    keys: Keyring | None = None,
) -> Verdict:
    """Walk the chain from the first record and name the first record that was changed,
    deleted, inserted, moved or written without the audit key (``keys``, by default the
    store's). ``expect`` (``SEQ:HASH`` printed earlier, or a ``Checkpoint``) must still be
    there, unchanged.

    Each record is checked on its own first (its content against its hash, its HMAC), then
    its link to the record before it: a record moved to another place is the one named, not
    the untouched record it now follows."""
    keys = keys or db.audit_keys
    expected = Checkpoint.parse_expect(expect) if isinstance(expect, str) else expect
    prev_row: dict[str, Any] | None = None
    count, last, unsigned, signed_seen = 0, 0, 0, False

    def broken(first_bad: int, problem: str) -> Verdict:
        head_seq = 0 if prev_row is None else int(prev_row["seq"])
        head_hash = GENESIS if prev_row is None else str(prev_row["hash"])
        return Verdict(count, head_seq, head_hash, first_bad, problem, unsigned)

    while True:
        rows = await db.fetchall(
            "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (last, PAGE)
        )
        for row in rows:
            seq = int(row["seq"])
            want_seq = 1 if prev_row is None else int(prev_row["seq"]) + 1
            want_prev = GENESIS if prev_row is None else str(prev_row["hash"])
            if seq != want_seq:
                return broken(
                    want_seq, f"record {want_seq} is missing (deleted): the chain jumps to {seq}"
                )
            if _computed(row) != row["hash"]:
                return broken(
                    seq, f"{_describe(row)} was altered: its content does not match its hash"
                )
            mac = row.get("mac")
            if mac is None and not signed_seen:
                unsigned += 1  # written before the audit key existed (pinned by a later one)
            else:
                problem = mac_problem(keys, str(row["hash"]), mac)
                if problem is not None:
                    return broken(
                        seq,
                        f"{_describe(row)} {problem}: it was not written by the bridge"
                        " (database access alone)",
                    )
                signed_seen = True
            if row["prev_hash"] != want_prev:
                if prev_row is None:
                    return broken(
                        seq,
                        f"{_describe(row)} does not start the chain: records before it"
                        " were removed",
                    )
                if prev_row.get("mac") is None:
                    # The previous record is unsigned (older than the key): the link this
                    # one holds is what its hash was when this one was written, so it was
                    # rewritten since (with its hash recomputed).
                    prev_seq = int(prev_row["seq"])
                    return Verdict(
                        count - 1,
                        prev_seq - 1,
                        str(prev_row["prev_hash"]),
                        prev_seq,
                        f"{_describe(prev_row)} was altered: the next record links to a"
                        " different hash",
                        unsigned - 1 - (mac is None),
                    )
                return broken(
                    seq,
                    f"{_describe(row)} is out of place: it was written after another record"
                    f" than record {prev_row['seq']} (records moved or removed)",
                )
            if expected is not None and seq == expected.seq and row["hash"] != expected.hash:
                return broken(
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
    if expected is not None and expected.seq > head_seq:
        return broken(
            head_seq + 1,
            f"record {expected.seq} noted earlier is gone: the chain ends at {head_seq}"
            " (records were cut from its end)",
        )
    head_hash = GENESIS if prev_row is None else str(prev_row["hash"])
    return Verdict(count, head_seq, head_hash, unsigned=unsigned)


async def checkpoint(db: Executor, keys: Keyring | None = None) -> Checkpoint:
    """The head of an intact chain, to keep outside the database; ``ValueError`` naming the
    first bad record when the chain is not intact (a checkpoint never vouches for it)."""
    verdict = await verify(db, keys=keys)
    if not verdict.ok:
        raise ValueError(f"audit trail broken at record {verdict.first_bad}: {verdict.problem}")
    if verdict.head_seq == 0:
        return Checkpoint(0, GENESIS, None, _now())
    rows = await db.fetchall(
        "SELECT seq, hash, mac FROM audit_log WHERE seq = ?", (verdict.head_seq,)
    )
    row = rows[0]
    return Checkpoint(int(row["seq"]), str(row["hash"]), row.get("mac"), _now())


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
