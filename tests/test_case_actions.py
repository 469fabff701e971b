"""Must-show 1 of issue 22: the case actions, through the real RabbitMQ, the whole bridge and
the simulators; counts from the simulators' own records.

One hotline account (a webhook platform) for two departments: transport on an Open311 server
(strict mode: it takes ``servicerequestupdates``), urban on the REST system.
- 转派: a case ticketed on Open311 is re-routed to urban; the request is sent twice (an
  operator's retry) and its command is delivered once more (a redelivery): the Open311 ticket is
  told once, the REST system holds exactly one ticket, the citizen hears "已转办至市城管委" once,
  and later changes of the old ticket tell the citizen nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators.open311 import Open311Server, Open311State
from govbridge_tools.simulators.open311 import demo_ticketing_config as open311_config
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.simulators.webhook import create_app as webhook_app
from govbridge_tools.testing import BusTap

from bridge.runtime.context import BridgeContext
from bridge.store import Store
from schemas import routing
from schemas.config import GovbridgeConfig
from schemas.messages import SlaEvent, TicketCommand
from tests.conftest import bridge_config, eventually, running_bridge

SECRET = "case-actions-secret"
AUTH = {"Authorization": "Bearer test-admin-token"}


def item(n: str, text: str, author: str) -> dict[str, Any]:
    return {
        "external_id": n,
        "kind": "comment",
        "author": {"id": author, "handle": f"user{author}"},
        "text": text,
        "created_at": "2026-12-07T08:00:00+08:00",
        "thread": {"root_id": "ann-1", "root_author_id": "official"},
    }


@pytest.fixture
async def open311() -> AsyncIterator[Open311Server]:
    server = await Open311Server(Open311State(agency="市交通委")).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def rest() -> AsyncIterator[RestSimServer]:
    server = RestSimServer(RestTicketState())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def sent_to(platform: WebhookPlatformState, inquiry_id: str) -> list[str]:
    return [
        r["text"]
        for r in sorted(platform.reply_list(), key=lambda r: r["id"])
        if r["inquiry_id"] == inquiry_id
    ]


async def only_inquiry(store: Store) -> str:
    async def one() -> bool:
        return len(await store.list_inquiries()) == 1

    await eventually(one)
    (row,) = await store.list_inquiries()
    return row.inquiry_id


def two_departments(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer, hooks_url: str
) -> GovbridgeConfig:
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                "sla": {"complaint": "15wd", "help": "10wd", "consultation": "2wd"},
                "ticketing": {**open311_config(open311.base_url), "poll": "300ms"},
            },
            {
                "id": "urban",
                "name": "市城管委",
                "approval": "none",
                "ticketing": {**demo_ticketing_config(rest.url), "poll": "300ms"},
            },
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": "hotline",
                "department": "transport",
                "secret": SECRET,
                "reply_url": hooks_url + "/replies",
                "platform": "hotline",
            }
        ],
    )


@dataclass
class Case:
    """One citizen's case on the running bridge, ticketed on Open311 and told 已受理."""

    platform: WebhookPlatformState
    ctx: BridgeContext
    http: aiohttp.ClientSession
    api: str
    inquiry_id: str
    tap: BusTap | None

    @property
    def bus(self) -> BusTap:
        """The tap asked for with ``a_case(..., tap=...)``."""
        assert self.tap is not None, "a_case(..., tap=...) binds it"
        return self.tap

    def sent(self) -> list[str]:
        """What the platform holds as sent to this case's citizen, in order."""
        return sent_to(self.platform, self.inquiry_id)


@asynccontextmanager
async def a_case(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer, tap: str | None = None
) -> AsyncIterator[Case]:
    """The scene every test here starts from: the bridge for two departments, one complaint
    pushed, its ticket on Open311 and its 已受理 posted (``tap``: a bus tap bound first)."""
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    hooks = await AppServer(webhook_app(platform)).start()
    cfg = two_departments(tmp_path, open311, rest, hooks.url)
    try:
        async with AsyncExitStack() as stack:
            bus = None
            if tap is not None:
                bus = await stack.enter_async_context(BusTap(cfg.broker, tap, declare=True))
            daemon = await stack.enter_async_context(running_bridge(cfg))
            http = await stack.enter_async_context(aiohttp.ClientSession(headers=AUTH))
            assert daemon.ctx is not None
            base = f"http://127.0.0.1:{daemon.http_port}"
            platform.push_url = f"{base}/hooks/sources/hotline"
            assert await platform.push([item("c-1", "公交站台旁边的人行道塌了一块", "41")]) == 202
            inquiry_id = await only_inquiry(daemon.ctx.store)

            async def received() -> bool:
                return any("已受理" in t for t in sent_to(platform, inquiry_id))

            await eventually(received, 30)
            yield Case(platform, daemon.ctx, http, f"{base}/api", inquiry_id, bus)
    finally:
        await hooks.stop()


