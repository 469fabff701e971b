"""The holding acknowledgement ("the number follows") never comes after the 已受理 that gives
the number (issue 25). The reply role looks for the 已受理 before it composes the
acknowledgement; a 已受理 recorded between that look and the acknowledgement's record used to
be posted first, the acknowledgement after it. Here the 已受理 is recorded exactly there."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bridge.reply.role import ReplyRole, acknowledgement_reply_id, record_reply, status_reply_id
from bridge.runtime.worker import Delivery
from bridge.sla.role import SlaRole
from schemas.messages import ReplyRequest, ThreadRef
from schemas.vocab import TicketStatus, Visibility
from tests.conftest import bridge_config, running_bridge
from tests.test_sla import ACCOUNT, DEPT, waiting


def received(inquiry_id: str) -> ReplyRequest:
    return ReplyRequest(
        reply_id=status_reply_id(inquiry_id, TicketStatus.RECEIVED, 0),
        inquiry_id=inquiry_id,
        platform="webhook",
        account="hotline",
        department="urban",
        thread=ThreadRef(root_id="w1"),
        citizen_handle="市民1",
        visibility=Visibility.PUBLIC,
        text="您好，您反映的问题已受理，工单号T1。",
        status=TicketStatus.RECEIVED,
        ticket_id="T1",
    )


async def test_a_received_reply_recorded_during_the_acknowledgement_keeps_it_out(
    tmp_path: Path,
) -> None:
    cfg = bridge_config(
        tmp_path,
        departments=[{**DEPT, "approval": "none", "sla": {"first_response": "2m"}}],
        accounts=[ACCOUNT],
        sla={"check_every": "1h", "acknowledge_every": "1h"},
    )
    async with running_bridge(cfg, ["sla", "reply"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await waiting(store, 1, "urban", timedelta(seconds=70))  # due (60 s)
        sla, reply = daemon.ctx.roles["sla"], daemon.ctx.roles["reply"]
        assert isinstance(sla, SlaRole) and isinstance(reply, ReplyRole)
        (event,) = await sla.acknowledgements.scan()
        look = store.get_reply
        raced: list[str] = []

        async def racing_look(reply_id: str) -> Any:
            seen = await look(reply_id)
            if not raced:  # the role's look for the 已受理: nothing yet; then it is recorded
                raced.append(reply_id)
                assert await record_reply(store, received("inq_w1"), "none")
            return seen

        store.get_reply = racing_look  # type: ignore[method-assign]
        try:
            await reply.hold(event, Delivery(attempt=0))
        finally:
            store.get_reply = look  # type: ignore[method-assign]
        rows = [r for r in await store.list_replies() if r.inquiry_id == "inq_w1"]
    assert raced == [status_reply_id("inq_w1", TicketStatus.RECEIVED, 0)]
    assert [(r.status, r.text) for r in rows] == [
        ("received", "您好，您反映的问题已受理，工单号T1。")
    ]
    assert all(r.reply_id != acknowledgement_reply_id("inq_w1") for r in rows)


async def test_without_the_guard_the_acknowledgement_would_be_posted_after_the_number(
    store: Any,
) -> None:
    """What the guard prevents, on both engines: an acknowledgement recorded after the 已受理
    was posted is the next reply the outbox claims for the inquiry."""
    ack = received("inq_1").model_copy(
        update={
            "reply_id": acknowledgement_reply_id("inq_1"),
            "status": None,
            "ticket_id": None,
            "text": "您好，您的诉求已收到，正在登记转办，办理编号稍后告知。",
        }
    )
    assert await record_reply(store, received("inq_1"), "none")
    first = await store.claim_reply("webhook", "hotline", owner="o", lease=timedelta(minutes=1))
    assert first.reply is not None and first.reply.status == "received"
    assert await store.finish_post(first, state="posted", external_ids=["1"], outcome="posted")
    assert not await record_reply(store, ack, "none", before_any_status=True)  # the guard
    assert await record_reply(store, ack, "none")  # unguarded, as before
    after = await store.claim_reply("webhook", "hotline", owner="o", lease=timedelta(minutes=1))
    assert after.reply is not None and after.reply.reply_id == ack.reply_id  # the slip


async def test_an_acknowledgement_approved_after_the_number_is_never_posted(store: Any) -> None:
    """A department whose approver sees both: the acknowledgement (recorded first) is approved
    only after the 已受理 was approved and posted. The outbox drops it (superseded) instead of
    posting "the number follows" after the number."""
    from schemas.states import Decision

    ack = received("inq_2").model_copy(
        update={
            "reply_id": acknowledgement_reply_id("inq_2"),
            "inquiry_id": "inq_2",
            "status": None,
            "ticket_id": None,
            "text": "您好，您的诉求已收到，正在登记转办，办理编号稍后告知。",
        }
    )
    number = received("inq_2").model_copy(
        update={"reply_id": status_reply_id("inq_2", TicketStatus.RECEIVED, 0)}
    )
    assert not await record_reply(store, ack, "all-manual", before_any_status=True)  # waits
    assert not await record_reply(store, number, "all-manual")
    assert await store.decide_reply(number.reply_id, decision=Decision.APPROVE, actor="官员")
    lease = timedelta(minutes=1)
    first = await store.claim_reply("webhook", "hotline", owner="o", lease=lease)
    assert first.reply is not None and first.reply.reply_id == number.reply_id
    assert await store.finish_post(first, state="posted", external_ids=["1"], outcome="posted")
    assert await store.decide_reply(ack.reply_id, decision=Decision.APPROVE, actor="官员")
    after = await store.claim_reply("webhook", "hotline", owner="o", lease=lease)
    assert after.reply is None and after.superseded == (ack.reply_id,)
    row = await store.get_reply(ack.reply_id)
    assert row is not None and row.state == "superseded"
