"""One name per account: ``account_key`` (adapter and handle), whatever names the account.

The accounts page once looked up ``hotline12345:…`` (the platform a generic webhook adapter
serves) where the outbox had counted under ``webhook:…``, and showed nothing waiting."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from govbridge_tools.simulators.rest import demo_ticketing_config

from schemas.config import account_key
from tests.conftest import bridge_config
from tests.edge import ADMIN_TOKEN, edge_bridge


def test_a_rows_platform_and_handle_name_the_account_by_its_adapter(tmp_path: Path) -> None:
    cfg = bridge_config(
        tmp_path,
        departments=[
            {"id": "env", "name": "环境局", "ticketing": demo_ticketing_config("http://t.test")}
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": "h1",
                "department": "env",
                "platform": "hotline12345",
                "secret": "s" * 32,
                "reply_url": "http://h.test/replies",
            },
            {"adapter": "weibo", "handle": "h1", "department": "env", "token": "t"},
        ],
    )
    hotline, weibo = cfg.accounts
    assert hotline.key == account_key("webhook", "h1") == "webhook:h1"
    assert weibo.key == "weibo:h1"
    # a stored inquiry or reply names the platform; the key is the adapter's
    assert cfg.account_on("hotline12345", "h1") is hotline
    assert cfg.account_on("webhook", "h1") is hotline
    assert cfg.key_on("hotline12345", "h1") == "webhook:h1"
    assert cfg.key_on("weibo", "h1") == "weibo:h1"
    # an account no longer configured keeps the name its rows give
    assert cfg.account_on("hotline12345", "gone") is None
    assert cfg.key_on("hotline12345", "gone") == "hotline12345:gone"


async def test_the_accounts_page_finds_a_webhook_accounts_outbox(tmp_path: Path) -> None:
    """The account serves ``hotline12345`` through the ``webhook`` adapter: its outbox line is
    shown beside it (it was ``null``: looked up under ``hotline12345:hotline12345``)."""
    async with edge_bridge(tmp_path) as edge, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{edge.port}/api/accounts"
        async with http.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            assert resp.status == 200
            (account,) = (await resp.json())["accounts"]
    assert (account["adapter"], account["platform"]) == ("webhook", "hotline12345")
    assert account["outbox"] is not None
    assert account["outbox"]["waiting"] == 0 and account["outbox"]["paused"] is None
