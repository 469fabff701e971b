"""MastodonSource against the third-party mastodon-mock (run in-process on 127.0.0.1:0)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from govbridge_tools.simulators.mastodon import Citizen, MastodonSimState
from mastodon_mock.config import RateLimitConfig
from pydantic import ValidationError

from adapters.base import (
    AuthError,
    PermanentError,
    RateLimited,
    Source,
    TransientError,
    sources,
)
from adapters.mastodon import (
    MastodonConfig,
    MastodonSource,
    html_to_text,
    split_reply,
    status_length,
)
from schemas.messages import Inquiry, ReplyRequest
from schemas.vocab import InquiryKind, TicketStatus, Visibility

SourceFactory = Callable[..., MastodonSource]


@pytest.fixture
async def sim() -> AsyncIterator[MastodonSimState]:
    async with MastodonSimState() as state:
        yield state


@pytest.fixture
async def make_source(sim: MastodonSimState) -> AsyncIterator[SourceFactory]:
    made: list[MastodonSource] = []

    def factory(**overrides: Any) -> MastodonSource:
        cfg = MastodonConfig.model_validate(sim.account_config(department="transport", **overrides))
        source = MastodonSource(cfg)
        made.append(source)
        return source

    yield factory
    for source in made:
        await source.close()


@pytest.fixture
async def citizen(sim: MastodonSimState) -> Citizen:
    return await sim.create_citizen("zhang_san", "张三")


async def drain(
    source: MastodonSource, cursor: str | None = None
) -> tuple[list[Inquiry], str | None]:
    items: list[Inquiry] = []
    for _ in range(200):
        result = await source.fetch(cursor)
        items.extend(result.items)
        cursor = result.cursor
        if not result.more:
            return items, cursor
    raise AssertionError("fetch never reported the backlog drained")


def reply_for(inquiry: Inquiry, reply_id: str, text: str, **overrides: Any) -> ReplyRequest:
    values: dict[str, Any] = {
        "reply_id": reply_id,
        "inquiry_id": inquiry.inquiry_id,
        "platform": "mastodon",
        "account": inquiry.account,
        "department": "transport",
        "thread": inquiry.thread,
        "citizen_handle": inquiry.author.handle,
        "visibility": inquiry.visibility,
        "text": text,
        "status": TicketStatus.RECEIVED,
    }
    values.update(overrides)
    return ReplyRequest.model_validate(values)


# --------------------------------------------------------------------------- reading


async def test_mentions_and_direct_messages_are_normalised(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    public = await sim.mention(
        citizen, "地铁站电梯坏了 https://example.org/photos/elevator-17 <b>急</b>"
    )
    unlisted = await sim.mention(citizen, "公交晚点", visibility="unlisted")
    followers = await sim.mention(citizen, "只给关注者看", visibility="private")
    # The simulator keeps Mastodon 4.3's default policy: this DM is *filtered* server-side.
    dm = await sim.direct_message(citizen, "我的电话是13800000000，请回电")

    items, _ = await drain(make_source())

    by_id = {i.external_id: i for i in items}
    assert list(by_id) == [public["id"], unlisted["id"], followers["id"], dm["id"]]
    p = by_id[public["id"]]
    assert p.kind == InquiryKind.MENTION and p.visibility == Visibility.PUBLIC
    # Plain text: mention kept, link kept whole, the citizen's literal "<b>" is text, not markup.
    assert p.text == "@gov_official 地铁站电梯坏了 https://example.org/photos/elevator-17 <b>急</b>"
    assert p.author.handle == "zhang_san" and p.author.display_name == "张三"
    assert p.author.id == citizen.id and p.platform == "mastodon" and p.account == "gov_official"
    assert p.thread.root_id == public["id"] and p.thread.parent_id == public["id"]
    assert p.thread.reply_to == {
        "status_id": public["id"],
        "acct": "zhang_san",
        "visibility": "public",
    }
    assert p.url == public["url"]
    assert by_id[unlisted["id"]].visibility == Visibility.PUBLIC
    assert by_id[followers["id"]].kind == InquiryKind.MENTION
    assert by_id[followers["id"]].visibility == Visibility.PRIVATE
    d = by_id[dm["id"]]
    assert d.kind == InquiryKind.DIRECT_MESSAGE and d.visibility == Visibility.PRIVATE
    assert d.thread.reply_to["visibility"] == "direct"


async def test_filtered_private_mentions_need_include_filtered_or_policy(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    await sim.direct_message(citizen, "first DM, filtered by the default policy")
    blind = make_source(include_filtered=False)
    assert (await drain(blind))[0] == []  # the 4.3 hazard the options exist for

    accepting = make_source(include_filtered=False, accept_private_mentions=True)
    _, cursor = await drain(accepting)  # first use switches the policy to accept
    later = await sim.direct_message(citizen, "second DM, after the policy change")
    items, _ = await drain(accepting, cursor)
    assert [i.external_id for i in items] == [later["id"]]
    assert (await sim.policy())["for_private_mentions"] == "accept"


async def test_paging_forward_has_no_gap_or_duplicate(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    other = await sim.create_citizen()
    expected = [
        (await sim.mention(citizen if n % 2 else other, f"问题 {n}", visibility="public"))["id"]
        for n in range(23)
    ]
    source = make_source(page_limit=5)
    seen: list[str] = []
    cursor: str | None = None
    cursors: list[str | None] = []
    for _ in range(2):  # two pages, then more arrive mid-drain
        result = await source.fetch(cursor)
        assert result.more and len(result.items) == 5
        seen += [i.external_id for i in result.items]
        cursor = result.cursor
        cursors.append(cursor)
    expected += [(await sim.mention(other, f"迟到的问题 {n}"))["id"] for n in range(4)]

    # A fresh adapter resuming from the persisted cursor (as after a restart).
    rest, final = await drain(make_source(page_limit=5), cursor)
    seen += [i.external_id for i in rest]
    assert seen == expected
    assert len(set(cursors)) == 2 and final not in cursors
    # Nothing new: the cursor stays where it is and no item repeats.
    again = await source.fetch(final)
    assert again.items == [] and again.cursor == final and not again.more


async def test_no_backfill_starts_after_the_newest(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    await sim.mention(citizen, "old history")
    source = make_source(backfill=False)
    first = await source.fetch(None)
    assert first.items == [] and first.cursor is not None
    new = await sim.mention(citizen, "new question")
    items, _ = await drain(source, first.cursor)
    assert [i.external_id for i in items] == [new["id"]]


async def test_follow_up_in_a_thread_keeps_the_root(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    source = make_source()
    question = await sim.mention(citizen, "路灯坏了")
    [inquiry], cursor = await drain(source)
    posted = await source.post_reply(reply_for(inquiry, "r-1", "已受理，工单号 T-1"))
    follow_up = await sim.mention(citizen, "还没修好", in_reply_to_id=posted.external_ids[0])
    [second], _ = await drain(source, cursor)
    assert second.external_id == follow_up["id"]
    assert second.thread.root_id == question["id"]
    assert second.thread.parent_id == follow_up["id"]


async def test_echo_protection_skips_own_statuses() -> None:
    """Mastodon never notifies self-mentions, so this guard is exercised directly."""
    source = MastodonSource(
        MastodonConfig.model_validate(
            {
                "adapter": "mastodon",
                "handle": "gov",
                "department": "d",
                "base_url": "http://127.0.0.1:9",
                "token": "t",
            }
        )
    )
    me = {"id": "7", "username": "gov"}
    status = {
        "id": "100",
        "content": "<p>@someone hi</p>",
        "visibility": "public",
        "created_at": "2024-05-01T00:00:00Z",
        "account": {"id": "7", "acct": "gov"},
    }
    n = {"id": "1", "type": "mention", "status": status, "account": status["account"]}
    assert await source._normalise(n, me) is None
    other = {**n, "status": {**status, "account": {"id": "8", "acct": "x"}}}
    assert await source._normalise(other, me) is not None


# --------------------------------------------------------------------------- replying


async def test_replies_land_in_the_thread_with_the_inquirys_visibility(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    public = await sim.mention(citizen, "公开提问")
    followers = await sim.mention(citizen, "仅关注者", visibility="private")
    dm = await sim.direct_message(citizen, "私信提问")
    source = make_source()
    items, _ = await drain(source)
    for n, inquiry in enumerate(items):
        await source.post_reply(reply_for(inquiry, f"r-{n}", "您好，已受理。"))

    replies = {r["in_reply_to_id"]: r for r in await sim.official_replies()}
    assert set(replies) == {public["id"], followers["id"], dm["id"]}
    assert replies[public["id"]]["visibility"] == "public"
    assert replies[followers["id"]]["visibility"] == "direct"  # a private question → private answer
    assert replies[dm["id"]]["visibility"] == "direct"
    for r in replies.values():
        assert r["text"] == "@zhang_san 您好，已受理。"
        assert r["mentions"] == ["zhang_san"]


async def test_a_public_inquiry_can_be_answered_privately(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    await sim.mention(citizen, "含个人信息的公开提问")
    source = make_source()
    [inquiry], _ = await drain(source)
    await source.post_reply(reply_for(inquiry, "r-p", "请查看私信", visibility=Visibility.PRIVATE))
    [reply] = await sim.official_replies()
    assert reply["visibility"] == "direct" and reply["in_reply_to_id"] == inquiry.external_id


async def test_same_reply_key_twice_posts_once(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    await sim.mention(citizen, "问题")
    source = make_source()
    [inquiry], _ = await drain(source)
    first = await source.post_reply(reply_for(inquiry, "reply-key-1", "已受理"))
    # A redelivery, even through a new adapter instance (another worker).
    second = await make_source().post_reply(reply_for(inquiry, "reply-key-1", "已受理"))
    assert first.external_ids == second.external_ids
    assert len(await sim.official_replies()) == 1
    third = await source.post_reply(reply_for(inquiry, "reply-key-2", "办理中"))
    assert third.external_ids != first.external_ids
    assert len(await sim.official_replies()) == 2


async def test_long_reply_is_split_into_a_thread_exactly_once(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    await sim.mention(citizen, "问题")
    source = make_source()
    [inquiry], _ = await drain(source)
    text = "".join(f"第{n}条说明：道路维修将于本周完成，请注意绕行。" for n in range(60))
    posted = await source.post_reply(reply_for(inquiry, "long-1", text))
    again = await source.post_reply(reply_for(inquiry, "long-1", text))
    assert again.external_ids == posted.external_ids
    replies = await sim.official_replies()
    assert [r["id"] for r in replies] == posted.external_ids and len(replies) >= 3
    parent = inquiry.external_id
    for n, r in enumerate(replies, 1):
        assert len(r["text"]) <= 500 and r["text"].startswith("@zhang_san ")
        assert r["text"].endswith(f"({n}/{len(replies)})")
        assert r["in_reply_to_id"] == parent
        parent = r["id"]
    body = "".join(r["text"].removeprefix("@zhang_san ").rsplit(" (", 1)[0] for r in replies)
    assert body == text


async def test_deleted_target_falls_back_to_a_direct_mention(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    status = await sim.mention(citizen, "问题")
    source = make_source()
    [inquiry], _ = await drain(source)
    await sim.delete_status(citizen, status["id"])
    # Real Mastodon answers 404 "Record not found" for a deleted in_reply_to_id;
    # mastodon-mock silently keeps the dangling id, so the 404 is injected.
    await sim.inject_fault(404, path="/api/v1/statuses", methods=["POST"], count=1)
    posted = await source.post_reply(reply_for(inquiry, "r-gone", "已办结"))
    assert posted.outcome == "fallback_root"
    [reply] = await sim.official_replies()
    assert reply["id"] == posted.external_ids[0]
    assert reply["in_reply_to_id"] is None and reply["visibility"] == "direct"
    assert reply["text"] == "@zhang_san 已办结"


# --------------------------------------------------------------------------- errors


async def test_injected_429_raises_rate_limited_with_reset(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    await sim.mention(citizen, "问题")
    source = make_source()
    [inquiry], cursor = await drain(source)
    reset = datetime.now(UTC) + timedelta(minutes=7)
    await sim.inject_rate_limit(reset_at=reset)
    with pytest.raises(RateLimited) as exc:
        await source.fetch(cursor)
    assert exc.value.retry_after is not None
    assert timedelta(minutes=6) < exc.value.retry_after <= timedelta(minutes=7)
    assert source.rate_limit_remaining == 0
    assert source.rate_limit_reset is not None
    assert abs(source.rate_limit_reset - reset) < timedelta(milliseconds=2)
    with pytest.raises(RateLimited):
        await source.post_reply(reply_for(inquiry, "r-429", "已受理"))

    # The server said no requests are left until the reset: the adapter does not ask again
    # before then (not even once the server would answer), so it cannot earn more refusals.
    await sim.clear_faults()
    with pytest.raises(RateLimited) as paced:
        await source.post_reply(reply_for(inquiry, "r-429", "已受理"))
    assert paced.value.not_sent
    assert timedelta(minutes=6) < (paced.value.retry_after or timedelta(0))

    # Past the reset, calls go out again.
    fresh = make_source()
    await sim.inject_rate_limit(reset_at=datetime.now(UTC) + timedelta(seconds=1), count=1)
    with pytest.raises(RateLimited):
        await fresh.fetch(cursor)
    with pytest.raises(RateLimited) as again:
        await fresh.fetch(cursor)  # the 429 fault is used up: this one is the adapter pacing
    assert again.value.not_sent
    await asyncio.sleep(1.1)
    posted = await fresh.post_reply(reply_for(inquiry, "r-429", "已受理"))
    assert len(posted.external_ids) == 1


async def test_mastodon_mocks_own_rate_limiter() -> None:
    """mastodon-mock's opt-in limiter (it sends an epoch reset, tolerated besides ISO 8601)."""
    limiter = RateLimitConfig(enabled=True, limit=4, window_seconds=120)
    async with MastodonSimState(rate_limit=limiter, filter_private_mentions=False) as sim:
        source = MastodonSource(MastodonConfig.model_validate(sim.account_config()))
        try:
            seen: list[int] = []
            with pytest.raises(RateLimited) as exc:
                for _ in range(6):
                    await source.fetch(None)
                    remaining = source.rate_limit_remaining
                    assert remaining is not None
                    seen.append(remaining)
            assert seen and seen == sorted(seen, reverse=True)
            assert source.rate_limit_remaining == 0
            assert exc.value.retry_after is not None
            assert timedelta(0) < exc.value.retry_after <= timedelta(seconds=120)
        finally:
            await source.close()


