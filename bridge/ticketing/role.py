"""ticketing: routed inquiries become tickets in the department's own system, exactly once.

Create: a durable "create attempted" record is written before the call, under the lease
``create:<reference>`` (``bridge.store.leases``: a PostgreSQL session advisory lock, or a
flock beside a SQLite file), which lives exactly as long as the process holding it. Another
delivery that finds the attempt while the lease is held waits a second and looks again (a live
process is at it). One that finds it with the lease free knows the holder is gone and takes
over at once: the ticket is looked up by the bridge's reference where the backend can search
(not found: looked up again once the attempt is ``create_settle`` old, since a request the
dead process sent may still be committing, then created), or the create simply repeated where
it takes an idempotency key; otherwise the inquiry is flagged ``needs_reconciliation`` (log,
metric, ``/api/reconciliation``) and no second ticket is made; an official settles it (``POST
/api/reconciliation/{inquiry}``: attach the existing ticket, or declare it not created so the
create runs again). A live holder that got no answer (a timeout, a 502/504) marks the attempt
``no answer``; it is looked up only after ``create_lease`` (the backend may commit it late).
A definite refusal (validation, unknown service) releases the claim, so a replay after the fix
creates. Meanwhile the citizen is not left in silence: the SLA role's holding acknowledgement
(``bridge/sla/acknowledge.py``) answers an inquiry still without a ticket before its
first-response limit.

Append: a citizen's follow-up goes onto their conversation's ticket; where the ticket system
takes no follow-ups (capability ``appends`` false) it goes the way the department configured
(``bridge/ticketing/follow_ups.py``: a linked new request, or the handling unit's webhook; state
``forwarded``), else the bridge keeps it on the ticket's record (state ``kept_on_record``,
shown to officials). Every way, ``ticket.updated.<dept>`` carries a ``follow_up`` event so the
citizen is told, once, what happened to it.

Outages: transient errors go through the delay tiers (the adapter's circuit breaker keeps the
request count bounded; while it is open an attempt is not counted, so no outage exhausts a
message). Refused credentials (401/403, Open311's 400 "Invalid API key") raise the
``ticketing_auth`` alert for that operation (create or append) and hold the command in the store
(``bridge/ticketing/held.py``) until the credentials work again: a replaced key (in any process), a
config
reload, "retry now", a success of the same operation, the ``auth_recheck`` probe, or a restart
releases it. Only a success of the same operation clears the alert.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from adapters.base import (
    AdapterError,
    AuthError,
    CreatedTicket,
    DetectsCapabilities,
    PermanentError,
    Reopens,
    TicketSystem,
    TransientError,
)
from adapters.circuit import CircuitBreaker, ReportsHealth
from bridge.runtime.context import sleep_or_stop
from bridge.runtime.credentials import ticketing_subject
from bridge.runtime.worker import DeadLetter, Delivery, Retry, Stage, Worker
from bridge.store.inquiries import KEEP
from bridge.telemetry import timing
from bridge.ticketing.create_lease import HELD_ELSEWHERE, UNCERTAIN, create_lease_name
from bridge.ticketing.follow_ups import FollowUps
from schemas import routing, stages
from schemas.messages import TicketCommand, TicketEvent
from schemas.vocab import (
    FOLLOW_UP_STATES,
    CreateState,
    IncidentRole,
    InquiryState,
    TicketStatus,
)

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.ticketing")


class TicketingRole:
    name = "ticketing"

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.worker: Worker[TicketCommand] = Worker(
            ctx.broker, Stage.declared(stages.TICKETING, self.handle)
        )
        self.workers: list[Worker[Any]] = [self.worker]
        self._stop = asyncio.Event()
        self._recheck: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()  # after a success, in the background
        self.follow_ups = FollowUps(ctx)

    async def start(self) -> None:
        for dept_id, system in self.ctx.adapters.ticket_systems().items():
            if isinstance(system, DetectsCapabilities):
                try:  # e.g. whether any API takes a follow-up (capabilities.appends)
                    await system.detect()
                except AdapterError as exc:  # the adapter detects again on first need
                    log.warning("capability detection failed", department=dept_id, error=exc.reason)
        await self.worker.start()
        # A restart is how many fix a config: what was held goes again, once.
        for dept in self.ctx.cfg.departments:
            await self.ctx.held.release(dept.id, why="bridge started")
        self._recheck = asyncio.create_task(self._recheck_held(), name="ticketing:recheck")

    async def stop(self) -> None:
        self._stop.set()
        tasks = [t for t in (self._recheck, *self._releases) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
            for task in tasks:
                task.cancel()
        await self.worker.stop()  # the daemon closes the adapters
        await self.follow_ups.close()

    async def _recheck_held(self) -> None:
        """Per department with held commands, every ``auth_recheck``: the oldest goes again
        alone (the key may have been fixed on the ticket system's side). Its success
        releases the rest."""
        due: dict[str, float] = {}
        while not await sleep_or_stop(self._stop, 1.0):
            now = time.monotonic()
            for dept in self.ctx.cfg.departments:
                if not self.ctx.held.waiting(dept.id):
                    due.pop(dept.id, None)
                    continue
                every = dept.ticketing.auth_recheck.total_seconds()
                if now < due.setdefault(dept.id, now + every):
                    continue
                due[dept.id] = now + every
                try:
                    await self.ctx.held.release(dept.id, why="recheck", limit=1)
                except Exception as exc:  # the store or the broker is away: next time
                    log.warning("held command recheck failed", department=dept.id, error=repr(exc))

    async def handle(self, command: TicketCommand, _: Delivery) -> None:
        try:
            system = self.ctx.adapters.ticket_systems()[command.department]
        except KeyError:
            raise DeadLetter(
                f"unknown department {command.department!r}", "unknown_department"
            ) from None
        try:
            if command.action == "append":
                await self._append(system, command)
            elif command.action == "reopen":
                await self._reopen(system, command)
            elif command.action == "reroute":
                await self._reroute(system, command)
            else:
                await self._create(system, command)
        except AuthError as exc:
            await self._refused(command, exc)
        except TransientError as exc:
            self.ctx.metrics.tickets.labels(command.department, "transient_error").inc()
            raise _transient_retry(system, exc) from exc
        except PermanentError as exc:
            self.ctx.metrics.tickets.labels(command.department, "rejected").inc()
            raise DeadLetter(
                f"ticket system rejected: {exc.reason}", "ticket_system_rejected"
            ) from exc

    async def _refused(self, command: TicketCommand, exc: AuthError) -> None:
        """The ticket system refused the credentials: alert (for this operation) and hold the
        command until they work; the message itself is done with."""
        dept, reason = command.department, f"ticket system refused: {exc.reason}"
        self.ctx.alerts.raise_("ticketing_auth", dept, reason, command.action)
        subject = ticketing_subject(dept)
        if subject in await self.ctx.credentials.refresh():
            # Another process has just replaced them: try the new ones.
            raise Retry("credentials replaced elsewhere; trying them", timedelta(0), counts=False)
        await self.ctx.held.hold(command, reason)
        self.ctx.metrics.tickets.labels(dept, "held").inc()
        log.warning("command held until the ticket system takes the credentials", reason=reason)
        # Replaced between that look and the hold: the release then ran before the hold.
        await self.ctx.credentials.refresh()  # (its listener releases what is held now)

    def _worked(self, department: str, operation: str) -> None:
        """A call of ``operation`` was accepted: its alert is over, and what was held for the
        same operation goes again (in the background: this command records its ticket first)."""
        self.ctx.alerts.succeeded("ticketing_auth", department, operation)
        if not self.ctx.held.waiting(department, operation) or self._stop.is_set():
            return

        async def release() -> None:
            try:
                await self.ctx.held.release(
                    department, why=f"a {operation} succeeded", operation=operation
                )
            except Exception as exc:  # the next success or the recheck tries again
                log.warning("held commands not released", error=repr(exc))

        task = asyncio.create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _create(self, system: TicketSystem, command: TicketCommand) -> None:
        ref = command.reference
        # The create is held under a lease tied to this process's life (its PostgreSQL
        # session, or its flock beside a SQLite file): taken before the attempt is read and
        # claimed, released after the outcome is recorded. Whoever finds an attempt while the
        # lease is held knows a live process is at it; a free lease over an unfinished attempt
        # means its holder is gone (killed, or finished without learning the outcome).
        lease = create_lease_name(ref)
        if not await self.ctx.leases.try_acquire(lease):
            raise Retry(f"create of {ref} in progress elsewhere", HELD_ELSEWHERE, counts=False)
        try:
            await self._create_leased(system, command)
        finally:
            await self.ctx.leases.release(lease)

    async def _create_leased(self, system: TicketSystem, command: TicketCommand) -> None:
        store, ref = self.ctx.store, command.reference
        recorded, attempt = await store.create_records(ref)  # one read: ticket and attempt
        if recorded is not None:  # already done: make sure the event went out
            await publish_created(self.ctx, command, recorded.ticket_id, recorded.native_status)
            return
        if attempt is not None and attempt.state == CreateState.NEEDS_RECONCILIATION:
            log.warning("create awaits reconciliation; not creating again", reference=ref)
            return
        ticket: CreatedTicket | None = None
        expected: str | None = None
        if attempt is not None and attempt.state == CreateState.ATTEMPTED:
            # Started and never finished, and nobody holds its lease: its holder died, or
            # (``UNCERTAIN``) it lived but had no answer (a timeout, a 502), so the backend may
            # still commit that request: only then is ``create_lease`` waited out.
            cfg = self.ctx.cfg.department(command.department).ticketing
            age = datetime.now(UTC) - datetime.fromisoformat(attempt.updated_at)
            if (attempt.detail or "").startswith(UNCERTAIN) and age < cfg.create_lease:
                raise Retry(
                    f"create of {ref} had no answer; looked up after create_lease",
                    cfg.create_lease - age,
                    counts=False,
                )
            expected = attempt.updated_at
            caps = system.capabilities
            log.info("create taken over from a holder that is gone", reference=ref)
            if caps.search_by_reference:
                ticket = await system.find_by_reference(ref)
                settle = min(cfg.create_settle, cfg.create_lease)
                if ticket is not None:
                    log.info("earlier create found by reference", ticket_id=ticket.ticket_id)
                elif age < settle:
                    # A request the dead holder sent may still be committing: look again
                    # before creating (the citizen has had the holding acknowledgement).
                    raise Retry(f"create of {ref} not found yet", settle - age, counts=False)
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
                created = await system.create(command, idempotency_key=ref)
            self._worked(command.department, "create")
            return created
        except TransientError as exc:
            if exc.not_sent:  # certainly not created: a redelivery may simply create
                await store.set_create_state(ref, CreateState.NOT_SENT, detail=exc.reason[:200])
            else:  # no answer: the backend may still commit it (looked up after create_lease)
                detail = (UNCERTAIN + exc.reason)[:200]
                await store.set_create_state(ref, CreateState.ATTEMPTED, detail=detail)
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
        ref = command.reference
        # the three writes commit together (one transaction, one audit INSERT)
        async with self.ctx.store.transaction() as store:
            await store.record_ticket(
                department=command.department,
                ticket_id=ticket.ticket_id,
                reference=ref,
                inquiry_id=command.inquiry.inquiry_id,
                thread_key=command.inquiry.thread_key,
                status=ticket.status.value,
                status_rank=ticket.status.rank,
                native_status=ticket.native_status,
                status_at=(ticket.created_at or datetime.now(UTC)).astimezone(UTC).isoformat(),
            )
            await store.set_create_state(ref, CreateState.CREATED, ticket_id=ticket.ticket_id)
            # a re-route's department moves with the new ticket id in one statement: the new
            # ticket is never paired with the old department (a case action reading it would
            # fail)
            await store.update_inquiry(
                command.inquiry.inquiry_id,
                state=InquiryState.TICKETED,
                ticket_id=ticket.ticket_id,
                department=command.department if command.action == "reroute" else KEEP,
            )
        self.ctx.metrics.tickets.labels(command.department, "created").inc()
        log.info("ticket created", ticket_id=ticket.ticket_id, reference=ref)
        await publish_created(self.ctx, command, ticket.ticket_id, ticket.native_status)

    async def _append(self, system: TicketSystem, command: TicketCommand) -> None:
        store = self.ctx.store
        ticket_id = command.ticket_id
        recorded = await store.ticket_by_reference(command.reference)
        if recorded is None:
            if await self._lead_on_its_way(command):  # an incident's later case: it waits
                raise Retry("the incident's lead ticket is being created", counts=False)
            raise Retry("the conversation's ticket is not created yet")
        ticket_id = recorded.ticket_id
        existing = await store.get_inquiry(command.inquiry.inquiry_id)
        done = existing is not None and existing.state in FOLLOW_UP_STATES
        if not done:
            if system.capabilities.appends:
                with timing.timed("http"):
                    await system.append(ticket_id, command)
                self._worked(command.department, "append")
                state = InquiryState.APPENDED
            else:  # the department's other channel, or the bridge's record (follow_ups.py)
                with timing.timed("http"):
                    state = await self.follow_ups.deliver(system, command, ticket_id)
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

    async def _reopen(self, system: TicketSystem, command: TicketCommand) -> None:
        """重办 after a 回访 answer of 未解决 or 不满意: the ticket system is told (its reopen
        call: Open311 ``servicerequestupdates`` with an open status, REST ``reopen``; where it
        has none, a new request linked to the ticket), officials are alerted, and
        ``ticket.updated`` with ``reopened`` takes the ticket into its next handling cycle
        (the reply role tells the citizen, the SLA clock counts a new deadline). Idempotent:
        the update and the reopen call carry the command id, the event id is stable."""
        store = self.ctx.store
        recorded = await store.ticket_by_reference(command.reference)
        if recorded is None or command.ticket_id is None:
            raise DeadLetter(f"reopen of unknown ticket {command.ticket_id}", "unknown_ticket")
        ticket_id, linked, how = recorded.ticket_id, None, "linked_request"
        with timing.timed("http"):
            if isinstance(system, Reopens) and system.can_reopen:
                try:
                    await system.reopen(ticket_id, command)
                    how = "reopened"
                except PermanentError:
                    if system.can_reopen:  # refused: dead-lettered with its reason
                        raise
                    # detected only now: the backend has no way to reopen (a linked request)
            if how != "reopened":
                linked = await self.follow_ups.file_linked(system, command, ticket_id)
        self._worked(command.department, "reopen")
        self.ctx.metrics.tickets.labels(command.department, how).inc()
        # Officials are alerted: the case is theirs again (cleared by the next final status);
        # once per reopen, not again when a redelivered answer sends the command again.
        if await store.record_once("case_reopened", command.command_id):
            self.ctx.alerts.raise_(
                "case_reopened",
                f"{command.department}:{ticket_id}",
                f"重办: 回访 answer reopened ticket {ticket_id}"
                + (f" (new linked request {linked})" if linked else ""),
            )
        log.warning("case reopened after 回访", ticket_id=ticket_id, how=how, linked_ticket=linked)
        await self.ctx.broker.publish(
            routing.ticket_updated(command.department),
            TicketEvent(
                event_id=f"{command.command_id}:reopen",
                department=command.department,
                ticket_id=ticket_id,
                reference=command.reference,
                status=TicketStatus.REOPENED,
                native_status="reopen",
                occurred_at=datetime.now(UTC),
                source="reopen",
            ),
        )

    async def _reroute(self, system: TicketSystem, command: TicketCommand) -> None:
        """转派: an operator moved a ticketed case to another department. The old ticket's
        system is told where it can take an update (a comment naming the new department and
        the reason), the old ticket is closed in the bridge's record (its later changes move
        nothing and tell the citizen nothing), exactly one ticket is created in the new
        department's system (the create's own exactly-once path, under the re-route's own
        reference), and ``ticket.updated`` with ``source`` ``reroute`` tells the citizen once.
        A redelivery after the new ticket exists tells the old system nothing again."""
        store = self.ctx.store
        old_dept, old_ticket = command.from_department, command.from_ticket_id
        if old_dept is None or old_ticket is None:
            raise DeadLetter("reroute without the old ticket", "malformed")
        if await store.ticket_by_reference(command.reference) is None:
            old_system = self.ctx.adapters.ticket_systems().get(old_dept)
            if old_system is not None and old_system.capabilities.appends:
                name = self.ctx.cfg.department(command.department).name
                told = command.model_copy(
                    update={
                        "department": old_dept,
                        "command_id": f"{command.command_id}:told",
                        "description": f"已转办至{name}：{command.reason or ''}",
                    }
                )
                with timing.timed("http"):
                    await old_system.append(old_ticket, told)
                self._worked(old_dept, "append")
            await store.apply_status(
                department=old_dept,
                ticket_id=old_ticket,
                event_id=f"{command.command_id}:transferred",
                status=TicketStatus.CLOSED.value,
                status_rank=TicketStatus.CLOSED.rank,
                native_status="transferred",
                occurred_at=datetime.now(UTC).isoformat(),
            )
        await self._create(system, command)
        recorded = await store.ticket_by_reference(command.reference)
        if recorded is None:  # awaiting reconciliation: the create path said so
            return
        row = await store.get_inquiry(command.inquiry.inquiry_id)
        if row is not None and row.department != command.department:
            await store.update_inquiry(command.inquiry.inquiry_id, department=command.department)
        log.info("case re-routed", ticket_id=recorded.ticket_id, old_ticket_id=old_ticket)
        await self.ctx.broker.publish(
            routing.ticket_updated(command.department),
            TicketEvent(
                event_id=f"{command.command_id}:reroute",
                department=command.department,
                ticket_id=recorded.ticket_id,
                reference=command.reference,
                status=TicketStatus.REFERRED,
                native_status=recorded.native_status,
                occurred_at=datetime.now(UTC),
                source="reroute",
            ),
        )

    async def _lead_on_its_way(self, command: TicketCommand) -> bool:
        """A case merged into an incident whose lead is still being triaged or created (many
        citizens write at once): its append waits without using up attempts."""
        store = self.ctx.store
        case = await store.get_incident_case(command.inquiry.inquiry_id)
        if case is None or case.role != IncidentRole.MERGED or case.lead_inquiry is None:
            return False
        attempt = await store.get_create_attempt(command.reference)
        if attempt is not None:
            return attempt.state in (CreateState.ATTEMPTED, CreateState.NOT_SENT)
        lead = await store.get_inquiry(case.lead_inquiry)
        return lead is not None and lead.state in (InquiryState.TRIAGED, InquiryState.ROUTED)


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


def create(ctx: BridgeContext) -> TicketingRole:
    return TicketingRole(ctx)
