"""``POST /hooks/sources/{account}`` end to end: a Daemon with roles ``ingest`` + ``http``, a
``webhook`` account, the real RabbitMQ (issue 3, must-show 4).

What reaches the bus is watched through an exclusive queue of the test's own, bound to
``inquiry.received.#`` before the daemon starts. "Nothing published" is proved with a control:
after the rejected request has been answered, a valid push is made and confirmed; the daemon
publishes both on one confirming channel, in order, so had the rejected request published
anything it would be on our queue before the control. The queue must then hold the control
alone.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from govbridge_tools.testing import BusTap, SignedHook, encode

from adapters.signing import sign
from bridge.daemon import Daemon
from schemas.config import GovbridgeConfig
from tests.conftest import AMQP_URL, bridge_config, eventually, running_bridge
from tests.tcp_proxy import TcpProxy

SECRET = "hotline-webhook-secret"
HANDLE = "hotline12345"
LIMIT = 64 * 1024
DEPARTMENT = {
    "id": "urban",
    "name": "市城管委",
    "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}},
}
ACCOUNT = {
    "adapter": "webhook",
    "handle": HANDLE,
    "department": "urban",
    "secret": SECRET,
    "reply_url": "http://127.0.0.1:9/replies",
    "platform": "hotline12345",
}


def item(external_id: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "external_id": external_id,
        "kind": "mention",
        "author": {"id": "880001", "handle": "市民小李"},
        "text": "小区北门路灯坏了一个星期，晚上很黑，求助尽快维修",
        "created_at": datetime.now(UTC).isoformat(),
        "visibility": "public",
    }
    doc.update(overrides)
    return doc


class Hook(SignedHook):
    """The bridge's source hook for the account, signed with its secret, and a tap on what it
    publishes."""

    def __init__(self, daemon: Daemon, tap: BusTap, http: aiohttp.ClientSession, url: str) -> None:
        super().__init__(http, url, SECRET)
        self.daemon = daemon
        self.tap = tap

    async def control(self, external_id: str) -> None:
        """A valid push: 202, and it arrives on our queue (the binding works)."""
        status, answer = await self.push(item(external_id))
        assert status == 202, answer
        await eventually(self.has(external_id), 10)

    def has(self, external_id: str) -> Callable[[], Any]:
        async def check() -> bool:
            return external_id in self.tap.values("external_id")

        return check


def config(tmp_path: Path, **broker: Any) -> GovbridgeConfig:
    return bridge_config(tmp_path, departments=[DEPARTMENT], accounts=[ACCOUNT], broker=broker)


@pytest.fixture
async def hook(tmp_path: Path) -> AsyncIterator[Hook]:
    cfg = config(tmp_path)
    async with (
        BusTap(cfg.broker, "inquiry.received.#", declare=True) as tap,
        running_bridge(cfg, ["ingest", "http"]) as daemon,
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/{HANDLE}"
        yield Hook(daemon, tap, http, url)


def forged() -> tuple[bytes, dict[str, str]]:
    body = encode(item("forged-1"))
    return body, sign("not-the-secret", body)


def stale() -> tuple[bytes, dict[str, str]]:
    body = encode(item("stale-1"))
    return body, sign(SECRET, body, int(time.time()) - 301)  # just outside 5 minutes


def unsigned() -> tuple[bytes, dict[str, str]]:
    return encode(item("unsigned-1")), {}


def too_large() -> tuple[bytes, dict[str, str]]:
    doc = item("large-1", text="")
    doc["text"] = "路" * ((LIMIT - len(encode(doc))) // 3 + 1)  # 3 bytes each in UTF-8
    body = encode(doc)
    assert len(body) > LIMIT
    return body, sign(SECRET, body)  # correctly signed: only the size is wrong


def invalid_json() -> tuple[bytes, dict[str, str]]:
    body = encode(item("broken-1"))[:-7]
    return body, sign(SECRET, body)


def missing_author() -> tuple[bytes, dict[str, str]]:
    doc = item("schema-1")
    del doc["author"]
    body = encode(doc)
    return body, sign(SECRET, body)


def bad_kind_in_list() -> tuple[bytes, dict[str, str]]:
    # One bad item rejects the whole push: the valid first item is not published either.
    body = encode({"items": [item("schema-2"), item("schema-3", kind="retweet")]})
    return body, sign(SECRET, body)


@pytest.mark.parametrize(
    ("make", "status", "reason"),
    [
        (forged, 401, "signature does not match"),
        (stale, 401, "replay window"),
        (unsigned, 401, "missing X-Govbridge-Timestamp"),
        (too_large, 413, f"larger than {LIMIT} bytes"),
        (invalid_json, 400, "not JSON"),
        (missing_author, 422, "author: required field is missing"),
        (bad_kind_in_list, 422, "items[1].kind"),
    ],
    ids=["forged", "stale", "unsigned", "over-64KiB", "invalid-json", "no-author", "bad-kind"],
)
async def test_rejected_push_gets_a_4xx_with_the_reason_and_publishes_nothing(
    hook: Hook, make: Callable[[], tuple[bytes, dict[str, str]]], status: int, reason: str
) -> None:
    body, headers = make()
    got, answer = await hook.post(body, headers)
    assert got == status, answer
    assert reason in answer["error"]
    await hook.control("control-1")
    assert hook.tap.values("external_id") == ["control-1"], "the rejected push was published"


async def test_valid_push_is_answered_202_with_the_inquiry_on_the_bus(hook: Hook) -> None:
    own = item("own-1", author={"id": "1", "handle": HANDLE}, text="您好，已转交属地处理。")
    status, answer = await hook.push({"items": [item("hello-1"), own]})
    assert status == 202, answer
    assert answer["accepted"] == 1  # the account's own post is never published (echo)
    # 202 came after the confirm: the inquiry is already queued, nothing to wait for but delivery.
    await eventually(hook.has("hello-1"), 10)
    [inquiry] = hook.tap.bodies()
    assert inquiry["inquiry_id"] in answer["inquiry_ids"]
    assert (inquiry["platform"], inquiry["account"]) == ("hotline12345", HANDLE)
    assert inquiry["author"]["handle"] == "市民小李"


async def test_push_is_answered_503_not_202_while_the_broker_cannot_confirm(
    tmp_path: Path,
) -> None:
    # A real outage as the daemon sees it: its AMQP connection runs through a TCP proxy that
    # we cut (RST on every live connection) and keep refusing, so the publish cannot be
    # confirmed; the test's own queue is connected directly and stays up.
    host, _, port = AMQP_URL.split("@", 1)[1].split("/", 1)[0].rpartition(":")
    async with TcpProxy(host, int(port)) as proxy:
        cfg = config(tmp_path, url=proxy.url(), confirm_timeout="2s")
        async with (
            BusTap(cfg.broker, "inquiry.received.#", declare=True, url=AMQP_URL) as tap,
            running_bridge(cfg, ["ingest", "http"]) as daemon,
            aiohttp.ClientSession() as http,
        ):
            url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/{HANDLE}"
            h = Hook(daemon, tap, http, url)
            await h.control("before-1")

            proxy.refuse(True)
            assert proxy.cut() >= 1
            await eventually(lambda: _async(not daemon.broker.connected), 10)
            status, answer = await h.push(item("outage-1"))
            assert status == 503, answer
            assert "broker did not confirm" in answer["error"]

            # Reachable again: the daemon reconnects; a control push confirmed after that would
            # follow anything of the failed attempt still buffered on the channel.
            proxy.refuse(False)
            await eventually(lambda: _async(daemon.broker.connected), 30)

            async def probe() -> bool:
                return (await h.push(item("probe-1")))[0] == 202

            await eventually(probe, 30)
            await eventually(h.has("probe-1"), 10)
            assert "outage-1" not in tap.values("external_id"), (
                "the push answered 503 was published"
            )

            # The platform retries the push, and now it is accepted.
            status, answer = await h.push(item("outage-1"))
            assert status == 202, answer
            await eventually(h.has("outage-1"), 10)
    assert tap.values("external_id").count("outage-1") == 1
    assert tap.values("external_id")[0] == "before-1" and "probe-1" in tap.values("external_id")


async def _async(value: bool) -> bool:
    return value
