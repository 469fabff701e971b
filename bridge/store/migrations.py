"""The store's schema, as numbered migrations applied in order at start (``migrate``).

Append a migration to change the schema; never edit or reorder one that has shipped (a
database records the number it reached). A migration is SQL that runs on SQLite and
PostgreSQL alike, or a dict with one script per dialect.
"""

from __future__ import annotations

from bridge.store.audit import CHAINS_MIGRATION, KEYED_MIGRATION
from bridge.store.audit import MIGRATION as AUDIT_MIGRATION
from bridge.store.drivers import Database, Executor, SqliteDatabase

MIGRATION_LOCK = "govbridge:schema-migration"

# Migration 16's tables; only the sequence column is written differently on the two engines.
_INCIDENTS = """
    CREATE TABLE incident_cases (
        seq {seq},
        inquiry_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        department TEXT NOT NULL,
        category TEXT NOT NULL,
        role TEXT NOT NULL,
        lead_inquiry TEXT,
        similarity DOUBLE PRECISION NOT NULL,
        matched TEXT,
        text TEXT NOT NULL,
        written_at TEXT NOT NULL,
        joined_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX incident_cases_inquiry ON incident_cases (inquiry_id);
    CREATE INDEX incident_cases_department ON incident_cases (department, seq);
    CREATE INDEX incident_cases_incident ON incident_cases (incident_id, category, written_at);
    CREATE INDEX incident_cases_lead ON incident_cases (lead_inquiry);
    CREATE TABLE incidents (
        incident_id TEXT PRIMARY KEY,
        department TEXT NOT NULL,
        lead_inquiry TEXT,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        merged_into TEXT,
        surge_category TEXT,
        surge_at TEXT,
        surge_size INTEGER,
        public_answer_due TEXT,
        public_answer_at TEXT,
        public_answer_by TEXT,
        surge_announced INTEGER NOT NULL DEFAULT 0,
        surge_by TEXT,
        places TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX incidents_surge ON incidents (surge_at);
    """


# A migration is portable SQL, or per dialect ({"sqlite": ..., "postgresql": ...}).
# Migration 29's index serves open tickets only: a query uses it when it says
# ``status NOT IN`` these very words (``bridge.store.reports.OPEN_TICKET``).
_OPEN = "status NOT IN ('closed', 'rejected', 'resolved')"
# Counted from the index alone: on PostgreSQL the start's two columns are included, without
# which it reads every row to count (an expression's columns must be in the index too).
_OPEN_DUE_INDEX = (
    "CREATE INDEX tickets_open_due ON tickets"
    " (department, clock_category, (COALESCE(reopened_at, created_at)), ticket_id, cycle)"
    "{include} WHERE " + _OPEN + ";"
)

