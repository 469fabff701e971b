"""The benchmark's backends, in a process of their own: an Open311 ticket system (the
simulator) and a reply sink that notes when each inquiry's first reply arrived.

``python -m govbridge_tools.bench.backends`` prints one JSON line with the two base URLs, then
serves
until SIGTERM. ``GET /_bench/first_replies`` on the sink answers ``{inquiry_id: unix time}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

from aiohttp import web

from govbridge_tools.simulators.open311 import Open311Server, Open311State


def sink_app() -> web.Application:
    """Takes replies like a webhook platform (dedupe on ``Idempotency-Key``), remembers the
    first reply per inquiry."""
    first: dict[str, float] = {}
    keys: dict[str, int] = {}
    app = web.Application()

    async def reply(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        now = time.time()
        key = request.headers.get("Idempotency-Key", "")
        if key in keys:
            return web.json_response({"id": keys[key], "duplicate": True})
        keys[key] = len(keys) + 1
        first.setdefault(str(body.get("inquiry_id")), now)
        return web.json_response({"id": keys[key]}, status=201)

    async def first_replies(request: web.Request) -> web.Response:
        return web.json_response(first)

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"replies": len(keys), "inquiries": len(first)})

    app.router.add_post("/replies", reply)
    app.router.add_get("/_bench/first_replies", first_replies)
    app.router.add_get("/_bench/count", count)
    return app


async def serve() -> None:
    open311 = await Open311Server(Open311State(agency="测试局")).start()
    runner = web.AppRunner(sink_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sink_port = int(runner.addresses[0][1])
    print(
        json.dumps({"open311": open311.base_url, "sink": f"http://127.0.0.1:{sink_port}"}),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await open311.close()


if __name__ == "__main__":
    asyncio.run(serve())
    sys.exit(0)
