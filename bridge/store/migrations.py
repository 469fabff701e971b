"""The store's schema, as numbered migrations applied in order at start (``migrate``).

Append a migration to change the schema; never edit or reorder one that has shipped (a
database records the number it reached). A migration is SQL that runs on SQLite and
PostgreSQL alike, or a dict with one script per dialect.
"""

from __future__ import annotations

from bridge import audit
from bridge.store.drivers import Database, Executor, SqliteDatabase

MIGRATION_LOCK = "govbridge:schema-migration"

# A migration is portable SQL, or per dialect ({"sqlite": ..., "postgresql": ...}).
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
    # 5: triage explanations, and inquiries held for an official's check (bridge/triage_review.py)
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
    # 8: the audit trail, append-only and hash-chained (bridge/audit.py)
    audit.MIGRATION,
    # 9: named operators with roles, and their console sessions (bridge/operators.py)
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
]


async def migrate(db: Executor, database: Database) -> int:
    """Bring the schema to the latest migration, as one transaction under a lock; the number
    of migrations. Processes starting together on a fresh database wait for the first, then
    find it done: no half-made schema, no version bumped without its tables, none migrating
    twice."""
    dialect = "sqlite" if isinstance(database, SqliteDatabase) else "postgresql"
    async with db.transaction() as tx:
        await tx.lock(MIGRATION_LOCK)
        await tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
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
