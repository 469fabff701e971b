"""The ingest role in its own process, for the SIGKILL test in ``tests/test_ingest.py``.

    .venv/bin/python tests/ingest_process.py CONFIG.toml JOURNAL [BEFORE_PUBLISH_S AFTER_CONFIRM_S]

It runs what ``govbridge run -c CONFIG --roles ingest`` runs (a :class:`Daemon` with role
``ingest``), with one piece of instrumentation so the test can aim its SIGKILL: the broker's
``publish_many`` (which the poller calls with each fetched page, before it stores the cursor)
appends ``fetched <pid> <external ids>`` to JOURNAL when a page arrives, then sleeps
BEFORE_PUBLISH_S, publishes with confirms, appends ``confirmed <pid> <external ids>`` and sleeps
AFTER_CONFIRM_S before handing back to the poller, which only then writes the cursor. The two
sleeps widen the windows "fetched, not yet confirmed" and "confirmed, cursor not yet stored"
so a kill lands inside them; nothing else about the product is changed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.telemetry.logging import configure_logging
from schemas.messages import Inquiry, Message


def instrument(daemon: Daemon, journal: str, before: float, after: float) -> None:
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()
    original = daemon.broker.publish_many

    def note(kind: str, ids: list[str]) -> None:
        # One write(2) per line on an O_APPEND descriptor: lines never interleave or tear.
        os.write(fd, f"{kind} {pid} {','.join(ids)}\n".encode())

    async def publish_many(items: Sequence[tuple[str, Message]]) -> None:
        ids = [m.external_id for _, m in items if isinstance(m, Inquiry)]
        if ids:
            note("fetched", ids)
            await asyncio.sleep(before)
        await original(items)
        if ids:
            note("confirmed", ids)
            await asyncio.sleep(after)

    daemon.broker.publish_many = publish_many  # type: ignore[method-assign]


async def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    config, journal = argv[0], argv[1]
    before, after = (float(argv[2]), float(argv[3])) if len(argv) == 4 else (0.0, 0.0)
    configure_logging("info", json=True)
    daemon = Daemon(load_config(config), roles=["ingest"])
    instrument(daemon, journal, before, after)
    return await daemon.run()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
