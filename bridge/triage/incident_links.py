"""Incidents in the pipeline (issue 24): every new inquiry (not a follow-up) of a department whose
``incidents`` is not ``off`` is filed in an :class:`~bridge.triage.incidents.IncidentIndex`, and
its incident is stored as a link between cases (``incident_cases``, ``incidents``).

- **One order for every process.** A department's cases are decided one at a time under a lock
  in the store; before deciding, the index learns the cases other processes (or this one
  before a restart) decided since it last looked (``seq``). So a restart, or a second triage
  process, does not forget an incident: the index is rebuilt from the store at start (the
  cases of the last ``[incidents] window``) and kept current before each decision.
- **Lead, merged, linked.** The incident's first case filed as a ticket of its own is its
  ``lead``. In ``merge`` mode a later case is ``merged``: its command becomes an ``append`` to
  the lead's ticket (the citizen is told "您反映的问题已并入工单…", and every status change of
  that ticket answers them too, in the reply role). In ``suggest`` mode it is ``linked``: a
  ticket of its own, shown with the others as one incident. Every citizen keeps their own
  conversation (their follow-ups continue it) and their own answers.
- **Surges.** When ``surge_threshold`` cases of one incident, department and category were
  written within ``surge_window``, the incident surges, once: its 舆情 clock starts (a public
  answer due ``public_answer_within`` later, kept in the incident's row), and
  ``incident.surge.<department>`` is published and an ``incident_surge`` alert raised. Both
  carry counts and place names, never a citizen's words; a redelivery announces what a crash
  left unannounced.

A redelivered inquiry finds its link in the store and keeps it.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from bridge.store import IncidentCase, KnownCase, Store, StoredInquiry
from bridge.triage.incidents import IncidentConfig, IncidentIndex, places_of
from schemas import routing
from schemas.config import DepartmentConfig
from schemas.messages import (
    Author,
    IncidentSurge,
    Inquiry,
    ThreadRef,
    TicketCommand,
    reference_for,
    stable_id,
)
from schemas.vocab import (
    FOLLOW_UP_STATES,
    Category,
    IncidentRole,
    InquiryKind,
    InquiryState,
    TicketStatus,
    Visibility,
)

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.triage")

SURGE_ALERT = "incident_surge"
_MAX_PLACES_TRACKED = 50_000  # incidents whose places are counted (the oldest forgotten)


@dataclass(frozen=True)
class Link:
    """A new inquiry's place in its incident: the stored case, and for a ``merged`` case the
    lead whose ticket it joins (its ticket id once known)."""

    case: IncidentCase
    lead_ticket_id: str | None = None

    @property
    def merged(self) -> bool:
        return self.case.role == IncidentRole.MERGED


async def _lead_ticket_final(store: Store, department: str, lead: str) -> bool:
    """The lead's ticket is resolved, rejected or closed: a new case is not merged into it
    (it gets a ticket of its own, linked to the incident)."""
    row = await store.get_inquiry(lead)
    if row is None or row.ticket_id is None:
        return False
    ticket = await store.get_ticket(department, row.ticket_id)
    return ticket is not None and ticket.status_rank >= TicketStatus.RESOLVED.rank


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


class IncidentLinker:
    """One process's incident index, kept in step with the store."""

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg.incidents
        self.index = IncidentIndex(IncidentConfig(window=self.cfg.window))
        self._seq: dict[str, int] = {}
        self._places: OrderedDict[str, Counter[str]] = OrderedDict()

    def active(self, dept: DepartmentConfig) -> bool:
        return dept.incidents != "off"

    async def start(self) -> None:
        """Rebuild the index from the store: the cases of the last window, per department."""
        n = 0
        for dept in self.ctx.cfg.departments:
            if self.active(dept):
                n += await self._catch_up(self.ctx.store, dept.id)
        log.info("incident index rebuilt from the store", cases=n, entries=len(self.index))

    async def _catch_up(self, store: Store, department: str, *, locked: bool = False) -> int:
        """Learn the department's cases decided since this process last looked."""
        since = datetime.now(UTC) - self.cfg.window
        learned = 0
        while True:
            rows = await store.known_cases(
                department, after_seq=self._seq.get(department, 0), written_since=since
            )
            if locked:  # a few rows, decided a moment ago by another process
                self._learn(department, rows)
            else:  # the rebuild at start (about 0.7 ms a case): off the event loop
                await asyncio.to_thread(self._learn, department, rows)
            learned += len(rows)
            if len(rows) < 5000:
                break
        if locked:  # nobody adds meanwhile: what was skipped is older than the window
            self._seq[department] = max(
                self._seq.get(department, 0), await store.last_case_seq(department)
            )
        return learned

    def _learn(self, department: str, rows: list[KnownCase]) -> None:
        for r in rows:
            written = _when(r.written_at)
            self.index.remember(r.inquiry_id, r.text, department, written, r.incident_id)
            self._note_places(r.incident_id, r.text)
            self._seq[department] = r.seq

    def _note_places(self, incident: str, text: str) -> None:
        described = places_of(text).describe()
        if not described:
            return
        counts = self._places.setdefault(incident, Counter())
        self._places.move_to_end(incident)
        for p in described.split():
            counts[p] += 1
        while len(self._places) > _MAX_PLACES_TRACKED:
            self._places.popitem(last=False)

    def places(self, incident: str) -> list[str]:
        counts = Counter[str]()
        for key, c in self._places.items():
            if key == incident or self.index.resolve(key) == incident:
                counts.update(c)
        return [p for p, _ in counts.most_common(5)]

    async def link(
        self,
        inquiry: Inquiry,
        public_text: str,
        dept: DepartmentConfig,
        category: Category,
        *,
        files_now: bool,
    ) -> Link | None:
        """The incident of a new inquiry (decided once; a redelivery reads it back).
        ``files_now``: it goes to ticketing now (it is not held for an official's check), so
        it may be the lead whose ticket the incident is handled on."""
        if not self.active(dept):
            return None
        store = self.ctx.store
        case = await store.get_incident_case(inquiry.inquiry_id)
        if case is None:
            async with store.transaction() as tx:
                await tx.lock_incidents(dept.id)
                await self._catch_up(tx, dept.id, locked=True)
                case = await self._decide(tx, inquiry, public_text, dept, category, files_now)
            self._note_places(case.incident_id, public_text)
            log.info(
                "inquiry linked to an incident",
                incident=case.incident_id,
                role=case.role,
                similarity=case.similarity,
                department=dept.id,
            )
        await self.announce(case.incident_id, inquiry.inquiry_id)
        if case.role != IncidentRole.MERGED or case.lead_inquiry is None:
            return Link(case)
        lead = await store.get_inquiry(case.lead_inquiry)
        return Link(case, lead.ticket_id if lead is not None else None)

    async def _decide(
        self,
        tx: Store,
        inquiry: Inquiry,
        public_text: str,
        dept: DepartmentConfig,
        category: Category,
        files_now: bool,
    ) -> IncidentCase:
        d = self.index.decide(inquiry.inquiry_id, public_text, dept.id, inquiry.created_at)
        if d.joined:
            await tx.merge_incidents(d.incident, d.joined)
            for other in d.joined:
                log.info("incidents found to be one", incident=d.incident, joined=other)
        incident = await tx.get_incident(d.incident)
        incident_id = incident.incident_id if incident is not None else d.incident
        lead = incident.lead_inquiry if incident is not None else None
        if (
            dept.incidents == "merge"
            and lead is not None
            and lead != inquiry.inquiry_id
            and not await _lead_ticket_final(tx, dept.id, lead)
        ):
            role = IncidentRole.MERGED
        elif lead is None and files_now:
            role = IncidentRole.LEAD
        else:
            role = IncidentRole.LINKED
        case = await tx.record_incident_case(
            inquiry_id=inquiry.inquiry_id,
            incident_id=incident_id,
            department=dept.id,
            category=category.value,
            role=role,
            lead_inquiry=lead if role == IncidentRole.MERGED else None,
            similarity=d.similarity,
            matched=d.matched,
            text=public_text,
            written_at=inquiry.created_at,
            becomes_lead=role == IncidentRole.LEAD,
        )
        self._seq[dept.id] = max(self._seq.get(dept.id, 0), case.seq)
        await self._check_surge(tx, case)
        return case

    async def _check_surge(self, tx: Store, case: IncidentCase) -> None:
        """Start the incident's 舆情 clock when its cases in this category reach the threshold
        within the window (once; announced after the transaction commits)."""
        # Cases arrive out of order (many processes, retries): the window ends at the
        # incident's newest case, whichever was decided last.
        incident = await tx.get_incident(case.incident_id)
        if incident is not None and incident.surge_at is not None:
            return  # surged already: its clock runs once
        until = max(_when(case.written_at), _when(incident.last_at) if incident else _EPOCH)
        size, _, _ = await tx.surge_count(
            case.incident_id, case.category, until - self.cfg.surge_window, until
        )
        if size < self.cfg.surge_threshold:
            return
        now = datetime.now(UTC)
        if await tx.mark_surge(
            case.incident_id,
            category=case.category,
            size=size,
            at=now,
            public_answer_due=now + self.cfg.public_answer_within,
            places=" ".join(self.places(case.incident_id)),
            by=case.inquiry_id,
        ):
            log.warning(
                "incident surge",
                incident=case.incident_id,
                department=case.department,
                category=case.category,
                size=size,
            )

    async def announce(self, incident_id: str, inquiry_id: str) -> None:
        """Publish a surge's event and raise its alert, if the case ``inquiry_id`` made it
        surge and that is not done yet: only that case's handler announces (so cases handled
        at the same time do not), and its redelivery after a crash announces again (at least
        once)."""
        store = self.ctx.store
        incident = await store.get_incident(incident_id)
        if incident is None or incident.surge_at is None or incident.surge_announced:
            return
        if incident.surge_by != inquiry_id:
            return
        category = incident.surge_category or Category.OTHER.value
        raised = _when(incident.surge_at)
        size, first, recent = await store.surge_count(
            incident.incident_id, category, raised - self.cfg.surge_window, raised
        )
        places = (incident.places or "").split()
        due = _when(incident.public_answer_due or incident.surge_at)
        event = IncidentSurge(
            incident_id=incident.incident_id,
            department=incident.department,
            category=Category(category),
            size=max(size, incident.surge_size or 0),
            first_at=_when(first or incident.first_at),
            raised_at=raised,
            growth_per_hour=float(recent),
            places=places,
            public_answer_due=due,
        )
        await self.ctx.broker.publish(routing.incident_surge(incident.department), event)
        self.ctx.alerts.raise_(
            SURGE_ALERT,
            incident.department,
            f"incident {incident.incident_id}: {event.size} similar {category} inquiries within"
            f" {self.cfg.surge_window.total_seconds() / 3600:g} h"
            + (f" ({' '.join(places)})" if places else "")
            + f"; public answer due {due.isoformat(timespec='minutes')}",
            category,
        )
        await store.surge_announced(incident.incident_id)