async def test_bad_or_revoked_token_raises_auth_error(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    with pytest.raises(AuthError):
        await make_source(token="not-a-token").fetch(None)
    with pytest.raises(AuthError):
        await make_source(token="not-a-token").check()

    await sim.mention(citizen, "问题")
    source = make_source()
    [inquiry], cursor = await drain(source)
    await sim.revoke_official_token()
    with pytest.raises(AuthError) as exc:
        await source.fetch(cursor)
    assert sim.official_token.get_secret_value() not in str(exc.value)
    with pytest.raises(AuthError):
        await source.post_reply(reply_for(inquiry, "r-auth", "已受理"))


async def test_token_of_another_account_is_refused(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    source = make_source(token=citizen.token)  # never post from an unconfigured account
    with pytest.raises(AuthError, match="zhang_san"):
        await source.check()


async def test_server_errors_map_to_transient_and_validation_to_permanent(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    await sim.mention(citizen, "问题")
    source = make_source()
    [inquiry], cursor = await drain(source)
    await sim.inject_fault(503, path="/api/v1/notifications")
    with pytest.raises(TransientError) as transient:
        await source.fetch(cursor)
    assert not isinstance(transient.value, RateLimited)
    await sim.inject_fault(422, path="/api/v1/statuses", methods=["POST"])
    with pytest.raises(PermanentError):
        await source.post_reply(reply_for(inquiry, "r-422", "已受理"))
    assert await sim.official_replies() == []


async def test_unreachable_server_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = MastodonConfig.model_validate(
        {
            "adapter": "mastodon",
            "handle": "gov",
            "department": "d",
            "base_url": f"http://127.0.0.1:{port}",
            "token": "t",
        }
    )
    source = MastodonSource(cfg)
    try:
        with pytest.raises(TransientError):
            await source.fetch(None)
    finally:
        await source.close()


async def test_check_reads_the_instance_limit(make_source: SourceFactory) -> None:
    source = make_source()
    await source.check()
    assert source.capabilities.max_reply_chars == 500
    assert source.capabilities.supports_direct_messages
    assert source.capabilities.supports_idempotency_key
    assert isinstance(source, Source)


# --------------------------------------------------------------------------- pieces


def test_html_to_text_handles_real_mastodon_markup() -> None:
    html = (
        '<p><span class="h-card" translate="no"><a href="https://gov.example/@transport" '
        'class="u-url mention">@<span>transport</span></a></span> 路灯坏了 &amp; 没人修'
        '<br />见 <a href="https://example.org/photos/2024/lamp-17.jpg" target="_blank" '
        'rel="nofollow noopener"><span class="invisible">https://</span>'
        '<span class="ellipsis">example.org/photos/2024/la</span>'
        '<span class="invisible">mp-17.jpg</span></a></p>'
        '<p><a href="https://gov.example/tags/路灯" class="mention hashtag" rel="tag">'
        '#<span>路灯</span></a> <a href="https://x.example/form">表单</a></p>'
    )
    assert html_to_text(html) == (
        "@transport 路灯坏了 & 没人修\n见 https://example.org/photos/2024/lamp-17.jpg\n\n"
        "#路灯 表单 (https://x.example/form)"
    )


def test_split_reply_respects_the_limit_and_keeps_everything() -> None:
    body = "您好，" + "我们已经收到您反映的问题。" * 30 + "谢谢。"
    parts = split_reply("@li_si ", body, 120)
    assert len(parts) > 1
    assert all(len(p) <= 120 and p.startswith("@li_si ") for p in parts)
    rebuilt = "".join(p.removeprefix("@li_si ").rsplit(" (", 1)[0] for p in parts)
    assert rebuilt == body
    assert split_reply("@li_si ", "短回复", 500) == ["@li_si 短回复"]


def test_config_is_validated_and_registered() -> None:
    base = {
        "adapter": "mastodon",
        "handle": "gov",
        "department": "d",
        "base_url": "https://mastodon.example",
        "token": "secret-token",
    }
    cfg = MastodonConfig.model_validate(base)
    assert "secret-token" not in repr(cfg)
    with pytest.raises(ValidationError):
        MastodonConfig.model_validate({**base, "page_limit": 81})
    with pytest.raises(ValidationError):
        MastodonConfig.model_validate({**base, "pagelimit": 10})
    assert sources.get("mastodon") is MastodonSource


async def test_simulator_http_controls(sim: MastodonSimState, make_source: SourceFactory) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{sim.base_url}/_sim/direct_message", json={"username": "wang_wu", "text": "私信"}
        ) as resp:
            assert resp.status == 200
            dm = await resp.json()
        source = make_source()
        [inquiry], _ = await drain(source)
        assert inquiry.external_id == dm["id"] and inquiry.author.handle == "wang_wu"
        await source.post_reply(reply_for(inquiry, "r-sim", "收到"))
        async with http.get(f"{sim.base_url}/_sim/replies") as resp:
            [reply] = await resp.json()
        assert reply["text"] == "@wang_wu 收到" and reply["visibility"] == "direct"


async def test_a_direct_reply_never_adds_recipients(
    sim: MastodonSimState, make_source: SourceFactory, citizen: Citizen
) -> None:
    """Every @handle in a direct status is a recipient: an official's note naming someone
    must not send the citizen's case to them."""
    other = await sim.create_citizen("wu_ye")
    await sim.direct_message(citizen, "楼上漏水，物业不管")
    source = make_source()
    [inquiry], _ = await drain(source)
    text = f"已联系@{other.username} 上门处理"
    await source.post_reply(reply_for(inquiry, "r-dm", text, visibility=Visibility.PRIVATE))
    [reply] = await sim.official_replies()
    assert reply["visibility"] == "direct"
    assert reply["mentions"] == ["zhang_san"]
    assert reply["text"] == f"@zhang_san 已联系＠{other.username} 上门处理"


def test_split_reply_terminates_and_keeps_visible_characters_whole() -> None:
    # links weigh 23 characters each whatever their length: a dense run must still split
    parts = split_reply("@a ", "http://a " * 80, 100)
    assert 1 < len(parts) < 40
    assert all(status_length(p) <= 100 for p in parts)
    flags = split_reply("@a ", "🇨🇳" * 300, 100)
    assert "".join(p.split(" ")[1] for p in flags) == "🇨🇳" * 300
    family = "👨\u200d👩\u200d👧"
    parts = split_reply("@a ", "家" * 50 + family * 40, 60)
    body = "".join(p.split(" ", 1)[1].rsplit(" (", 1)[0] for p in parts)
    assert body == "家" * 50 + family * 40  # nothing lost, no joiner cut off its emoji
    assert not any(p.split(" ", 1)[1].startswith("\u200d") for p in parts)
