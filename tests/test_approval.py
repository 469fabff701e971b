"""Approval of outgoing replies through the real RabbitMQ, end to end (webhook platform ->
triage -> REST ticket system -> reply), driven over ``/api/approvals``.

``all-manual``: nothing reaches the platform before approval; a rejected reply is never posted;
an edited reply is posted exactly as edited (personal data masked when it is public); every
decision is recorded with actor and time; the API wants the bearer admin token.
``templated-auto``: templated status replies go out, an official's free-text note waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from adapters.simulators.webhook import WebhookPlatformState
from adapters.simulators.webhook import create_app as webhook_app
from bridge import audit, pii
from bridge.daemon import Daemon
from bridge.journey import journey
from bridge.kit import AppServer
from schemas.messages import inquiry_id_for
from tests.conftest import bridge_config, eventually, running_bridge

TOKEN = "test-admin-token"
ACTOR = "值班科长王敏"
SECRET = "approval-test-secret"


@dataclass
class Sims:
    platforms: dict[str, WebhookPlatformState]  # account handle -> the pushing platform
    tickets: dict[str, RestTicketState]  # department -> its ticket system
    servers: list[Any]

    def replies(self, handle: str) -> list[dict[str, Any]]:
        return self.platforms[handle].reply_list()


@pytest.fixture
async def sims() -> AsyncIterator[Sims]:
    platforms: dict[str, WebhookPlatformState] = {}
    tickets: dict[str, RestTicketState] = {}
    servers: list[Any] = []
    for handle in ("env12345", "tr12345"):
        state = WebhookPlatformState(secret=SECRET, account_handle=handle)
        servers.append(await AppServer(webhook_app(state)).start())
        platforms[handle] = state
    for dept in ("environment", "transport"):
        server = RestSimServer(RestTicketState())
        await server.start()
        servers.append(server)
        tickets[dept] = server.state
    try:
        yield Sims(platforms, tickets, servers)
    finally:
        for server in servers:
            await (server.stop() if isinstance(server, AppServer) else server.close())


def config(tmp_path: Path, sims: Sims) -> Any:
    def dept(dept_id: str, name: str, approval: str) -> dict[str, Any]:
        server = sims.tickets[dept_id].server
        assert server is not None
        return {
            "id": dept_id,
            "name": name,
            "approval": approval,
            "sla": {"complaint": "15wd", "help": "10wd", "consultation": "2wd"},
            "ticketing": {**demo_ticketing_config(server.url), "poll": "200ms"},
        }

    def account(handle: str, dept_id: str) -> dict[str, Any]:
        server = sims.servers[list(sims.platforms).index(handle)]
        return {
            "adapter": "webhook",
            "handle": handle,
            "department": dept_id,
            "secret": SECRET,
            "reply_url": server.url + "/replies",
            "platform": "hotline12345",
        }

    return bridge_config(
        tmp_path,
        departments=[
            dept("environment", "市生态环境局", "all-manual"),
            dept("transport", "市交通委", "templated-auto"),
        ],
        accounts=[account("env12345", "environment"), account("tr12345", "transport")],
    )


@dataclass
class Api:
    base: str
    http: aiohttp.ClientSession

    async def approvals(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.base}/api/approvals", headers=AUTH) as resp:
            assert resp.status == 200
            items: list[dict[str, Any]] = (await resp.json())["approvals"]
            return items

    async def decide(self, reply_id: str, **body: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.base}/api/approvals/{reply_id}", json={"actor": ACTOR, **body}, headers=AUTH
        ) as resp:
            return resp.status, await resp.json()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def start(daemon: Daemon, sims: Sims) -> Api:
    base = f"http://127.0.0.1:{daemon.http_port}"
    for handle, platform in sims.platforms.items():
        platform.push_url = f"{base}/hooks/sources/{handle}"
    return Api(base, aiohttp.ClientSession())


async def push(sims: Sims, handle: str, text: str, n: int, *, private: bool = False) -> str:
    platform = sims.platforms[handle]
    extra: dict[str, Any] = {"kind": "direct_message", "visibility": "private"} if private else {}
    item = platform.citizen_item(n, text=text, **extra)
    assert await platform.push([item]) == 202
    return str(item["external_id"])


async def store_replies(daemon: Daemon, **filters: Any) -> list[Any]:
    assert daemon.ctx is not None
    return await daemon.ctx.store.list_replies(**filters)


async def count_state(daemon: Daemon, state: str, n: int) -> bool:
    return len(await store_replies(daemon, state=state)) >= n


async def ticket_of(daemon: Daemon, dept: str, inquiry_id: str) -> str:
    assert daemon.ctx is not None
    rows = [t for t in await daemon.ctx.store.list_tickets(dept) if t.inquiry_id == inquiry_id]
    assert len(rows) == 1
    return str(rows[0].ticket_id)


async def test_all_manual_approve_edit_reject_recorded(tmp_path: Path, sims: Sims) -> None:
    started = datetime.now(UTC)
    texts = {
        "approve": "小区旁边的河道有一股臭味，像是有人偷排污水，请来检查一下",
        "edit": "工厂烟囱每天晚上冒黑烟，投诉好几次了都没有结果",
        "reject": "建议在城区增加空气质量监测点，并公开实时数据",
        "private": "楼下商铺音响每天开到晚上11点，噪音扰民，请尽快处理",
    }
    async with running_bridge(config(tmp_path, sims)) as daemon:
        api = await start(daemon, sims)
        async with api.http:
            inquiry: dict[str, str] = {}
            for n, (key, text) in enumerate(texts.items()):
                private = key == "private"
                external = await push(sims, "env12345", text, n, private=private)
                kind = "direct_message" if private else "mention"
                inquiry[key] = inquiry_id_for("hotline12345", "env12345", kind, external)
            await eventually(lambda: count_state(daemon, "awaiting_approval", 4), timeout=20)
            # An official moves one ticket on: its status reply waits as well.
            ticket = await ticket_of(daemon, "environment", inquiry["approve"])
            await sims.tickets["environment"].move(ticket, "ASSIGNED", callback=False)
            await eventually(lambda: count_state(daemon, "awaiting_approval", 5), timeout=20)
            # Nothing reaches the platform while replies await approval.
            assert sims.replies("env12345") == []

            # The queue wants the bearer admin token.
            url = f"{api.base}/api/approvals"
            async with api.http.get(url) as resp:
                assert resp.status == 401
            async with api.http.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status in (401, 403)
            waiting = await store_replies(daemon, state="awaiting_approval")
            any_id = waiting[0].reply_id
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with api.http.post(
                    f"{url}/{any_id}", json={"decision": "approve", "actor": "x"}, headers=headers
                ) as resp:
                    assert resp.status in (401, 403)
            assert len(await store_replies(daemon, state="awaiting_approval")) == 5

            listed = {item["reply_id"]: item for item in await api.approvals()}
            assert len(listed) == 5
            assert all(i["department"] == "environment" and i["templated"] for i in listed.values())
            received = {
                key: next(
                    r.reply_id
                    for r in waiting
                    if r.inquiry_id == inquiry[key] and r.status == "received"
                )
                for key in texts
            }
            referred = next(r.reply_id for r in waiting if r.status == "referred")

            edited_public = "您好，您反映的工厂排烟问题已受理，如需补充材料请致电13812345678。"
            edited_private = "您好，您的噪音投诉已受理，执法人员将致电13987654321与您核实。"
            decisions = {
                "approve": {"decision": "approve"},
                "edit": {"decision": "edit", "text": edited_public},
                "reject": {"decision": "reject"},
                "private": {"decision": "edit", "text": edited_private},
            }
            answers = {}
            for key, body in decisions.items():
                status, answers[key] = await api.decide(received[key], **body)
                assert status == 200, answers[key]
                assert answers[key]["decided_by"] == ACTOR and answers[key]["decided_at"]
            assert answers["reject"]["state"] == "rejected"

            def posted_ids() -> set[str]:
                return {r["idempotency_key"] for r in sims.replies("env12345")}

            wanted = {received[k] for k in ("approve", "edit", "private")}

            async def all_posted() -> bool:
                return wanted <= posted_ids()

            await eventually(all_posted, timeout=20)
            # A decided reply cannot be decided again; the rejected one stays unposted.
            status, _ = await api.decide(received["reject"], decision="approve")
            assert status == 409
            status, _ = await api.decide(received["approve"], decision="reject")
            assert status == 409
            remaining = [i["reply_id"] for i in await api.approvals()]
            stored = {r.reply_id: r for r in await store_replies(daemon)}
            # The journey page's data is the trace's (bridge/journey.py), audit trail included.
            assert daemon.ctx is not None
            async with api.http.get(
                f"{api.base}/api/inquiries/{inquiry['edit']}", headers=AUTH
            ) as resp:
                page = await resp.json()
            assert page == await journey(daemon.ctx.store, inquiry["edit"])
            verdict = await audit.verify(daemon.ctx.store.db)

    on_platform = {r["idempotency_key"]: r for r in sims.replies("env12345")}
    print(f"\nposted after approval: {sorted(r['status'] for r in on_platform.values())}")
    # Only what was approved is on the platform, each once.
    assert set(on_platform) == wanted
    assert received["reject"] not in on_platform and referred not in on_platform
    assert remaining == [referred]
    # Approved as listed; edited as edited — masked when public, verbatim when private.
    assert on_platform[received["approve"]]["text"] == listed[received["approve"]]["text"]
    public_edit = on_platform[received["edit"]]["text"]
    assert public_edit == pii.redact_text(edited_public) != edited_public
    assert "[手机号]" in public_edit
    assert on_platform[received["private"]]["text"] == edited_private
    assert on_platform[received["private"]]["visibility"] == "private"
    # Every decision recorded with who and when.
    for key, body in decisions.items():
        row = stored[received[key]]
        assert row.decision == body["decision"]
        assert row.decided_by == ACTOR
        assert row.decided_at is not None
        assert started <= datetime.fromisoformat(row.decided_at) <= datetime.now(UTC)
    assert stored[received["reject"]].state == "rejected"
    assert stored[referred].state == "awaiting_approval" and stored[referred].decided_by is None
    # The audit trail holds the edited reply's whole way, each step with its actor.
    steps = [(a["action"], a["actor"]) for a in page["audit"]]
    wanted_steps = [
        ("inquiry.received", "bridge"),
        ("inquiry.routed", "bridge"),
        ("ticket.created", "bridge"),
        ("reply.drafted", "bridge"),
        ("reply.edited", ACTOR),
        ("reply.posted", "bridge"),
    ]
    assert [s for s in steps if s in wanted_steps] == wanted_steps, steps
    assert page["ticket"]["ticket_id"] and page["replies"][0]["decided_by"] == ACTOR
    assert verdict.ok, verdict.problem


async def test_templated_auto_posts_status_replies_and_holds_notes(
    tmp_path: Path, sims: Sims
) -> None:
    async with running_bridge(config(tmp_path, sims)) as daemon:
        api = await start(daemon, sims)
        async with api.http:
            external = await push(sims, "tr12345", "地铁站电梯坏了一周了，老人上下很不方便", 1)
            inquiry = inquiry_id_for("hotline12345", "tr12345", "mention", external)

            async def statuses_posted(*wanted: str | None) -> bool:
                return [r["status"] for r in sims.replies("tr12345")] == list(wanted)

            # The templated "received" reply goes out without anyone approving it.
            await eventually(lambda: statuses_posted("received"), timeout=20)
            assert await api.approvals() == []

            ticket = await ticket_of(daemon, "transport", inquiry)
            note = "已安排维保单位今日到场维修，预计明天恢复运行。"
            await sims.tickets["transport"].move(ticket, "IN_PROGRESS", note, callback=False)
            await eventually(lambda: count_state(daemon, "awaiting_approval", 1), timeout=20)
            await eventually(lambda: statuses_posted("received", "in_progress"), timeout=20)
            # The official's free-text note waits for a decision.
            [held] = await api.approvals()
            assert held["templated"] is False and held["status"] is None
            assert note in held["text"] and held["department"] == "transport"
            assert all(r["status"] is not None for r in sims.replies("tr12345"))

            status, answer = await api.decide(held["reply_id"], decision="approve")
            assert status == 200 and answer["decided_by"] == ACTOR
            await eventually(lambda: statuses_posted("received", "in_progress", None), timeout=20)
            assert await api.approvals() == []

    note_reply = sims.replies("tr12345")[-1]
    assert note_reply["idempotency_key"] == held["reply_id"]
    assert note_reply["text"] == held["text"]
