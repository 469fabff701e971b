"""bridge.runtime.polling: one poller per account / ticket system across processes, fenced cursors.

Leases on PostgreSQL (advisory locks on a dedicated connection) and on SQLite (flock), held
across real processes where it matters (a SIGKILLed holder), and the PollLoop's hand-over.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.base import AuthError, RateLimited, TransientError
from bridge.runtime.polling import PollLoop
from bridge.store import SqlStore, open_store
from bridge.store.errors import StoreUnavailable, is_store_unavailable
from bridge.store.leases import FileLeases, Leases, LocalLeases, PostgresLeases, leases_for
from tests.conftest import eventually
from tests.pg import pg_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database("gbpoll") as url:
        yield url


# ------------------------------------------------------------------ leases


async def test_leases_for_picks_the_engine(tmp_path: Path) -> None:
    assert isinstance(leases_for("postgresql://u@h/db"), PostgresLeases)
    assert isinstance(leases_for(f"sqlite:///{tmp_path}/x.db"), FileLeases)
    assert isinstance(leases_for("sqlite://"), LocalLeases)
    assert isinstance(leases_for("sqlite:///:memory:"), LocalLeases)


async def test_a_lease_is_exclusive_until_released(store_url: str) -> None:
    a, b = leases_for(store_url), leases_for(store_url)
    try:
        assert await a.try_acquire("source:weibo:x")
        assert not await b.try_acquire("source:weibo:x")
        assert not await a.try_acquire("source:weibo:x")  # not re-entrant: one loop per name
        assert await b.try_acquire("tickets:transport")  # other names are free
        assert await a.still_held("source:weibo:x")
        assert not await b.still_held("source:weibo:x")
        await a.release("source:weibo:x")
        assert not await a.still_held("source:weibo:x")
        assert await b.try_acquire("source:weibo:x")
    finally:
        await a.close()
        await b.close()


HOLDER = """
import asyncio, sys
from bridge.store.leases import leases_for