MIGRATIONS: list[str | dict[str, str]] = [
    # 1: initial schema
    """
    CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        cursor TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE inquiries (
        inquiry_id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        thread_key TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        department TEXT,
        category TEXT,
        ticket_id TEXT,
        public_text TEXT,
        citizen_handle TEXT,
        visibility TEXT,
        thread_json TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX inquiries_thread ON inquiries (thread_key);
    CREATE TABLE tickets (
        department TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        reference TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        thread_key TEXT NOT NULL,
        status TEXT NOT NULL,
        status_rank INTEGER NOT NULL,
        native_status TEXT NOT NULL,
        status_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (department, ticket_id)
    );
    CREATE INDEX tickets_thread ON tickets (thread_key);
    CREATE INDEX tickets_reference ON tickets (reference);
    CREATE TABLE create_attempts (
        reference TEXT PRIMARY KEY,
        department TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        state TEXT NOT NULL,
        ticket_id TEXT,
        attempts INTEGER NOT NULL,
        detail TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE ticket_events (
        department TEXT NOT NULL,
        event_id TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        status TEXT NOT NULL,
        native_status TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        applied INTEGER NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (department, event_id)
    );
    CREATE TABLE replies (
        reply_id TEXT PRIMARY KEY,
        inquiry_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        department TEXT NOT NULL,
        status TEXT,
        templated INTEGER NOT NULL,
        state TEXT NOT NULL,
        request_json TEXT NOT NULL,
        final_text TEXT,
        external_ids TEXT,
        outcome TEXT,
        decided_by TEXT,
        decided_at TEXT,
        decision TEXT,
        created_at TEXT NOT NULL,
        posted_at TEXT
    );
    CREATE INDEX replies_state ON replies (state);
    CREATE INDEX replies_inquiry ON replies (inquiry_id);
    """,
    # 2: which inquiry's ticket a thread's follow-ups belong to (claimed atomically)
    """
    CREATE TABLE threads (
        thread_key TEXT PRIMARY KEY,
        reference TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        claimed_at TEXT NOT NULL
    );
    """,
    # 3: things that must happen once (SLA events, …), keyed by kind and key
    """
    CREATE TABLE once_marks (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        marked_at TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    );
    """,
    # 4: handling cycles (a reopened ticket is handled again)
    """
    ALTER TABLE tickets ADD COLUMN cycle INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tickets ADD COLUMN reopened_at TEXT;
    ALTER TABLE ticket_events ADD COLUMN cycle INTEGER;
    ALTER TABLE replies ADD COLUMN cycle INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: triage explanations, and inquiries held for an official's check (bridge/triage/review.py)
    """
    ALTER TABLE inquiries ADD COLUMN confidence REAL;
    ALTER TABLE inquiries ADD COLUMN explanation TEXT;
    CREATE TABLE triage_reviews (
        inquiry_id TEXT PRIMARY KEY,
        department TEXT NOT NULL,
        model_category TEXT NOT NULL,
        confidence REAL NOT NULL,
        public_text TEXT NOT NULL,
        command_json TEXT NOT NULL,
        state TEXT NOT NULL,
        held_at TEXT NOT NULL,
        release_after TEXT NOT NULL,
        category TEXT,
        decided_by TEXT,
        decided_at TEXT,
        released_at TEXT
    );
    CREATE INDEX triage_reviews_state ON triage_reviews (state);
    """,
    # 6: conversations per citizen, leased posting under a shared quota, exact create outcomes
    """
    ALTER TABLE inquiries ADD COLUMN external_id TEXT;
    ALTER TABLE inquiries ADD COLUMN author_id TEXT;
    ALTER TABLE inquiries ADD COLUMN conversation TEXT;
    CREATE INDEX inquiries_post ON inquiries (platform, account, external_id);
    CREATE TABLE reply_posts (
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        external_id TEXT NOT NULL,
        reply_id TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        PRIMARY KEY (platform, account, external_id)
    );
    ALTER TABLE replies ADD COLUMN lease_until TEXT;
    ALTER TABLE replies ADD COLUMN lease_owner TEXT;
    ALTER TABLE replies ADD COLUMN post_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE replies ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE replies ADD COLUMN not_before TEXT;
    ALTER TABLE replies ADD COLUMN failure TEXT;
    ALTER TABLE replies ADD COLUMN merged_into TEXT;
    ALTER TABLE replies ADD COLUMN announced INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX replies_outbox ON replies (platform, account, state);
    CREATE TABLE post_calls (
        call_id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        reply_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        done_at TEXT,
        weight INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX post_calls_account ON post_calls (platform, account);
    ALTER TABLE create_attempts ADD COLUMN command_json TEXT;
    ALTER TABLE create_attempts ADD COLUMN decided_by TEXT;
    ALTER TABLE create_attempts ADD COLUMN decided_at TEXT;
    ALTER TABLE create_attempts ADD COLUMN decision TEXT;
    """,
    # 7: the outbox's order kept on the row (the claim reads one index range, not every
    # waiting reply), and unannounced posts found without a scan
    """
    ALTER TABLE replies ADD COLUMN priority INTEGER NOT NULL DEFAULT 2;
    CREATE INDEX replies_claim ON replies (platform, account, state, priority, created_at);
    CREATE INDEX replies_unannounced ON replies (posted_at) WHERE announced = 0;
    CREATE INDEX create_attempts_inquiry ON create_attempts (inquiry_id);
    CREATE INDEX create_attempts_state ON create_attempts (department, state);
    """,
    # 8: the audit trail, append-only and hash-chained (bridge/store/audit.py)
    AUDIT_MIGRATION,
    # 9: named operators with roles, and their console sessions (bridge/web/operators.py)
    """
    CREATE TABLE operators (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE operator_sessions (
        session_hash TEXT PRIMARY KEY,
        operator TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX operator_sessions_operator ON operator_sessions (operator);
    """,
    # 10: each audit record's HMAC under a key kept outside the store; TRUNCATE refused on
    # PostgreSQL (bridge/store/audit.py)
    KEYED_MIGRATION,
    # 11: the doors (issue 20): failed sign-ins per name and per client address
    # (bridge/web/operators.py), why an inquiry is held for review, and the new conversations each
    # citizen started (the flood limit, bridge/triage/flood.py)
    """
    CREATE TABLE signin_failures (key TEXT NOT NULL, at TEXT NOT NULL);
    CREATE INDEX signin_failures_key ON signin_failures (key, at);
    CREATE INDEX signin_failures_at ON signin_failures (at);
    ALTER TABLE triage_reviews ADD COLUMN reason TEXT NOT NULL DEFAULT 'unsure';
    CREATE TABLE conversation_starts (
        inquiry_id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        author_id TEXT NOT NULL,
        department TEXT NOT NULL,
        started_at TEXT NOT NULL
    );
    CREATE INDEX conversation_starts_author
        ON conversation_starts (platform, author_id, started_at);
    """,
    # 12: a draft's version, so an approval names the text the approver saw (issue 20)
    """
    ALTER TABLE replies ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    """,
    # 13: what each operation with a ticket system or account last did (alerts every process
    # shares, bridge/runtime/alerts.py), commands held while credentials are refused
    # (bridge/ticketing/held.py), and credentials replaced through the API, encrypted
    # (bridge/runtime/credentials.py)
    """
    CREATE TABLE operation_status (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        operation TEXT NOT NULL,
        last_ok_at TEXT,
        last_failed_at TEXT,
        failure TEXT,
        cleared_at TEXT,
        cleared_by TEXT,
        PRIMARY KEY (kind, name, operation)
    );
    CREATE TABLE held_commands (
        command_id TEXT PRIMARY KEY,
        department TEXT NOT NULL,
        operation TEXT NOT NULL,
        inquiry_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        command_json TEXT NOT NULL,
        held_at TEXT NOT NULL,
        claimed_by TEXT,
        claimed_until TEXT
    );
    CREATE INDEX held_commands_department ON held_commands (department, held_at);
    CREATE TABLE credentials (
        subject TEXT NOT NULL,
        field TEXT NOT NULL,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        secret TEXT NOT NULL,
        replaced_by TEXT NOT NULL,
        replaced_at TEXT NOT NULL,
        PRIMARY KEY (subject, field)
    );
    """,
    # 14: every copy of a reply the bridge made (uncertain posts looked for, extra copies
    # removed, bridge/reply/outbox.py), and how each follow-up reached the officials
    # (bridge/ticketing/follow_ups.py)
    """
    ALTER TABLE replies ADD COLUMN looks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE replies ADD COLUMN sweep_at TEXT;
    CREATE INDEX replies_sweep ON replies (sweep_at) WHERE sweep_at IS NOT NULL;
    CREATE TABLE reply_copies (
        reply_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        answer TEXT NOT NULL,
        fate TEXT NOT NULL,
        external_ids TEXT,
        detail TEXT,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (reply_id, attempt)
    );
    CREATE TABLE follow_up_deliveries (
        inquiry_id TEXT PRIMARY KEY,
        department TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        state TEXT NOT NULL,
        linked_id TEXT,
        reference TEXT,
        detail TEXT,
        updated_at TEXT NOT NULL
    );
    """,
    # 15: how each ticket cycle's 回访 ended, as the answer parser read it (never the words;
    # bridge/store/surveys.py), for 解决率 and 满意率; when the citizen posted each inquiry on
    # the platform (响应率 counts from it); inquiries and tickets found by time (a month's rates
    # read that month only)
    """
    ALTER TABLE inquiries ADD COLUMN posted_at TEXT;
    CREATE TABLE survey_results (
        department TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        cycle INTEGER NOT NULL,
        inquiry_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        outcome TEXT NOT NULL,
        solved INTEGER,
        satisfaction TEXT,
        unclear TEXT,
        asks INTEGER NOT NULL,
        asked_at TEXT NOT NULL,
        concluded_at TEXT NOT NULL,
        PRIMARY KEY (department, ticket_id, cycle)
    );
    CREATE INDEX survey_results_concluded ON survey_results (concluded_at);
    CREATE INDEX inquiries_created ON inquiries (created_at);
    CREATE INDEX tickets_created ON tickets (created_at);
    CREATE INDEX ticket_events_ticket ON ticket_events (department, ticket_id);
    """,
    # 16: incidents (issue 24): each new inquiry's link to its incident, in the order they were
    # decided per department (seq: what every process catches up from), with the public
    # (masked) text the index compares, and each incident's lead case, span and surge with its
    # 舆情 clock (bridge/triage/incident_links.py)
    {
        "sqlite": _INCIDENTS.format(seq="INTEGER PRIMARY KEY AUTOINCREMENT"),
        "postgresql": _INCIDENTS.format(seq="BIGSERIAL PRIMARY KEY"),
    },
    # 17: the approval queue read oldest first among the drafts awaiting approval (issue 23)
    """
    CREATE INDEX replies_queue ON replies (state, created_at, reply_id);
    """,
    # 18: the 回访 loop (bridge/store/surveys.py): one row per ticket cycle from its final
    # status to its result; never the citizen's words, only the parser's unclear reason
    """
    CREATE TABLE survey_asks (
        department TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        cycle INTEGER NOT NULL,
        inquiry_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        state TEXT NOT NULL,
        asks INTEGER NOT NULL DEFAULT 0,
        due_at TEXT NOT NULL,
        asked_at TEXT,
        last_asked_at TEXT,
        unclear TEXT,
        outcome TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (department, ticket_id, cycle)
    );
    CREATE INDEX survey_asks_state ON survey_asks (state, due_at);
    CREATE INDEX survey_asks_inquiry ON survey_asks (inquiry_id, state);
    """,
    # 19: internal notes on a case (issue 22): officials' words for officials, never public
    """
    CREATE TABLE case_notes (
        note_id TEXT PRIMARY KEY,
        inquiry_id TEXT NOT NULL,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX case_notes_inquiry ON case_notes (inquiry_id, created_at);
    """,
    # 20: 延期 extension requests (issue 22): asked with a reason, decided by an approver
    # before the old deadline; an approved one is the ticket's deadline in its cycle
    """
    CREATE TABLE case_extensions (
        extension_id TEXT PRIMARY KEY,
        inquiry_id TEXT NOT NULL,
        department TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        cycle INTEGER NOT NULL,
        old_deadline TEXT NOT NULL,
        new_deadline TEXT NOT NULL,
        reason TEXT NOT NULL,
        state TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT
    );
    CREATE INDEX case_extensions_ticket ON case_extensions (department, ticket_id, cycle, state);
    """,
    # 21: "being edited" marks on drafts awaiting approval (issue 23): who has a draft's box
    # open, until when (renewed while it stays open; a lapsed mark means nothing)
    """
    CREATE TABLE draft_editing (
        reply_id TEXT NOT NULL,
        operator TEXT NOT NULL,
        until TEXT NOT NULL,
        PRIMARY KEY (reply_id, operator)
    );
    CREATE INDEX draft_editing_until ON draft_editing (until);
    """,
    # 22: the journey at 100,000 inquiries (issue 23): a case's tickets, its conversation and
    # its extension requests were found by reading every row
    """
    CREATE INDEX tickets_inquiry ON tickets (inquiry_id);
    CREATE INDEX inquiries_conversation ON inquiries (conversation);
    CREATE INDEX case_extensions_inquiry ON case_extensions (inquiry_id, requested_at);
    """,
    # 23: the audit trail as one hash chain per writer (issue 26; bridge/store/audit.py)
    CHAINS_MIGRATION,
    # 24: pushes kept before they are answered (issue 25, must-show 1; bridge/store/pushes.py):
    # a Weibo fan-service push is written here, answered 200, and published from here, so a
    # slow or absent broker, or a restart, loses nothing; the row is also its dedupe record
    """
    CREATE TABLE push_inbox (
        push_key TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        messages_json TEXT NOT NULL,
        received_at TEXT NOT NULL,
        published_at TEXT,
        claimed_by TEXT,
        claimed_until TEXT
    );
    CREATE INDEX push_inbox_unpublished ON push_inbox (received_at) WHERE published_at IS NULL;
    CREATE INDEX push_inbox_published ON push_inbox (published_at);
    """,
    # 25: the dashboard at 100,000 inquiries (issue 23): an inquiry's replies by state and
    # posting time without reading each reply row, inquiries by state and time (and the
    # period's counted from the index alone), tickets by status and time
    """
    CREATE INDEX replies_inquiry_state ON replies (inquiry_id, state, posted_at);
    CREATE INDEX replies_state_posted ON replies (state, posted_at);
    CREATE INDEX inquiries_state_created ON inquiries (state, created_at);
    CREATE INDEX inquiries_created_state ON inquiries (created_at, state, department);
    CREATE INDEX tickets_status_created ON tickets (status, created_at);
    """,
    # 26: the dashboard's tickets of a period counted per department from an index alone
    # (tickets by creation time, now with their department: the same number of index entries
    # per ticket); inquiries by creation time alone dropped: migration 25's (created_at,
    # state, department) serves every query it served, and each inquiry is one entry lighter
    """
    DROP INDEX tickets_created;
    CREATE INDEX tickets_created ON tickets (created_at, department);
    DROP INDEX inquiries_created;
    """,
    # 27: a reply that must never follow a status reply of its inquiry (the holding
    # acknowledgement, "the number follows", issue 25): the outbox drops it once one exists
    """
    ALTER TABLE replies ADD COLUMN before_status INTEGER NOT NULL DEFAULT 0;
    """,
    # 28: the console's costly pages as counted (issue 23), for the other processes and the
    # next one: one row per page and query, its body the answer as JSON (bridge.web.kept)
    """
    CREATE TABLE kept_answers (
        key TEXT PRIMARY KEY,
        counted_at TEXT NOT NULL,
        body TEXT NOT NULL
    );
    """,
    # 29: the overdue page's windows (issue 23): each ticket's inquiry category as its clock
    # counts it (a missing or empty one is "other"), kept by triggers whoever writes the
    # rows, and open tickets by department, that category and start of their current cycle
    {
        "sqlite": """
    ALTER TABLE tickets ADD COLUMN clock_category TEXT NOT NULL DEFAULT 'other';
    UPDATE tickets SET clock_category = COALESCE((SELECT NULLIF(i.category, '')
        FROM inquiries i WHERE i.inquiry_id = tickets.inquiry_id), 'other');
    CREATE TRIGGER tickets_clock_category AFTER INSERT ON tickets BEGIN
        UPDATE tickets SET clock_category = COALESCE((SELECT NULLIF(i.category, '')
            FROM inquiries i WHERE i.inquiry_id = NEW.inquiry_id), 'other')
        WHERE department = NEW.department AND ticket_id = NEW.ticket_id; END;
    CREATE TRIGGER tickets_clock_inquiry AFTER UPDATE OF inquiry_id ON tickets BEGIN
        UPDATE tickets SET clock_category = COALESCE((SELECT NULLIF(i.category, '')
            FROM inquiries i WHERE i.inquiry_id = NEW.inquiry_id), 'other')
        WHERE department = NEW.department AND ticket_id = NEW.ticket_id; END;
    CREATE TRIGGER inquiries_clock_category AFTER UPDATE OF category ON inquiries BEGIN
        UPDATE tickets SET clock_category = COALESCE(NULLIF(NEW.category, ''), 'other')
        WHERE inquiry_id = NEW.inquiry_id; END;
    CREATE TRIGGER inquiries_clock_insert AFTER INSERT ON inquiries BEGIN
        UPDATE tickets SET clock_category = COALESCE(NULLIF(NEW.category, ''), 'other')
        WHERE inquiry_id = NEW.inquiry_id; END;
    """
        + _OPEN_DUE_INDEX.format(include=""),
        "postgresql": """
    ALTER TABLE tickets ADD COLUMN clock_category TEXT NOT NULL DEFAULT 'other';
    UPDATE tickets t SET clock_category = COALESCE(NULLIF(i.category, ''), 'other')
        FROM inquiries i WHERE i.inquiry_id = t.inquiry_id;
    CREATE FUNCTION tickets_clock_category() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.clock_category := COALESCE((SELECT NULLIF(i.category, '') FROM inquiries i
            WHERE i.inquiry_id = NEW.inquiry_id), 'other');
        RETURN NEW;
    END $$;
    CREATE TRIGGER tickets_clock_category BEFORE INSERT OR UPDATE OF inquiry_id ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_clock_category();
    CREATE FUNCTION inquiries_clock_category() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE tickets SET clock_category = COALESCE(NULLIF(NEW.category, ''), 'other')
            WHERE inquiry_id = NEW.inquiry_id
            AND clock_category <> COALESCE(NULLIF(NEW.category, ''), 'other');
        RETURN NULL;
    END $$;
    CREATE TRIGGER inquiries_clock_category AFTER INSERT OR UPDATE OF category ON inquiries
    FOR EACH ROW EXECUTE FUNCTION inquiries_clock_category();
    """
        + _OPEN_DUE_INDEX.format(include=" INCLUDE (reopened_at, created_at)"),
    },
]


async def migrate(db: Executor, database: Database) -> int:
    """Bring the schema to the latest migration, as one transaction under a lock; the number
    of migrations. Processes starting together on a fresh database wait for the first, then
    find it done: no half-made schema, no version bumped without its tables, none migrating
    twice."""
    dialect = "sqlite" if isinstance(database, SqliteDatabase) else "postgresql"
    async with db.transaction() as tx:
        await tx.lock(MIGRATION_LOCK)
        # No DDL at all when the schema is current: a daemon may run as a PostgreSQL role
        # without CREATE (and without UPDATE/DELETE/TRUNCATE on audit_log; see README).
        if not await _has_version_table(tx, dialect):
            await tx.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        rows = await tx.fetchall("SELECT version FROM schema_version")
        current = rows[0]["version"] if rows else 0
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"store schema version {current} is newer than this govbridge knows"
                f" ({len(MIGRATIONS)}): upgrade govbridge"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            script = MIGRATIONS[version - 1]
            await tx.executescript(script if isinstance(script, str) else script[dialect])
        if current == 0:
            await tx.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))
        elif current < len(MIGRATIONS):
            await tx.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))
    return len(MIGRATIONS)


async def _has_version_table(tx: Executor, dialect: str) -> bool:
    if dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    else:
        sql = "SELECT 1 AS present WHERE to_regclass('schema_version') IS NOT NULL"
    return bool(await tx.fetchall(sql))
