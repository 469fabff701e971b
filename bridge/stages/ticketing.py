"""ticketing: routed inquiries become tickets in the department's own system, exactly once.

Create: a durable "create attempted" record is written before the call. On redelivery of an
attempted-but-unrecorded create the ticket is looked up by the bridge's reference where the
backend can search (or the create simply repeated where it takes an idempotency key);
otherwise the inquiry is flagged ``needs_reconciliation`` (log, metric, ``/api/reconciliation``)
and no second ticket is made. Append: a follow-up goes onto the thread's existing ticket.

Outages: transient errors go through the delay tiers (the adapter's circuit breaker keeps the
request count bounded; while it is open an attempt is not counted, so no outage exhausts a
message); 401/403 pause the department with an alert and wait in the longest tier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from adapters.base import (
    AdapterError,
    AuthError,
    CreatedTicket,
    DetectsCapabilities,
    PermanentError,
    TicketSystem,
    TransientError,
)
from adapters.circuit import CircuitBreaker
from bridge.http import require_admin
from bridge.runtime import DeadLetter, Retry, Stage, Worker
from bridge.stages.common import longest_delay, ticket_systems
from schemas.messages import TicketCommand, TicketEvent
from schemas.vocab import TicketStatus

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.ticketing")


class TicketingRole:
    name = "ticketing"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.worker: Worker[TicketCommand] = Worker(
            ctx.broker, Stage("ticketing", TicketCommand, self.handle)
        )
        self.workers: list[Worker[Any]] = [self.worker]
        ctx.app.router.add_get("/api/reconciliation", self.list_reconciliation)

    async def start(self) -> None:
        for dept_id, system in ticket_systems(self.ctx).items():
            if isinstance(system, DetectsCapabilities):
                try:  # e.g. whether any API takes a follow-up (capabilities.appends)
                    await system.detect()
                except AdapterError as exc:  # the adapter detects again on first need
                    log.warning("capability detection failed", department=dept_id, error=exc.reason)
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        for system in ticket_systems(self.ctx).values():
            await system.close()

    async def handle(self, command: TicketCommand, _: AbstractIncomingMessage) -> None:
        try:
            system = ticket_systems(self.ctx)[command.department]
        except KeyError:
            raise DeadLetter(f"unknown department {command.department!r}") from None
        try:
            if command.action == "append":
                await self._append(system, command)
            else:
                await self._create(system, command)
            self.ctx.alerts.clear("ticketing_auth", command.department)
        except AuthError as exc:
            self.ctx.alerts.raise_(
                "ticketing_auth", command.department, f"ticket system refused: {exc.reason}"
            )
            raise Retry(
                f"ticketing paused: {exc.reason}", longest_delay(self.ctx), counts=False
            ) from exc
        except TransientError as exc:
            self.ctx.metrics.tickets.labels(command.department, "transient_error").inc()
            raise _transient_retry(system, exc) from exc
        except PermanentError as exc:
            self.ctx.metrics.tickets.labels(command.department, "rejected").inc()
            raise DeadLetter(f"ticket system rejected: {exc.reason}") from exc

    async def _create(self, system: TicketSystem, command: TicketCommand) -> None:
        store, ref = self.ctx.store, command.reference
        recorded = await store.ticket_by_reference(ref)
        if recorded is not None:  # already done: make sure the event went out
            await self._publish_created(command, recorded["ticket_id"], recorded["native_status"])
            return
        attempt = await store.get_create_attempt(ref)
        if attempt is not None and attempt["state"] == "needs_reconciliation":
            log.warning("create awaits reconciliation; not creating again", reference=ref)
            return
        ticket: CreatedTicket | None = None
        expected: str | None = None
        if attempt is not None and attempt["state"] == "attempted":
            # Another delivery (here or in another process) may be creating it right now:
            # wait for its lease before presuming it crashed.
            lease = self.ctx.cfg.department(command.department).ticketing.create_lease
            age = datetime.now(UTC) - datetime.fromisoformat(attempt["updated_at"])
            if age < lease:
                raise Retry(f"create of {ref} in progress elsewhere", lease - age, counts=False)
            expected = attempt["updated_at"]
            caps = system.capabilities
            if caps.search_by_reference:
                ticket = await system.find_by_reference(ref)
                if ticket is not None:
                    log.info("earlier create found by reference", ticket_id=ticket.ticket_id)
            elif not caps.idempotent_create:
                await store.set_create_state(
                    ref,
                    "needs_reconciliation",
                    detail="a create may have reached the backend; it cannot be searched",
                )
                await store.update_inquiry(command.inquiry.inquiry_id, state="needs_reconciliation")
                self.ctx.metrics.reconciliation.labels(command.department).inc()
                log.error("create outcome unknown: flagged for reconciliation", reference=ref)
                return
        if ticket is None:
            breaker = _circuit_open(system)
            if breaker is not None and breaker.state == "open":
                # No request would be made: do not record an attempt that never happens.
                raise TransientError(f"{breaker.name}: circuit open; create not attempted")
            claimed = await store.claim_create(
                ref, command.department, command.inquiry.inquiry_id, expected_updated_at=expected
            )
            if not claimed:
                raise Retry(f"create of {ref} claimed by another delivery", counts=False)
            try:
                ticket = await system.create(command, idempotency_key=ref)
            except TransientError as exc:
                if exc.not_sent:  # certainly not created: a redelivery may simply create
                    await store.set_create_state(ref, "not_sent", detail=exc.reason[:200])
                raise
        await store.record_ticket(
            department=command.department,
            ticket_id=ticket.ticket_id,
            reference=ref,
            inquiry_id=command.inquiry.inquiry_id,
            thread_key=_thread_key(command),
            status=ticket.status.value,
            status_rank=ticket.status.rank,
            native_status=ticket.native_status,
            status_at=(ticket.created_at or datetime.now(UTC)).astimezone(UTC).isoformat(),
        )
        await store.set_create_state(ref, "created", ticket_id=ticket.ticket_id)
        await store.update_inquiry(
            command.inquiry.inquiry_id, state="ticketed", ticket_id=ticket.ticket_id
        )
        self.ctx.metrics.tickets.labels(command.department, "created").inc()
        log.info("ticket created", ticket_id=ticket.ticket_id, reference=ref)
        await self._publish_created(command, ticket.ticket_id, ticket.native_status)

    async def _publish_created(self, command: TicketCommand, ticket_id: str, native: str) -> None:
        event = TicketEvent(
            event_id=f"{command.reference}:created",
            department=command.department,
            ticket_id=ticket_id,
            reference=command.reference,
            status=TicketStatus.RECEIVED,
            native_status=native,
            occurred_at=datetime.now(UTC),
            source="create",
        )
        await self.ctx.broker.publish(f"ticket.created.{command.department}", event)

    async def _append(self, system: TicketSystem, command: TicketCommand) -> None:
        store = self.ctx.store
        ticket_id = command.ticket_id
        if ticket_id is None:
            recorded = await store.ticket_by_reference(command.reference)
            if recorded is None:
                raise Retry("the thread's ticket is not created yet")
            ticket_id = recorded["ticket_id"]
        existing = await store.get_inquiry(command.inquiry.inquiry_id)
        if existing is not None and existing["state"] == "appended":
            return
        await system.append(ticket_id, command)
        await store.update_inquiry(
            command.inquiry.inquiry_id, state="appended", ticket_id=ticket_id
        )
        self.ctx.metrics.tickets.labels(command.department, "appended").inc()
        log.info("follow-up appended", ticket_id=ticket_id)

    async def list_reconciliation(self, request: web.Request) -> web.Response:
        require_admin(request)
        rows = await self.ctx.store.list_create_attempts("needs_reconciliation")
        return web.json_response({"needs_reconciliation": rows})


def _circuit_open(system: TicketSystem) -> CircuitBreaker | None:
    """The system's breaker when it is open or half-open (the backend is judged down)."""
    breaker = getattr(system, "breaker", None)
    if isinstance(breaker, CircuitBreaker) and breaker.state != "closed":
        return breaker
    return None


def _transient_retry(system: TicketSystem, exc: TransientError) -> Retry:
    """While the system's circuit is open the backend is down and the message is not at fault:
    the attempt does not count (an outage of hours exhausts no message; the breaker bounds the
    requests) and the message waits at least until the next probe. An isolated failure with
    the circuit closed counts as usual, so a message that alone keeps failing still ends."""
    breaker = _circuit_open(system)
    if breaker is None:
        return Retry(exc.reason, exc.retry_after)
    delay = exc.retry_after or timedelta(seconds=breaker.cooldown)
    return Retry(exc.reason, delay, counts=False)


def _thread_key(command: TicketCommand) -> str:
    from bridge.stages.triage import thread_key

    return thread_key(command.inquiry)


def create(ctx: BridgeContext) -> TicketingRole:
    return TicketingRole(ctx)
