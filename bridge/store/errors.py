"""Failures of the bridge's own infrastructure that say nothing about the work in hand.

``StoreUnavailable``: the state store cannot be reached now (connection refused or lost, a
timeout, SQLite busy beyond its timeout). A message that meets it goes to a delay tier without
using up its attempts (it is not at fault), a poll step backs off, and nothing is dead-lettered
or lost because a database restarted.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


class StoreUnavailable(Exception):
    """The store cannot be reached now; try again later."""


_SQLITE_UNAVAILABLE = ("database is locked", "unable to open", "disk i/o error")


def is_store_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means "cannot reach the store" rather than a bad statement."""
    if isinstance(exc, StoreUnavailable | OSError | TimeoutError):
        return True  # ConnectionError is an OSError
    if isinstance(exc, sqlite3.OperationalError):
        return any(s in str(exc).lower() for s in _SQLITE_UNAVAILABLE)
    try:
        import asyncpg
    except ImportError:
        return False
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return True  # e.g. a transaction's connection was cut under it
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError,
    )


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Re-raise a driver's "cannot reach the store" as :class:`StoreUnavailable`."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if is_store_unavailable(exc):
            raise StoreUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        raise
