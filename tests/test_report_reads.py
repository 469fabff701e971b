"""The console's report reads on SQLite run on a read-only connection of their own, in a
thread (``SqliteDatabase.fetchall_apart``): the event loop keeps serving while a long count
runs, what was committed is read, and inside a transaction the transaction's own connection
is used."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.store import open_store
from bridge.store.reports import ReportsStore

# about a second of stepping on this machine: long enough for the loop to be seen turning
LONG_COUNT = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
    " SELECT COUNT(*) AS c FROM n"
)


async def test_a_long_report_read_leaves_the_loop_free(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        reports = ReportsStore(store.db)
        turns = 0
        done = asyncio.Event()

        async def turning() -> None:
            nonlocal turns
            while not done.is_set():
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(turning())
        await asyncio.sleep(0)
        before = turns
        rows = await reports._read(LONG_COUNT)
        during = turns - before
        done.set()
        await ticker
        assert rows == [{"c": 3000000}]
        # on the loop's own connection the count would hold the loop: not one turn between
        assert during > 1
    finally:
        await store.close()


async def test_report_reads_see_what_is_committed_and_a_transaction_its_own(
    tmp_path: Path,
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        await store.db.execute("CREATE TABLE t (v INTEGER)")
        await store.db.execute("INSERT INTO t VALUES (1)")
        assert await ReportsStore(store.db)._read("SELECT v FROM t") == [{"v": 1}]
        async with store.db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (2)")
            mine = await ReportsStore(tx)._read("SELECT v FROM t ORDER BY v")
            others = await ReportsStore(store.db)._read("SELECT v FROM t ORDER BY v")
            assert mine == [{"v": 1}, {"v": 2}]  # the transaction's own connection
            assert others == [{"v": 1}]  # the reader sees only what is committed
        assert await ReportsStore(store.db)._read("SELECT v FROM t ORDER BY v") == [
            {"v": 1},
            {"v": 2},
        ]
    finally:
        await store.close()


async def test_a_report_read_naming_a_column_twice_keeps_the_first(tmp_path: Path) -> None:
    """As on the loop's connection (``dict(row)``): a join's ``*`` may name a column twice."""
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        rows = await ReportsStore(store.db)._read("SELECT 1 AS v, 2 AS v")
        assert rows == await store.db.fetchall("SELECT 1 AS v, 2 AS v") == [{"v": 1}]
    finally:
        await store.close()
