"""A PostgreSQL database of a test's own, dropped afterwards; the test skips when PostgreSQL
is not reachable (``GOVBRIDGE_TEST_PG`` names the admin database)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest

PG_ADMIN = os.environ.get("GOVBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def pg_available() -> bool:
    try:
        import asyncpg

        conn = await asyncio.wait_for(asyncpg.connect(PG_ADMIN), 3)
        await conn.close()
        return True
    except Exception:
        return False


@contextlib.asynccontextmanager
async def pg_database(prefix: str = "gbtest") -> AsyncIterator[str]:
    """Creates a database named ``<prefix>_<random>`` and yields its URL."""
    if not await pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
