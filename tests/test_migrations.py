"""Migrations under a lock (issue 10, must-show 7): processes starting together on a fresh
PostgreSQL database all start, and the schema is made once, whole."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.store import MIGRATIONS, open_store
from bridge.store.drivers import sqlite_statements
from tests.conftest import AMQP_URL, bridge_config, config_toml, delete_topology
from tests.pg import pg_database
from tests.test_cli_ops import cli_env

PROCESSES = 8

# Each process opens (and so migrates) the store, then says which version it found.
OPEN_AND_REPORT = """
import asyncio, sys
from bridge.store import open_store

async def main() -> None:
    store = await open_store(sys.argv[1])
    rows = await store.db.fetchall("SELECT version FROM schema_version")
    await store.close()
    print("version", rows[0]["version"], len(rows))

asyncio.run(main())
"""


@pytest.fixture
async def fresh_pg() -> AsyncIterator[str]:
    async with pg_database("gbtest_mig") as url:
        yield url


async def run_all(*commands: list[str]) -> list[tuple[int, str]]:
    procs = [
        await asyncio.create_subprocess_exec(
            *cmd,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for cmd in commands
    ]
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 180)
    return [(p.returncode or 0, out.decode()) for p, (out, _) in zip(procs, outs, strict=True)]


async def test_eight_processes_migrate_a_fresh_database_at_once(fresh_pg: str) -> None:
    results = await run_all(
        *([sys.executable, "-c", OPEN_AND_REPORT, fresh_pg] for _ in range(PROCESSES))
    )
    for code, out in results:
        assert code == 0, out
        assert out.strip().endswith(f"version {len(MIGRATIONS)} 1"), out
    store = await open_store(fresh_pg)
    try:
        assert await store.db.fetchall("SELECT version FROM schema_version") == [
            {"version": len(MIGRATIONS)}
        ]
    finally:
        await store.close()


async def test_eight_daemons_start_at_once_on_a_fresh_database(
    fresh_pg: str, tmp_path: Path
) -> None:
    """Must-show 7 as an operator sees it: eight `govbridge run` processes on one fresh
    database all reach 'started' (the sla role: it opens the store and consumes, and keeps the
    eight light enough for a 2-core CI machine)."""
    cfg = bridge_config(tmp_path, store={"url": fresh_pg}, broker={"url": AMQP_URL})
    path = tmp_path / "pg.toml"
    path.write_text(config_toml(cfg))
    roles = "sla"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.cli",
            "run",
            "-c",
            str(path),
            "--roles",
            roles,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    try:

        async def started(proc: asyncio.subprocess.Process) -> str:
            assert proc.stderr is not None
            seen = []
            async for line in proc.stderr:
                seen.append(line.decode(errors="replace"))
                if "govbridge started" in seen[-1]:
                    return "started"
            return "exited: " + "".join(seen[-20:])

        outcomes = await asyncio.wait_for(asyncio.gather(*(started(p) for p in procs)), 180)
        assert outcomes == ["started"] * PROCESSES, outcomes
        assert all(p.returncode is None for p in procs)
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
        await asyncio.gather(*(asyncio.wait_for(p.wait(), 60) for p in procs))
        await delete_topology(cfg.broker)
    assert [p.returncode for p in procs] == [0] * PROCESSES


def test_sqlite_scripts_are_cut_into_whole_statements() -> None:
    assert sqlite_statements("CREATE TABLE a (x TEXT); CREATE TABLE b (y TEXT);") == [
        "CREATE TABLE a (x TEXT);",
        "CREATE TABLE b (y TEXT);",
    ]
    script = """
    CREATE TABLE a (x TEXT DEFAULT 'semi;colon');
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        UPDATE a SET x = 'y;z';
    END;
    CREATE INDEX a_x ON a (x);
    """
    statements = sqlite_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    sqlite_scripts = [m if isinstance(m, str) else m["sqlite"] for m in MIGRATIONS]
    assert sum(len(sqlite_statements(m)) for m in sqlite_scripts) > len(MIGRATIONS)
    # the audit trail's triggers are cut whole
    assert any(
        st.startswith("CREATE TRIGGER") and st.endswith("END;")
        for m in sqlite_scripts
        for st in sqlite_statements(m)
    )


async def test_a_failed_migration_leaves_no_half_schema(tmp_path: Path) -> None:
    """All or nothing: a migration that fails part-way leaves neither its tables nor a
    bumped version, so the next start runs it again from the beginning."""
    import bridge.store.migrations as store_module

    url = f"sqlite:///{tmp_path}/half.db"
    broken: list[str | dict[str, str]] = [
        *MIGRATIONS,
        "CREATE TABLE extra_ok (x TEXT); CREATE TABLE broken (",
    ]
    original = store_module.MIGRATIONS
    store_module.MIGRATIONS = broken
    try:
        with pytest.raises(sqlite3.OperationalError):
            await open_store(url)
    finally:
        store_module.MIGRATIONS = original
    store = await open_store(url)
    try:
        tables = await store.db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'extra_ok'"
        )
        assert tables == []
        assert await store.db.fetchall("SELECT version FROM schema_version") == [
            {"version": len(MIGRATIONS)}
        ]
    finally:
        await store.close()
