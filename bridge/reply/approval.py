"""Where a reply is approved: the approval queue and an approver's decision, in one place.

Why one module: a decision touches the draft's version, the personal-data gate, the
platform's length limit, the store's record (with its audit entry) and the outbox. Spread over
the HTTP handler, the reply role and store calls, a change to one of them (a new refusal, a
new decision) had to be found in three places. Here it is one function, ``decide``, which
the console's HTTP API (``POST /api/approvals/{reply_id}``, ``bridge/web/api.py``, which only
parses the request) calls; anything else that decides a reply calls it too.

What a decision does, in order:

1. The draft must still await approval: one another approver decided, or that a newer status
   of the same ticket superseded, answers 409 (``decided``, ``superseded``, ``not_awaiting``)
   and nothing is posted. An approval names the draft version it was shown (``version`` or
   ``text_sha256``); a draft changed since answers 409 ``changed``. Without either, the
   current draft is decided (older clients).
2. An approval carries the text as it was in the box (edited or not): that text is what the
   citizen gets, byte for byte. Nothing is masked behind the approver's back: a public text
   the personal-data gate (``bridge/reply/public_text.py``) would change answers 422
   ``personal_data`` with the masked text to confirm; a text longer than the platform takes in
   one post (and that it would not split) answers 422 ``too_long``.
3. The store records the decision (``approve``, ``edit`` when the text differs from the
   draft, ``reject``) with actor, time and a new version, only if the draft is still the
   version checked (a race answers 409 as in 1), and writes the audit entry
   (``reply.approved``/``reply.edited``/``reply.rejected``, with the approved text's hash) in
   the same transaction. A rejection's reason is redacted before it is kept.
4. An approved reply is handed to the outbox with a ``reply.requested`` message. The outbox
   posts the store's text, never the message's.

Replies that need no approval (the department's ``approval`` mode) are recorded approved when
composed (``record_reply`` in ``bridge/reply/role.py``) and never pass here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from bridge.privacy import pii
from bridge.reply import public_text
from bridge.store import QueueCard, StoredReply, text_sha256
from schemas import routing
from schemas.messages import ReplyRequest
from schemas.states import Decision
from schemas.vocab import ReplyState, Visibility

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.approval")

# The decisions an approver makes (the others in ``Decision`` settle ticket creates).
REPLY_DECISIONS = (Decision.APPROVE, Decision.EDIT, Decision.REJECT)


class Refused(Exception):
    """The decision was not taken (nothing recorded, nothing posted): ``status`` is the HTTP
    status that says why (404, 409, 422), ``body`` the answer (``error``; with ``reason`` and
    ``message`` in Chinese and English for the console)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body


# How often a queue read records the drafts of final tickets as superseded (each sweep joins
# every waiting draft with its ticket: about 45 ms at 10,000 drafts, docs/performance.md).
SWEEP_EVERY = 30.0
_next_sweep: dict[int, float] = {}


def _card(ctx: BridgeContext, card: QueueCard) -> dict[str, Any]:
    r = card.reply
    req = ReplyRequest.model_validate_json(r.request_json)
    department = ctx.cfg.department(r.department) if _known(ctx, r.department) else None
    account = ctx.cfg.account_on(r.platform, r.account)
    return {
        "reply_id": r.reply_id,
        "inquiry_id": r.inquiry_id,
        "original": card.original,
        "citizen_handle": card.citizen_handle,
        "category": card.category,
        "ticket_id": req.ticket_id,
        "ticket_status": card.ticket_status,
        "department": r.department,
        "department_name": department.name if department is not None else r.department,
        "platform": r.platform,
        "account": r.account,
        "account_key": account.key if account is not None else f"{r.platform}:{r.account}",
        "status": r.status,
        "templated": r.templated,
        "text": r.text,
        "version": r.version,
        "text_sha256": text_sha256(r.text),
        "visibility": req.visibility,
        "created_at": r.created_at,
        "drafts": card.drafts,
    }


def _known(ctx: BridgeContext, department: str) -> bool:
    return any(d.id == department for d in ctx.cfg.departments)


