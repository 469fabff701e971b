"""The operators' HTTP API, served by every daemon process whatever roles it runs (routes are
registered by the daemon, not inside a role): the approval queue and its decisions, the trace of
one inquiry, the outbox backlog, and creates awaiting reconciliation with their settlement. All
of it needs a signed-in operator with the role (``bridge/operators.py``) or the bearer admin
token.

A decision is recorded with actor and time; an approved or edited reply is handed to the outbox
with a ``reply.requested`` message (the outbox posts the store's text, never the message's).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from bridge import pii
from bridge.http import actor_of, json_error, read_json, require_admin
from bridge.journey import journey
from bridge.stages.ticketing import publish_created, thread_key_of
from schemas import routing
from schemas.messages import ReplyRequest, TicketCommand
from schemas.vocab import CreateState, InquiryState, ReplyState, TicketStatus, Visibility

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

log = structlog.get_logger("govbridge.api")


class OperatorApi:
    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/approvals", self.list_approvals)
        r.add_post("/api/approvals/{reply_id}", self.decide)
        r.add_get("/api/inquiries/{inquiry_id}", self.trace)
        r.add_get("/api/outbox", self.backlog)
        r.add_get("/api/reconciliation", self.list_reconciliation)
        r.add_post("/api/reconciliation/{inquiry_id}", self.settle_reconciliation)

    async def backlog(self, request: web.Request) -> web.Response:
        """What waits in the outbox per account; with pauses where this process runs it."""
        require_admin(request)
        local = self.ctx.details.get("outbox")
        if local is not None:
            return web.json_response({"accounts": await local()})
        accounts = {
            f"{r['platform']}:{r['account']}": {
                "waiting": int(r.get("waiting") or 0),
                "failed": int(r.get("failed") or 0),
            }
            for r in await self.ctx.store.outbox_backlog()
        }
        return web.json_response({"accounts": accounts})

    async def list_approvals(self, request: web.Request) -> web.Response:
        require_admin(request)
        items = []
        store = self.ctx.store
        for r in await store.list_replies(state=ReplyState.AWAITING_APPROVAL):
            req = ReplyRequest.model_validate_json(r.request_json)
            # beside the draft: what the citizen wrote (redacted) and the ticket it answers
            inquiry = await store.get_inquiry(r.inquiry_id)
            ticket = await store.get_ticket(r.department, req.ticket_id) if req.ticket_id else None
            items.append(
                {
                    "reply_id": r.reply_id,
                    "inquiry_id": r.inquiry_id,
                    "original": inquiry.public_text if inquiry else None,
                    "citizen_handle": inquiry.citizen_handle if inquiry else None,
                    "category": inquiry.category if inquiry else None,
                    "ticket_id": req.ticket_id,
                    "ticket_status": ticket.status if ticket else None,
                    "department": r.department,
                    "platform": r.platform,
                    "account": r.account,
                    "status": r.status,
                    "templated": r.templated,
                    "text": req.text,
                    "created_at": r.created_at,
                }
            )
        return web.json_response({"approvals": items})

    async def decide(self, request: web.Request) -> web.Response:
        """Body: ``{"decision": "approve"|"edit"|"reject", "actor": "...", "text": "...",
        "reason": "..."}`` (the reason of a rejection goes to the audit trail)."""
        require_admin(request)
        reply_id = request.match_info["reply_id"]
        body = await read_json(request)
        if not isinstance(body, dict) or "decision" not in body:
            return json_error(400, 'body must be {"decision": ..., "actor": ..., "text"?: ...}')
        decision, actor = body["decision"], actor_of(request, body)
        if decision not in ("approve", "edit", "reject") or actor is None:
            return json_error(400, "decision must be approve|edit|reject and actor non-empty")
        text, reason = body.get("text"), body.get("reason")
        if decision == "edit" and (not isinstance(text, str) or not text.strip()):
            return json_error(400, "edit needs the new text")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            return json_error(400, "reason must be a string of at most 500 characters")
        stored = await self.ctx.store.get_reply(reply_id)
        if stored is None:
            return json_error(404, f"no reply {reply_id}")
        original = ReplyRequest.model_validate_json(stored.request_json)
        final = None
        if decision == "edit" and isinstance(text, str):
            final = (
                text
                if original.visibility == Visibility.PRIVATE
                else pii.redact_text(text, keep=[original.ticket_id])
            )
        if not await self.ctx.store.decide_reply(
            reply_id,
            decision=decision,
            actor=actor,
            text=final,
            reason=pii.redact_text(reason) if reason else None,
        ):
            return json_error(409, f"reply {reply_id} is not awaiting approval ({stored.state})")
        log.info("reply decision", reply_id=reply_id, decision=decision, actor=actor)
        if decision != "reject":
            req = original.model_copy(update={"text": final or original.text})
            await self.ctx.broker.publish(routing.reply_requested(req.platform), req)
        decided = await self.ctx.store.get_reply(reply_id)
        assert decided is not None
        return web.json_response(
            {
                "reply_id": reply_id,
                "state": decided.state,
                "decided_by": decided.decided_by,
                "decided_at": decided.decided_at,
            }
        )

    async def trace(self, request: web.Request) -> web.Response:
        """One inquiry's journey (``bridge.journey``; ``govbridge trace`` prints the same)."""
        require_admin(request)
        inquiry_id = request.match_info["inquiry_id"]
        data = await journey(self.ctx.store, inquiry_id)
        if data is None:
            return json_error(404, f"no inquiry {inquiry_id}")
        return web.json_response(data)

    # ------------------------------------------------------------------ reconciliation
    async def list_reconciliation(self, request: web.Request) -> web.Response:
        require_admin(request)
        rows = await self.ctx.store.list_create_attempts(CreateState.NEEDS_RECONCILIATION)
        items = [{k: v for k, v in asdict(r).items() if k != "command_json"} for r in rows]
        return web.json_response({"needs_reconciliation": items})

    async def settle_reconciliation(self, request: web.Request) -> web.Response:
        """An official settles an uncertain create. Body ``{"action": "attach", "ticket_id":
        "…", "actor": "…"}`` (the ticket exists in the backend: its replies then flow) or
        ``{"action": "not_created", "actor": "…"}`` (it does not: the create runs again).
        Recorded with actor and time."""
        require_admin(request)
        inquiry_id = request.match_info["inquiry_id"]
        body = await read_json(request)
        if not isinstance(body, dict) or "action" not in body:
            return json_error(400, 'body must be {"action": ..., "actor": ..., "ticket_id"?: ...}')
        action, actor = body["action"], actor_of(request, body)
        if action not in ("attach", "not_created") or not isinstance(actor, str) or not actor:
            return json_error(400, "action must be attach|not_created and actor non-empty")
        ticket_id = body.get("ticket_id")
        if action == "attach" and (not isinstance(ticket_id, str) or not ticket_id.strip()):
            return json_error(400, "attach needs the ticket_id found in the ticket system")
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
                ref, decision="attached", actor=actor, ticket_id=ticket_id
            ):
                return json_error(409, f"inquiry {inquiry_id} was settled meanwhile")
            await store.record_ticket(
                department=command.department,
                ticket_id=ticket_id,
                reference=ref,
                inquiry_id=inquiry_id,
                thread_key=thread_key_of(command),
                status=TicketStatus.RECEIVED.value,
                status_rank=TicketStatus.RECEIVED.rank,
                native_status="attached",
                status_at=datetime.now(UTC).isoformat(),
            )
            await store.update_inquiry(inquiry_id, state=InquiryState.TICKETED, ticket_id=ticket_id)
            await publish_created(self.ctx, command, ticket_id, "attached")
        else:
            if not await store.decide_reconciliation(ref, decision="not_created", actor=actor):
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
