"""Follow-ups reach the officials where the ticket system takes no update (issue 19, must
show 3), through the whole bridge (in-memory broker). The ticket system is a plain
GeoReport server (the Open311 simulator's ``quirks``: no ``servicerequestupdates``); the
citizen writes on Weibo. Counted where each thing lands: the Open311 simulator's own requests,
a test webhook receiver's own log, the Weibo simulator's comments (what the citizen reads).

- ``follow_ups.via = "new_request"``: a second request in the ticket system whose description
  names the original, linked in the store; the citizen is told the new request's number;
- ``via = "webhook"``: one signed POST to the handling unit's receiver; the citizen is told it
  was forwarded to the handling unit;
- nothing configured: ``tests/test_conversations.py`` (kept on record, and the citizen is told
  so), and ``govbridge check`` warns about it here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators.open311 import Open311Server, Open311State
from govbridge_tools.simulators.open311 import demo_ticketing_config as open311_config
from govbridge_tools.simulators.weibo import Limits, WeiboState
from govbridge_tools.testing import Simulators

from adapters import signing
from adapters.base import make_ticket_system
from bridge.runtime.worker import Retry
from bridge.store import open_store
from bridge.store.leases import LocalLeases
from bridge.telemetry.metrics import Metrics
from bridge.ticketing.create_lease import create_lease_name
from bridge.ticketing.follow_ups import FollowUps, linked_description
from schemas.messages import Inquiry, TicketCommand, reference_for
from schemas.vocab import Category, InquiryKind
from tests.conftest import bridge_config, config_toml, eventually, running_bridge
from tests.test_cli_ops import run_cli

UNIT_SECRET = "handling-unit-secret-2026"


@dataclass
class Unit:
    """The handling unit's receiver: what it was sent, as it saw it."""

    secret: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    keys: set[str] = field(default_factory=set)

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            signing.verify(self.secret, request.headers, body)
        except signing.SignatureError:
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        key = request.headers.get("Idempotency-Key", "")
        if key in self.keys:
            return web.json_response({"duplicate": True})
        self.keys.add(key)
        self.posts.append(json.loads(body))
        return web.json_response({"ok": True}, status=201)


@pytest.fixture
async def unit() -> AsyncIterator[tuple[Unit, str]]:
    receiver = Unit(UNIT_SECRET)
    app = web.Application()
    app.router.add_post("/follow-ups", receiver.receive)
    server = await AppServer(app).start()
    yield receiver, server.url + "/follow-ups"


def department(base_url: str, **follow_ups: Any) -> dict[str, Any]:
    dept: dict[str, Any] = {
        "id": "transport",
        "name": "市交通委",
        "approval": "none",
        "ticketing": {**open311_config(base_url), "poll": "0s"},
    }
    if follow_ups:
        dept["follow_ups"] = follow_ups
    return dept


async def follow_up_scene(
    tmp_path: Path, sims: Simulators, follow_ups: dict[str, Any]
) -> tuple[Open311State, list[Any], Any, Any, dict[str, Any], dict[str, Any]]:
    """A citizen's complaint, its ticket, then their follow-up under the bridge's answer.
    Returns the ticket system's state, the official account's comments, the complaint, the
    follow-up, the store's inquiries by post id, and the journey of the first inquiry."""
    backend = await sims.open311(agency="市交通委", quirks=True)
    weibo = WeiboState(official_name="北京交通", limits=Limits(calls=10**6, comments=10**6))
    server = await sims.weibo(weibo)
    cfg = bridge_config(
        tmp_path,
        departments=[department(backend.base_url, **follow_ups)],
        accounts=[
            {
                "adapter": "weibo",
                "handle": "北京交通",
                "department": "transport",
                "token": weibo.token,
                "base_url": server.url + "/2/",
                "poll": "200ms",
            }
        ],
    )
    async with running_bridge(cfg, in_memory=True) as daemon:
        assert daemon.ctx is not None
        first = weibo.add_citizen_comment(
            "西直门外大街公交站台的顶棚漏雨，下雨天等车全身湿透", citizen="市民乙"
        )

        def answers() -> list[Any]:
            return [c for c in weibo.comments.values() if c.user_id == weibo.official_uid]

        async def received() -> bool:
            return any(c.reply_cid == first.id for c in answers())

        await eventually(received, 60)
        follow = weibo.add_citizen_comment(
            "补充一下：是动物园方向那个站台，东口，漏得最厉害的是第二块顶棚",
            citizen="市民乙",
            reply_cid=first.id,
        )

        async def acknowledged() -> bool:
            return any(c.reply_cid == follow.id for c in answers())

        await eventually(acknowledged, 60)
        rows = {r.external_id: r for r in await daemon.ctx.store.list_inquiries()}
        base = f"http://127.0.0.1:{daemon.http_port}"
        owner = rows[str(first.id)]
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer test-admin-token"}) as http,
            http.get(f"{base}/api/inquiries/{owner.inquiry_id}") as resp,
        ):
            trace = await resp.json()
        official = answers()
    return backend.state, official, first, follow, rows, trace