async def main():
    leases = leases_for(sys.argv[1])
    assert await leases.try_acquire("source:weibo:x")
    print("held", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_sigkilled_holders_lease_is_handed_over(store_url: str) -> None:
    """The holder is another process, killed with SIGKILL: the lease comes free without it."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, store_url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 60)
        assert line.strip() == b"held"
        mine = leases_for(store_url)
        assert not await mine.try_acquire("source:weibo:x")
        os.kill(holder.pid, signal.SIGKILL)
        await holder.wait()

        async def taken() -> bool:
            return await mine.try_acquire("source:weibo:x")

        await eventually(taken, timeout=30)
        await mine.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_postgres_lease_lost_with_its_connection(pg_url: str) -> None:
    """A holder whose session is gone (PostgreSQL restarted, connection cut) knows it no longer
    holds, and another process can take the lease; the old holder can take it again later."""
    import asyncpg

    a, b = PostgresLeases(pg_url), PostgresLeases(pg_url)
    try:
        assert await a.try_acquire("tickets:transport")
        admin = await asyncpg.connect(pg_url)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'govbridge-leases' AND datname = current_database()"
        )
        await admin.close()
        assert killed == 1

        async def a_knows() -> bool:  # the termination reaches the backend asynchronously
            return not await a.still_held("tickets:transport")

        await eventually(a_knows)
        assert await b.try_acquire("tickets:transport")
        await b.release("tickets:transport")
        assert await a.try_acquire("tickets:transport")  # reconnects
    finally:
        await a.close()
        await b.close()


async def test_unreachable_postgres_is_store_unavailable() -> None:
    leases = PostgresLeases("postgresql://postgres@127.0.0.1:1/nothing", timeout=2)
    with pytest.raises(StoreUnavailable):
        await leases.try_acquire("x")
    assert not await leases.still_held("x")
    await leases.close()


def test_driver_errors_classified() -> None:
    import sqlite3

    assert is_store_unavailable(ConnectionRefusedError())
    assert is_store_unavailable(sqlite3.OperationalError("database is locked"))
    assert not is_store_unavailable(sqlite3.OperationalError("no such table: x"))
    assert not is_store_unavailable(ValueError("bad"))
    import asyncpg

    closed = "cannot call Transaction.__aexit__(): the underlying connection is closed"
    assert is_store_unavailable(asyncpg.InterfaceError(closed))
    assert is_store_unavailable(asyncpg.ConnectionDoesNotExistError("closed mid-operation"))
    assert not is_store_unavailable(asyncpg.InterfaceError("another operation is in progress"))


# ------------------------------------------------------------------ fenced cursors


async def test_cursor_compare_and_set(store_url: str) -> None:
    store: SqlStore = await open_store(store_url)
    try:
        name = "source:weibo:x"
        assert await store.set_cursor(name, "10", expected=None)  # first write creates it
        assert not await store.set_cursor(name, "11", expected=None)  # someone wrote first
        assert await store.set_cursor(name, "20", expected="10")
        # A stale poller that read "10" long ago cannot move the cursor back.
        assert not await store.set_cursor(name, "15", expected="10")
        assert await store.get_cursor(name) == "20"
        assert await store.set_cursor(name, None, expected="20")
        assert await store.set_cursor(name, "30", expected=None)
        assert await store.get_cursor(name) == "30"
    finally:
        await store.close()


# ------------------------------------------------------------------ the loop


def loop(
    name: str, leases: Leases, stop: asyncio.Event, counts: list[str], tag: str, **kw: object
) -> PollLoop:
    async def step() -> bool:
        counts.append(tag)
        await asyncio.sleep(0)
        return False

    return PollLoop(
        name=name,
        step=step,
        interval=0.01,
        stop=stop,
        leases=leases,
        acquire_every=0.02,
        **kw,  # type: ignore[arg-type]
    )


async def test_only_the_holder_polls_and_a_stopped_holder_hands_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    steps: list[str] = []
    la, lb = leases_for(url), leases_for(url)
    task_a = asyncio.create_task(loop("source:weibo:x", la, stop_a, steps, "a").run())

    async def a_polled() -> bool:
        return steps.count("a") >= 3

    await eventually(a_polled)
    task_b = asyncio.create_task(loop("source:weibo:x", lb, stop_b, steps, "b").run())
    await eventually(lambda: _ready(steps.count("a") >= 20))
    assert "b" not in steps  # b waits for the lease the whole time a holds it
    stop_a.set()
    await task_a
    await eventually(lambda: _ready(steps.count("b") >= 3))
    stop_b.set()
    await task_b
    first_b = steps.index("b")
    assert set(steps[:first_b]) == {"a"} and set(steps[first_b:]) == {"b"}
    await la.close()
    await lb.close()


async def _ready(value: bool) -> bool:
    return value


async def test_loop_errors_never_end_it() -> None:
    """Rate limits wait for their window, auth failures go to the owner, transient failures
    (platform, store) back off and retry; the loop keeps going."""
    stop = asyncio.Event()
    outcomes: list[BaseException | None] = [
        RateLimited("slow down", retry_after=timedelta(seconds=0.01)),
        AuthError("token expired"),
        TransientError("503"),
        StoreUnavailable("ConnectionRefusedError"),
        ValueError("a bug"),
        None,
    ]
    seen: list[str] = []
    auth: list[str] = []
    limited: list[int] = []

    async def step() -> bool:
        exc = outcomes.pop(0) if outcomes else None
        seen.append(type(exc).__name__)
        if exc is not None:
            raise exc
        stop.set()
        return False

    async def on_auth(exc: AuthError) -> float:
        auth.append(exc.reason)
        return 0.0

    poll = PollLoop(
        name="source:weibo:x",
        step=step,
        interval=0.01,
        stop=stop,
        leases=LocalLeases(),
        on_auth_error=on_auth,
        on_rate_limited=lambda: limited.append(1),
        min_backoff=0.01,
        max_backoff=0.02,
    )
    await asyncio.wait_for(poll.run(), 30)
    assert seen == [
        "RateLimited",
        "AuthError",
        "TransientError",
        "StoreUnavailable",
        "ValueError",
        "NoneType",
    ]
    assert auth == ["token expired"] and limited == [1]
    assert poll.steps == 1 and not poll.holding


async def test_a_process_that_cannot_publish_hands_the_poll_over() -> None:
    """A holder whose broker connection stays down lets the lease go after
    ``hand_over_after`` so a process that can publish takes over; it does not take the lease
    back while it steps aside."""
    from bridge.runtime.broker import PublishError

    leases = LocalLeases()  # shared: two "processes" competing for one name
    stop = asyncio.Event()
    steps: list[str] = []

    async def cut_off() -> bool:
        steps.append("a")
        raise PublishError("broker connection lost")

    async def healthy() -> bool:
        steps.append("b")
        return False

    a = PollLoop(
        name="source:weibo:x", step=cut_off, interval=0.01, stop=stop, leases=leases,
        acquire_every=0.01, min_backoff=0.01, max_backoff=0.01,
        hand_over_after=0.1, step_aside=60.0,
    )  # fmt: skip
    b = PollLoop(
        name="source:weibo:x", step=healthy, interval=0.01, stop=stop, leases=leases,
        acquire_every=0.01,
    )  # fmt: skip
    task_a = asyncio.create_task(a.run())

    async def a_failing() -> bool:
        return steps.count("a") >= 2

    await eventually(a_failing)
    task_b = asyncio.create_task(b.run())

    async def b_took_over() -> bool:
        return steps.count("b") >= 5

    await eventually(b_took_over, timeout=30)
    stop.set()
    await asyncio.gather(task_a, task_b)
    first_b = steps.index("b")
    assert set(steps[:first_b]) == {"a"} and set(steps[first_b:]) == {"b"}
