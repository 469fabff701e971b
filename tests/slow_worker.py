"""A daemon with one slow test stage, run as a subprocess by the SIGTERM test.

    python -m tests.slow_worker CONFIG.toml JOURNAL DELAY_SECONDS

The ``reply`` stage handler appends ``start <event_id> <pid>`` to the journal, sleeps, then
appends ``done <event_id> <pid>`` *before* returning, so the ack always follows the journal
line: a message journalled ``done`` twice was processed twice. ``StageRole`` is also used
in-process by the other daemon tests.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.runtime.context import BridgeContext
from bridge.runtime.worker import Delivery, Handler, Stage, Worker
from bridge.telemetry.logging import configure_logging
from schemas.messages import TicketEvent

STAGE = "reply"  # binds ticket.created.* / ticket.updated.*; consumes TicketEvent


class StageRole:
    """A daemon role running one worker for ``stage`` with the given handler (tests only)."""

    def __init__(
        self, ctx: BridgeContext, handler: Handler[TicketEvent], prefetch: int | None = None
    ) -> None:
        self.name = "test"
        self.workers: list[Worker[Any]] = [
            Worker(ctx.broker, Stage(STAGE, TicketEvent, handler, prefetch=prefetch))
        ]

    async def start(self) -> None:
        for worker in self.workers:
            await worker.start()

    async def stop(self) -> None:
        for worker in self.workers:
            await worker.stop()


def journal_handler(path: str, delay: float) -> Handler[TicketEvent]:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()

    async def handle(ev: TicketEvent, msg: Delivery) -> None:
        os.write(fd, f"start {ev.event_id} {pid}\n".encode())
        await asyncio.sleep(delay)
        os.write(fd, f"done {ev.event_id} {pid}\n".encode())

    return handle


def main(argv: list[str]) -> int:
    config, journal, delay = argv[0], argv[1], float(argv[2])
    configure_logging("info", json=True)
    cfg = load_config(config)
    handler = journal_handler(journal, delay)
    daemon = Daemon(
        cfg,
        roles=["test"],
        role_factories={"test": lambda ctx: StageRole(ctx, handler)},
        watchdog_interval=1.0,
    )
    return asyncio.run(daemon.run())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