class IncidentRefused(Exception):
    """An official's split or merge that cannot be done as asked: ``status`` and ``reason``
    are for the API's answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


async def split(ctx: BridgeContext, incident_id: str, inquiry_id: str, actor: str) -> IncidentCase:
    """An official splits a case out of its incident: it becomes an incident of its own. A
    case that was merged into the lead's ticket gets a ticket of its own (its command goes to
    ticketing again as a create, with its masked text; the citizen hears 已受理 with the new
    ticket, and from then on only that ticket's changes), as long as no status change of the
    lead's ticket has been answered to it yet; a linked case keeps its ticket. The lead holds
    the incident's ticket and is not split out. Audited (``incident.split``)."""
    store = ctx.store
    incident = await store.get_incident(incident_id)
    case = await store.get_incident_case(inquiry_id)
    if incident is None or case is None:
        raise IncidentRefused(404, "no such incident or case")
    current = await store.get_incident(case.incident_id)
    if current is None or current.incident_id != incident.incident_id:
        raise IncidentRefused(404, f"inquiry {inquiry_id} is not a case of {incident_id}")
    if case.role == IncidentRole.LEAD or inquiry_id in (
        incident.incident_id,
        incident.lead_inquiry,
    ):
        raise IncidentRefused(409, "the lead holds the incident's ticket: split the others out")
    row = await store.get_inquiry(inquiry_id)
    if row is None or row.department is None:
        raise IncidentRefused(409, f"inquiry {inquiry_id} is not recorded with its department")
    if case.role == IncidentRole.MERGED and row.state not in FOLLOW_UP_STATES:
        raise IncidentRefused(409, "the case is still on its way to the lead's ticket; try again")
    if case.role == IncidentRole.MERGED and any(
        r.status is not None for r in await store.list_replies(inquiry_id=inquiry_id)
    ):
        # Its citizen has heard the lead's ticket move already: statuses of a ticket of its
        # own would arrive "earlier in the lifecycle" than what they heard, and never be sent.
        raise IncidentRefused(
            409, "the citizen was already answered on the lead's ticket's status changes"
        )
    split_off = await store.split_case(inquiry_id, actor=actor)
    assert split_off is not None
    if case.role == IncidentRole.MERGED:
        command = _own_ticket(row, _when(case.written_at))
        await store.update_inquiry(inquiry_id, state=InquiryState.ROUTED, ticket_id=None)
        await ctx.broker.publish(routing.inquiry_routed(command.department), command)
    log.info("case split out of its incident", incident=incident.incident_id, was=case.role)
    return split_off


