"""The state store, in parts: ``protocol`` (``Store``: what stages may ask), ``sql`` (the
repository, ``SqlStore``), ``drivers`` (SQLite and PostgreSQL behind one small interface),
``migrations`` (the schema, numbered) and ``rows`` (the typed rows it returns).
"""

from bridge.store.drivers import Database, Executor, iso, now_iso
from bridge.store.migrations import MIGRATIONS
from bridge.store.protocol import Store
from bridge.store.rows import (
    AppliedEvent,
    CreateAttempt,
    ReplyClaim,
    StoredInquiry,
    StoredReply,
    StoredTicket,
)
from bridge.store.sql import FaultHook, SqlStore, open_store

__all__ = [
    "MIGRATIONS",
    "AppliedEvent",
    "CreateAttempt",
    "Database",
    "Executor",
    "FaultHook",
    "ReplyClaim",
    "SqlStore",
    "Store",
    "StoredInquiry",
    "StoredReply",
    "StoredTicket",
    "iso",
    "now_iso",
    "open_store",
]
