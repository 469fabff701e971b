"""The repository: every query of the bridge's durable state, one module per aggregate
(``cursors``, ``inquiries``, ``tickets``, ``creates``, ``replies``, ``outbox``, ``follow_ups``,
``reviews``, ``flood``, ``held``, ``credentials``, ``operators``, ``operations``, ``reports``,
``surveys``, ``incidents``, ``notes``, ``extensions``, ``editing``, ``pushes``, ``kept``), put
together here as ``SqlStore`` over a ``Database`` driver (``bridge.store.drivers``) so the same
portable SQL runs on SQLite and PostgreSQL.

``SqlStore`` implements the ``Store`` protocol (``bridge.store.protocol``) that roles use. The
schema is created and migrated at start (``bridge.store.migrations``).
"""

from __future__ import annotations

from bridge.security.keyring import Keyring
from bridge.store.creates import CreatesStore
from bridge.store.credentials import CredentialsStore
from bridge.store.cursors import ANY_CURSOR, CursorsStore
from bridge.store.drivers import PostgresDatabase, SqliteDatabase
from bridge.store.editing import EditingStore
from bridge.store.extensions import ExtensionsStore
from bridge.store.flood import FloodStore
from bridge.store.follow_ups import FollowUpsStore
from bridge.store.held import HeldStore
from bridge.store.incidents import IncidentsStore
from bridge.store.inquiries import InquiriesStore
from bridge.store.kept import KeptAnswersStore
from bridge.store.lookups import LookupsStore
from bridge.store.notes import NotesStore
from bridge.store.operations import OperationsStore
from bridge.store.operators import OperatorsStore
from bridge.store.outbox import OutboxStore
from bridge.store.pushes import PushesStore
from bridge.store.reports import ReportsStore
from bridge.store.reviews import ReviewsStore
from bridge.store.surveys import SurveysStore
from bridge.store.tickets import FINAL_RANK, TicketsStore

__all__ = ["ANY_CURSOR", "FINAL_RANK", "SqlStore", "open_store", "pool_size_for"]


class SqlStore(
    CursorsStore,
    InquiriesStore,
    TicketsStore,
    CreatesStore,
    OutboxStore,
    FollowUpsStore,
    ReviewsStore,
    FloodStore,
    HeldStore,
    CredentialsStore,
    OperatorsStore,
    OperationsStore,
    ReportsStore,
    SurveysStore,
    IncidentsStore,
    NotesStore,
    ExtensionsStore,
    EditingStore,
    PushesStore,
    LookupsStore,
    KeptAnswersStore,
):
    """All durable state of the bridge. Methods are small and idempotent where it matters.

    ``transaction()`` gives a store whose statements commit together.
    """


def pool_size_for(handlers_in_flight: int, configured: int | None = None) -> int:
    """PostgreSQL connections for a process running that many handlers at once: ``[store]
    pool_size`` when set, else one each within ``POOL_MIN``..``POOL_MAX`` (a handler holds a
    connection only for its statements and transactions). At 20 a process, six test processes
    beside each other exhausted PostgreSQL's default 100 ("too many clients"): a deployment of
    many processes sets pool_size so that processes x pool_size stays under max_connections."""
    if configured is not None:
        return configured
    return max(POOL_MIN, min(POOL_MAX, handlers_in_flight))


POOL_MIN, POOL_MAX = 4, 10


async def open_store(
    url: str,
    audit_keys: Keyring | None = None,
    *,
    migrate: bool = True,
    pool_size: int | None = None,
) -> SqlStore:
    """Open and migrate the store named by a URL (``sqlite:///path`` or ``postgresql://…``);
    ``audit_keys`` sign the audit records it writes and check them (``[audit] keys``; none:
    the published development key); ``migrate=False`` for a second connection of a process
    that has migrated already; ``pool_size``: PostgreSQL connections at most (default 10)."""
    db: SqliteDatabase | PostgresDatabase
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/") and not path.startswith("//") else path
        db = SqliteDatabase(path or ":memory:", audit_keys)
    else:
        db = PostgresDatabase(url, audit_keys, pool_size)
    await db.open()
    store = SqlStore(db, database=db)
    try:
        if migrate:
            await store.migrate()
    except BaseException:
        await db.close()  # a store that cannot be used leaves no connection open
        raise
    return store
