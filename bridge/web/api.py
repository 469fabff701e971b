"""The operators' HTTP API, served by every daemon process whatever roles it runs (routes are
registered by the daemon, not inside a role): the approval queue and its decisions, the trace of
one inquiry, the outbox backlog, and creates awaiting reconciliation with their settlement. All
of it needs a signed-in operator with the role (``bridge/web/operators.py``) or the bearer admin
token.

The handlers parse the request (``bridge/web/bodies.py``) and call the role that owns the
work: a reply is approved in ``bridge/reply/approval.py``, nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel

from bridge.reply import approval, public_text
from bridge.reports import incidents
from bridge.reports.journey import journey
from bridge.runtime.http import json_error
from bridge.sla import escalation, extension
from bridge.store import iso
from bridge.ticketing import actions
from bridge.ticketing.role import publish_created
from bridge.triage import incident_links
from bridge.web.bodies import (
    Body,
    BulkApproval,
    CaseNoteBody,
    CaseReturn,
    EditingMark,
    Escalation,
    ExtensionDecision,
    ExtensionRequest,
    IncidentMerge,
    IncidentSplit,
    PublicAnswer,
    ReplyDecision,
    Reroute,
    Settlement,
    check,
)
from bridge.web.server import actor_of, read_json, require_admin
from schemas import routing
from schemas.messages import ReplyRequest, TicketCommand
from schemas.states import Decision
from schemas.vocab import CreateState, InquiryState, TicketStatus

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.api")


_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _age(text: str) -> timedelta | None:
    """``30m``, ``2h``, ``3d`` as a span; None when it is none of them."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or len(number) > 6:
        return None
    return timedelta(**{_UNITS[unit]: int(number)})


# The approval queue's live stream: how often the store is asked, how long one stream lasts
# (the browser's EventSource reconnects by itself, after RETRY_MS).
EVENTS_EVERY = 2.0
EVENTS_FOR = 60.0
RETRY_MS = 1000

# What a case action may be refused with: each carries its HTTP status and reason.
REFUSALS = (actions.CaseRefused, extension.ExtensionRefused, escalation.EscalationRefused)
_B = TypeVar("_B", bound=Body)
# An approver's "being edited" mark lasts this long unless the console renews it (it does every
# EDITING_RENEW_S while the focus stays in the draft's box), so a closed tab leaves none behind.
EDITING_FOR = timedelta(seconds=45)


