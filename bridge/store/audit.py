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

One chain per writer (migration 23, issue 26): a transaction's records are appended as it
commits, in one statement, to the chain of a writer it alone holds meanwhile
(``bridge.store.chainhead``): the head is in memory, so there is no lock every process shares
and no read of the head per record. A process whose transactions run one after another writes
one chain; overlapping PostgreSQL transactions write at most one per pool connection. A record's
hash covers its number in its chain; a chain's first record links to the record that was the
trail's latest when it began (``prev_seq``), and a writer begins a new chain every
``CHAIN_RECORDS`` records, so chains are anchored into each other periodically: records cut from
a chain that a later chain began from break that chain's link; ``checkpoint`` keeps every
chain's head, so a cut from the end of any chain shows too. ``seq`` orders the whole trail (on
PostgreSQL from a sequence). Records written before migration 23 stay one chain in ``seq``
order and verify as they did.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.security.keyring import Keyring
from bridge.store.chainhead import GENESIS

if TYPE_CHECKING:
    from bridge.store.drivers import Executor

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


# What ``json.dumps`` with these arguments makes (it builds such an encoder per call): the
# record's canonical form its hash covers, and its detail's text.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DETAIL = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


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
    body = _CANONICAL.encode([prev_hash, seq, at, actor, action, inquiry_id, subject, detail])
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


# Migration 23: one chain per writer. A record names its chain and its number in it
# (``chain_seq``, which its hash covers in place of ``seq``); a chain's first record names the
# record it is anchored to (``prev_seq``, whose hash it links to). ``seq`` still orders the
# whole trail; the database gives it (SQLite the next rowid, PostgreSQL an identity column: no
# privilege on a sequence needed), so writers never wait for each other.
CHAINS_MIGRATION = {
    "sqlite": """
    ALTER TABLE audit_log ADD COLUMN chain TEXT;
    ALTER TABLE audit_log ADD COLUMN chain_seq INTEGER;
    ALTER TABLE audit_log ADD COLUMN prev_seq INTEGER;
    """,
    "postgresql": """
    ALTER TABLE audit_log ADD COLUMN chain TEXT;
    ALTER TABLE audit_log ADD COLUMN chain_seq INTEGER;
    ALTER TABLE audit_log ADD COLUMN prev_seq INTEGER;
    DO $$ BEGIN
        EXECUTE format(
            'ALTER TABLE audit_log ALTER COLUMN seq ADD GENERATED BY DEFAULT AS IDENTITY'
            ' (START WITH %s)', (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log));
    END $$;
    """,
}

_COLUMNS = (
    "at, actor, action, inquiry_id, subject, detail, prev_hash, hash, mac, chain, chain_seq,"
    " prev_seq"
)
_ROW = "(" + ", ".join("?" for _ in _COLUMNS.split(",")) + ")"
# one statement per transaction, whatever its number of records (statement text cached by size)
_INSERTS: dict[int, str] = {}


def _insert_sql(n: int) -> str:
    """The database gives ``seq``; one it gives that is taken already (a record someone
    inserted with a number of their choosing) is skipped, not an error (``_write`` sees it)."""
    sql = _INSERTS.get(n)
    if sql is None:
        sql = _INSERTS[n] = (
            f"INSERT INTO audit_log ({_COLUMNS}) VALUES "
            + ", ".join([_ROW] * n)
            + " ON CONFLICT (seq) DO NOTHING RETURNING seq"
        )
    return sql


class SequenceTaken(Exception):
    """A sequence number the database gave was taken by a record written past it (not by the
    bridge): the transaction is tried again, with the next numbers."""


Pending = tuple[str, str, str | None, str | None, str]  # actor, action, inquiry, subject, detail
# Records waiting for their transaction's commit, per open transaction.
_PENDING: weakref.WeakKeyDictionary[Any, list[Pending]] = weakref.WeakKeyDictionary()


