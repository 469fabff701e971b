"""The contract every source adapter must honour, run against each ``harness_*.py`` found here.

Harness modules are discovered by file name, so a new platform joins the suite by adding its
harness; a harness that fails to import shows up as a failing test, not as a silent skip.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.base import AuthError, FindsOwnReplies, RateLimited, Source
from schemas.config import AccountConfig
from schemas.messages import Inquiry, inquiry_id_for
from tests.contract.harness import SourceHarness

HERE = Path(__file__).parent
_MEMBERS = sorted(
    n for n, v in vars(SourceHarness).items() if callable(v) and not n.startswith("_")
)
MAX_FETCH_CALLS = 5_000


class _Broken:
    """Stands in for a harness module that could not be imported."""

    def __init__(self, module: str, error: BaseException) -> None:
        self.module = module
        self.error = error


def _discover() -> list[Any]:
    found: list[Any] = []
    for path in sorted(HERE.glob("harness_*.py")):
        module = f"{__package__ or 'tests.contract'}.{path.stem}"
        try:
            mod = importlib.import_module(module)
        except Exception as e:
            found.append(pytest.param(_Broken(module, e), id=path.stem))
            continue
        cls = getattr(mod, "HARNESS", None)
        if cls is None or not all(callable(getattr(cls, m, None)) for m in _MEMBERS):
            continue  # a ticket-system harness, or a helper module
        found.append(pytest.param(cls, id=str(getattr(cls, "name", path.stem))))
    return found


HARNESSES = _discover()


@pytest.fixture(params=HARNESSES)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[SourceHarness]:
    cls = request.param
    if isinstance(cls, _Broken):
        pytest.fail(f"harness module {cls.module} does not import: {cls.error!r}")
    h: SourceHarness = cls()
    async with h.running() as running:
        yield running


async def drain(
    harness: SourceHarness, cursor: str | None, *, restart_every: int = 0
) -> tuple[list[Inquiry], str | None, int]:
    """Fetch until ``more`` is false; with ``restart_every`` a fresh adapter (a restarted
    process) continues from the stored cursor every that many calls."""
    source = harness.adapter()
    items: list[Inquiry] = []
    calls = 0
    while True:
        result = await source.fetch(cursor)
        calls += 1
        items.extend(result.items)
        cursor = result.cursor
        if not result.more:
            return items, cursor, calls
        assert calls < MAX_FETCH_CALLS, "fetch keeps saying more=True"
        if restart_every and calls % restart_every == 0:
            source = harness.adapter()


def ids_of(items: list[Inquiry]) -> list[str]:
    return [i.external_id for i in items]


def test_at_least_one_harness_found() -> None:
    assert HARNESSES, "no tests/contract/harness_*.py defines a source HARNESS"


async def test_adapter_shape(harness: SourceHarness) -> None:
    source = harness.adapter()
    assert isinstance(source, Source)
    assert issubclass(type(source).Config, AccountConfig)
    assert source.capabilities.max_reply_chars > 0


async def test_fetch_normalises_new_items(harness: SourceHarness) -> None:
    first = await harness.add_citizen_items(5)
    items, cursor, _ = await drain(harness, None)
    assert sorted(ids_of(items)) == sorted(first)
    source = harness.adapter()
    for item in items:
        assert item.platform == type(source).name
        assert item.inquiry_id == inquiry_id_for(
            item.platform, item.account, item.kind, item.external_id
        )
        assert item.author.id and item.author.handle
        assert not item.author.is_official
        assert item.text
        assert item.thread.root_id
        assert item.created_at.tzinfo is not None

    # From the stored cursor: only what is new, then nothing.
    second = await harness.add_citizen_items(2)
    items, cursor, _ = await drain(harness, cursor)
    assert sorted(ids_of(items)) == sorted(second)
    items, _, _ = await drain(harness, cursor)
    assert items == []


async def test_drain_backlog_without_gap_or_duplicate(harness: SourceHarness) -> None:
    expected = await harness.add_citizen_items(harness.backlog)
    got, cursor, calls = await drain(harness, None, restart_every=3)
    ids = ids_of(got)
    assert calls > 3, f"a backlog of {harness.backlog} items must take several pages"
    assert len(ids) == len(set(ids)), "duplicates while draining"
    assert sorted(ids) == sorted(expected), "gap while draining"
    again, _, _ = await drain(harness, cursor)
    assert again == []


async def test_reply_is_posted_in_thread(harness: SourceHarness) -> None:
    [ext] = await harness.add_citizen_items(1)
    _, cursor, _ = await drain(harness, None)
    text = "您好，您反映的问题已受理，工单号GB-0001，我们将尽快答复。"
    req = await harness.reply_request_for(ext, "reply-1", text)
    posted = await harness.adapter().post_reply(req)
    assert posted.outcome == "posted"
    assert posted.external_ids
    replies = [r for r in await harness.posted_replies() if text in r["text"]]
    assert len(replies) == 1
    # The bridge's own reply never comes back as an inquiry (no echo loop).
    echoed, _, _ = await drain(harness, cursor)
    assert echoed == []


async def test_replaying_a_reply_posts_once(harness: SourceHarness) -> None:
    [ext] = await harness.add_citizen_items(1)
    text = "您好，您反映的问题已办结，感谢您的监督。"
    req = await harness.reply_request_for(ext, "reply-replay", text)
    source = harness.adapter()
    first = await source.post_reply(req)
    again = await source.post_reply(req)
    # After a restart the outcome of the earlier post is unknown to the new process: where
    # the adapter can look for its own reply the runtime does so first (servers may ignore
    # Idempotency-Key), and posts only when it is not there.
    restarted = harness.adapter()
    found = await restarted.find_reply(req) if isinstance(restarted, FindsOwnReplies) else None
    after_restart = found or await restarted.post_reply(req)
    assert first.outcome == "posted"
    for later in (again, after_restart):
        assert later.outcome in ("posted", "already_posted")
        if later.outcome == "posted":
            assert later.external_ids == first.external_ids
    assert len([r for r in await harness.posted_replies() if text in r["text"]]) == 1


async def test_rate_limit_then_success_after_reset(harness: SourceHarness) -> None:
    expected = await harness.add_citizen_items(3)
    req = await harness.reply_request_for(expected[0], "reply-rl", "您好，已收到，正在处理。")
    source = harness.adapter()
    await harness.exhaust_rate_limit()
    with pytest.raises(RateLimited) as fetch_err:
        await source.fetch(None)
    assert fetch_err.value.retry_after is not None
    assert fetch_err.value.retry_after > timedelta(0)
    with pytest.raises(RateLimited):
        await source.post_reply(req)

    await harness.reset_rate_limit()
    items, _, _ = await drain(harness, None)
    assert sorted(ids_of(items)) == sorted(expected)
    posted = await source.post_reply(req)
    assert posted.outcome == "posted"


async def test_auth_failure(harness: SourceHarness) -> None:
    [ext] = await harness.add_citizen_items(1)
    req = await harness.reply_request_for(ext, "reply-auth", "您好，已收到。")
    await harness.break_token()
    source = harness.adapter()
    with pytest.raises(AuthError):
        await source.fetch(None)
    with pytest.raises(AuthError):
        await source.post_reply(req)
    with pytest.raises(AuthError):
        await source.check()
    assert await harness.posted_replies() == []
