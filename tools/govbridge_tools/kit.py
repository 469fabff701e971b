"""The shared test and demo kit: where the broker is, whether it answers, and a small HTTP
server on a free port. The demo, the benchmark and the tests import it from here, not from a
CLI command."""

from __future__ import annotations

import os
import socket
import urllib.parse

from aiohttp import web

from bridge.config import AMQP_URL_ENV


def amqp_url() -> str:
    return os.environ.get(AMQP_URL_ENV) or "amqp://guest:guest@127.0.0.1:5672/"


def broker_reachable(url: str) -> bool:
    u = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((u.hostname or "127.0.0.1", u.port or 5672), timeout=3).close()
        return True
    except OSError:
        return False


class AppServer:
    """An aiohttp app on 127.0.0.1 and a free port."""

    def __init__(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app, access_log=None)
        self.port = 0

    async def start(self) -> AppServer:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
