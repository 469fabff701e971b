"""The console's costly pages kept as counted (``bridge.web.kept``): a minute fresh, then
shown as counted while counted again in the background, then counted before answering; kept
in the store too (``kept_answers``), for the other processes and the next one to start."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import bridge.daemon
import bridge.reports.performance
import bridge.web.console
from bridge.inspect.inspection import AccountInspection
from bridge.reports.performance import DepartmentReport
from bridge.store import SqlStore
from bridge.web.kept import KeptAnswers, Shelf
from bridge.web.kept_pages import (
    decode_inspection,
    decode_report,
    encode_inspection,
    encode_report,
    inspection_shelf,
    report_shelf,
)
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
        count_calls(monkeypatch, calls, module, name, what)

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


# --------------------------------------------------------------------------- in the store


def int_shelf(store: SqlStore) -> Shelf[int]:
    def decode(data: Any) -> int:
        if not isinstance(data, int):
            raise TypeError("not a count")
        return data

    return Shelf(store, "test", lambda n: n, decode)


async def test_a_second_process_shows_the_first_ones_count_without_counting(
    store: SqlStore,
) -> None:
    first: KeptAnswers[int] = KeptAnswers(shelf=int_shelf(store))
    counted: list[datetime] = []

    async def count(at: datetime) -> int:
        counted.append(at)
        return 41 + len(counted)

    assert await first.get(("30d", None), T0, count) == (42, T0)
    # another process (or the next one), nothing in its memory: the store's, not counted
    second: KeptAnswers[int] = KeptAnswers(shelf=int_shelf(store))

    async def not_counted(at: datetime) -> int:
        raise AssertionError("counted")

    assert await second.get(("30d", None), T0 + timedelta(seconds=30), not_counted) == (42, T0)
    # older than a minute, younger than ten: shown at once, counted again in the background,
    # and that count written for the others
    third: KeptAnswers[int] = KeptAnswers(shelf=int_shelf(store))
    at = T0 + timedelta(minutes=5)
    assert await third.get(("30d", None), at, count) == (42, T0)
    for _ in range(50):
        if len(counted) == 2 and not third.flights.running:
            break
        await asyncio.sleep(0.01)
    assert len(counted) == 2
    row = await store.kept_answer(int_shelf(store).key(("30d", None)))
    assert row is not None and json.loads(row[1]) == 43
    assert datetime.fromisoformat(row[0]) == counted[1]
    # an older count does not replace a younger one (two processes counting at once)
    await int_shelf(store).write(("30d", None), T0, 7)
    assert await store.kept_answer(int_shelf(store).key(("30d", None))) == row
    # beyond ten minutes: counted before answering
    fourth: KeptAnswers[int] = KeptAnswers(shelf=int_shelf(store))
    later = counted[1] + timedelta(minutes=11)
    assert await fourth.get(("30d", None), later, count) == (44, later)
    # another query is its own
    fifth: KeptAnswers[int] = KeptAnswers(shelf=int_shelf(store))
    assert await fifth.get(("7d", None), later, count) == (45, later)


async def test_a_background_count_takes_another_processes_fresh_count(store: SqlStore) -> None:
    """A process about to count again in the background finds a count of another process
    younger than a minute in the store: it takes that one instead of counting."""
    mine: KeptAnswers[int] = KeptAnswers(shelf=int_shelf(store))
    counted: list[datetime] = []

    async def count(at: datetime) -> int:
        counted.append(at)
        return len(counted)

    assert await mine.get("q", T0, count) == (1, T0)
    recent = datetime.now(UTC) - timedelta(seconds=5)
    await int_shelf(store).write("q", recent, 99)  # another process's, just now
    await mine.warm("q", count)
    assert counted == [T0]
    assert mine.kept["q"] == (recent, 99)


@pytest.mark.parametrize(
    ("counted_at", "body"),
    [
        ("not a time", "1"),
        ("2026-12-07T04:00:00", "1"),  # no time zone
        (None, "{not json"),
        (None, '"a string"'),  # an answer of another shape
    ],
)
async def test_an_unreadable_row_is_ignored_and_counted_again(
    store: SqlStore, counted_at: str | None, body: str
) -> None:
    key = int_shelf(store).key("q")
    await store.db.execute(
        "INSERT INTO kept_answers (key, counted_at, body) VALUES (?, ?, ?)",
        (key, counted_at or T0.isoformat(), body),
    )
    kept: KeptAnswers[int] = KeptAnswers(shelf=int_shelf(store))

    async def count(at: datetime) -> int:
        return 5

    assert await kept.get("q", T0 + timedelta(seconds=1), count) == (5, T0 + timedelta(seconds=1))


async def test_an_unreachable_store_makes_the_answer_counted() -> None:
    class Away:
        async def kept_answer(self, key: str) -> tuple[str, str] | None:
            raise ConnectionError("store away")

        async def keep_answer(self, key: str, counted_at: datetime, body: str) -> None:
            raise ConnectionError("store away")

    kept: KeptAnswers[int] = KeptAnswers(shelf=Shelf(Away(), "test", lambda n: n, int))

    async def count(at: datetime) -> int:
        return 3

    assert await kept.get("q", T0, count) == (3, T0)
    assert kept.kept["q"] == (T0, 3)


def test_the_kept_pages_read_back_exactly() -> None:
    """The dashboard's and the inspection's answers, through JSON text and back: equal,
    every field (floats, None, lists, the daily series) as it was."""
    report = DepartmentReport(
        department="urban",
        name="市城管委",
        inquiries=7,
        appended=1,
        tickets=5,
        resolved=3,
        resolved_in_time=2,
        open_overdue=1,
        open_at_risk=2,
        replies_posted=4,
        awaiting_approval=6,
        needs_reconciliation=1,
        unanswered_overdue=2,
        zombie_accounts=["weibo:某账号"],
        median_first_reply_s=0.1 + 0.2,
        median_resolution_s=None,
        daily=[{"day": "2026-12-06", "received": 3, "resolved": 1}],
    )
    answer = (T0 - timedelta(days=30), [report, DepartmentReport("health", "卫健委")], {"noise": 4})
    back = decode_report(json.loads(json.dumps(encode_report(answer))))
    assert back == answer
    assert back[1][0].median_first_reply_s == 0.1 + 0.2
    inspection = AccountInspection(
        account="weibo:某账号",
        platform="weibo",
        department="urban",
        last_post="2026-12-01T02:03:04.000005+00:00",
        last_post_source="timeline",
        days_since_post=6.083333333333333,
        timeline_error=None,
        last_reply=None,
        received=9,
        answered=8,
        awaiting_approval=1,
        waiting_to_post=0,
        unanswered=1,
        answer_rate=8 / 9,
        median_first_response_s=1234.5,
        flags=["dormant", "zombie"],
    )
    answer2 = (T0 - timedelta(days=30), [inspection, AccountInspection("a:b", "a", "urban")])
    assert decode_inspection(json.loads(json.dumps(encode_inspection(answer2)))) == answer2
    # a row of another shape: refused (then ignored by the shelf)
    data = encode_inspection(answer2)
    data["accounts"][0]["extra"] = 1
    with pytest.raises(ValueError):
        decode_inspection(data)
    del data["accounts"][0]["extra"], data["accounts"][0]["flags"]
    with pytest.raises(ValueError):
        decode_inspection(data)


async def test_a_restarted_bridge_shows_its_predecessors_pages_without_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard and the inspection counted by one daemon are shown by the next one on
    the same store, as they were counted ("数据截至" the first one's time), without counting;
    an unreadable row is counted again, not a 500."""
    calls: dict[str, int] = {"report": 0, "inspection": 0}

    def spy(module: Any, name: str, what: str) -> None:
        count_calls(monkeypatch, calls, module, name, what)

    spy(bridge.daemon, "department_reports_apart", "report")
    spy(bridge.web.console, "inspect_accounts", "inspection")
    cfg = bridge_config(tmp_path)
    auth = {"Authorization": "Bearer test-admin-token"}

    async def visit() -> tuple[Any, Any]:
        async with running_bridge(cfg, ["http"], in_memory=True) as daemon:
            base = f"http://127.0.0.1:{daemon.http_port}"
            async with aiohttp.ClientSession(headers=auth) as http:
                async with http.get(base + "/api/report?since=30d") as resp:
                    assert resp.status == 200
                    report = await resp.json()
                async with http.get(base + "/api/inspection?offline=1") as resp:
                    assert resp.status == 200
                    inspection = await resp.json()
        return report, inspection

    first = await visit()
    assert calls == {"report": 1, "inspection": 1}
    second = await visit()
    assert calls == {"report": 1, "inspection": 1}  # the predecessor's, not counted again
    assert second == first
    # damaged rows: ignored, counted again
    async with running_bridge(cfg, ["http"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        assert isinstance(store, SqlStore)
        for shelf in (report_shelf(store), inspection_shelf(store)):
            await store.db.execute(
                "UPDATE kept_answers SET body = ? WHERE key LIKE ?", ('{"x": 1}', shelf.name + " %")
            )
    third = await visit()
    assert calls == {"report": 2, "inspection": 2}
    assert third[0]["until"] > first[0]["until"] and third[1]["at"] > first[1]["at"]
    # older than ten minutes: counted before answering
    async with running_bridge(cfg, ["http"], in_memory=True) as daemon:
        assert daemon.ctx is not None and isinstance(daemon.ctx.store, SqlStore)
        old = (datetime.now(UTC) - timedelta(minutes=11)).isoformat(timespec="microseconds")
        await daemon.ctx.store.db.execute("UPDATE kept_answers SET counted_at = ?", (old,))
    fourth = await visit()
    assert calls == {"report": 3, "inspection": 3}
    assert fourth[0]["until"] > third[0]["until"] and fourth[1]["at"] > third[1]["at"]


def count_calls(
    monkeypatch: pytest.MonkeyPatch, calls: dict[str, int], module: Any, name: str, what: str
) -> None:
    """``module.name`` (a coroutine function) replaced by one that counts its calls in
    ``calls[what]`` and then does what it did."""
    real = getattr(module, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[what] += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
