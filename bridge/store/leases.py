"""Leases that let exactly one process poll each named thing, or create one ticket, however
many processes run, on the engine the store has (``bridge.runtime.polling`` and
``bridge.ticketing.role`` explain their use):

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on one dedicated
  connection per process. When the holder dies its connection closes and PostgreSQL releases the
  lock at once; a holder that vanishes silently (a machine lost, a cable cut) is found by TCP
  keepalives on both sides within 11 seconds (``PG_KEEPALIVE``: idle 5 s, then 3 probes
  2 s apart).
- SQLite: ``flock`` on one file per lease beside the database (the kernel releases it when the
  holding process dies, whatever the cause). An in-memory database cannot be shared, so its
  leases are in-process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Protocol

import structlog

from bridge.store.errors import StoreUnavailable

log = structlog.get_logger("govbridge.polling")

# Advisory-lock namespace (the two-int form keeps these apart from the store's one-int
# transaction locks): "gb" in ASCII.
PG_LOCK_NAMESPACE = 0x6762
# Leases named "create:<reference>" (a ticket create in flight, bridge/ticketing/role.py) have
# their own namespace, "gc": millions of names over the years, hashed to 32 bits, never share
# a key with a poll lease (a poller holds its lease for good).
PG_CREATE_NAMESPACE = 0x6763
# Leases named "owner:<outbox owner>" (a process's liveness, held for its life and named on
# every reply it claims, bridge/reply/outbox.py): their own namespace, "go".
PG_OWNER_NAMESPACE = 0x676F


def pg_namespace(name: str) -> int:
    if name.startswith("create:"):
        return PG_CREATE_NAMESPACE
    if name.startswith("owner:"):
        return PG_OWNER_NAMESPACE
    return PG_LOCK_NAMESPACE


# Keepalive settings on the lease connection, both ends: idle 5 s, then 3 probes 2 s apart.
PG_KEEPALIVE = {"idle": 5, "interval": 2, "count": 3}


class Leases(Protocol):
    """Exclusive, process-crash-safe rights to poll one named thing."""

    async def try_acquire(self, name: str) -> bool:
        """Take ``name`` if nobody holds it (True also when this process already does)."""
        ...

    async def still_held(self, name: str) -> bool:
        """Whether this process still holds ``name`` (False after a lost connection)."""
        ...

    async def release(self, name: str) -> None: ...

    async def close(self) -> None: ...


class LocalLeases:
    """In-process leases: for an in-memory store, which no other process can share."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    async def try_acquire(self, name: str) -> bool:
        if name in self._held:
            return False
        self._held.add(name)
        return True

    async def still_held(self, name: str) -> bool:
        return name in self._held

    async def release(self, name: str) -> None:
        self._held.discard(name)

    async def close(self) -> None:
        self._held.clear()


class FileLeases:
    """``flock`` on ``<directory>/<name>.lock``: the kernel releases a dead holder's lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: dict[str, int] = {}

    def _path(self, name: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        return self.directory / f"{safe}-{digest}.lock"

    async def try_acquire(self, name: str) -> bool:
        if name in self._fds:
            return False
        path = self._path(name)
        made = False
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                if made:
                    raise
                # the directory, made when missing (first use, or removed since) rather than
                # asked for before every create
                self.directory.mkdir(parents=True, exist_ok=True)
                made = True
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            # A releaser removes the file while it holds the lock: the file locked here may
            # have been removed meanwhile (then it locks nothing anyone else can see): again.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fds[name] = fd
                return True
            os.close(fd)

    async def still_held(self, name: str) -> bool:
        return name in self._fds

    async def release(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            # Removed while still locked (a create lease per ticket would otherwise leave a
            # file per ticket behind), then closed: closing the descriptor drops the flock.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(name))
            os.close(fd)

    async def close(self) -> None:
        for name in list(self._fds):
            await self.release(name)


class PostgresLeases:
    """Session advisory locks on one dedicated connection (not the store's pool: a pooled
    connection goes back to the pool and its session locks with it)."""

    def __init__(self, dsn: str, timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._conn: Any = None
        self._held: set[str] = set()
        self._lock = asyncio.Lock()  # one statement at a time on the connection

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        if self._conn is not None:
            # The session is gone and every lock it held with it.
            if self._held:
                log.warning("lease connection lost; leases dropped", leases=sorted(self._held))
            self._held.clear()
            with contextlib.suppress(Exception):
                self._conn.terminate()
            self._conn = None
        import asyncpg

        k = PG_KEEPALIVE
        self._conn = await asyncpg.connect(
            self.dsn,
            timeout=self.timeout,
            server_settings={
                "application_name": "govbridge-leases",
                "tcp_keepalives_idle": str(k["idle"]),
                "tcp_keepalives_interval": str(k["interval"]),
                "tcp_keepalives_count": str(k["count"]),
            },
        )
        return self._conn

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self._lock:
            try:
                conn = await self._connection()
                return await asyncio.wait_for(conn.fetchval(sql, *args), self.timeout)
            except Exception as exc:
                # Whatever went wrong on the lease connection (cut, terminated, a protocol
                # error while a termination arrives), it can no longer be trusted to hold
                # anything: drop it (the server releases its locks with it) and say so.
                self._drop()
                raise StoreUnavailable(f"lease connection: {type(exc).__name__}") from exc

    def _drop(self) -> None:
        if self._held:
            log.warning("lease connection lost; leases dropped", leases=sorted(self._held))
        self._held.clear()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
        self._conn = None

    async def try_acquire(self, name: str) -> bool:
        if name in self._held:
            return False
        got = await self._fetchval(
            "SELECT pg_try_advisory_lock($1::int, hashtext($2))", pg_namespace(name), name
        )
        if got:
            self._held.add(name)
        return bool(got)

    async def still_held(self, name: str) -> bool:
        if name not in self._held:
            return False
        try:
            await self._fetchval("SELECT 1")
        except StoreUnavailable:
            return False
        return name in self._held

    async def release(self, name: str) -> None:
        if name not in self._held:
            return
        self._held.discard(name)
        with contextlib.suppress(StoreUnavailable):
            await self._fetchval(
                "SELECT pg_advisory_unlock($1::int, hashtext($2))", pg_namespace(name), name
            )

    async def close(self) -> None:
        self._held.clear()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), self.timeout)
            self._conn = None


def leases_for(store_url: str) -> Leases:
    """The leases that match the store: advisory locks for PostgreSQL, flock beside a SQLite
    file, in-process for an in-memory database."""
    if store_url.startswith(("postgresql://", "postgres://")):
        return PostgresLeases(store_url)
    path = store_url.removeprefix("sqlite://")
    path = path[1:] if path.startswith("/") and not path.startswith("//") else path
    if not path or path == ":memory:":
        return LocalLeases()
    return FileLeases(Path(path + ".leases"))
