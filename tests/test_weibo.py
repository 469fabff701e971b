"""Weibo source adapter against its simulator: the platform's sharp edges, one by one."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from govbridge_tools.simulators.weibo import Limits, weibo_time
from govbridge_tools.testing import ManualClock
from pydantic import SecretStr, ValidationError

from adapters.base import AuthError, PermanentError, RateLimited, TransientError
from adapters.weibo import (
    WeiboConfig,
    WeiboSource,
    error_code_of,
    idstr,
    parse_created_at,
    parse_json,
    split_reply,
)
from schemas.messages import Inquiry
from schemas.vocab import InquiryKind, Visibility
from tests.contract.harness_weibo import WeiboHarness

FROZEN = 1_700_000_000.0  # 800 s into an hourly window


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[WeiboHarness]:
    """A running simulator; indirect parametrisation passes ``WeiboState`` options."""
    opts: dict[str, Any] = {"clock": ManualClock(FROZEN), **getattr(request, "param", {})}
    h = WeiboHarness(**opts)
    async with h.running():
        yield h


def sim_with(**opts: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("sim", [opts], indirect=True, ids=[""])


async def drain_all(
    sim: WeiboHarness, cursor: str | None, **cfg: Any
) -> tuple[list[Inquiry], str | None]:
    source = sim.adapter(**cfg)
    items: list[Inquiry] = []
    while True:
        r = await source.fetch(cursor)
        items.extend(r.items)
        cursor = r.cursor
        if not r.more:
            return items, cursor


def reply_texts(sim: WeiboHarness) -> list[str]:
    return [r["text"] for r in sim.state.posted_replies()]


# --------------------------------------------------------------------------- ids


@sim_with(first_id=2**53 + 1)
async def test_ids_beyond_2_53_survive(sim: WeiboHarness) -> None:
    post = sim.state.add_official_post()
    comments = [sim.state.add_citizen_comment(f"问题{k}", status_id=post.id) for k in range(6)]
    mention = sim.state.add_mention_post("地铁站电梯坏了")
    lossy = [c.id for c in comments if int(float(c.id)) != c.id]
    assert lossy, "precondition: some ids are not representable as a double"

    items, cursor = await drain_all(sim, None)
    by_id = {i.external_id: i for i in items}
    assert set(by_id) == {str(c.id) for c in comments} | {str(mention.id)}
    for c in comments:
        thread = by_id[str(c.id)].thread
        assert thread.root_id == str(post.id)
        assert thread.reply_to == {"id": str(post.id), "cid": str(c.id)}
    assert cursor is not None and str(max(c.id for c in comments)) in cursor

    target = next(c for c in comments if c.id in lossy)
    req = await sim.reply_request_for(str(target.id), "r-big", "您好，已受理。")
    posted = await sim.adapter().post_reply(req)
    [reply] = sim.state.posted_replies()
    assert reply["reply_cid"] == str(target.id)
    assert posted.external_ids == [reply["id"]]


def test_json_parsing_never_goes_through_float() -> None:
    big = 2**53 + 1
    assert parse_json(f'{{"id": {big}}}'.encode())["id"] == big
    assert idstr({"id": big}) == str(big)
    assert idstr({"id": big - 1, "idstr": str(big)}) == str(big)  # idstr wins
    with pytest.raises(ValueError):
        idstr(parse_json(b'{"id": 9.007199254740993e15}'))


def test_created_at_format() -> None:
    dt = parse_created_at("Wed Jun 01 00:50:25 +0800 2011")
    assert (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second) == (2011, 6, 1, 0, 50, 25)
    assert dt.utcoffset() == timedelta(hours=8)
    assert parse_created_at(weibo_time(FROZEN)).timestamp() == FROZEN


# --------------------------------------------------------------------------- error codes


def test_error_code_of_accepts_int_and_string() -> None:
    assert error_code_of({"error_code": 21327}) == 21327
    assert error_code_of({"error_code": "21327"}) == 21327
    assert error_code_of({"error_code": " 20019 "}) == 20019
    assert error_code_of({"statuses": []}) is None


@pytest.mark.parametrize("style", ["int", "str"])
async def test_error_code_as_int_and_as_string(style: str) -> None:
    h = WeiboHarness(clock=ManualClock(FROZEN), error_code_style=style)
    async with h.running():
        # The simulator really sends that JSON type.
        async with (
            aiohttp.ClientSession() as http,
            http.get(h.base_url + "comments/to_me.json", params={"access_token": "x"}) as resp,
        ):
            body = json.loads(await resp.read())
        assert body["request"] == "/2/comments/to_me.json"
        assert isinstance(body["error_code"], int if style == "int" else str)

        c = h.state.add_citizen_comment("公交站牌被撞倒了")
        req = await h.reply_request_for(str(c.id), "r1", "您好，已受理。")
        assert (await h.adapter().post_reply(req)).outcome == "posted"
        dup = await h.reply_request_for(str(c.id), "r2", "您好，已受理。")
        assert (await h.adapter().post_reply(dup)).outcome == "already_posted"

        h.state.inject_fault("comments/to_me.json", 403, 10014)
        with pytest.raises(PermanentError):
            await h.adapter(streams=["comments_to_me"]).fetch(None)

        h.state.expire_token()
        with pytest.raises(AuthError):
            await h.adapter().fetch(None)


async def test_server_errors_are_transient(sim: WeiboHarness) -> None:
    sim.state.inject_fault("account/get_uid.json", 502)  # HTML body, no JSON
    with pytest.raises(TransientError) as err:
        await sim.adapter().check()
    assert not isinstance(err.value, RateLimited)
    sim.state.inject_fault("comments/to_me.json", 500, 10001)
    with pytest.raises(TransientError):
        await sim.adapter(streams=["comments_to_me"]).fetch(None)


async def test_error_in_one_stream_keeps_the_others_and_loses_nothing(sim: WeiboHarness) -> None:
    c = sim.state.add_citizen_comment("路灯不亮")
    m = sim.state.add_mention_post("井盖丢了")
    sim.state.inject_fault("statuses/mentions.json", 503)
    source = sim.adapter()
    first = await source.fetch(None)
    assert [i.external_id for i in first.items] == [str(c.id)]
    assert first.more  # come back at once: the error is reported on the next call
    with pytest.raises(TransientError):
        await source.fetch(first.cursor)
    items, cursor = await drain_all(sim, first.cursor)
    if not items:  # the comments drain ended this round; the next poll reads every stream
        items, _ = await drain_all(sim, cursor)
    assert [i.external_id for i in items] == [str(m.id)]


# --------------------------------------------------------------------------- rate limit


@sim_with(limits=Limits(calls=6, window=600))
async def test_rate_limit_mid_backlog_resumes_exactly_once(sim: WeiboHarness) -> None:
    post = sim.state.add_official_post()
    expected = {
        str(sim.state.add_citizen_comment(f"第{k}条", status_id=post.id).id) for k in range(150)
    }
    source = sim.adapter(streams=["comments_to_me"], page_size=20)

    got: list[str] = []
    cursor: str | None = None
    with pytest.raises(RateLimited) as err:
        while True:
            r = await source.fetch(cursor)
            got.extend(i.external_id for i in r.items)
            cursor = r.cursor
            assert r.more, "the backlog must outlast the rate limit"
    assert cursor is not None and '"top"' in cursor  # stopped in the middle of a drain
    assert 0 < len(got) < len(expected)
    assert err.value.retry_after == timedelta(seconds=sim.state.seconds_to_reset())

    with pytest.raises(RateLimited):  # still limited until the window resets
        await source.fetch(cursor)

    sim.state.advance_time(sim.state.seconds_to_reset())
    while True:
        try:
            r = await source.fetch(cursor)
        except RateLimited:  # 6 calls an hour: wait out each window
            sim.state.advance_time(sim.state.seconds_to_reset())
            continue
        got.extend(i.external_id for i in r.items)
        cursor = r.cursor
        if not r.more:
            break
    assert len(got) == len(set(got))
    assert set(got) == expected


@sim_with(limits=Limits(comments=2))
async def test_comment_limit_on_posting(sim: WeiboHarness) -> None:
    c = sim.state.add_citizen_comment("噪音扰民")
    source = sim.adapter()
    for k in range(2):
        req = await sim.reply_request_for(str(c.id), f"r{k}", f"您好，第{k}次答复。")
        assert (await source.post_reply(req)).outcome == "posted"
    req = await sim.reply_request_for(str(c.id), "r-over", "您好，第三次答复。")
    with pytest.raises(RateLimited) as err:
        await source.post_reply(req)
    assert err.value.retry_after == timedelta(seconds=sim.state.seconds_to_reset())
    assert len(reply_texts(sim)) == 2


# --------------------------------------------------------------------------- token


async def test_expired_token_then_replaced_resumes_without_loss(sim: WeiboHarness) -> None:
    post = sim.state.add_official_post()
    expected = {
        str(sim.state.add_citizen_comment(f"第{k}条", status_id=post.id).id) for k in range(90)
    }
    source = sim.adapter(streams=["comments_to_me"], page_size=20)
    got: list[str] = []
    cursor: str | None = None
    for _ in range(2):
        r = await source.fetch(cursor)
        got.extend(i.external_id for i in r.items)
        cursor = r.cursor
    old_token = sim.state.token
    sim.state.expire_token()
    with pytest.raises(AuthError) as err:
        await source.fetch(cursor)
    assert old_token not in str(err.value)
    # An item arriving while the account is paused is not lost either.
    late = str(sim.state.add_citizen_comment("暂停期间的留言", status_id=post.id).id)

    new_token = sim.state.replace_token()
    with pytest.raises(AuthError):  # the old token stays dead
        await sim.adapter(streams=["comments_to_me"], token=SecretStr(old_token)).fetch(cursor)
    cfg: dict[str, Any] = {
        "streams": ["comments_to_me"],
        "page_size": 20,
        "token": SecretStr(new_token),
    }
    items, cursor = await drain_all(sim, cursor, **cfg)
    got.extend(i.external_id for i in items)
    assert len(got) == len(set(got))
    assert set(got) == expected
    # It is newer than the interrupted round, so the next poll brings it, once.
    next_poll, cursor = await drain_all(sim, cursor, **cfg)
    assert [i.external_id for i in next_poll] == [late]
    assert (await drain_all(sim, cursor, **cfg))[0] == []


# --------------------------------------------------------------------------- splitting

_MARK = re.compile(r"\((\d+)/(\d+)\)$")

CHINESE = (
    "您好！您反映的朝阳区望京街道地铁站出口附近共享单车乱停乱放、占用盲道的问题已收到。"
    "我们已将工单转交属地街道和运营企业联合处理，要求其在三个工作日内完成清理并加强日常巡查。"
    "同时，我们将协调城管部门在该区域施划停车区域，设置电子围栏，引导用户规范停放。"
    "如您对处理结果不满意，可继续留言或拨打12345热线反映，我们将持续跟进，感谢您对城市管理工作的支持与监督！"
)


def _strip(parts: list[str]) -> list[str]:
    n = len(parts)
    out = []
    for i, p in enumerate(parts, 1):
        m = _MARK.search(p)
        assert m and (int(m.group(1)), int(m.group(2))) == (i, n)
        out.append(p[: m.start()])
    return out


def test_split_chinese_at_sentence_ends() -> None:
    assert len(CHINESE) > 140
    parts = split_reply(CHINESE)
    assert len(parts) >= 2
    assert all(len(p) <= 140 for p in parts)
    bodies = _strip(parts)
    assert "".join(bodies) == CHINESE
    assert all(b[-1] in "。！？" for b in bodies)


def test_split_without_punctuation_and_never_mid_character() -> None:
    assert split_reply("短" * 140) == ["短" * 140]
    run = "字" * 300
    assert "".join(_strip(split_reply(run))) == run
    family = "👨\u200d👩\u200d👧"  # one emoji, five code points
    parts = _strip(split_reply(family * 60))
    assert all(p and p.replace(family, "") == "" for p in parts)
    combining = "e\u0301" * 100  # é as base + combining accent
    assert all(not p.startswith("\u0301") for p in _strip(split_reply(combining)))
    ticket = "GB20240001234567"
    text = "字" * 130 + ticket + "字" * 50
    assert any(ticket in p for p in split_reply(text))


async def test_long_reply_is_posted_in_numbered_parts(sim: WeiboHarness) -> None:
    c = sim.state.add_citizen_comment("共享单车占用盲道", citizen="望京居民")
    req = await sim.reply_request_for(str(c.id), "r-long", CHINESE)
    posted = await sim.adapter().post_reply(req)
    stored = sim.state.posted_replies()
    assert posted.outcome == "posted"
    assert posted.external_ids == [r["id"] for r in stored]
    assert len(stored) == len(split_reply(CHINESE)) >= 2
    bodies = _strip([r["text"].removeprefix("回复@望京居民:") for r in stored])
    assert "".join(bodies) == CHINESE
    # Replayed after a crash: every part is recognised, nothing posted twice.
    again = await sim.adapter().post_reply(req)
    assert again.outcome == "already_posted"
    assert len(sim.state.posted_replies()) == len(stored)


# --------------------------------------------------------------------------- replying


async def test_deleted_comment_falls_back_to_root_post(sim: WeiboHarness) -> None:
    post = sim.state.add_official_post()
    c = sim.state.add_citizen_comment("小区停水", citizen="张先生", status_id=post.id)
    req = await sim.reply_request_for(str(c.id), "r-gone", "您好，已联系自来水公司处理。")
    sim.state.delete(c.id)
    posted = await sim.adapter().post_reply(req)
    assert posted.outcome == "fallback_root"
    [reply] = sim.state.posted_replies()
    assert reply["status_id"] == str(post.id) and reply["reply_cid"] is None
    assert reply["text"] == "@张先生 您好，已联系自来水公司处理。"
    assert posted.external_ids == [reply["id"]]


async def test_deleted_root_is_undeliverable(sim: WeiboHarness) -> None:
    c = sim.state.add_citizen_comment("小区停电")
    req = await sim.reply_request_for(str(c.id), "r-root-gone", "您好，已受理。")
    sim.state.delete(c.id)
    sim.state.delete(c.status_id)
    posted = await sim.adapter().post_reply(req)
    assert posted.outcome == "undeliverable" and posted.external_ids == []
    m = sim.state.add_mention_post("路面塌陷")
    req = await sim.reply_request_for(str(m.id), "r-mention-gone", "您好，已受理。")
    sim.state.delete(m.id)
    assert (await sim.adapter().post_reply(req)).outcome == "undeliverable"
    assert sim.state.posted_replies() == []


async def test_mention_is_answered_with_a_comment_on_the_post(sim: WeiboHarness) -> None:
    m = sim.state.add_mention_post("红绿灯坏了")
    req = await sim.reply_request_for(str(m.id), "r-m", "您好，已通知交管部门。")
    posted = await sim.adapter().post_reply(req)
    [reply] = sim.state.posted_replies()
    assert posted.outcome == "posted"
    assert (reply["status_id"], reply["reply_cid"], reply["text"]) == (
        str(m.id),
        None,
        "您好，已通知交管部门。",
    )
    assert ("POST", "comments/create.json") in sim.state.requests


async def test_identical_content_counts_as_already_posted(sim: WeiboHarness) -> None:
    c = sim.state.add_citizen_comment("垃圾未清运")
    text = "您好，您反映的问题已办结。"
    first = await sim.adapter().post_reply(await sim.reply_request_for(str(c.id), "a", text))
    second = await sim.adapter().post_reply(await sim.reply_request_for(str(c.id), "b", text))
    assert first.outcome == "posted"
    assert second.outcome == "already_posted" and second.external_ids == []
    assert len(sim.state.posted_replies()) == 1


async def test_private_reply_is_refused(sim: WeiboHarness) -> None:
    c = sim.state.add_citizen_comment("我的身份证信息")
    req = await sim.reply_request_for(str(c.id), "p", "请私信联系。")
    with pytest.raises(PermanentError):
        await sim.adapter().post_reply(req.model_copy(update={"visibility": Visibility.PRIVATE}))
    assert sim.state.posted_replies() == []


# --------------------------------------------------------------------------- reading


async def test_own_posts_are_not_ingested(sim: WeiboHarness) -> None:
    st, me = sim.state, sim.state.official_uid
    post = st.add_official_post()
    citizen = st.add_citizen_comment(f"@{st.official_name} 请回复", status_id=post.id)
    st.add_comment(me, post.id, "本帖将持续更新", None)  # own comment on own post
    st.add_comment(me, post.id, f"@{st.official_name} 自己提到自己", citizen.id)
    st.add_status(me, f"@{st.official_name} 转发自己的通告")  # own post mentioning itself
    answer = st.add_comment_mention("请问办理时间？")
    items, _ = await drain_all(sim, None)
    assert sorted((i.external_id, i.kind) for i in items) == sorted(
        [(str(citizen.id), InquiryKind.COMMENT), (str(answer.id), InquiryKind.MENTION)]
    )


async def test_filter_by_author(sim: WeiboHarness) -> None:
    sim.state.citizen("老粉丝", followed=True)
    followed = sim.state.add_mention_post("表扬司机", citizen="老粉丝")
    stranger = sim.state.add_mention_post("投诉司机", citizen="陌生人")
    only_strangers, _ = await drain_all(sim, None, filter_by_author=2)
    only_followed, _ = await drain_all(sim, None, filter_by_author=1)
    assert [i.external_id for i in only_strangers] == [str(stranger.id)]
    assert [i.external_id for i in only_followed] == [str(followed.id)]


async def test_normalised_inquiry(sim: WeiboHarness) -> None:
    c = sim.state.add_citizen_comment("公交晚点严重", citizen="李女士")
    [item], _ = await drain_all(sim, None)
    assert item.kind is InquiryKind.COMMENT
    assert (item.author.handle, item.author.id) == ("李女士", str(c.user_id))
    assert item.text == "公交晚点严重"
    assert item.created_at.timestamp() == FROZEN
    assert item.account == sim.state.official_name
    assert item.thread.parent_id == str(c.id)


def test_config_validation() -> None:
    base = {"adapter": "weibo", "handle": "h", "department": "transport"}
    with pytest.raises(ValidationError, match="token"):
        WeiboConfig.model_validate(base)
    with pytest.raises(ValidationError):
        WeiboConfig.model_validate({**base, "token": "t", "page_sise": 20})
    with pytest.raises(ValidationError):
        WeiboConfig.model_validate({**base, "token": "t", "page_size": 500})
    cfg = WeiboConfig.model_validate({**base, "token": "tok-secret-123"})
    assert cfg.base_url == "https://api.weibo.com/2/"
    assert "tok-secret-123" not in repr(cfg)
    assert WeiboSource.capabilities.max_reply_chars == 140
    assert not WeiboSource.capabilities.supports_direct_messages


# --------------------------------------------------------------------------- the simulator itself


async def test_simulator_paging_semantics(sim: WeiboHarness) -> None:
    st = sim.state
    post = st.add_official_post()
    ids = [st.add_citizen_comment(f"c{k}", status_id=post.id).id for k in range(60)]
    for k in range(210):
        st.add_mention_post(f"m{k}")

    async def get(endpoint: str, **params: Any) -> Any:
        q = {"access_token": st.token, **{k: str(v) for k, v in params.items()}}
        async with (
            aiohttp.ClientSession() as http,
            http.get(sim.base_url + endpoint, params=q) as resp,
        ):
            assert resp.status == 200
            return json.loads(await resp.read())

    page = await get("comments/to_me.json")
    assert len(page["comments"]) == 50  # default count for comments
    assert page["total_number"] == 60
    assert {"previous_cursor", "next_cursor"} <= page.keys()
    first = page["comments"][0]
    assert first["id"] == ids[-1] and first["idstr"] == str(ids[-1])
    assert first["status"]["idstr"] == str(post.id)
    parse_created_at(first["created_at"])
    assert first["user"]["verified_type"] == -1
    assert first["status"]["user"]["verified_type"] == 1

    inclusive = await get("comments/to_me.json", max_id=ids[10])
    assert inclusive["comments"][0]["id"] == ids[10]  # max_id: older than or EQUAL
    exclusive = await get("comments/to_me.json", since_id=ids[10])
    assert min(c["id"] for c in exclusive["comments"]) == ids[11]  # since_id: strictly newer
    second = await get("comments/to_me.json", count=25, page=2)
    assert [c["id"] for c in second["comments"]] == ids[-26:-51:-1]

    assert len((await get("statuses/mentions.json"))["statuses"]) == 20  # default for mentions
    assert len((await get("statuses/mentions.json", count=500))["statuses"]) == 200  # max


async def test_simulator_posting_rules(sim: WeiboHarness) -> None:
    st = sim.state
    c = st.add_citizen_comment("问题")

    async def post(endpoint: str, **form: Any) -> tuple[int, Any]:
        data = {"access_token": st.token, **{k: str(v) for k, v in form.items()}}
        async with (
            aiohttp.ClientSession() as http,
            http.post(sim.base_url + endpoint, data=data) as resp,
        ):
            return resp.status, json.loads(await resp.read())

    status, body = await post("comments/create.json", id=c.status_id, comment="长" * 141)
    assert error_code_of(body) == 20012 and status >= 400
    status, body = await post("comments/reply.json", id=c.status_id, cid=c.id, comment="好的")
    assert status == 200 and body["text"] == "回复@热心市民:好的"
    assert body["reply_comment"]["idstr"] == str(c.id)
    _, body = await post("comments/reply.json", id=c.status_id, cid=c.id, comment="好的")
    assert error_code_of(body) == 20019
    _, body = await post("statuses/update.json", status="新微博")
    assert error_code_of(body) == 10014
    st.delete(c.id)
    _, body = await post("comments/reply.json", id=c.status_id, cid=c.id, comment="再答")
    assert error_code_of(body) == 20201
    st.delete(c.status_id)
    _, body = await post("comments/create.json", id=c.status_id, comment="再答")
    assert error_code_of(body) == 20101


async def test_simulator_operator_controls_over_http(sim: WeiboHarness) -> None:
    """The same controls a `govbridge simulate weibo` process is driven with."""
    root = sim.base_url.removesuffix("2/")

    async with aiohttp.ClientSession() as http:

        async def op(control: str, **body: Any) -> Any:
            async with http.post(root + "_sim/" + control, json=body) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        comment = await op("comment", text="路灯不亮", citizen="王先生")
        mention = await op("mention", text="井盖丢了")
        cm = await op("comment_mention", text="请关注")
        assert f"@{sim.state.official_name}" in mention["text"] and mention["idstr"]
        items, cursor = await drain_all(sim, None)
        assert sorted(i.external_id for i in items) == sorted(
            [comment["idstr"], mention["idstr"], cm["idstr"]]
        )

        await op("delete", id=cm["idstr"])
        assert (
            int(cm["idstr"]) in sim.state.comments and sim.state.comments[int(cm["idstr"])].deleted
        )
        await op("rate_limit/exhaust")
        with pytest.raises(RateLimited):
            await sim.adapter().fetch(cursor)
        await op("clock/advance", seconds=3600)
        assert (await drain_all(sim, cursor))[0] == []

        await op("fault", path="comments/to_me.json", http_status=503)
        with pytest.raises(TransientError):
            await sim.adapter(streams=["comments_to_me"]).fetch(cursor)

        req = await sim.reply_request_for(comment["idstr"], "r-http", "您好，已受理。")
        await sim.adapter().post_reply(req)
        async with http.get(root + "_sim/replies") as resp:
            [reply] = await resp.json()
        assert reply["reply_cid"] == comment["idstr"]

        await op("token/expire")
        with pytest.raises(AuthError):
            await sim.adapter().check()
        new = (await op("token/replace", token="fresh-token"))["token"]
        assert new == "fresh-token"
        await sim.adapter(token=SecretStr(new)).check()
