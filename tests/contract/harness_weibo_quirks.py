"""Contract harness: the Weibo simulator in ``quirks`` mode. Among the citizens' items it mixes
poison ones (a lone surrogate, a missing field, a number out of range, hundreds of levels of
nesting) that are not part of what the contract expects back: a source must skip them, report
them as rejected, and still return every good item once."""

from __future__ import annotations

from tests.contract.harness_weibo import WeiboHarness

_KINDS = ("missing", "range", "nested")


class WeiboQuirksHarness(WeiboHarness):
    name = "weibo-quirks"

    def __init__(self) -> None:
        super().__init__(quirks=True)
        self._poisoned = 0

    async def add_citizen_items(self, n: int) -> list[str]:
        ids = await super().add_citizen_items(n)
        # One poison item per 50 good ones (at least one), written right after them.
        for _ in range(max(1, n // 50)):
            bad = self.state.add_mention_post(f"坏数据{self._poisoned}", citizen="路人")
            self.state.poison[bad.id] = _KINDS[self._poisoned % len(_KINDS)]
            self._poisoned += 1
        return ids


HARNESS = WeiboQuirksHarness
