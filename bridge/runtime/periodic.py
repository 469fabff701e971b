"""A role with no queue of its own that does one ``scan()`` every few seconds until it is
stopped: the SLA watch and the account inspection. A failed scan is logged and the next one
still runs on time, so one bad row never stops the watch."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from bridge.runtime.context import sleep_or_stop
from bridge.runtime.worker import Worker

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.periodic")


class PeriodicRole:
    name = "periodic"
    #: scan once at start (the SLA watch) or only after the first interval (the inspection,
    #: which asks every platform for the account's timeline)
    scan_at_start = True

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.workers: list[Worker[Any]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def interval(self) -> float:
        """Seconds between scans (read from the config at each wait)."""
        raise NotImplementedError

    async def scan(self) -> Any:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)

    async def _loop(self) -> None:
        if not self.scan_at_start and await sleep_or_stop(self._stop, self.interval()):
            return
        while True:
            try:
                await self.scan()
            except Exception as exc:
                log.exception("scan failed", role=self.name, error=repr(exc))
            if await sleep_or_stop(self._stop, self.interval()):
                return
