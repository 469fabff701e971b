"""The platform and ticket-system simulators started in-process on free ports, and stopped
together: strict (the documented contract) or with ``quirks`` (what other servers of that kind
do besides). One object per test (``tests/conftest.py``'s ``sims`` fixture)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from govbridge_tools.kit import AppServer
from govbridge_tools.simulators.mastodon import MastodonSimState
from govbridge_tools.simulators.open311 import Open311Server, Open311State
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.simulators.webhook import create_app as webhook_app
from govbridge_tools.simulators.weibo import WeiboState
from govbridge_tools.simulators.weibo import create_app as weibo_app

S = TypeVar("S")


@dataclass
class Running(Generic[S]):
    """A simulator's state (its data and operator controls) and where it listens."""

    state: S
    url: str  # base URL, no trailing slash


class Simulators:
    """Starts simulators on demand; ``aclose`` (or leaving ``async with``) stops them all,
    the last started first."""

    def __init__(self, *, quirks: bool = False) -> None:
        self.quirks = quirks
        self._stops: list[Callable[[], Awaitable[Any]]] = []

    async def __aenter__(self) -> Simulators:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        while self._stops:
            await self._stops.pop()()

    def _quirks(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {"quirks": self.quirks, **opts}

    async def weibo(self, state: WeiboState | None = None, **opts: Any) -> Running[WeiboState]:
        """Weibo's API under ``url + "/2/"``: the state given, or one made of ``opts``."""
        state = state if state is not None else WeiboState(**opts)
        server = await AppServer(weibo_app(state)).start()
        self._stops.append(server.stop)
        return Running(state, server.url)

    async def mastodon(self, **opts: Any) -> Running[MastodonSimState]:
        """mastodon-mock, behind the quirks wrapper when ``quirks`` (an option, or the set's)."""
        state = MastodonSimState(**self._quirks(opts))
        await state.start()
        self._stops.append(state.stop)
        return Running(state, state.base_url)

    async def open311(self, **opts: Any) -> Open311Server:
        """A GeoReport v2 server (``server.state``, ``server.base_url``)."""
        server = await Open311Server(Open311State(**self._quirks(opts))).start()
        self._stops.append(server.close)
        return server

    async def rest(self, state: RestTicketState | None = None, **opts: Any) -> RestSimServer:
        """A REST ticket system (``server.state``, ``server.url``)."""
        server = RestSimServer(
            state if state is not None else RestTicketState(**self._quirks(opts))
        )
        await server.start()
        self._stops.append(server.close)
        return server

    async def webhook(
        self, state: WebhookPlatformState | None = None, **opts: Any
    ) -> Running[WebhookPlatformState]:
        """A platform that pushes signed webhooks and takes replies (no quirks mode)."""
        state = state if state is not None else WebhookPlatformState(**opts)
        server = await AppServer(webhook_app(state)).start()
        self._stops.append(server.stop)
        return Running(state, server.url)