async def test_follow_up_filed_as_a_linked_request_and_the_citizen_told_its_number(
    tmp_path: Path, sims: Simulators
) -> None:
    state, official, first, follow, rows, trace = await follow_up_scene(
        tmp_path, sims, {"via": "new_request"}
    )
    owner, added = rows[str(first.id)], rows[str(follow.id)]
    # the ticket system's own records: the original request and one linked to it
    assert len(state.tickets) == 2
    original = state.tickets[owner.ticket_id or ""]
    linked = next(t for t in state.tickets.values() if t.id != original.id)
    assert f"原工单 {original.id}" in linked.description
    assert "东口" in linked.description and "东口" not in original.description
    # the store links them; the follow-up belongs to the original ticket
    assert added.state == "forwarded" and added.ticket_id == original.id
    via = trace["conversation"][1]["follow_up"]
    assert via == {
        "channel": "new_request",
        "state": "delivered",
        "linked_id": linked.id,
        "detail": None,
    }
    # what the citizen reads
    ack = [c.text for c in official if c.reply_cid == follow.id]
    assert len(ack) == 1
    assert f"新工单{linked.id}" in ack[0] and f"原工单{original.id}" in ack[0]


async def test_follow_up_forwarded_to_the_handling_unit_by_signed_webhook(
    tmp_path: Path, sims: Simulators, unit: tuple[Unit, str]
) -> None:
    receiver, url = unit
    state, official, first, follow, rows, trace = await follow_up_scene(
        tmp_path, sims, {"via": "webhook", "url": url, "secret": UNIT_SECRET}
    )
    owner, added = rows[str(first.id)], rows[str(follow.id)]
    assert len(state.tickets) == 1  # nothing more in the ticket system
    # the unit's own log: one signed POST naming the ticket, with the citizen's words
    assert receiver.bad_signatures == 0
    assert len(receiver.posts) == 1
    sent = receiver.posts[0]
    assert sent["ticket_id"] == owner.ticket_id and sent["event"] == "follow_up"
    assert "东口" in sent["text"] and sent["follow_up_id"] == added.inquiry_id
    assert added.state == "forwarded" and added.ticket_id == owner.ticket_id
    assert trace["conversation"][1]["follow_up"]["channel"] == "webhook"
    ack = [c.text for c in official if c.reply_cid == follow.id]
    assert len(ack) == 1 and f"已转交工单{owner.ticket_id}的承办单位" in ack[0]


async def test_check_warns_when_follow_ups_would_reach_nobody(
    tmp_path: Path, sims: Simulators
) -> None:
    """``govbridge check --adapters`` learns the server has no servicerequestupdates: with no
    other channel configured it warns (naming the file and key) and still passes; with one
    configured it says nothing."""
    backend = await sims.open311(agency="市交通委", quirks=True)
    outputs = {}
    for name, follow_ups in (
        ("bare", {}),
        ("linked", {"via": "new_request"}),
        ("static", {}),
    ):
        dept = department(backend.base_url, **follow_ups)
        if name == "static":  # the config itself says so: no need to contact the server
            dept["ticketing"]["servicerequestupdates"] = False
        cfg = bridge_config(tmp_path, departments=[dept])
        path = tmp_path / f"{name}.toml"
        path.write_text(config_toml(cfg))
        args = ["check", "-c", str(path), "--no-declare"]
        outputs[name] = await run_cli(*args, *([] if name == "static" else ["--adapters"]))
    for name, result in outputs.items():
        assert result.code == 0, result.out + result.err
        warned = "departments[0].follow_ups (transport)" in result.err
        assert warned == (name != "linked"), (name, result.err)
        if warned:
            assert str(tmp_path / f"{name}.toml") in result.err
            assert 'via = "new_request"' in result.err