async def test_reroute_makes_one_ticket_in_the_new_system_and_one_reply(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer
) -> None:
    async with a_case(tmp_path, open311, rest) as case:
        (old,) = open311.state.tickets
        url = f"{case.api}/cases/{case.inquiry_id}/reroute"
        body = {"department": "urban", "reason": "人行道归城管养护"}
        async with case.http.post(url, json={"department": "urban"}) as resp:
            assert resp.status == 400  # a reason is required
        async with case.http.post(url, json={"department": "nowhere", "reason": "x"}) as resp:
            assert resp.status == 400
        for _ in range(2):  # the operator's retry sends the same command
            async with case.http.post(url, json=body) as resp:
                assert resp.status == 202, await resp.text()
                done = await resp.json()
        assert done["from_ticket_id"] == old and done["department"] == "urban"

        async def rerouted() -> bool:
            return any("已转办至市城管委" in t for t in case.sent())

        await eventually(rerouted, 30)
        # a redelivery of the command, after the new ticket exists
        attempt = await case.ctx.store.get_create_attempt(done["reference"])
        assert attempt is not None and attempt.command_json
        command = TicketCommand.model_validate_json(attempt.command_json)
        assert command.action == "reroute"
        await case.ctx.broker.publish(routing.inquiry_routed("urban"), command)
        # the old department closes its ticket later: the citizen is not told
        open311.state.set_status(old, "closed", None)
        await asyncio.sleep(3)  # time for the redelivery and a few polls to do anything
        row = await case.ctx.store.get_inquiry(case.inquiry_id)
        old_row = await case.ctx.store.get_ticket("transport", old)
        audit = await case.ctx.store.audit_records_for(case.inquiry_id)
        async with case.http.get(f"{case.api}/inquiries/{case.inquiry_id}") as resp:
            trace = await resp.json()
    sent = case.sent()
    (new,) = rest.state.tickets  # exactly one ticket in the new system
    assert rest.state.tickets[new]["external_ref"] == done["reference"]
    updates = open311.state.client_updates(old)
    told = [u for u in updates if "已转办至市城管委" in (u.description or "")]
    assert len(told) == 1, updates  # the old system told once, with the reason
    assert "人行道归城管养护" in (told[0].description or "")
    assert sum("已转办至市城管委" in t for t in sent) == 1, sent
    assert sum("已受理" in t for t in sent) == 1, sent
    assert not any("已办结" in t or "已关闭" in t for t in sent), sent
    assert row is not None and (row.department, row.ticket_id) == ("urban", new)
    assert old_row is not None and old_row.native_status == "transferred"
    assert [a["action"] for a in audit].count("case.rerouted") == 1
    # the journey links the old ticket and the new one
    linked = [(t["department"], t["ticket_id"], t["native_status"]) for t in trace["tickets"]]
    assert linked == [("transport", old, "transferred"), ("urban", new, "NEW")], linked
    assert trace["ticket"]["ticket_id"] == new


def test_case_actions_need_the_approver_role() -> None:
    from bridge.web.operators import required_role

    assert required_role("POST", "/api/cases/inq_x/reroute") == "approver"
    assert required_role("POST", "/api/cases/inq_x/return") == "approver"
    assert required_role("GET", "/api/cases/inq_x") == "viewer"
    # 督办 is a supervisor's: the admin role
    assert required_role("POST", "/api/escalations/inq_x") == "admin"
    assert required_role("GET", "/api/escalations") == "viewer"