async def _write(tx: Executor, records: list[Pending]) -> None:
    """Append ``records`` to a writer's chain in one INSERT: linked to the head the writer
    holds (no lock, no read); a new chain's first record to the trail's latest record then
    (one read per chain). The writer is given back once the transaction is over."""
    writers = tx.audit_chains
    head = writers.take()
    tx.settled(lambda committed: writers.give(head, committed))
    anchor: int | None = None
    if head.seq is None:
        rows = await tx.fetchall("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        anchor, head.hash = (int(rows[0]["seq"]), str(rows[0]["hash"])) if rows else (0, GENESIS)
        head.seq = 0
    seq, prev = head.seq, head.hash
    params: list[Any] = []
    at = _now()
    for actor, action, inquiry_id, subject, text in records:
        seq += 1
        digest = record_hash(prev, seq, at, actor, action, inquiry_id, subject, text)
        mac = record_mac(tx.audit_keys, digest)
        params += [at, actor, action, inquiry_id, subject, text, prev, digest, mac, head.chain]
        params += [seq, anchor if seq == 1 else None]
        prev = digest
    if anchor is not None:
        head.seq = None  # not begun until this commits
    head.pending = (seq, prev)
    written = await tx.fetchall(_insert_sql(len(records)), params)
    if len(written) != len(records):
        raise SequenceTaken(
            f"audit record numbers taken by records written past the sequence: {len(records)}"
            f" records, {len(written)} written"
        )


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
    every other record of that transaction in one statement, on a chain of its own writer
    (no lock that other transactions or processes share); outside one, at once. The record
    is signed with the executor's audit key (given when the store was opened)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    text = _DETAIL.encode({k: v for k, v in detail.items() if v is not None})
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
        return
    for attempt in range(3):
        try:
            async with db.transaction() as tx:
                await _write(tx, records)
            return
        except SequenceTaken:
            if attempt == 2:
                raise


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
    # each writer's chain: its id -> (its number of records, the last one's hash)
    chains: dict[str, tuple[int, str]] = field(default_factory=dict)

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
    # every writer's chain head then (a cut from the end of any chain shows)
    chains: dict[str, tuple[int, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "mac": self.mac,
            "at": self.at,
            "chains": {c: [n, h] for c, (n, h) in sorted(self.chains.items())},
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
        chains: dict[str, tuple[int, str]] = {}
        for chain, head in (doc.get("chains") or {}).items():
            if (
                not isinstance(head, list)
                or len(head) != 2
                or not isinstance(head[0], int)
                or not isinstance(head[1], str)
                or len(head[1]) != 64
            ):
                raise ValueError("the checkpoint's chains are [number, hash (64 hex)] each")
            chains[str(chain)] = (head[0], head[1].lower())
        return cls(seq, digest.lower(), mac, at if isinstance(at, str) else None, chains)


def _computed(row: dict[str, Any], number: int | None = None) -> str:
    """The record's hash recomputed: over its number in its chain (``number``: a writer's
    chain) or in the trail (records older than migration 23)."""
    return record_hash(
        str(row["prev_hash"]),
        int(row["seq"]) if number is None else number,
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
    """Walk the trail from the first record and name the first record that was changed,
    deleted, inserted, moved or written without the audit key (``keys``, by default the
    store's). ``expect`` (``SEQ:HASH`` printed earlier, or a ``Checkpoint``) must still be
    there, unchanged.

    Records written before migration 23 form one chain in ``seq`` order; later ones one chain
    per writer (``chain``, ``chain_seq``), each anchored to the record that was the trail's
    latest when it began (``prev_seq``). Each record is checked on its own first (its content
    against its hash, its HMAC), then its link to the record before it in its chain: a record
    moved to another place is the one named, not the untouched record it now follows."""
    keys = keys or db.audit_keys
    expected = Checkpoint.parse_expect(expect) if isinstance(expect, str) else expect
    prev_row: dict[str, Any] | None = None
    count, last, unsigned, signed_seen = 0, 0, 0, False
    chains: dict[str, tuple[int, str, int]] = {}  # chain -> (chain_seq, hash, seq) so far

    def broken(first_bad: int, problem: str) -> Verdict:
        head_seq = 0 if prev_row is None else int(prev_row["seq"])
        head_hash = GENESIS if prev_row is None else str(prev_row["hash"])
        return Verdict(count, head_seq, head_hash, first_bad, problem, unsigned)

    def not_ours(row: dict[str, Any]) -> str | None:
        problem = mac_problem(keys, str(row["hash"]), row.get("mac"))
        if problem is None:
            return None
        return (
            f"{_describe(row)} {problem}: it was not written by the bridge (database access alone)"
        )

    async def anchor_hash(anchor: int) -> str | None:
        if anchor == 0:
            return GENESIS
        if prev_row is not None and int(prev_row["seq"]) == anchor:
            return str(prev_row["hash"])
        found = await db.fetchall("SELECT hash FROM audit_log WHERE seq = ?", (anchor,))
        return str(found[0]["hash"]) if found else None

    while True:
        rows = await db.fetchall(
            "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (last, PAGE)
        )
        for row in rows:
            seq = int(row["seq"])
            chain = row.get("chain")
            if chain is not None:
                cseq = int(row["chain_seq"] or 0)
                if _computed(row, cseq) != row["hash"]:
                    return broken(
                        seq, f"{_describe(row)} was altered: its content does not match its hash"
                    )
                if row.get("mac") is None and not signed_seen:
                    unsigned += 1  # before any signed record: pinned by the first one
                else:
                    problem = not_ours(row)
                    if problem is not None:
                        return broken(seq, problem)
                    signed_seen = True
                known = chains.get(chain)
                if known is None:
                    if cseq != 1:
                        return broken(
                            seq,
                            f"{_describe(row)} does not start its chain: records before it"
                            " were removed",
                        )
                    anchor = int(row["prev_seq"] if row.get("prev_seq") is not None else -1)
                    want = await anchor_hash(anchor) if 0 <= anchor < seq else None
                    if want is None:
                        return broken(
                            max(anchor, 1),
                            f"record {anchor}, which {_describe(row)} starts its chain from,"
                            " is missing (deleted) or out of place",
                        )
                    if row["prev_hash"] != want:
                        return broken(
                            seq,
                            f"{_describe(row)} is out of place: its chain was not begun after"
                            f" record {anchor} (records moved or removed)",
                        )
                else:
                    known_cseq, known_hash, known_seq = known
                    if cseq > known_cseq + 1:
                        return broken(
                            known_seq + 1,
                            f"{_describe(row)} does not follow record {known_seq} in its chain:"
                            " a record between them is missing (deleted) or out of place",
                        )
                    if cseq != known_cseq + 1 or row["prev_hash"] != known_hash:
                        return broken(
                            seq,
                            f"{_describe(row)} is out of place: it was written after another"
                            f" record than record {known_seq} (records moved or removed)",
                        )
                noted = expected.chains.get(chain) if expected is not None else None
                if noted is not None and cseq == noted[0] and row["hash"] != noted[1]:
                    return broken(
                        seq,
                        f"{_describe(row)} is not the record noted earlier (its hash differs):"
                        " the chain was rewritten up to here",
                    )
                chains[chain] = (cseq, str(row["hash"]), seq)
            elif chains:
                # the old form, after the trail moved to one chain per writer
                if _computed(row) != row["hash"]:
                    return broken(
                        seq, f"{_describe(row)} was altered: its content does not match its hash"
                    )
                problem = not_ours(row)
                return broken(
                    seq,
                    problem
                    or f"{_describe(row)} is out of place: a record of the old single chain"
                    " after the trail moved to one chain per writer",
                )
            else:
                want_seq = 1 if prev_row is None else int(prev_row["seq"]) + 1
                want_prev = GENESIS if prev_row is None else str(prev_row["hash"])
                if seq != want_seq:
                    return broken(
                        want_seq,
                        f"record {want_seq} is missing (deleted): the chain jumps to {seq}",
                    )
                if _computed(row) != row["hash"]:
                    return broken(
                        seq, f"{_describe(row)} was altered: its content does not match its hash"
                    )
                mac = row.get("mac")
                if mac is None and not signed_seen:
                    unsigned += 1  # written before the audit key existed (pinned by a later one)
                else:
                    problem = not_ours(row)
                    if problem is not None:
                        return broken(seq, problem)
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
                        f"{_describe(row)} is out of place: it was written after another"
                        f" record than record {prev_row['seq']} (records moved or removed)",
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
    if expected is not None:
        for chain, (noted_cseq, _) in sorted(expected.chains.items()):
            reached = chains.get(chain, (0, GENESIS, 0))[0]
            if reached < noted_cseq:
                return broken(
                    head_seq + 1,
                    f"record {noted_cseq} of chain {chain} noted earlier is gone: the chain"
                    f" ends at its record {reached} (records were cut from its end)",
                )
    head_hash = GENESIS if prev_row is None else str(prev_row["hash"])
    heads = {c: (n, h) for c, (n, h, _) in chains.items()}
    return Verdict(count, head_seq, head_hash, unsigned=unsigned, chains=heads)


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
    return Checkpoint(int(row["seq"]), str(row["hash"]), row.get("mac"), _now(), verdict.chains)


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
