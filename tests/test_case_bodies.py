"""The case actions' bodies strip their reason (and a note its text) themselves, so the one
handler helper (``OperatorApi._case_action``) passes them on as they are; blanks are no reason."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from bridge.web.bodies import (
    CaseNoteBody,
    CaseReturn,
    Escalation,
    ExtensionRequest,
    Reroute,
    check,
)

DEADLINE = "2026-12-31T18:00:00+08:00"


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        (Reroute, {"department": "transport"}),
        (CaseReturn, {}),
        (Escalation, {}),
        (ExtensionRequest, {"new_deadline": DEADLINE}),
    ],
)
def test_a_reason_arrives_stripped_and_blanks_are_refused(model: type, extra: dict) -> None:
    body = check(model, {**extra, "reason": "  不属于本部门职责\n"})
    assert body.reason == "不属于本部门职责"
    with pytest.raises(web.HTTPBadRequest) as refused:
        check(model, {**extra, "reason": " \n\t "})
    assert json.loads(refused.value.text)["error"] == "reason must say why (1-500 characters)"


def test_a_note_arrives_stripped() -> None:
    assert check(CaseNoteBody, {"text": " 已电话联系市民 "}).text == "已电话联系市民"
    with pytest.raises(web.HTTPBadRequest) as refused:
        check(CaseNoteBody, {"text": "   "})
    assert json.loads(refused.value.text)["error"] == "text must be the note (1-2000 characters)"
