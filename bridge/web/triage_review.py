"""The official's check of held inquiries over HTTP: ``GET /api/triage/review`` and
``POST /api/triage/review/{inquiry_id}``. Registered by the daemon, so an official can check held
inquiries through any process, whatever roles it runs (filing a check needs only the broker and
the store; ``bridge/triage/review.py`` holds the queue)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from bridge.runtime.http import json_error
from bridge.triage.review import NEVER, ReviewQueue, release
from bridge.web.bodies import ReviewCheck, check
from bridge.web.server import actor_of, read_json, require_admin
from schemas.states import ReviewReason, ReviewState
from schemas.vocab import Category, InquiryState

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.triage")

LIST_LIMIT = 500


class TriageReviewApi:
    """The held inquiries and an official's check of one."""

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self.queue = ReviewQueue(ctx.store)

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/triage/review", self.list_held)
        app.router.add_post("/api/triage/review/{inquiry_id}", self.check)

    async def list_held(self, request: web.Request) -> web.Response:
        """The oldest ``LIST_LIMIT`` pending holds, each with why it is held (``reason``:
        ``unsure`` or ``flood``) and when it is filed without a check (never for a flood)."""
        require_admin(request)
        held = []
        for r in await self.queue.pending(LIST_LIMIT):
            inquiry = await self.ctx.store.get_inquiry(r.inquiry_id)
            held.append(
                {
                    "inquiry_id": r.inquiry_id,
                    "department": r.department,
                    "text": r.public_text,
                    "model_category": r.model_category,
                    "confidence": r.confidence,
                    "explanation": json.loads(inquiry.explanation or "null") if inquiry else None,
                    "held_at": r.held_at,
                    "reason": r.reason,
                    "release_after": None if r.release_after == NEVER else r.release_after,
                }
            )
        return web.json_response(
            {"held": held, "categories": [c.value for c in Category], "limit": LIST_LIMIT}
        )

    async def check(self, request: web.Request) -> web.Response:
        """Body: ``{"category": "<id>"}`` (files it under that category), or, for a flood
        hold, ``{"dismiss": true}`` (no ticket; the inquiry is recorded as ignored)."""
        require_admin(request)
        inquiry_id = request.match_info["inquiry_id"]
        raw = await read_json(request)
        body = check(ReviewCheck, raw)
        held = await self.queue.get(inquiry_id)
        if held is not None and held.reason == ReviewReason.RETURNED:
            return json_error(
                409,
                "a returned case (退单) is settled by re-routing it:"
                f" POST /api/cases/{inquiry_id}/reroute",
            )
        if body.dismissed:
            return await self._dismiss(request, inquiry_id, actor_of(request, raw))
        assert body.category is not None  # a body that dismisses nothing names one
        category, actor = body.category, actor_of(request, raw)
        row = await self.queue.get(inquiry_id)
        if row is None:
            return json_error(404, f"inquiry {inquiry_id} was not held for review")
        state = await self.queue.decide(inquiry_id, Category(category), actor)
        if state is None:
            return json_error(409, f"inquiry {inquiry_id} was already checked ({row.state})")
        log.info(
            "triage checked", inquiry_id=inquiry_id, category=category, actor=actor, outcome=state
        )
        decided = await self.queue.get(inquiry_id)
        assert decided is not None
        if state == ReviewState.CORRECTED_LATE:
            await self.ctx.store.update_inquiry(inquiry_id, category=category)
            filed = "already filed with the model's guess; the correction is recorded"
        else:
            await release(self.ctx, self.queue, decided)
            filed = "filed now"
        return web.json_response(
            {
                "inquiry_id": inquiry_id,
                "state": state,
                "category": category,
                "model_category": decided.model_category,
                "decided_by": decided.decided_by,
                "decided_at": decided.decided_at,
                "filed": filed,
            }
        )

    async def _dismiss(self, request: web.Request, inquiry_id: str, actor: str) -> web.Response:
        row = await self.queue.get(inquiry_id)
        if row is None:
            return json_error(404, f"inquiry {inquiry_id} was not held for review")
        if row.reason == ReviewReason.UNSURE:
            return json_error(409, "only a flood hold can be dismissed; choose a category")
        if not await self.queue.dismiss(inquiry_id, actor):
            return json_error(409, f"inquiry {inquiry_id} was already checked ({row.state})")
        await self.ctx.store.update_inquiry(
            inquiry_id, state=InquiryState.IGNORED, reason=f"{row.reason}: dismissed"
        )
        log.info("held inquiry dismissed", inquiry_id=inquiry_id, actor=actor)
        return web.json_response(
            {"inquiry_id": inquiry_id, "state": ReviewState.DISMISSED, "filed": None}
        )