def command(n: int, text: str, action: Literal["create", "append"] = "append") -> TicketCommand:
    inquiry = Inquiry.create(
        platform="weibo",
        account="北京交通",
        kind=InquiryKind.COMMENT,
        external_id=f"90000{n}",
        author={"id": "7001", "handle": "市民乙"},
        text=text,
        created_at=datetime.now(UTC),
        thread={"root_id": "80000"},
    )
    return TicketCommand(
        command_id=f"cmd_{n}",
        action=action,
        inquiry=inquiry,
        department="transport",
        category=Category.COMPLAINT,
        reference="GB-ORIGINAL000001",
        description=text,
        public_text=text,
    )


async def test_linked_request_is_made_once_across_redeliveries_and_a_crash(
    tmp_path: Path,
) -> None:
    """Redelivered after it was filed: nothing new. A crash after the create, before it was
    recorded: while the crashed delivery's lease (``create:<reference>``) is held nothing is
    done; once it is free the request is found by its reference at once (``create_lease`` is
    ten minutes), not made again."""
    backend = await Open311Server(Open311State(agency="市交通委", quirks=True)).start()
    dept = department(backend.base_url, via="new_request")
    dept["ticketing"]["create_lease"] = "10m"
    cfg = bridge_config(tmp_path, departments=[dept])
    store = await open_store(cfg.store.url)
    system = make_ticket_system(cfg.departments[0])
    ctx: Any = SimpleNamespace(cfg=cfg, store=store, metrics=Metrics(), leases=LocalLeases())
    follow_ups = FollowUps(ctx)
    try:
        await system.detect()
        assert not system.capabilities.appends
        complaint = command(0, "西直门外大街公交站台的顶棚漏雨", "create")
        original = await system.create(complaint, idempotency_key=complaint.reference)
        first = command(1, "补充：是东口那个站台")
        assert await follow_ups.deliver(system, first, original.ticket_id) == "forwarded"
        assert await follow_ups.deliver(system, first, original.ticket_id) == "forwarded"
        assert len(backend.state.tickets) == 2

        # the process died after the ticket system made the request, before it was recorded
        second = command(2, "再补充：顶棚的铁皮也松了")
        reference = reference_for(second.inquiry.inquiry_id)
        assert await store.claim_follow_up_delivery(
            inquiry_id=second.inquiry.inquiry_id,
            department="transport",
            ticket_id=original.ticket_id,
            channel="new_request",
            reference=reference,
            expected_updated_at=None,
        )
        link = second.model_copy(
            update={
                "action": "create",
                "reference": reference,
                "description": linked_description(second, original.ticket_id),
            }
        )
        made = await system.create(link, idempotency_key=reference)
        assert len(backend.state.tickets) == 3
        held = create_lease_name(reference)
        assert await ctx.leases.try_acquire(held)  # the delivery that made it, still alive
        with pytest.raises(Retry):  # its lease is held: a live delivery is at it
            await follow_ups.deliver(system, second, original.ticket_id)
        await ctx.leases.release(held)  # it dies: its session (or flock) goes with it
        assert await follow_ups.deliver(system, second, original.ticket_id) == "forwarded"
        delivery = await store.get_follow_up_delivery(second.inquiry.inquiry_id)
    finally:
        await follow_ups.close()
        await system.close()
        await store.close()
        await backend.close()
    assert len(backend.state.tickets) == 3  # found by its reference, not made again
    assert delivery is not None and delivery.linked_id == made.ticket_id
    assert delivery.state == "delivered" and delivery.channel == "new_request"