class OperatorApi:
    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self._closing = asyncio.Event()

    async def _close_streams(self, _: web.Application) -> None:
        self._closing.set()  # open event streams end now, so the server stops at once

    async def approval_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``approvals`` with ``{"waiting": N, "newest": "…"}`` whenever
        the queue changes (a decision, a new or superseded draft, in any process: the store is
        read every ``EVENTS_EVERY`` seconds), so an open console marks the cards another
        approver decided without reloading what its own approver is typing; and ``editing``
        with ``{"editing": [{"reply_id": "…", "operator": "…"}]}`` whenever who is editing
        which draft changes (``POST /api/approvals/{reply_id}/editing``)."""
        require_admin(request)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await resp.prepare(request)
        last: tuple[int, str | None] | None = None
        last_editing: list[tuple[str, str]] | None = None
        until = time.monotonic() + EVENTS_FOR
        try:
            await resp.write(f"retry: {RETRY_MS}\n\n".encode())
            while not self._closing.is_set() and time.monotonic() < until:
                mark = await self.ctx.store.approval_queue_mark()
                if mark != last:
                    last = mark
                    data = json.dumps({"waiting": mark[0], "newest": mark[1]})
                    await resp.write(f"event: approvals\ndata: {data}\n\n".encode())
                editing = await self.ctx.store.editing_now(iso(datetime.now(UTC)))
                if editing != last_editing:
                    last_editing = editing
                    marks = [{"reply_id": r, "operator": o} for r, o in editing]
                    data = json.dumps({"editing": marks}, ensure_ascii=False)
                    await resp.write(f"event: editing\ndata: {data}\n\n".encode())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), EVENTS_EVERY)
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        return resp

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/approvals", self.list_approvals)
        r.add_get("/api/approvals/events", self.approval_events)
        r.add_post("/api/approvals/bulk", self.bulk_approve)  # before {reply_id}
        app.on_shutdown.append(self._close_streams)
        r.add_post("/api/approvals/{reply_id}", self.decide)
        r.add_post("/api/approvals/{reply_id}/editing", self.editing)
        r.add_get("/api/inquiries/{inquiry_id}", self.trace)
        r.add_get("/api/incidents", self.list_surges)
        r.add_get("/api/incidents/{incident_id}", self.incident)
        r.add_post("/api/incidents/{incident_id}/split", self.split_incident)
        r.add_post("/api/incidents/{incident_id}/merge", self.merge_incidents)
        r.add_post("/api/incidents/{incident_id}/answered", self.answered)
        r.add_get("/api/outbox", self.backlog)
        r.add_get("/api/reconciliation", self.list_reconciliation)
        r.add_post("/api/reconciliation/{inquiry_id}", self.settle_reconciliation)
        r.add_post("/api/cases/{inquiry_id}/reroute", self.reroute)
        r.add_post("/api/cases/{inquiry_id}/return", self.return_case)
        r.add_get("/api/cases/{inquiry_id}/notes", self.list_notes)
        r.add_post("/api/cases/{inquiry_id}/extension", self.request_extension)
        r.add_post("/api/cases/{inquiry_id}/extension/{extension_id}", self.decide_extension)
        r.add_post("/api/cases/{inquiry_id}/notes", self.add_note)
        # 督办 is a supervisor's: the admin role (operators.POLICY lists no lesser one)
        r.add_get("/api/escalations", self.list_escalations)
        r.add_post("/api/escalations/{inquiry_id}", self.escalate)

    async def _case_action(
        self,
        request: web.Request,
        model: type[_B],
        act: Callable[[_B, str], Awaitable[object]],
        status: int = 200,
    ) -> web.Response:
        """What every case action shares: the role, the body as ``model`` (its reason already
        stripped), the acting operator, the action; a refusal answered with its status and
        reason, else what the action returned as JSON with ``status``."""
        require_admin(request)
        raw = await read_json(request)
        body = check(model, raw)
        try:
            done = await act(body, actor_of(request, raw))
        except REFUSALS as exc:
            return json_error(exc.status, exc.reason)
        if isinstance(done, BaseModel):
            return web.json_response(done.model_dump(mode="json"), status=status)
        if is_dataclass(done) and not isinstance(done, type):
            return web.json_response(asdict(done), status=status)
        return web.json_response(done, status=status)

    async def escalate(self, request: web.Request) -> web.Response:
        """督办. Body ``{"reason": "…"}``: ``sla.escalated.<department>`` and an audit
        record; once per ticket and handling cycle (``bridge/sla/escalation.py``)."""
        inquiry_id = request.match_info["inquiry_id"]
        return await self._case_action(
            request,
            Escalation,
            lambda body, actor: escalation.escalate(self.ctx, inquiry_id, body.reason, actor),
            status=202,
        )

    async def list_escalations(self, request: web.Request) -> web.Response:
        """The escalation list (``?department=ID``), newest first."""
        require_admin(request)
        department = request.query.get("department") or None
        found = await escalation.escalations(self.ctx, department)
        return web.json_response({"escalations": found})

    async def add_note(self, request: web.Request) -> web.Response:
        """An internal note on a case. Body ``{"text": "…", "note_id"?: "…"}``: stored, shown
        in the journey to operators, audited (``case.noted``, without its text); never composed
        into a reply nor published on the bus."""
        require_admin(request)
        raw = await read_json(request)
        body = check(CaseNoteBody, raw)
        inquiry_id = request.match_info["inquiry_id"]
        if await self.ctx.store.get_inquiry(inquiry_id) is None:
            return json_error(404, "no such inquiry")
        actor = actor_of(request, raw)
        note_id = body.note_id or uuid.uuid4().hex
        note = await self.ctx.store.add_note(note_id, inquiry_id, actor, body.text)
        if note.inquiry_id != inquiry_id:
            return json_error(409, "that note_id belongs to another case")
        if await self.ctx.store.record_once("case.noted", note.note_id):
            await self.ctx.store.record_audit(
                "case.noted", actor=actor, inquiry_id=inquiry_id, subject=note.note_id
            )
        return web.json_response(asdict(note), status=201)

    async def list_notes(self, request: web.Request) -> web.Response:
        """A case's internal notes, oldest first (operators only: never public)."""
        require_admin(request)
        notes = await self.ctx.store.notes_for(request.match_info["inquiry_id"])
        return web.json_response({"notes": [asdict(n) for n in notes]})

    async def request_extension(self, request: web.Request) -> web.Response:
        """延期. Body ``{"new_deadline": "…", "reason": "…"}``: a pending request, asked before
        the current deadline (``bridge/sla/extension.py``)."""
        inquiry_id = request.match_info["inquiry_id"]
        return await self._case_action(
            request,
            ExtensionRequest,
            lambda body, actor: extension.request(
                self.ctx, inquiry_id, body.new_deadline, body.reason, actor
            ),
            status=201,
        )

    async def decide_extension(self, request: web.Request) -> web.Response:
        """Body ``{"approve": true|false}``: an approver decides, before the old deadline."""
        inquiry_id, extension_id = (
            request.match_info["inquiry_id"],
            request.match_info["extension_id"],
        )
        return await self._case_action(
            request,
            ExtensionDecision,
            lambda body, actor: extension.decide(
                self.ctx, inquiry_id, extension_id, body.approve, actor
            ),
        )

    async def return_case(self, request: web.Request) -> web.Response:
        """退单. Body ``{"reason": "…"}``: the case goes back to the triage review queue until
        an official re-routes it (``bridge/ticketing/actions.py``)."""
        inquiry_id = request.match_info["inquiry_id"]

        async def act(body: CaseReturn, actor: str) -> dict[str, str]:
            ticket_id = await actions.return_case(self.ctx, inquiry_id, body.reason, actor)
            return {"inquiry_id": inquiry_id, "ticket_id": ticket_id, "review": "returned"}

        return await self._case_action(request, CaseReturn, act, status=202)

    async def reroute(self, request: web.Request) -> web.Response:
        """转派. Body ``{"department": "…", "reason": "…"}``: the case's ticket goes to another
        department (``bridge/ticketing/actions.py``); 202 once the command is on the bus."""
        inquiry_id = request.match_info["inquiry_id"]
        return await self._case_action(
            request,
            Reroute,
            lambda body, actor: actions.reroute(
                self.ctx, inquiry_id, body.department, body.reason, actor
            ),
            status=202,
        )

    async def backlog(self, request: web.Request) -> web.Response:
        """What waits in the outbox per account; with pauses where this process runs it."""
        require_admin(request)
        local = self.ctx.details.get("outbox")
        if local is not None:
            return web.json_response({"accounts": await local()})
        accounts = {
            self.ctx.cfg.key_on(r.platform, r.account): {"waiting": r.waiting, "failed": r.failed}
            for r in await self.ctx.store.outbox_backlog()
        }
        return web.json_response({"accounts": accounts})

    async def list_surges(self, request: web.Request) -> web.Response:
        """The surge list (``?department=ID``): incidents that surged, latest first."""
        require_admin(request)
        department = request.query.get("department") or None
        if department is not None and department not in {d.id for d in self.ctx.cfg.departments}:
            return json_error(400, f"unknown department {department!r}")
        found = await incidents.surges(self.ctx.store, datetime.now(UTC), department)
        return web.json_response({"surges": found})

    async def incident(self, request: web.Request) -> web.Response:
        """One incident with its cases (ids, roles, tickets; no citizen's words)."""
        require_admin(request)
        found = await incidents.incident(self.ctx.store, request.match_info["incident_id"])
        if found is None:
            return json_error(404, "no such incident")
        return web.json_response(found)

    async def split_incident(self, request: web.Request) -> web.Response:
        """Body ``{"inquiry_id": "…"}``: the case leaves the incident and becomes one of its
        own (a merged case gets its own ticket); ``bridge/triage/incident_links.py``."""
        require_admin(request)
        raw = await read_json(request)
        body = check(IncidentSplit, raw)
        try:
            case = await incident_links.split(
                self.ctx, request.match_info["incident_id"], body.inquiry_id, actor_of(request, raw)
            )
        except incident_links.IncidentRefused as exc:
            return json_error(exc.status, exc.reason)
        return web.json_response({"incident_id": case.incident_id, "role": case.role})

    async def merge_incidents(self, request: web.Request) -> web.Response:
        """Body ``{"incident_id": "…"}``: that incident's cases join this one, each keeping its
        ticket; ``bridge/triage/incident_links.py``."""
        require_admin(request)
        raw = await read_json(request)
        body = check(IncidentMerge, raw)
        into = request.match_info["incident_id"]
        try:
            await incident_links.merge(self.ctx, into, body.incident_id, actor_of(request, raw))
        except incident_links.IncidentRefused as exc:
            return json_error(exc.status, exc.reason)
        found = await incidents.incident(self.ctx.store, into)
        return web.json_response(found)

    async def answered(self, request: web.Request) -> web.Response:
        """Body ``{"link": "…"}`` (optional): the surge's public answer was given; its 舆情
        clock stops and its alert ends; ``bridge/triage/incident_links.py``."""
        require_admin(request)
        raw = await read_json(request)
        body = check(PublicAnswer, raw)
        incident_id = request.match_info["incident_id"]
        try:
            await incident_links.public_answer_given(
                self.ctx, incident_id, actor_of(request, raw), body.link
            )
        except incident_links.IncidentRefused as exc:
            return json_error(exc.status, exc.reason)
        found = await incidents.incident(self.ctx.store, incident_id)
        return web.json_response(found)

    async def list_approvals(self, request: web.Request) -> web.Response:
        """The approval queue, paged: ``?department=&account=&status=&category=&older_than=
        (30m|2h|3d)&limit=(1–200, 50)&offset=``; oldest first, one card per conversation,
        with ``total`` (``bridge/reply/approval.py``, ``queue``)."""
        require_admin(request)
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return json_error(400, "limit and offset must be integers")
        if not 1 <= limit <= 200 or offset < 0:
            return json_error(400, "limit must be 1 to 200 and offset 0 or more")
        older_than = None
        if q.get("older_than"):
            older_than = _age(q["older_than"])
            if older_than is None:
                return json_error(400, "older_than must be minutes, hours or days: 30m, 2h, 3d")
        department = q.get("department") or None
        if department is not None and department not in {d.id for d in self.ctx.cfg.departments}:
            return json_error(400, f"unknown department {department!r}")
        page = await approval.queue(
            self.ctx,
            department=department,
            account=q.get("account") or None,
            status=q.get("status") or None,
            category=q.get("category") or None,
            older_than=older_than,
            limit=limit,
            offset=offset,
        )
        return web.json_response(page)

    async def bulk_approve(self, request: web.Request) -> web.Response:
        """Approve template drafts as they were shown, each through ``approval.decide``
        (``decide_many``): one outcome per draft, 200 even when some were refused."""
        require_admin(request)
        raw = await read_json(request)
        body = check(BulkApproval, raw)
        shown = [(i.reply_id, i.version, i.text_sha256) for i in body.items]
        outcomes = await approval.decide_many(self.ctx, shown, actor_of(request, raw))
        return web.json_response({"outcomes": outcomes})

    async def decide(self, request: web.Request) -> web.Response:
        """Body: ``{"decision": "approve"|"edit"|"reject", "version": N, "text": "…",
        "reason": "…"}`` (``bodies.ReplyDecision``); what it does, and its 409s and 422s, is
        ``bridge/reply/approval.py``."""
        require_admin(request)
        raw = await read_json(request)
        body = check(ReplyDecision, raw)
        try:
            decided = await approval.decide(
                self.ctx,
                request.match_info["reply_id"],
                body.decision,
                actor_of(request, raw),
                text=body.text,
                reason=body.reason,
                version=body.version,
                shown_sha256=body.text_sha256,
            )
        except approval.Refused as refused:
            return web.json_response(refused.body, status=refused.status)
        return web.json_response(decided)

    async def editing(self, request: web.Request) -> web.Response:
        """Body ``{"editing": true|false}``: the signed-in approver started (or renewed) or
        stopped editing this draft; other open consoles mark its card (``approval_events``).
        A mark lapses after ``EDITING_FOR`` unless renewed. 204."""
        require_admin(request)
        raw = await read_json(request)
        body = check(EditingMark, raw)
        reply_id, actor = request.match_info["reply_id"], actor_of(request, raw)
        if body.editing:
            now = datetime.now(UTC)
            await self.ctx.store.mark_editing(reply_id, actor, iso(now + EDITING_FOR), iso(now))
        else:
            await self.ctx.store.stop_editing(reply_id, actor)
        return web.Response(status=204)

    async def trace(self, request: web.Request) -> web.Response:
        """One inquiry's journey (``bridge.reports.journey``; ``govbridge trace`` prints the
        same)."""
        require_admin(request)
        inquiry_id = request.match_info["inquiry_id"]
        data = await journey(self.ctx.store, inquiry_id)
        if data is None:
            return json_error(404, f"no inquiry {inquiry_id}")
        # what each posted reply said to the citizen: its text through the same last
        # personal-data gate the outbox passes it through (``bridge/reply/public_text.py``)
        stored = {r.reply_id: r for r in await self.ctx.store.list_replies(inquiry_id=inquiry_id)}
        for item in data["replies"]:
            row = stored.get(item["reply_id"])
            if row is not None and row.posted_at:
                asked = ReplyRequest.model_validate_json(row.request_json)
                item["posted_text"] = public_text.last_gate(row, asked).text
        return web.json_response(data)

    # ------------------------------------------------------------------ reconciliation
    async def list_reconciliation(self, request: web.Request) -> web.Response:
        require_admin(request)
        rows = await self.ctx.store.list_create_attempts(CreateState.NEEDS_RECONCILIATION)
        items = [{k: v for k, v in asdict(r).items() if k != "command_json"} for r in rows]
        return web.json_response({"needs_reconciliation": items})

    async def settle_reconciliation(self, request: web.Request) -> web.Response:
        """An official settles an uncertain create. Body ``{"action": "attach", "ticket_id":
        "…"}`` (the ticket exists in the backend: its replies then flow) or ``{"action":
        "not_created"}`` (it does not: the create runs again). Recorded with the actor (the
        signed-in operator, or ``admin-token``) and time."""
        require_admin(request)
        inquiry_id = request.match_info["inquiry_id"]
        raw = await read_json(request)
        body = check(Settlement, raw)
        action, actor, ticket_id = body.action, actor_of(request, raw), body.ticket_id
        store = self.ctx.store
        attempt = await store.create_attempt_for_inquiry(inquiry_id)
        if attempt is None or attempt.state != CreateState.NEEDS_RECONCILIATION:
            state = attempt.state if attempt else "no create attempt"
            return json_error(409, f"inquiry {inquiry_id} does not await reconciliation ({state})")
        if not attempt.command_json:
            return json_error(409, "the create's command was not kept; replay its dead letter")
        command = TicketCommand.model_validate_json(attempt.command_json)
        ref = attempt.reference
        if action == "attach":
            assert isinstance(ticket_id, str)  # checked above
            ticket_id = ticket_id.strip()
            if not await store.decide_reconciliation(
                ref, decision=Decision.ATTACHED, actor=actor, ticket_id=ticket_id
            ):
                return json_error(409, f"inquiry {inquiry_id} was settled meanwhile")
            await store.record_ticket(
                department=command.department,
                ticket_id=ticket_id,
                reference=ref,
                inquiry_id=inquiry_id,
                thread_key=command.inquiry.thread_key,
                status=TicketStatus.RECEIVED.value,
                status_rank=TicketStatus.RECEIVED.rank,
                native_status="attached",
                status_at=datetime.now(UTC).isoformat(),
            )
            await store.update_inquiry(inquiry_id, state=InquiryState.TICKETED, ticket_id=ticket_id)
            await publish_created(self.ctx, command, ticket_id, "attached")
        else:
            if not await store.decide_reconciliation(
                ref, decision=Decision.NOT_CREATED, actor=actor
            ):
                return json_error(409, f"inquiry {inquiry_id} was settled meanwhile")
            await store.update_inquiry(inquiry_id, state=InquiryState.ROUTED)
            await self.ctx.broker.publish(routing.inquiry_routed(command.department), command)
        self.ctx.metrics.reconciliation.labels(command.department).dec()
        log.info("reconciliation settled", inquiry_id=inquiry_id, action=action, actor=actor)
        settled = await store.get_create_attempt(ref)
        assert settled is not None
        return web.json_response(
            {
                "inquiry_id": inquiry_id,
                "state": settled.state,
                "ticket_id": settled.ticket_id,
                "decided_by": settled.decided_by,
                "decided_at": settled.decided_at,
            }
        )
