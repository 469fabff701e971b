"""The console's costly pages kept as counted (``bridge.web.kept``): a minute fresh, then
shown as counted while counted again in the background, then counted before answering."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bridge.web.kept import KeptAnswers

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
