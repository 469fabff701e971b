"""回访 answers in the pipeline: a citizen's message in the thread of their own case, after the
bridge asked "was it solved? are you satisfied?" (the reply role asks, ``[survey]``), is an
answer, not a follow-up.

- read by ``bridge/triage/survey.py`` (``parse_answer``);
- unclear (sarcasm, a contradiction, nothing about either question) after the first question:
  the one polite re-ask is due (``survey_again``, sent by the reply role); unclear after the
  re-ask: unrated;
- clear: recorded with ``record_survey_result`` (the reading only, never the words); 未解决 or
  不满意 (``[survey] reopen_when``) reopens the case: a ``reopen`` command goes to ticketing
  (the ticket system is told, the ticket re-enters its lifecycle, the citizen is told).

The answer is personal data like any inquiry: kept masked with the inquiries, never logged.
An answer counts only once its question was posted (a message written while the question
waits for approval is an ordinary follow-up).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from bridge.store import NewInquiry, StoredInquiry
from bridge.store.surveys import SurveyAsk, survey_reply_id
from bridge.triage.survey import SurveyAnswer, parse_answer
from schemas import routing
from schemas.messages import Inquiry, TicketCommand, reference_for, stable_id
from schemas.states import SurveyAskState
from schemas.vocab import Category, InquiryState, ReplyState

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.triage")


async def waiting_question(
    ctx: BridgeContext, inquiry: Inquiry, owner: StoredInquiry | None
) -> SurveyAsk | None:
    """The posted 回访 question this message answers, if any: the citizen wrote in their own
    case's conversation after its question (or re-ask) was posted."""
    if owner is None:
        return None
    ask = await ctx.store.open_survey_for(owner.inquiry_id)
    if ask is None:
        return None
    key = "survey_again" if ask.state == SurveyAskState.REASKED else "survey"
    reply = await ctx.store.get_reply(survey_reply_id(ask.inquiry_id, key, ask.cycle))
    if reply is None or reply.state != ReplyState.POSTED:
        return None
    return ask


def reopens(ctx: BridgeContext, answer: SurveyAnswer) -> bool:
    when = ctx.cfg.survey.reopen_when
    if answer.unclear or when == "never":
        return False
    if answer.solved is False:
        return True
    return when == "unsolved_or_dissatisfied" and answer.satisfaction == "不满意"


async def take_answer(
    ctx: BridgeContext,
    inquiry: Inquiry,
    redacted: str,
    row: dict[str, object],
    existing: StoredInquiry | None,
    ask: SurveyAsk,
) -> str:
    """Read, record and act on an answer; returns what became of it (for the metrics):
    ``reask``, ``unrated``, ``answered``, ``reopened``, or ``late`` (another answer settled
    the question first)."""
    store = ctx.store
    answer = parse_answer(inquiry.text)
    now = datetime.now(UTC)
    reopen = reopens(ctx, answer)
    if answer.unclear and ask.asks < 2:
        outcome, to_state = "reask", SurveyAskState.REASK_DUE
    elif answer.unclear:
        outcome, to_state = "unrated", SurveyAskState.DONE
    else:
        outcome, to_state = ("reopened" if reopen else "answered"), SurveyAskState.DONE
    async with store.transaction() as tx:
        moved = await tx.move_survey_ask(
            ask,
            from_state=ask.state,
            to_state=to_state,
            unclear=answer.unclear or None,
            outcome=None if outcome == "reask" else outcome,
        )
        if moved and to_state == SurveyAskState.DONE:
            await tx.record_survey_result(
                department=ask.department,
                ticket_id=ask.ticket_id,
                cycle=ask.cycle,
                inquiry_id=ask.inquiry_id,
                platform=ask.platform,
                account=ask.account,
                answer=answer,
                asks=ask.asks,
                asked_at=datetime.fromisoformat(ask.asked_at or ask.due_at),
                concluded_at=now,
            )
        if not moved:  # another answer settled this question first
            outcome = "late"
        state, reason = InquiryState.SURVEY_ANSWER, f"survey:{outcome}"
        if existing is None:
            await tx.record_inquiry(
                NewInquiry(
                    inquiry_id=inquiry.inquiry_id,
                    state=state,
                    reason=reason,
                    department=ask.department,
                    ticket_id=ask.ticket_id,
                    conversation=ask.inquiry_id,
                    **row,  # type: ignore[arg-type]
                )
            )
        else:
            await tx.update_inquiry(
                inquiry.inquiry_id,
                state=state,
                reason=reason,
                department=ask.department,
                ticket_id=ask.ticket_id,
                conversation=ask.inquiry_id,
            )
    if moved and outcome == "reopened":
        # After the row moved, so only the answer that settled the question reopens (a second
        # answer racing it in another process does not); a crash before this line redelivers
        # the answer, and ``resend_reopen`` sends it then (the command is idempotent).
        await publish_reopen(ctx, inquiry, redacted, ask.department, ask.inquiry_id, ask.ticket_id)
    # The reading only: never the words.
    log.info("survey answer read", ticket_id=ask.ticket_id, cycle=ask.cycle, outcome=outcome)
    return outcome


async def publish_reopen(
    ctx: BridgeContext,
    inquiry: Inquiry,
    redacted: str,
    department: str,
    conversation: str,
    ticket_id: str,
) -> None:
    """``inquiry.routed.<department>`` with a ``reopen`` command for the answer ``inquiry``."""
    answer = parse_answer(inquiry.text)
    dept = ctx.cfg.department(department)
    owner = await ctx.store.get_inquiry(conversation)
    category = Category((owner.category if owner else None) or "other")
    reading = "未解决" if answer.solved is False else "已解决"
    text = inquiry.text if dept.keep_personal_data else redacted
    command = TicketCommand(
        command_id=stable_id("cmd", inquiry.inquiry_id, "reopen"),
        action="reopen",
        inquiry=inquiry,
        department=dept.id,
        category=category,
        reference=reference_for(conversation),
        description=f"回访结果：{reading}，{answer.satisfaction or '未评价'}。"
        f"市民申请重办（工单{ticket_id}）。市民答复：{text}",
        public_text=redacted,
        ticket_id=ticket_id,
    )
    await ctx.broker.publish(routing.inquiry_routed(dept.id), command)


async def resend_reopen(
    ctx: BridgeContext, inquiry: Inquiry, redacted: str, existing: StoredInquiry
) -> bool:
    """A redelivered answer that reopened its case: send the reopen again (a crash may have
    come between recording the answer and sending it; downstream it happens once). True when
    ``existing`` is such an answer."""
    if existing.state != InquiryState.SURVEY_ANSWER or existing.reason != "survey:reopened":
        return False
    if existing.department and existing.conversation and existing.ticket_id:
        await publish_reopen(
            ctx, inquiry, redacted, existing.department, existing.conversation, existing.ticket_id
        )
    return True
