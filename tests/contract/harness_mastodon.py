"""Contract harness: ``MastodonSource`` against the third-party mastodon-mock, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta

from govbridge_tools.simulators.mastodon import Citizen, MastodonSimState

from adapters.base import Source
from adapters.mastodon import MastodonConfig, MastodonSource
from schemas.messages import ReplyRequest, ThreadRef, inquiry_id_for
from schemas.vocab import InquiryKind, Visibility

_CITIZENS = 8  # items rotate over a few accounts, as a real inbox would
_DM_EVERY = 5  # every fifth item is a direct message (filtered by the 4.3 default policy)


class MastodonHarness:
    name = "mastodon"
    # 245 items are 7 pages of 40 with a fresh adapter every 3 pages; the third-party mock
    # takes about 50 ms to create a status, so 1,005 cost ~50 s of set-up per run
    backlog = 245

    def __init__(self) -> None:
        self._sim: MastodonSimState | None = None
        self._adapters: list[MastodonSource] = []
        self._citizens: list[Citizen] = []
        self._posted = 0
        self._reset_at = datetime.now(UTC)

    @property
    def sim(self) -> MastodonSimState:
        if self._sim is None:
            raise RuntimeError("harness not running")
        return self._sim

    def running(self) -> AbstractAsyncContextManager[MastodonHarness]:
        return self._running()

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[MastodonHarness]:
        self._sim = MastodonSimState()
        await self._sim.start()
        try:
            yield self
        finally:
            for adapter in self._adapters:
                await adapter.close()
            self._adapters.clear()
            await self._sim.stop()
            self._sim = None
            self._citizens.clear()

    def adapter(self) -> Source:
        cfg = MastodonConfig.model_validate(
            self.sim.account_config(department="contract", accept_private_mentions=True)
        )
        source = MastodonSource(cfg)
        self._adapters.append(source)
        return source

    async def add_citizen_items(self, n: int) -> list[str]:
        while len(self._citizens) < min(n, _CITIZENS):
            self._citizens.append(await self.sim.create_citizen())
        ids: list[str] = []
        for _ in range(n):
            i = self._posted
            self._posted += 1
            citizen = self._citizens[i % len(self._citizens)]
            visibility = "direct" if i % _DM_EVERY == _DM_EVERY - 1 else "public"
            status = await self.sim.mention(
                citizen, f"第{i}号诉求：小区路灯不亮，请处理。", visibility=visibility
            )
            ids.append(str(status["id"]))
        return ids

    async def reply_request_for(self, external_id: str, reply_id: str, text: str) -> ReplyRequest:
        status = await self.sim.get_status(external_id)
        visibility = str(status["visibility"])
        acct = str(status["account"]["acct"])
        kind = InquiryKind.DIRECT_MESSAGE if visibility == "direct" else InquiryKind.MENTION
        return ReplyRequest(
            reply_id=reply_id,
            inquiry_id=inquiry_id_for("mastodon", self.sim.official, kind, external_id),
            platform="mastodon",
            account=self.sim.official,
            department="contract",
            thread=ThreadRef(
                root_id=external_id,
                parent_id=external_id,
                conversation_id=external_id,
                reply_to={"status_id": external_id, "acct": acct, "visibility": visibility},
            ),
            citizen_handle=acct,
            visibility=Visibility.PRIVATE
            if visibility in ("private", "direct")
            else Visibility.PUBLIC,
            text=text,
        )

    async def posted_replies(self) -> list[dict[str, str]]:
        return [
            {k: str(v) for k, v in r.items() if v is not None and k != "mentions"}
            for r in await self.sim.official_replies()
        ]

    async def exhaust_rate_limit(self) -> None:
        # A short window: the adapter honours the announced reset (it asks nothing before it).
        self._reset_at = datetime.now(UTC) + timedelta(seconds=1)
        await self.sim.inject_rate_limit(reset_at=self._reset_at)

    async def reset_rate_limit(self) -> None:
        await self.sim.clear_faults()
        wait = (self._reset_at - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait + 0.05)

    async def break_token(self) -> None:
        await self.sim.revoke_official_token()


HARNESS = MastodonHarness
