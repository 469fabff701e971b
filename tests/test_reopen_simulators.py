"""The simulators' side of 重办 (issue 22): what the Open311 server (strict mode) and the REST
system accept and report when the bridge reopens a ticket."""

from __future__ import annotations

import json

from govbridge_tools.simulators.open311 import Open311State
from govbridge_tools.simulators.rest import RestTicketState


def test_open311_reports_a_clients_reopen_as_a_status_update_without_its_words() -> None:
    state = Open311State()
    (ticket_id,) = state.add_foreign_requests(1, "TR-01")
    state.set_status(ticket_id, "fixed", "已修复")
    form = {
        "api_key": state.api_key,
        "service_request_id": ticket_id,
        "update_id": "gbu-1",
        "status": "reopen",
        "updated_datetime": "2026-12-07T10:00:00+08:00",
        "description": "回访结果：未解决。市民答复：还没修",
    }
    first = state.post_update(form)
    again = state.post_update(form)  # the same client update_id: one update
    assert first == again
    assert state.tickets[ticket_id].status == "open"
    assert [u.update_id for u in state.reopens(ticket_id)] == [first["update_id"]]
    reported = state.list_updates({})
    assert [(u["status"], u["description"]) for u in reported] == [
        ("fixed", "已修复"),
        ("reopen", None),  # the citizen's words stay out of the public record
    ]
    assert "还没修" not in json.dumps(reported, ensure_ascii=False, default=str)
    # an appended follow-up (not a status change) is still not reported
    state.post_update({**form, "update_id": "gbu-2", "status": "unchanged"})
    assert len(state.list_updates({})) == 2


async def test_rest_reopen_moves_a_closed_ticket_once_and_refuses_an_open_one() -> None:
    state = RestTicketState()
    created = state.create_ticket({"title": "t", "body": "b"}, None)
    ticket_id = json.loads(created.body)["id"]  # type: ignore[arg-type]
    refused = await state.reopen(ticket_id, {"reason": "x"}, "k-0")
    assert refused.status == 409  # still NEW: nothing to reopen
    await state.move(ticket_id, "DONE", callback=False)
    done = await state.reopen(ticket_id, {"reason": "未解决"}, "k-1")
    twice = await state.reopen(ticket_id, {"reason": "未解决"}, "k-1")
    assert (done.status, twice.status) == (201, 200)
    assert state.tickets[ticket_id]["status"] == "REOPENED"
    assert [c["status"] for c in state.changes] == ["DONE", "REOPENED"]
    assert len(state.reopens) == 1
    missing = await state.reopen("T-999999", {}, None)
    assert missing.status == 404
