"""Replies are fitted to the platform: shortened at a character boundary where the adapter
cannot split them itself, instead of being refused."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from govbridge_tools.simulators.webhook import WebhookPlatformState, create_app

from bridge.reply.role import queue_reply
from schemas.messages import ReplyRequest, ThreadRef
from schemas.vocab import Visibility
from tests.conftest import bridge_config, eventually, running_bridge
from tests.test_sla import DEPT


async def test_long_reply_shortened_for_a_platform_that_cannot_split(tmp_path: Path) -> None:
    platform = WebhookPlatformState(secret="s", account_handle="hotline")
    runner = web.AppRunner(create_app(platform))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    account = {
        "adapter": "webhook",
        "handle": "hotline",
        "department": "urban",
        "secret": "s",
        "reply_url": f"http://127.0.0.1:{port}/replies",
        "max_reply_chars": 40,
    }
    cfg = bridge_config(tmp_path, departments=[{**DEPT, "approval": "none"}], accounts=[account])
    text = "您好，" + "工单T1的处理情况如下：相关部门已到现场核查。" * 5
    try:
        async with running_bridge(cfg, ["reply"], in_memory=True) as daemon:
            assert daemon.ctx is not None
            request = ReplyRequest(
                reply_id="rep_long",
                inquiry_id="inq_1",
                platform="webhook",
                account="hotline",
                department="urban",
                thread=ThreadRef(root_id="m1"),
                citizen_handle="citizen1",
                visibility=Visibility.PUBLIC,
                text=text,
            )
            await queue_reply(daemon.ctx, request, "none")  # as the reply stage composes it

            async def posted() -> bool:
                return bool(platform.reply_list())

            await eventually(posted)
            stored = await daemon.ctx.store.get_reply("rep_long")
    finally:
        await runner.cleanup()
    (reply,) = platform.reply_list()
    assert len(reply["text"]) == 40
    assert reply["text"] == text[:39] + "…"
    assert stored is not None and stored.state == "posted"
