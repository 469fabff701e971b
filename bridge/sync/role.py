"""sync: learn every status change of the departments' tickets.

Polling: one loop per department reads ``changes_since(cursor)``, publishes each event as
``ticket.updated.<department>`` with confirms, then stores the cursor. Callbacks:
``POST /hooks/tickets/{department}`` checks the HMAC signature, replay window and size before
the adapter parses the body; 202 only after the broker confirmed. Whether an event moves a
ticket (never backwards) is decided where it is applied, in the reply stage.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from adapters.base import AuthError, PermanentError, WatchesTickets
from bridge.runtime.polling import PollLoop
from bridge.runtime.push import Parsed, PushRejected
from bridge.runtime.worker import Worker
from schemas import routing
from schemas.config import DepartmentConfig
from schemas.messages import TicketEvent
from schemas.vocab import FINAL_STATUSES

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.sync")


async def publish_events(ctx: BridgeContext, events: list[TicketEvent]) -> None:
    await ctx.broker.publish_many([(routing.ticket_updated(e.department), e) for e in events])


class SyncRole:
    name = "sync"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.workers: list[Worker[Any]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        ctx.app.router.add_post("/hooks/tickets/{department}", self.callback)

    async def start(self) -> None:
        systems = self.ctx.adapters.ticket_systems()
        for dept in self.ctx.cfg.departments:
            if dept.ticketing.poll.total_seconds() > 0:
                task = asyncio.create_task(self._poll(dept), name=f"sync:{dept.id}")
                self._tasks.append(task)
        log.info("sync started", departments=list(systems))

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    async def poll_once(self, dept: DepartmentConfig) -> int:
        """One page of changes → publish → store cursor. Returns the number of events."""
        name = f"tickets:{dept.id}"
        cursor = await self.ctx.store.get_cursor(name)
        system = self.ctx.adapters.ticket_systems()[dept.id]
        if isinstance(system, WatchesTickets):
            # The bridge's open tickets, asked for by id beside the change feed: a change that
            # does not move the server's updated_datetime is still seen.
            system.watch(await self.ctx.store.open_native_statuses(dept.id, sorted(FINAL_STATUSES)))
        result = await system.changes_since(cursor)
        if result.events:
            await publish_events(self.ctx, result.events)
        if result.cursor != cursor and not await self.ctx.store.set_cursor(
            name, result.cursor, expected=cursor
        ):
            log.warning("cursor moved by another poller; this step's cursor not stored")
        return len(result.events)

    def loop(self, dept: DepartmentConfig) -> PollLoop:
        """The department's poll loop: one process at a time polls its ticket system."""
        interval = dept.ticketing.poll.total_seconds()

        async def step() -> bool:
            await self.poll_once(dept)
            return False  # one page per interval, as before

        async def auth_failed(exc: AuthError) -> float:
            self.ctx.alerts.raise_(
                "ticketing_auth", dept.id, f"ticket system refused: {exc.reason}", "poll"
            )
            return max(interval, 30.0)

        def polled() -> None:
            # Evidence about polling only: a server may answer GET requests without a key it
            # refuses for creates, so a create's alert stays.
            self.ctx.alerts.succeeded("ticketing_auth", dept.id, "poll")

        return PollLoop(
            name=f"tickets:{dept.id}",
            step=step,
            interval=interval,
            stop=self._stop,
            leases=self.ctx.leases,
            on_auth_error=auth_failed,
            on_success=polled,
            min_backoff=interval,  # a ticket system that failed is asked again next interval
            max_backoff=interval,
        )

    async def _poll(self, dept: DepartmentConfig) -> None:
        with structlog.contextvars.bound_contextvars(department=dept.id):
            await self.loop(dept).run()

    async def callback(self, request: web.Request) -> web.Response:
        """``POST /hooks/tickets/{department}``: a signed status callback.

        A department that is not configured, or has no callback secret, is answered exactly
        like a bad signature (no enumeration of departments).
        """
        dept_id = request.match_info["department"]
        dept = next((d for d in self.ctx.cfg.departments if d.id == dept_id), None)
        secret = dept.ticketing.callback_secret if dept is not None else None

        def parse(body: bytes) -> Parsed:
            try:
                events = self.ctx.adapters.ticket_systems()[dept_id].parse_callback(
                    request.headers, body
                )
            except PermanentError as exc:
                raise PushRejected(400, exc.reason) from None
            if any(e.department != dept_id for e in events):
                raise PushRejected(400, "event for another department")
            return Parsed(
                messages=[(routing.ticket_updated(e.department), e) for e in events],
                answer={"accepted": len(events)},
            )

        return await self.ctx.push.handle(request, secret, parse, "callback")


def create(ctx: BridgeContext) -> SyncRole:
    return SyncRole(ctx)
