"""The generic webhook source: push parsing (both formats) and reply posting with idempotency."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from govbridge_tools.simulators.webhook import WebhookPlatformState, create_app

from adapters import signing
from adapters.base import AuthError, PermanentError, RateLimited, TransientError
from adapters.webhook import MalformedId, WebhookConfig, WebhookSource
from schemas.messages import ReplyRequest, ThreadRef, inquiry_id_for
from schemas.vocab import InquiryKind, TicketStatus, Visibility

PUSH_SECRET = "push-secret-test"
REPLY_SECRET = "reply-secret-test"


def make_source(reply_url: str = "http://127.0.0.1:9/replies", **extra: Any) -> WebhookSource:
    cfg = WebhookConfig.model_validate(
        {
            "adapter": "webhook",
            "handle": "gov_account",
            "department": "transport",
            "secret": PUSH_SECRET,
            "reply_url": reply_url,
            "platform": "cityapp",
            **extra,
        }
    )
    return WebhookSource(cfg)


def item(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "external_id": "c-1001",
        "kind": "comment",
        "author": {"id": "42", "handle": "citizen_a", "display_name": "A"},
        "text": "小区门口的路灯坏了",
        "created_at": "2024-05-01T08:00:00+08:00",
        "thread": {"root_id": "p-1", "parent_id": "c-999"},
        "visibility": "public",
    }
    base.update(overrides)
    return base


def body(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# --------------------------------------------------------------------------- parsing


def test_single_inquiry_is_normalised() -> None:
    src = make_source()
    [inq] = src.parse_push(body(item()))
    assert inq.platform == "cityapp"
    assert inq.account == "gov_account"
    assert inq.kind is InquiryKind.COMMENT
    assert inq.external_id == "c-1001"
    assert inq.author.id == "42" and inq.author.handle == "citizen_a"
    assert inq.text == "小区门口的路灯坏了"
    assert inq.created_at == datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    assert inq.thread.root_id == "p-1" and inq.thread.parent_id == "c-999"
    assert inq.visibility is Visibility.PUBLIC
    assert inq.inquiry_id == inquiry_id_for("cityapp", "gov_account", "comment", "c-1001")


def test_items_list_skips_the_official_accounts_own_posts() -> None:
    src = make_source(account_id="777")
    doc = {
        "items": [
            item(external_id="a"),
            item(external_id="b", author={"id": "1", "handle": "@Gov_Account"}),
            item(external_id="c", author={"id": "777", "handle": "renamed"}),
            item(external_id=12345678901234567, kind="direct_message", visibility=None),
        ]
    }
    out = src.parse_push(body(doc))
    assert [i.external_id for i in out] == ["a", "12345678901234567"]
    assert out[1].visibility is Visibility.PRIVATE


def test_thread_defaults_to_the_item_itself_and_time_may_be_unix() -> None:
    src = make_source()
    doc = item(thread=None, created_at=1714521600)
    del doc["thread"]
    [inq] = src.parse_push(body(doc))
    assert inq.thread.root_id == "c-1001"
    assert inq.created_at == datetime(2024, 5, 1, tzinfo=UTC)


def test_repeated_push_gives_the_same_inquiry_id() -> None:
    src = make_source()
    first = src.parse_push(body(item()))
    again = src.parse_push(body({"items": [item()]}))
    assert first[0].inquiry_id == again[0].inquiry_id


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        (b"{not json", "body", "not JSON"),
        (body(["x"]), "body", "JSON object"),
        (body({k: v for k, v in item().items() if k != "external_id"}), "external_id", "missing"),
        (body(item(kind="retweet")), "kind", "mention"),
        (body(item(author={"id": "42"})), "author.handle", "missing"),
        (body(item(author={"id": 4.2e16, "handle": "x"})), "author.id", "float"),
        (body(item(text=None)), "text", "string"),
        (body(item(created_at="yesterday")), "created_at", "not a time"),
        (body(item(thread={"parent_id": "x"})), "thread.root_id", "missing"),
        (body(item(visibility="friends")), "visibility", "public"),
        (body(item(kind="direct_message", visibility="public")), "visibility", "cannot be public"),
        (body({"items": {"a": 1}}), "items", "list"),
        (body({"items": [item(), item(kind=None)]}), "items[1].kind", ""),
        (body({"items": [item(), "text"]}), "items[1]", "JSON object"),
    ],
)
def test_invalid_push_names_the_field(raw: bytes, field: str, problem: str) -> None:
    src = make_source()
    with pytest.raises(PermanentError) as exc:
        src.parse_push(raw)
    reason = exc.value.reason
    assert f"{field}:" in reason
    assert problem in reason


def test_invalid_push_reason_does_not_echo_the_content() -> None:
    src = make_source()
    with pytest.raises(PermanentError) as exc:
        src.parse_push(body(item(created_at="13800138000")))  # a phone number in the wrong field
    assert "13800138000" not in exc.value.reason


# --------------------------------------------------------------------------- fan service


def fan_push(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "text",
        "receiver_id": 5000000000000001,
        "sender_id": 3000000000000007,
        "created_at": "Wed Jun 01 00:50:25 +0800 2011",
        "text": "请问公交卡怎么退？",
        "data": {},
    }
    doc.update(overrides)
    return doc


def test_fan_service_message_is_a_private_direct_message() -> None:
    src = make_source()
    [inq] = src.parse_push(body(fan_push()))
    assert inq.kind is InquiryKind.DIRECT_MESSAGE
    assert inq.visibility is Visibility.PRIVATE
    assert inq.author.id == "3000000000000007"  # exact: no float round-trip
    assert inq.created_at == datetime(2011, 5, 31, 16, 50, 25, tzinfo=UTC)
    assert inq.thread.conversation_id == "3000000000000007"
    assert inq.thread.reply_to["receiver_id"] == "3000000000000007"
    assert inq.text == "请问公交卡怎么退？"


def test_fan_service_retry_dedupes_on_sender_and_time() -> None:
    src = make_source()
    [a] = src.parse_push(body(fan_push()))
    [b] = src.parse_push(body(fan_push(text="retried delivery")))
    [c] = src.parse_push(body(fan_push(created_at="Wed Jun 01 00:50:26 +0800 2011")))
    [d] = src.parse_push(body(fan_push(sender_id=3000000000000008)))
    assert a.external_id == b.external_id and a.inquiry_id == b.inquiry_id
    assert len({a.inquiry_id, c.inquiry_id, d.inquiry_id}) == 3


def test_fan_service_events_and_other_receivers() -> None:
    assert make_source().parse_push(body(fan_push(type="event", data={"subtype": "follow"}))) == []
    src = make_source(account_id="5000000000000001")
    assert len(src.parse_push(body(fan_push()))) == 1
    with pytest.raises(PermanentError, match="receiver_id"):
        src.parse_push(body(fan_push(receiver_id=6)))
    with pytest.raises(PermanentError, match="created_at"):
        src.parse_push(body(fan_push(created_at="Jun 1")))


def test_fan_service_type_with_a_control_character_is_refused_as_a_malformed_id() -> None:
    """Found by the fuzz test (2026-12-07): the push's ``type`` travels back as the reply's
    ``reply_to.type``, so a form feed in it failed deep inside ``Inquiry.create`` instead of
    being refused at the edge like any other id."""
    with pytest.raises(MalformedId, match="type"):
        make_source().parse_push(body(fan_push(type="010\x0cu")))


async def test_fetch_has_nothing_to_poll() -> None:
    src = make_source()
    assert src.capabilities.pushes is True
    result = await src.fetch("cur-1")
    assert result.items == [] and result.cursor == "cur-1"


# --------------------------------------------------------------------------- replies


@pytest.fixture
async def platform() -> AsyncIterator[tuple[WebhookPlatformState, str]]:
    state = WebhookPlatformState(secret=PUSH_SECRET, reply_secret=REPLY_SECRET)
    server = TestServer(create_app(state), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield state, str(server.make_url("/replies"))
    finally:
        await server.close()


def reply(reply_id: str = "rep-1", text: str = "您好，已受理，工单号T-1") -> ReplyRequest:
    return ReplyRequest(
        reply_id=reply_id,
        inquiry_id="inq_x",
        platform="cityapp",
        account="gov_account",
        department="transport",
        thread=ThreadRef(root_id="p-1", parent_id="c-1001"),
        citizen_handle="citizen_a",
        visibility=Visibility.PUBLIC,
        text=text,
        status=TicketStatus.RECEIVED,
        ticket_id="T-1",
    )


async def test_reply_is_signed_and_idempotent(platform: tuple[WebhookPlatformState, str]) -> None:
    state, url = platform
    src = make_source(url, reply_secret=REPLY_SECRET)
    try:
        first = await src.post_reply(reply())
        again = await src.post_reply(reply())
        other = await src.post_reply(reply("rep-2", "第二条"))
    finally:
        await src.close()
    assert first.outcome == "posted"
    assert again.outcome == "already_posted"
    assert again.external_ids == first.external_ids
    assert other.external_ids != first.external_ids
    stored = state.reply_list()
    assert [r["idempotency_key"] for r in stored] == ["rep-1", "rep-2"]
    assert stored[0]["text"] == "您好，已受理，工单号T-1"
    assert stored[0]["thread"]["parent_id"] == "c-1001"
    assert stored[0]["status"] == "received"


async def test_reply_with_wrong_secret_is_an_auth_error(
    platform: tuple[WebhookPlatformState, str],
) -> None:
    state, url = platform
    src = make_source(url, reply_secret="not-the-secret")
    try:
        with pytest.raises(AuthError):
            await src.post_reply(reply())
    finally:
        await src.close()
    assert state.replies == {}


@pytest.mark.parametrize(
    ("mode", "error"), [("503", TransientError), ("429", RateLimited), ("401", AuthError)]
)
async def test_reply_errors_map_to_adapter_errors(
    platform: tuple[WebhookPlatformState, str], mode: str, error: type[Exception]
) -> None:
    state, url = platform
    state.set_outage(mode)
    src = make_source(url, reply_secret=REPLY_SECRET)
    try:
        with pytest.raises(error) as exc:
            await src.post_reply(reply())
        if mode == "429":
            assert isinstance(exc.value, RateLimited)
            assert exc.value.retry_after == timedelta(seconds=30)
        state.set_outage(None)
        assert (await src.post_reply(reply())).outcome == "posted"
    finally:
        await src.close()
    assert len(state.replies) == 1


async def test_reply_refused_for_bad_body_or_length(
    platform: tuple[WebhookPlatformState, str],
) -> None:
    state, url = platform
    src = make_source(url, max_reply_chars=10)
    try:
        with pytest.raises(PermanentError, match="limit is 10"):
            await src.post_reply(reply(text="这是一条超过十个字符限制的答复内容"))
    finally:
        await src.close()
    assert state.requests["POST /replies"] == 0


async def test_unreachable_reply_url_is_transient() -> None:
    probe = TestServer(web.Application(), host="127.0.0.1", port=0)
    await probe.start_server()
    url = str(probe.make_url("/replies"))
    await probe.close()  # nothing listens there any more
    src = make_source(url)
    try:
        with pytest.raises(TransientError):
            await src.post_reply(reply())
        with pytest.raises(TransientError):
            await src.check()
    finally:
        await src.close()


# --------------------------------------------------------------------------- push loop


async def test_simulator_pushes_signed_items_the_adapter_accepts() -> None:
    """The simulator's push goes through signature verification and ``parse_push``."""
    src = make_source()
    received = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            signing.verify(PUSH_SECRET, request.headers, raw)
        except signing.SignatureError as e:
            return web.json_response({"error": e.reason}, status=e.status)
        received.extend(src.parse_push(raw))
        return web.json_response({"accepted": True})

    app = web.Application()
    app.router.add_post("/hooks/sources/gov_account", hook)
    receiver = TestServer(app, host="127.0.0.1", port=0)
    await receiver.start_server()
    try:
        state = WebhookPlatformState(
            secret=PUSH_SECRET, push_url=str(receiver.make_url("/hooks/sources/gov_account"))
        )
        assert await state.push([state.citizen_item(1), state.citizen_item(2)]) == 200
        assert await state.push_fan_service("3000000000000007", "你好") == 200
        state.secret = "forged"
        assert await state.push([state.citizen_item(3)]) == 401
    finally:
        await receiver.close()
    assert [i.author.handle for i in received] == ["citizen1", "citizen2", "3000000000000007"]
    assert received[2].kind is InquiryKind.DIRECT_MESSAGE
