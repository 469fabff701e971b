"""Failures of the bridge's own infrastructure that say nothing about the work in hand.

``StoreUnavailable``: the state store cannot be reached now (connection refused or lost, a
timeout, SQLite busy beyond its timeout). A message that meets it goes to a delay tier without
using up its attempts (it is not at fault), a poll step backs off, and nothing is dead-lettered
or lost because a database restarted.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType


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


class store_errors:  # lower case: used as a function, ``with store_errors():``
    """Re-raise a driver's "cannot reach the store" as :class:`StoreUnavailable`. A class,
    not a ``@contextmanager`` generator: it wraps every store call, and a generator's
    context manager costs several times as much to enter and leave."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, StoreUnavailable) or not isinstance(exc, Exception):
            return  # nothing raised, or raised as it is
        if is_store_unavailable(exc):
            raise StoreUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
