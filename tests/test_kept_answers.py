"""The console's costly pages kept as counted (``bridge.web.kept``): a minute fresh, then
shown as counted while counted again in the background, then counted before answering."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import bridge.daemon
import bridge.reports.performance
import bridge.web.console
from bridge.web.kept import KeptAnswers
from tests.conftest import bridge_config, running_bridge

T0 = datetime(2026, 12, 7, 4, tzinfo=UTC)


async def test_kept_for_a_minute_then_counted_again_meanwhile() -> None:
    kept: KeptAnswers[int] = KeptAnswers()
    counted: list[datetime] = []

    async def count(at: datetime) -> int:
        counted.append(at)
        return len(counted)

    assert await kept.get("q", T0, count) == (1, T0)
    assert await kept.get("q", T0 + timedelta(seconds=59), count) == (1, T0)
    assert len(counted) == 1
    # older than a minute: what was counted, while it is counted again in the background
    assert await kept.get("q", T0 + timedelta(minutes=2), count) == (1, T0)
    assert await kept.get("q", T0 + timedelta(minutes=2), count) == (1, T0)  # one counting
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(counted) == 2
    value, at = await kept.get("q", counted[1], count)
    assert (value, at) == (2, counted[1])
    # older than ten minutes: counted before answering
    later = counted[1] + timedelta(minutes=11)
    assert await kept.get("q", later, count) == (3, later)
    # another query is its own
    assert await kept.get("other", later, count) == (4, later)


async def test_at_most_size_queries_kept() -> None:
    kept: KeptAnswers[str] = KeptAnswers(size=3)

    async def count(at: datetime) -> str:
        return at.isoformat()

    for n in range(5):
        await kept.get(n, T0, count)
    assert list(kept.kept) == [2, 3, 4]


async def test_a_visit_awaits_the_counting_running_for_its_query() -> None:
    """Single flight: visits that find nothing kept while a counting of their query runs
    (another visit's, the background's, the warm-up's) await it instead of counting again."""
    kept: KeptAnswers[int] = KeptAnswers()
    counted: list[datetime] = []
    release = asyncio.Event()

    async def count(at: datetime) -> int:
        counted.append(at)
        await release.wait()
        return len(counted)

    first = asyncio.create_task(kept.get("q", T0, count))
    second = asyncio.create_task(kept.get("q", T0 + timedelta(seconds=1), count))
    await asyncio.sleep(0.01)
    assert counted == [T0]
    release.set()
    assert await first == (1, T0) and await second == (1, T0)
    # the warm-up's counting, awaited by a visit that comes while it runs
    release.clear()
    later = T0 + timedelta(minutes=30)
    warming = kept.warm("w", count)
    visit = asyncio.create_task(kept.get("w", later, count))
    await asyncio.sleep(0.01)
    assert len(counted) == 2
    release.set()
    value, at = await visit
    assert value == 2 and (value, at) == await warming
    # older than ten minutes while counted again: the running counting, awaited
    release.clear()
    stale = at + timedelta(minutes=5)
    assert await kept.get("w", stale, count) == (2, at)  # shown; counted in the background
    await asyncio.sleep(0.01)
    assert len(counted) == 3
    visit = asyncio.create_task(kept.get("w", at + timedelta(minutes=20), count))
    await asyncio.sleep(0.01)
    assert len(counted) == 3  # no second counting
    release.set()
    assert (await visit)[0] == 3


async def test_a_failed_counting_fails_its_visits_and_is_not_kept() -> None:
    kept: KeptAnswers[int] = KeptAnswers()

    async def count(at: datetime) -> int:
        raise RuntimeError("store away")

    visits = [asyncio.create_task(kept.get("q", T0, count)) for _ in range(2)]
    for visit in visits:
        try:
            await visit
        except RuntimeError:
            continue
        raise AssertionError("the visit should fail")
    assert not kept.kept and not kept.flights.running


async def test_a_started_console_warms_its_costly_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``http.warm_pages``: after start, in the background, the dashboard (30 days, as the
    console opens it), the inspection and the ranking's 12 months are counted once; their
    first visit is served from what was kept (counted before the visit was made)."""
    calls: dict[str, int] = {"report": 0, "inspection": 0, "ranking": 0}

    def spy(module: Any, name: str, what: str) -> None:
        real = getattr(module, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls[what] += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    spy(bridge.daemon, "department_reports_apart", "report")
    spy(bridge.web.console, "inspect_accounts", "inspection")
    spy(bridge.reports.performance, "_read_facts", "ranking")  # the months not kept, read
    html = resources.files("bridge.web.static").joinpath("console.html").read_text("utf-8")
    assert f'<option value="{bridge.daemon.DASHBOARD_PERIOD}" selected>' in html

    cfg = bridge_config(tmp_path, http={"warm_pages": True})
    async with running_bridge(cfg, ["http"], in_memory=True) as daemon:
        for _ in range(200):  # the warm-up, in the background after start
            if not any(t.get_name() == "warm-pages" for t in daemon._tasks):
                break
            await asyncio.sleep(0.05)
        assert calls == {"report": 1, "inspection": 1, "ranking": 1}
        base = f"http://127.0.0.1:{daemon.http_port}"
        auth = {"Authorization": "Bearer test-admin-token"}
        async with aiohttp.ClientSession(headers=auth) as http:
            asked = datetime.now(UTC)
            async with http.get(base + "/api/report?since=30d") as resp:
                report = await resp.json()
            async with http.get(base + "/api/inspection") as resp:
                inspection = await resp.json()
            async with http.get(base + "/api/ranking") as resp:
                ranking = await resp.json()
    assert calls == {"report": 1, "inspection": 1, "ranking": 1}  # the warm-up's alone
    assert datetime.fromisoformat(report["until"]) < asked
    assert datetime.fromisoformat(inspection["at"]) < asked
    assert len(ranking["months"]) == 12
    assert all(datetime.fromisoformat(m["as_of"]) < asked for m in ranking["months"])


async def test_warm_pages_off_counts_nothing_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("not counted")

    monkeypatch.setattr(bridge.daemon, "department_reports_apart", counted)
    monkeypatch.setattr(bridge.web.console, "rank_months_apart", counted)
    async with running_bridge(bridge_config(tmp_path), ["http"], in_memory=True) as daemon:
        await asyncio.sleep(0.2)
        assert not any(t.get_name() == "warm-pages" for t in daemon._tasks)
    assert calls == []


async def test_two_ranking_visits_while_it_is_counted_count_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranking's single flight: a visit that comes while the 12 months are being counted
    (and are not kept) awaits that counting."""
    reads: list[object] = []
    real = bridge.reports.performance._read_facts

    async def slow(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        await asyncio.sleep(0.3)
        return await real(*args, **kwargs)

    monkeypatch.setattr(bridge.reports.performance, "_read_facts", slow)
    async with running_bridge(bridge_config(tmp_path), ["http"], in_memory=True) as daemon:
        base = f"http://127.0.0.1:{daemon.http_port}"
        auth = {"Authorization": "Bearer test-admin-token"}
        async with aiohttp.ClientSession(headers=auth) as http:

            async def visit() -> Any:
                async with http.get(base + "/api/ranking") as resp:
                    assert resp.status == 200
                    return await resp.json()

            first, second = await asyncio.gather(visit(), visit())
    assert len(reads) == 1
    assert [m["as_of"] for m in first["months"]] == [m["as_of"] for m in second["months"]]