async def merge(ctx: BridgeContext, into: str, other: str, actor: str) -> None:
    """An official merges two incidents of one department: the cases of ``other`` become cases
    of ``into``, each keeping its ticket and answers. Audited (``incident.merged``)."""
    if not await ctx.store.join_incidents(into, other, actor=actor):
        raise IncidentRefused(
            409, "both incidents must exist, be different and belong to one department"
        )
    log.info("incidents merged by an official", incident=into, joined=other)


def _own_ticket(row: StoredInquiry, written_at: datetime) -> TicketCommand:
    """The create command of a case split out of a merged incident, rebuilt from its record
    (the masked text: the original was never stored)."""
    text = row.public_text or ""
    inquiry = Inquiry(
        inquiry_id=row.inquiry_id,
        platform=row.platform,
        account=row.account,
        kind=InquiryKind(row.kind),
        external_id=row.external_id or row.inquiry_id,
        author=Author(id=row.author_id or "unknown", handle=row.citizen_handle or "unknown"),
        text=text,
        created_at=written_at,
        thread=ThreadRef.model_validate_json(row.thread_json or "{}"),
        visibility=Visibility(row.visibility or Visibility.PUBLIC),
    )
    return TicketCommand(
        command_id=stable_id("cmd", row.inquiry_id, "split"),
        action="create",
        inquiry=inquiry,
        department=row.department or "",
        category=Category(row.category or Category.OTHER),
        reference=reference_for(row.inquiry_id),
        description=text,
        public_text=text,
    )


async def public_answer_given(
    ctx: BridgeContext, incident_id: str, actor: str, link: str | None
) -> None:
    """An official records that the surge's public answer was given: its 舆情 clock stops, and
    the department's ``incident_surge`` alert for that category ends once no other surge of
    it waits for its answer. Audited (``incident.answered``)."""
    store = ctx.store
    row = await store.get_incident(incident_id)
    if row is None or row.surge_at is None:
        raise IncidentRefused(404, "no such incident, or it did not surge")
    if not await store.record_public_answer(row.incident_id, actor=actor, link=link):
        raise IncidentRefused(409, "its public answer was recorded already")
    category = row.surge_category or Category.OTHER.value
    waiting = [
        r
        for r in await store.surged_incidents(row.department)
        if r.public_answer_at is None and (r.surge_category or Category.OTHER.value) == category
    ]
    if not waiting:
        ctx.alerts.clear(SURGE_ALERT, row.department, category, by=actor)
    log.info("surge answered in public", incident=row.incident_id, alert_ended=not waiting)
