"""The state store, and the only place with SQL. In parts: ``protocol`` (``Store``: what roles may
ask; no driver, no fault hooks), ``sql`` (``SqlStore``, put together from one module per
aggregate on ``base.StoreBase``: ``cursors``, ``inquiries``, ``tickets``, ``creates``,
``replies``, ``outbox``, ``follow_ups``, ``reviews``, ``flood``, ``held``, ``credentials``,
``operators``, ``operations``, ``reports``, ``surveys`` (回访 results), ``incidents``, and
``audit``), ``drivers`` (SQLite and PostgreSQL behind one small interface), ``migrations`` (the
schema, numbered), ``leases`` (who polls what, on the store's engine) and ``rows`` (the typed
rows it takes and returns). States go in as bound parameters from their enums
(``schemas.vocab``, ``schemas.states``).
"""

from bridge.store.drivers import Database, Executor, iso, now_iso
from bridge.store.migrations import MIGRATIONS
from bridge.store.protocol import Store
from bridge.store.rows import (
    AppliedEvent,
    CreateAttempt,
    FollowUpDelivery,
    IncidentCase,
    IncidentRow,
    KnownCase,
    NewInquiry,
    QueueCard,
    QueuePage,
    ReplyClaim,
    ReplyCopy,
    StoredInquiry,
    StoredReply,
    StoredTicket,
    text_sha256,
)
from bridge.store.sql import SqlStore, open_store, pool_size_for

__all__ = [
    "MIGRATIONS",
    "AppliedEvent",
    "CreateAttempt",
    "Database",
    "Executor",
    "FollowUpDelivery",
    "IncidentCase",
    "IncidentRow",
    "KnownCase",
    "NewInquiry",
    "QueueCard",
    "QueuePage",
    "ReplyClaim",
    "ReplyCopy",
    "SqlStore",
    "Store",
    "StoredInquiry",
    "StoredReply",
    "StoredTicket",
    "iso",
    "now_iso",
    "open_store",
    "pool_size_for",
    "text_sha256",
]
