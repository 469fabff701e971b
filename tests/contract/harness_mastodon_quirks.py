"""Contract harness: ``MastodonSource`` against mastodon-mock behind the simulator's ``quirks``
wrapper (plain-text 400 for a bad token, no notification policy, ``Idempotency-Key`` and
``include_filtered`` ignored, ``acct`` with the domain)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from govbridge_tools.simulators.mastodon import MastodonSimState

from tests.contract.harness_mastodon import MastodonHarness


class MastodonQuirksHarness(MastodonHarness):
    name = "mastodon-quirks"

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[MastodonHarness]:
        self._sim = MastodonSimState(quirks=True)
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


HARNESS = MastodonQuirksHarness