async def queue(
    ctx: BridgeContext,
    *,
    department: str | None = None,
    account: str | None = None,
    status: str | None = None,
    category: str | None = None,
    older_than: timedelta | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The approval queue as the console pages it: oldest first, one card per conversation
    (its live draft; drafts a later status made obsolete are superseded when composed, and
    those of a ticket already final at another status are left out by the store and
    superseded here, at most every ``SWEEP_EVERY`` seconds per process: ``superseded`` says
    how many this time), ``total`` cards matching the filters. ``account`` is an account's key
    (``adapter:handle``, as configured); ``older_than`` the draft's least age."""
    platform = handle = None
    if account is not None:
        found = next((a for a in ctx.cfg.accounts if a.key == account), None)
        if found is not None:
            platform, handle = found.platform_name, found.handle
        else:
            platform, _, handle = account.partition(":")
    superseded = 0
    clock = time.monotonic()
    if clock >= _next_sweep.get(id(ctx.store), 0.0):  # the queue leaves them out meanwhile
        _next_sweep[id(ctx.store)] = clock + SWEEP_EVERY
        superseded = await ctx.store.supersede_obsolete_drafts()
        if superseded:
            log.info("obsolete drafts superseded", count=superseded)
    created_before = None
    if older_than is not None:
        created_before = (now or datetime.now(UTC)) - older_than
    page = await ctx.store.approval_queue(
        department=department,
        platform=platform,
        account=handle,
        status=status,
        category=category,
        created_before=created_before,
        limit=limit,
        offset=offset,
    )
    return {
        "approvals": [_card(ctx, c) for c in page.cards],
        "total": page.total,
        "superseded": superseded,
        "limit": limit,
        "offset": offset,
    }


async def decide_many(
    ctx: BridgeContext, shown: list[tuple[str, int, str]], actor: str
) -> list[dict[str, Any]]:
    """Bulk approval: each ``(reply_id, version, text_sha256)`` the approver was shown is
    approved by ``decide`` as it stands (its checks, its 409s, its audit entry, one at a
    time); only template drafts (an official's free text is read one by one). One outcome
    per draft, in order: ``ok`` with what ``decide`` returned, or the refusal's status and
    body."""
    outcomes: list[dict[str, Any]] = []
    for reply_id, version, sha in shown:
        stored = await ctx.store.get_reply(reply_id)
        if stored is not None and not stored.templated:
            outcomes.append(
                {
                    "reply_id": reply_id,
                    "ok": False,
                    "status": 422,
                    "body": {
                        "error": "only template drafts are approved in bulk",
                        "reason": "not_templated",
                        "message": MESSAGES["not_templated"],
                    },
                }
            )
            continue
        try:
            decided = await decide(
                ctx, reply_id, Decision.APPROVE, actor, version=version, shown_sha256=sha
            )
        except Refused as refused:
            outcomes.append(
                {"reply_id": reply_id, "ok": False, "status": refused.status, "body": refused.body}
            )
            continue
        outcomes.append({"reply_id": reply_id, "ok": True, **decided})
    return outcomes


async def decide(
    ctx: BridgeContext,
    reply_id: str,
    decision: Decision,
    actor: str,
    *,
    text: str | None = None,
    reason: str | None = None,
    version: int | None = None,
    shown_sha256: str | None = None,
) -> dict[str, Any]:
    """Take ``actor``'s ``decision`` on reply ``reply_id`` (see the module's docstring) and
    return what was decided; ``Refused`` when nothing was."""
    if decision not in REPLY_DECISIONS:
        raise Refused(400, {"error": "decision must be approve|edit|reject"})
    if decision == Decision.EDIT and text is None:
        raise Refused(400, {"error": "edit needs the new text"})
    store = ctx.store
    stored = await store.get_reply(reply_id)
    if stored is None:
        raise Refused(404, {"error": f"no reply {reply_id}"})
    if stored.state != ReplyState.AWAITING_APPROVAL:
        raise _conflict(stored)
    if (version is not None and version != stored.version) or (
        shown_sha256 is not None and shown_sha256.lower() != text_sha256(stored.text)
    ):
        raise _conflict(stored, changed=True)
    original = ReplyRequest.model_validate_json(stored.request_json)
    final = stored.text if text is None else text
    approves = decision != Decision.REJECT
    if approves:
        _check_text(ctx, final, original, stored)
    edited = approves and final != stored.text
    recorded = Decision.EDIT if edited else Decision.APPROVE if approves else Decision.REJECT
    if not await store.decide_reply(
        reply_id,
        decision=recorded,
        actor=actor,
        text=final if edited else None,
        reason=pii.redact_text(reason) if reason else None,
        version=stored.version,
    ):
        now = await store.get_reply(reply_id)
        assert now is not None
        raise _conflict(now, changed=now.state == ReplyState.AWAITING_APPROVAL)
    log.info("reply decision", reply_id=reply_id, decision=decision, actor=actor, edited=edited)
    if approves:  # to the outbox: it posts the store's text, the one just approved
        req = original.model_copy(update={"text": final})
        await ctx.broker.publish(routing.reply_requested(req.platform), req)
    decided = await store.get_reply(reply_id)
    assert decided is not None
    return {
        "reply_id": reply_id,
        "state": decided.state,
        "decided_by": decided.decided_by,
        "decided_at": decided.decided_at,
        "version": decided.version,
        "text_sha256": text_sha256(decided.text) if approves else None,
    }


def _check_text(ctx: BridgeContext, text: str, original: ReplyRequest, stored: StoredReply) -> None:
    """``Refused`` (422) when ``text`` cannot be approved as it is: personal data in a public
    reply (with the masked text to confirm), or longer than the platform takes in one post
    (it would be cut, and what was approved is what is posted)."""
    if original.visibility == Visibility.PUBLIC:
        masked, findings = public_text.gate(text, ticket_id=original.ticket_id)
        if findings:
            raise Refused(
                422,
                {
                    "error": "the text carries personal data; approve the masked text"
                    " (masked_text) if it reads right",
                    "reason": "personal_data",
                    "message": MESSAGES["personal_data"],
                    "kinds": sorted({f.kind for f in findings}),
                    "masked_text": masked,
                    "version": stored.version,
                },
            )
    source = ctx.adapters.source_for(stored.platform, stored.account)
    if source is not None:
        caps = source.capabilities
        if len(text) > caps.max_reply_chars and not caps.splits_long_replies:
            raise Refused(
                422,
                {
                    "error": f"the text is {len(text)} characters; {stored.platform}"
                    f" takes at most {caps.max_reply_chars} in one reply",
                    "reason": "too_long",
                    "message": MESSAGES["too_long"],
                    "max_chars": caps.max_reply_chars,
                    "version": stored.version,
                },
            )


def _conflict(reply: StoredReply, *, changed: bool = False) -> Refused:
    """409: the draft the approver saw is not the one that stands; nothing was decided.
    ``reason`` is a key, ``message`` says it in Chinese and English."""
    if changed:
        reason, error = "changed", f"reply {reply.reply_id} changed since it was shown"
    elif reply.state == ReplyState.SUPERSEDED:
        reason = "superseded"
        error = f"reply {reply.reply_id} was superseded by a newer status ({reply.merged_into})"
    elif reply.decided_by is not None:
        reason = "decided"
        error = (
            f"reply {reply.reply_id} was already decided ({reply.decision}) by {reply.decided_by}"
        )
    else:
        reason, error = "not_awaiting", f"reply {reply.reply_id} is not awaiting approval"
    return Refused(
        409,
        {
            "error": f"{error} ({reply.state}); nothing was posted",
            "reason": reason,
            "message": MESSAGES[reason],
            "state": reply.state,
            "version": reply.version,
            "decided_by": reply.decided_by,
            "superseded_by": reply.merged_into,
        },
    )


# What the console shows an approver for each refusal, in its two languages.
MESSAGES: dict[str, dict[str, str]] = {
    "superseded": {
        "zh": "该草稿已被同一工单的新状态取代，未发布任何内容。请刷新后审核新草稿。",
        "en": "This draft was superseded by a newer status of the same ticket; nothing was"
        " posted. Refresh to review the new draft.",
    },
    "decided": {
        "zh": "该回复已由其他审批人处理，未发布任何内容。请刷新。",
        "en": "Another approver already decided this reply; nothing was posted. Refresh.",
    },
    "changed": {
        "zh": "草稿在您查看后已被修改，未发布任何内容。请刷新后重新审核。",
        "en": "The draft changed after it was shown to you; nothing was posted. Refresh and"
        " review it again.",
    },
    "not_awaiting": {
        "zh": "该回复已不在待审核状态，未发布任何内容。请刷新。",
        "en": "This reply no longer awaits approval; nothing was posted. Refresh.",
    },
    "personal_data": {
        "zh": "文字中含有个人信息（电话、身份证号等），已在框内替换为掩码。请核对后再次点击批准。",
        "en": "The text carries personal data (phone or ID numbers…); it has been masked in"
        " the box. Check it and press approve again.",
    },
    "not_templated": {
        "zh": "批量批准只适用于模板回复；人工撰写的回复请逐条审核。",
        "en": "Bulk approval takes template drafts only; review a written reply on its own.",
    },
    "too_long": {
        "zh": "文字超过该平台单条回复的长度上限，请缩短后再批准。",
        "en": "The text is longer than the platform takes in one reply; shorten it and"
        " approve again.",
    },
}