async def test_a_returned_case_waits_in_the_review_queue_until_it_is_rerouted(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer
) -> None:
    async with a_case(tmp_path, open311, rest) as case:
        url = f"{case.api}/cases/{case.inquiry_id}/return"
        async with case.http.post(url, json={}) as resp:
            assert resp.status == 400  # the reason is required
        async with case.http.post(url, json={"reason": "  "}) as resp:
            assert resp.status == 400
        async with case.http.post(url, json={"reason": "人行道不归交通委管"}) as resp:
            assert resp.status == 202, await resp.text()
        async with case.http.post(url, json={"reason": "再退一次"}) as resp:
            assert resp.status == 409  # it already waits there
        async with case.http.get(f"{case.api}/triage/review") as resp:
            listed = await resp.json()

        async def told() -> bool:
            return any("重新分派" in t for t in case.sent())

        await eventually(told, 30)
        # the review's category check does not file a returned case: it is re-routed
        async with case.http.post(
            f"{case.api}/triage/review/{case.inquiry_id}", json={"category": "complaint"}
        ) as resp:
            assert resp.status == 409
        row = await case.ctx.store.get_inquiry(case.inquiry_id)
        body = {"department": "urban", "reason": "人行道归城管养护"}
        async with case.http.post(f"{case.api}/cases/{case.inquiry_id}/reroute", json=body) as resp:
            assert resp.status == 202, await resp.text()

        async def rerouted() -> bool:
            return any("已转办至市城管委" in t for t in case.sent())

        await eventually(rerouted, 30)
        await asyncio.sleep(1)
        async with case.http.get(f"{case.api}/triage/review") as resp:
            after = await resp.json()
        review = await case.ctx.store.get_review(case.inquiry_id)
        audit = await case.ctx.store.audit_records_for(case.inquiry_id)
        final = await case.ctx.store.get_inquiry(case.inquiry_id)
    held = [h for h in listed["held"] if h["inquiry_id"] == case.inquiry_id]
    assert len(held) == 1 and held[0]["reason"] == "returned", listed
    assert row is not None and row.state == "held_for_review"
    assert not [h for h in after["held"] if h["inquiry_id"] == case.inquiry_id]
    assert review is not None and review.state == "confirmed" and review.released_at
    sent = case.sent()
    assert sum("重新分派" in t for t in sent) == 1, sent
    assert sum("已转办至市城管委" in t for t in sent) == 1, sent
    assert len(open311.state.tickets) == 1 and len(rest.state.tickets) == 1
    assert [a["action"] for a in audit].count("case.returned") == 1
    assert final is not None and (final.state, final.department) == ("ticketed", "urban")


async def test_an_escalation_emits_its_event_and_is_listed(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer
) -> None:
    async with a_case(tmp_path, open311, rest, tap="sla.escalated.#") as case:
        tap = case.bus
        (old,) = open311.state.tickets
        url = f"{case.api}/escalations/{case.inquiry_id}"
        async with case.http.post(url, json={}) as resp:
            assert resp.status == 400
        async with case.http.post(
            url, json={"reason": "逾期未处理，联系13800138000的市民已投诉三次"}
        ) as resp:
            assert resp.status == 202, await resp.text()
        async with case.http.post(url, json={"reason": "再督办"}) as resp:
            assert resp.status == 409  # once per handling cycle

        async def emitted() -> bool:
            return bool(tap.on("sla.escalated.transport"))

        await eventually(emitted, 20)
        async with case.http.get(f"{case.api}/escalations?department=transport") as resp:
            listed = (await resp.json())["escalations"]
        async with case.http.get(f"{case.api}/escalations?department=urban") as resp:
            other = (await resp.json())["escalations"]
        await asyncio.sleep(0.5)
        seen = tap.on("sla.escalated.transport")
    assert len(seen) == 1
    event = SlaEvent.model_validate_json(seen[0].body)
    assert (event.event, event.ticket_id, event.actor) == ("escalated", old, "admin-token")
    assert event.reason is not None and "13800138000" not in event.reason
    assert [(e["inquiry_id"], e["ticket_id"]) for e in listed] == [(case.inquiry_id, old)]
    assert other == []
    # nothing of it reached the citizen
    assert not any("督办" in t for t in case.sent())


