"""Contract harness for the Weibo source: the in-process simulator plus a ``WeiboSource`` on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp.test_utils import TestServer
from govbridge_tools.simulators.weibo import WeiboState, create_app
from pydantic import SecretStr

from adapters.weibo import WeiboConfig, WeiboSource
from schemas.messages import ReplyRequest, ThreadRef, inquiry_id_for
from schemas.vocab import InquiryKind, Visibility


class WeiboHarness:
    name = "weibo"
    backlog = 1_005  # several pages of the configured page_size, restarts between them

    def __init__(self, **state_opts: object) -> None:
        self.state = WeiboState(**state_opts)  # type: ignore[arg-type]
        self._server: TestServer | None = None
        self._adapters: list[WeiboSource] = []
        self._official_post: int | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[WeiboHarness]:
        self._server = TestServer(create_app(self.state), host="127.0.0.1", port=0)
        await self._server.start_server()
        try:
            yield self
        finally:
            for a in self._adapters:
                await a.close()
            await self._server.close()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use `async with harness.running()`"
        return str(self._server.make_url("/2/"))

    def config(self, **overrides: object) -> WeiboConfig:
        values: dict[str, object] = {
            "adapter": "weibo",
            "handle": self.state.official_name,
            "department": "transport",
            "token": SecretStr(self.state.token),
            "base_url": self.base_url,
            "page_size": 50,
        }
        values.update(overrides)
        return WeiboConfig.model_validate(values)

    def adapter(self, **overrides: object) -> WeiboSource:
        a = WeiboSource(self.config(**overrides))
        self._adapters.append(a)
        return a

    async def add_citizen_items(self, n: int) -> list[str]:
        """Round-robin over the three ways to reach the account: comment, mention, comment-@."""
        ids: list[str] = []
        for k in range(n):
            citizen = f"市民{k % 97}"
            text = f"第{k}号问题：小区门口路灯不亮，请尽快处理。"
            if k % 3 == 0:
                if self._official_post is None or k % 60 == 0:
                    self._official_post = self.state.add_official_post().id
                c = self.state.add_citizen_comment(
                    text, citizen=citizen, status_id=self._official_post
                )
                ids.append(str(c.id))
            elif k % 3 == 1:
                ids.append(str(self.state.add_mention_post(text, citizen=citizen).id))
            else:
                ids.append(str(self.state.add_comment_mention(text, citizen=citizen).id))
        return ids

    async def reply_request_for(self, external_id: str, reply_id: str, text: str) -> ReplyRequest:
        key = int(external_id)
        if key in self.state.comments:
            c = self.state.comments[key]
            on_ours = self.state.statuses[c.status_id].user_id == self.state.official_uid
            kind = InquiryKind.COMMENT if on_ours else InquiryKind.MENTION
            thread = ThreadRef(
                root_id=str(c.status_id),
                parent_id=external_id,
                reply_to={"id": str(c.status_id), "cid": external_id},
            )
            handle = self.state.users[c.user_id].screen_name
        else:
            s = self.state.statuses[key]
            kind = InquiryKind.MENTION
            thread = ThreadRef(root_id=external_id, reply_to={"id": external_id})
            handle = self.state.users[s.user_id].screen_name
        account = self.state.official_name
        return ReplyRequest(
            reply_id=reply_id,
            inquiry_id=inquiry_id_for("weibo", account, kind, external_id),
            platform="weibo",
            account=account,
            department="transport",
            thread=thread,
            citizen_handle=handle,
            visibility=Visibility.PUBLIC,
            text=text,
        )

    async def posted_replies(self) -> list[dict[str, str]]:
        return [
            {k: v for k, v in r.items() if isinstance(v, str)} for r in self.state.posted_replies()
        ]

    async def exhaust_rate_limit(self) -> None:
        self.state.exhaust_rate_limit()

    async def reset_rate_limit(self) -> None:
        self.state.reset_rate_limits()

    async def break_token(self) -> None:
        self.state.expire_token()


HARNESS = WeiboHarness
