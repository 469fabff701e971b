"""ticketing: routed inquiries become tickets in the department's own system, exactly once.

Create: a durable "create attempted" record is written before the call. On redelivery of an
attempted-but-unrecorded create the ticket is looked up by the bridge's reference where the
backend can search (or the create simply repeated where it takes an idempotency key);
otherwise the inquiry is flagged ``needs_reconciliation`` (log, metric, ``/api/reconciliation``)
and no second ticket is made; an official settles it (``POST /api/reconciliation/{inquiry}``:
attach the existing ticket, or declare it not created so the create runs again). A definite
refusal (validation, unknown service) releases the claim, so a replay after the fix creates.

Append: a citizen's follow-up goes onto their conversation's ticket; where the ticket system
takes no follow-ups (capability ``appends`` false) the bridge keeps it on the ticket's record
(state ``kept_on_record``, shown to officials). Either way ``ticket.updated.<dept>`` carries a
``follow_up`` event so the citizen is told, once, that it was added.

Outages: transient errors go through the delay tiers (the adapter's circuit breaker keeps the
request count bounded; while it is open an attempt is not counted, so no outage exhausts a
message); 401/403 pause the department with an alert and wait in the longest tier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from adapters.base import (
    AdapterError,
    AuthError,
    CreatedTicket,
    DetectsCapabilities,
    PermanentError,
    ReportsHealth,
    TicketSystem,
    TransientError,
)
from adapters.circuit import CircuitBreaker
from bridge import timing
from bridge.runtime import DeadLetter, Delivery, Retry, Stage, Worker
from bridge.stages.common import longest_delay, ticket_systems
from schemas import routing, stages
from schemas.messages import TicketCommand, TicketEvent
from schemas.vocab import FOLLOW_UP_STATES, CreateState, InquiryState, TicketStatus

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.ticketing")


class TicketingRole:
    name = "ticketing"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.worker: Worker[TicketCommand] = Worker(
            ctx.broker, Stage.declared(stages.TICKETING, self.handle)
        )
        self.workers: list[Worker[Any]] = [self.worker]

    async def start(self) -> None:
        for dept_id, system in ticket_systems(self.ctx).items():
            if isinstance(system, DetectsCapabilities):
                try:  # e.g. whether any API takes a follow-up (capabilities.appends)
                    await system.detect()
                except AdapterError as exc:  # the adapter detects again on first need
                    log.warning("capability detection failed", department=dept_id, error=exc.reason)
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()  # the daemon closes the adapters

    async def handle(self, command: TicketCommand, _: Delivery) -> None:
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
            await publish_created(self.ctx, command, recorded.ticket_id, recorded.native_status)
            return
        attempt = await store.get_create_attempt(ref)
        if attempt is not None and attempt.state == CreateState.NEEDS_RECONCILIATION:
            log.warning("create awaits reconciliation; not creating again", reference=ref)
            return
        ticket: CreatedTicket | None = None
        expected: str | None = None
        if attempt is not None and attempt.state == CreateState.ATTEMPTED:
            # Another delivery (here or in another process) may be creating it right now:
            # wait for its lease before presuming it crashed.
            lease = self.ctx.cfg.department(command.department).ticketing.create_lease
            age = datetime.now(UTC) - datetime.fromisoformat(attempt.updated_at)
            if age < lease:
                raise Retry(f"create of {ref} in progress elsewhere", lease - age, counts=False)
            expected = attempt.updated_at
            caps = system.capabilities
            if caps.search_by_reference:
                ticket = await system.find_by_reference(ref)
                if ticket is not None:
                    log.info("earlier create found by reference", ticket_id=ticket.ticket_id)
            elif not caps.idempotent_create:
                await store.set_create_state(
                    ref,
                    CreateState.NEEDS_RECONCILIATION,
                    detail="a create may have reached the backend; it cannot be searched",
                )
                await store.update_inquiry(
                    command.inquiry.inquiry_id, state=InquiryState.NEEDS_RECONCILIATION
                )
                self.ctx.metrics.reconciliation.labels(command.department).inc()
                log.error("create outcome unknown: flagged for reconciliation", reference=ref)
                return
        if ticket is None:
            ticket = await self._send_create(system, command, expected)
        await self._record_created(command, ticket)

    async def _send_create(
        self, system: TicketSystem, command: TicketCommand, expected: str | None
    ) -> CreatedTicket:
        """Claim the create (compare-and-set on the attempt seen, ``expected``), then call the
        ticket system; what the outcome proves is kept on the attempt."""
        store, ref = self.ctx.store, command.reference
        breaker = _circuit_open(system)
        if breaker is not None and breaker.state == "open":
            # No request would be made: do not record an attempt that never happens.
            self.ctx.metrics.tickets.labels(command.department, "circuit_open").inc()
            raise TransientError(f"{breaker.name}: circuit open; create not attempted")
        claimed = await store.claim_create(
            ref,
            command.department,
            command.inquiry.inquiry_id,
            expected_updated_at=expected,
            command_json=command.model_dump_json(),
        )
        if not claimed:
            raise Retry(f"create of {ref} claimed by another delivery", counts=False)
        try:
            with timing.timed("http"):
                return await system.create(command, idempotency_key=ref)
        except TransientError as exc:
            if exc.not_sent:  # certainly not created: a redelivery may simply create
                await store.set_create_state(ref, CreateState.NOT_SENT, detail=exc.reason[:200])
            raise
        except AuthError as exc:  # refused before anything was made
            await store.set_create_state(ref, CreateState.NOT_SENT, detail=exc.reason[:200])
            raise
        except PermanentError as exc:
            # A definite refusal (validation, unknown service): nothing was created, so a
            # replay after the configuration is fixed must be free to create.
            await store.set_create_state(ref, CreateState.REJECTED, detail=exc.reason[:200])
            raise

    async def _record_created(self, command: TicketCommand, ticket: CreatedTicket) -> None:
        """The ticket exists: record it, mark the attempt and the inquiry, announce it."""
        store, ref = self.ctx.store, command.reference
        await store.record_ticket(
            department=command.department,
            ticket_id=ticket.ticket_id,
            reference=ref,
            inquiry_id=command.inquiry.inquiry_id,
            thread_key=thread_key_of(command),
            status=ticket.status.value,
            status_rank=ticket.status.rank,
            native_status=ticket.native_status,
            status_at=(ticket.created_at or datetime.now(UTC)).astimezone(UTC).isoformat(),
        )
        await store.set_create_state(ref, CreateState.CREATED, ticket_id=ticket.ticket_id)
        await store.update_inquiry(
            command.inquiry.inquiry_id, state=InquiryState.TICKETED, ticket_id=ticket.ticket_id
        )
        self.ctx.metrics.tickets.labels(command.department, "created").inc()
        log.info("ticket created", ticket_id=ticket.ticket_id, reference=ref)
        await publish_created(self.ctx, command, ticket.ticket_id, ticket.native_status)

    async def _append(self, system: TicketSystem, command: TicketCommand) -> None:
        store = self.ctx.store
        ticket_id = command.ticket_id
        recorded = await store.ticket_by_reference(command.reference)
        if recorded is None:
            raise Retry("the conversation's ticket is not created yet")
        ticket_id = recorded.ticket_id
        existing = await store.get_inquiry(command.inquiry.inquiry_id)
        done = existing is not None and existing.state in FOLLOW_UP_STATES
        if not done:
            if system.capabilities.appends:
                with timing.timed("http"):
                    await system.append(ticket_id, command)
                state = InquiryState.APPENDED
            else:
                state = InquiryState.KEPT_ON_RECORD  # shown to officials with the ticket's journey
            await store.update_inquiry(command.inquiry.inquiry_id, state=state, ticket_id=ticket_id)
            self.ctx.metrics.tickets.labels(command.department, state).inc()
            log.info("follow-up added", ticket_id=ticket_id, state=state)
        await self.ctx.broker.publish(
            routing.ticket_updated(command.department),
            TicketEvent(
                event_id=f"{command.command_id}:follow_up",
                department=command.department,
                ticket_id=ticket_id,
                reference=command.reference,
                status=TicketStatus(recorded.status),
                native_status=recorded.native_status,
                occurred_at=datetime.now(UTC),
                source="follow_up",
                inquiry_id=command.inquiry.inquiry_id,
            ),
        )


async def publish_created(
    ctx: BridgeContext, command: TicketCommand, ticket_id: str, native: str
) -> None:
    """``ticket.created.<department>``: the ticket exists (created, found, or attached by an
    official settling a reconciliation)."""
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
    await ctx.broker.publish(routing.ticket_created(command.department), event)


def _circuit_open(system: TicketSystem) -> CircuitBreaker | None:
    """The system's breaker when it is open or half-open (the backend is judged down)."""
    if isinstance(system, ReportsHealth) and system.breaker.state != "closed":
        return system.breaker
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


def thread_key_of(command: TicketCommand) -> str:
    from bridge.stages.triage import thread_key

    return thread_key(command.inquiry)


def create(ctx: BridgeContext) -> TicketingRole:
    return TicketingRole(ctx)