async def test_internal_notes_are_kept_and_shown_but_never_reach_a_platform(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer
) -> None:
    secret_words = "内部备注：施工方是领导亲戚，先别回复"
    async with a_case(tmp_path, open311, rest, tap="#") as case:
        tap = case.bus
        (old,) = open311.state.tickets
        url = f"{case.api}/cases/{case.inquiry_id}/notes"
        async with case.http.post(url, json={"text": " "}) as resp:
            assert resp.status == 400
        for _ in range(2):  # a retried request: one note
            async with case.http.post(url, json={"text": secret_words, "note_id": "n-1"}) as resp:
                assert resp.status == 201, await resp.text()
        async with case.http.post(f"{case.api}/cases/inq_nope/notes", json={"text": "x"}) as resp:
            assert resp.status == 404
        # the case moves on: its replies go out, the note does not
        open311.state.set_status(old, "closed", None)

        async def resolved() -> bool:  # its status reply (已办结 or 已关闭) is posted
            return len(case.sent()) >= 2

        await eventually(resolved, 30)
        async with case.http.get(url) as resp:
            notes = (await resp.json())["notes"]
        async with case.http.get(f"{case.api}/inquiries/{case.inquiry_id}") as resp:
            trace = await resp.json()
        await asyncio.sleep(0.5)
    replies = case.platform.reply_list()
    assert replies and not any(secret_words in r["text"] for r in replies)
    assert not any("内部备注" in r["text"] for r in replies)
    assert tap.seen and not any(secret_words.encode() in s.body for s in tap.seen)
    assert [(n["note_id"], n["text"], n["author"]) for n in notes] == [
        ("n-1", secret_words, "admin-token")
    ]
    assert [n["text"] for n in trace["notes"]] == [secret_words]
    assert [a["action"] for a in trace["audit"]].count("case.noted") == 1
    assert not any(secret_words in str(a["detail"]) for a in trace["audit"])


async def test_an_extension_approved_before_the_deadline_moves_it_and_is_told(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer
) -> None:
    from bridge.sla.role import SlaRole

    async with a_case(tmp_path, open311, rest, tap="sla.extended.#") as case:
        tap = case.bus
        (old_ticket,) = open311.state.tickets
        url = f"{case.api}/cases/{case.inquiry_id}/extension"
        async with case.http.post(url, json={"new_deadline": "2099-06-01T18:00:00+08:00"}) as resp:
            assert resp.status == 400  # the reason is required
        async with case.http.post(
            url, json={"new_deadline": "2000-01-01T00:00:00+08:00", "reason": "x"}
        ) as resp:
            assert resp.status == 400  # not after the current deadline
        # a refused request: nothing moves, nothing is told
        body = {"new_deadline": "2099-05-01T18:00:00+08:00", "reason": "需协调多部门"}
        async with case.http.post(url, json=body) as resp:
            assert resp.status == 201, await resp.text()
            refused = await resp.json()
        async with case.http.post(
            f"{url}/{refused['extension_id']}", json={"approve": False}
        ) as resp:
            assert resp.status == 200
        body = {"new_deadline": "2099-06-01T18:00:00+08:00", "reason": "需协调多部门施工"}
        async with case.http.post(url, json=body) as resp:
            assert resp.status == 201, await resp.text()
            ext = await resp.json()
        old = datetime.fromisoformat(ext["old_deadline"])
        assert ext["state"] == "pending" and old > datetime.now(old.tzinfo)
        for expect in (200, 409):  # decided once; a second decision is refused
            async with case.http.post(
                f"{url}/{ext['extension_id']}", json={"approve": True}
            ) as resp:
                assert resp.status == expect, await resp.text()

        async def told() -> bool:
            return any("已延长至2099年6月1日" in t for t in case.sent())

        await eventually(told, 30)
        # the SLA clock: a day past the old deadline is no breach any more
        events = await SlaRole(case.ctx).scan(now=old + timedelta(days=1))
        late = await SlaRole(case.ctx).scan(now=datetime.fromisoformat("2099-06-02T00:00:00+08:00"))
        await asyncio.sleep(0.5)
        seen = tap.on("sla.extended.transport")
    assert not [e for e in events if e.ticket_id == old_ticket and e.event == "breached"]
    assert "breached" in [e.event for e in late if e.ticket_id == old_ticket]  # the new one
    assert len(seen) == 1
    sent = case.sent()
    assert sum("已延长至" in t for t in sent) == 1, sent
    assert not any("2099年5月1日" in t for t in sent)
