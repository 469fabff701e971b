"""Approval of outgoing replies through the real RabbitMQ, end to end (webhook platform ->
triage -> REST ticket system -> reply), driven over ``/api/approvals``.

``all-manual``: nothing reaches the platform before approval; a rejected reply is never posted;
an approval names the draft version it saw and the approved text is posted byte for byte; a
draft a newer status superseded answers 409 and is never posted; an edit carrying personal data
in a public reply is refused (422) with the masked text, which is posted once approved; a
private reply's edit is posted as written; every decision is recorded with actor and time; the
API wants the bearer admin token.
``templated-auto``: templated status replies go out, an official's free-text note waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from govbridge_tools.simulators.rest import RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.testing import Simulators

from bridge.daemon import Daemon
from bridge.privacy import pii
from bridge.reports.journey import journey
from bridge.store import audit, text_sha256
from schemas.messages import inquiry_id_for
from tests.conftest import bridge_config, eventually, running_bridge

TOKEN = "test-admin-token"
ACTOR = "admin-token"  # who decides with the bearer token (it cannot name anyone else)
SECRET = "approval-test-secret"


@dataclass
class World:
    platforms: dict[str, WebhookPlatformState]  # account handle -> the pushing platform
    tickets: dict[str, RestTicketState]  # department -> its ticket system
    urls: dict[str, str]  # account handle -> its platform's base URL

    def replies(self, handle: str) -> list[dict[str, Any]]:
        return self.platforms[handle].reply_list()


@pytest.fixture
async def world(sims: Simulators) -> World:
    w = World({}, {}, {})
    for handle in ("env12345", "tr12345"):
        platform = await sims.webhook(secret=SECRET, account_handle=handle)
        w.platforms[handle], w.urls[handle] = platform.state, platform.url
    for dept in ("environment", "transport"):
        w.tickets[dept] = (await sims.rest()).state
    return w


def config(tmp_path: Path, world: World) -> Any:
    def dept(dept_id: str, name: str, approval: str) -> dict[str, Any]:
        server = world.tickets[dept_id].server
        assert server is not None
        return {
            "id": dept_id,
            "name": name,
            "approval": approval,
            "sla": {"complaint": "15wd", "help": "10wd", "consultation": "2wd"},
            "ticketing": {**demo_ticketing_config(server.url), "poll": "200ms"},
        }

    def account(handle: str, dept_id: str) -> dict[str, Any]:
        return {
            "adapter": "webhook",
            "handle": handle,
            "department": dept_id,
            "secret": SECRET,
            "reply_url": world.urls[handle] + "/replies",
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


async def start(daemon: Daemon, world: World) -> Api:
    base = f"http://127.0.0.1:{daemon.http_port}"
    for handle, platform in world.platforms.items():
        platform.push_url = f"{base}/hooks/sources/{handle}"
    return Api(base, aiohttp.ClientSession())


async def push(world: World, handle: str, text: str, n: int, *, private: bool = False) -> str:
    platform = world.platforms[handle]
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


async def test_all_manual_approve_edit_reject_recorded(tmp_path: Path, world: World) -> None:
    started = datetime.now(UTC)
    texts = {
        "approve": "小区旁边的河道有一股臭味，像是有人偷排污水，请来检查一下",
        "edit": "工厂烟囱每天晚上冒黑烟，投诉好几次了都没有结果",
        "reject": "建议在城区增加空气质量监测点，并公开实时数据",
        "private": "楼下商铺音响每天开到晚上11点，噪音扰民，请尽快处理",
    }
    async with running_bridge(config(tmp_path, world)) as daemon:
        api = await start(daemon, world)
        async with api.http:
            inquiry: dict[str, str] = {}
            for n, (key, text) in enumerate(texts.items()):
                private = key == "private"
                external = await push(world, "env12345", text, n, private=private)
                kind = "direct_message" if private else "mention"
                inquiry[key] = inquiry_id_for("hotline12345", "env12345", kind, external)
            await eventually(lambda: count_state(daemon, "awaiting_approval", 4), timeout=20)
            stale = await api.approvals()  # what an approver has on screen now
            # An official moves one ticket on: its new status draft supersedes the old one.
            ticket = await ticket_of(daemon, "environment", inquiry["approve"])
            await world.tickets["environment"].move(ticket, "ASSIGNED", callback=False)
            await eventually(lambda: count_state(daemon, "superseded", 1), timeout=20)
            assert len(await store_replies(daemon, state="awaiting_approval")) == 4
            # Nothing reaches the platform while replies await approval.
            assert world.replies("env12345") == []

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
            assert len(await store_replies(daemon, state="awaiting_approval")) == 4

            listed = {item["reply_id"]: item for item in await api.approvals()}
            assert len(listed) == 4
            assert all(i["department"] == "environment" and i["templated"] for i in listed.values())
            received = {
                key: next(
                    r.reply_id
                    for r in await store_replies(daemon)
                    if r.inquiry_id == inquiry[key] and r.status == "received"
                )
                for key in texts
            }
            referred = next(r.reply_id for r in waiting if r.status == "referred")
            # The superseded draft, approved as it was shown: 409, nothing posted.
            old = next(i for i in stale if i["reply_id"] == received["approve"])
            status, conflict = await api.decide(
                old["reply_id"], decision="approve", text=old["text"], version=old["version"]
            )
            assert (status, conflict["reason"], conflict["superseded_by"]) == (
                409,
                "superseded",
                referred,
            )
            assert "新状态取代" in conflict["message"]["zh"]
            assert "superseded" in conflict["message"]["en"]

            edited_public = "您好，您反映的工厂排烟问题已受理，如需补充材料请致电139，1234，5678。"
            edited_private = "您好，您的噪音投诉已受理，执法人员将致电13987654321与您核实。"
            # A public edit carrying a phone number is refused with the masked text…
            shown = listed[received["edit"]]
            status, refused = await api.decide(
                received["edit"], decision="approve", text=edited_public, version=shown["version"]
            )
            assert (status, refused["reason"], refused["kinds"]) == (
                422,
                "personal_data",
                ["mobile"],
            )
            masked_public = refused["masked_text"]
            assert masked_public == edited_public.replace("139，1234，5678", "[手机号]")
            # … which the approver confirms.
            decisions = {
                "approve": (referred, {"decision": "approve"}),
                "edit": (received["edit"], {"decision": "approve", "text": masked_public}),
                "reject": (received["reject"], {"decision": "reject", "reason": "另行答复"}),
                "private": (received["private"], {"decision": "approve", "text": edited_private}),
            }
            answers = {}
            for key, (reply_id, body) in decisions.items():
                version = listed[reply_id]["version"]
                status, answers[key] = await api.decide(reply_id, version=version, **body)
                assert status == 200, answers[key]
                assert answers[key]["decided_by"] == ACTOR and answers[key]["decided_at"]
                assert answers[key]["version"] == version + 1
            assert answers["reject"]["state"] == "rejected"

            def posted_ids() -> set[str]:
                return {r["idempotency_key"] for r in world.replies("env12345")}

            wanted = {referred, received["edit"], received["private"]}

            async def all_posted() -> bool:
                return wanted <= posted_ids()

            await eventually(all_posted, timeout=20)
            # A decided reply cannot be decided again; the rejected one stays unposted.
            status, again = await api.decide(received["reject"], decision="approve")
            assert (status, again["reason"], again["decided_by"]) == (409, "decided", ACTOR)
            status, again = await api.decide(referred, decision="reject")
            assert (status, again["reason"]) == (409, "decided")
            remaining = [i["reply_id"] for i in await api.approvals()]
            stored = {r.reply_id: r for r in await store_replies(daemon)}
            # The journey page's data is the trace's (bridge/reports/journey.py), audit trail
            # included.
            assert daemon.ctx is not None
            async with api.http.get(
                f"{api.base}/api/inquiries/{inquiry['edit']}", headers=AUTH
            ) as resp:
                page = await resp.json()
            # the page adds to each posted reply the text the citizen was sent (the web layer
            # passes it through the outbox's last gate): it is what the platform received
            on_the_platform = {r["idempotency_key"]: r["text"] for r in world.replies("env12345")}
            shown_posted = {}
            for item in page["replies"]:
                if "posted_text" in item:
                    shown_posted[item["reply_id"]] = item.pop("posted_text")
            assert shown_posted == {received["edit"]: on_the_platform[received["edit"]]}
            assert shown_posted[received["edit"]] == masked_public
            assert page == await journey(daemon.ctx.store, inquiry["edit"])
            verdict = await audit.verify(daemon.ctx.store.db)

    on_platform = {r["idempotency_key"]: r for r in world.replies("env12345")}
    print(f"\nposted after approval: {sorted(r['status'] for r in on_platform.values())}")
    # Only what was approved is on the platform, each once; the superseded draft never.
    assert set(on_platform) == wanted and len(world.replies("env12345")) == 3
    assert received["reject"] not in on_platform and received["approve"] not in on_platform
    assert remaining == []
    # Approved as listed; edited as approved: byte for byte, the masked text where public.
    assert on_platform[referred]["text"] == listed[referred]["text"]
    assert on_platform[received["edit"]]["text"] == masked_public
    assert pii.find_personal_data(masked_public) == []
    assert on_platform[received["private"]]["text"] == edited_private
    assert on_platform[received["private"]]["visibility"] == "private"
    # Every decision recorded with who and when ("edit" where the text was changed).
    recorded = {"approve": "approve", "edit": "edit", "reject": "reject", "private": "edit"}
    for key, (reply_id, _) in decisions.items():
        row = stored[reply_id]
        assert row.decision == recorded[key]
        assert row.decided_by == ACTOR
        assert row.decided_at is not None
        assert started <= datetime.fromisoformat(row.decided_at) <= datetime.now(UTC)
    assert stored[received["reject"]].state == "rejected"
    assert stored[received["approve"]].state == "superseded"
    assert stored[received["approve"]].decided_by is None
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
    tmp_path: Path, world: World
) -> None:
    async with running_bridge(config(tmp_path, world)) as daemon:
        api = await start(daemon, world)
        async with api.http:
            external = await push(world, "tr12345", "地铁站电梯坏了一周了，老人上下很不方便", 1)
            inquiry = inquiry_id_for("hotline12345", "tr12345", "mention", external)

            async def statuses_posted(*wanted: str | None) -> bool:
                return [r["status"] for r in world.replies("tr12345")] == list(wanted)

            # The templated "received" reply goes out without anyone approving it.
            await eventually(lambda: statuses_posted("received"), timeout=20)
            assert await api.approvals() == []

            ticket = await ticket_of(daemon, "transport", inquiry)
            note = "已安排维保单位今日到场维修，预计明天恢复运行。"
            await world.tickets["transport"].move(ticket, "IN_PROGRESS", note, callback=False)
            await eventually(lambda: count_state(daemon, "awaiting_approval", 1), timeout=20)
            await eventually(lambda: statuses_posted("received", "in_progress"), timeout=20)
            # The official's free-text note waits for a decision.
            [held] = await api.approvals()
            assert held["templated"] is False and held["status"] is None
            assert note in held["text"] and held["department"] == "transport"
            assert all(r["status"] is not None for r in world.replies("tr12345"))

            status, answer = await api.decide(held["reply_id"], decision="approve")
            assert status == 200 and answer["decided_by"] == ACTOR
            await eventually(lambda: statuses_posted("received", "in_progress", None), timeout=20)
            assert await api.approvals() == []

    note_reply = world.replies("tr12345")[-1]
    assert note_reply["idempotency_key"] == held["reply_id"]
    assert note_reply["text"] == held["text"]


async def test_an_approval_names_what_it_saw(tmp_path: Path, world: World) -> None:
    """The version or the SHA-256 of the draft's text names what the approver saw: a wrong one
    answers 409 and nothing is posted; two approvers approving the same draft at once get one
    200 and one 409, and the platform gets one reply; a text longer than the platform takes
    in one post is refused (it would be cut)."""
    texts = ["路边的树倒了压到了电线", "小区垃圾分类点没有人管理", "公园湖里有死鱼，味道很大"]
    async with running_bridge(config(tmp_path, world)) as daemon:
        api = await start(daemon, world)
        async with api.http:
            for n, text in enumerate(texts):
                await push(world, "env12345", text, n)
            await eventually(lambda: count_state(daemon, "awaiting_approval", 3), timeout=20)
            named, raced, long = await api.approvals()
            assert named["text_sha256"] == text_sha256(named["text"]) and named["version"] == 1

            # A wrong version or hash: 409 "changed", nothing decided.
            for wrong in ({"version": 2}, {"text_sha256": text_sha256(named["text"] + " ")}):
                status, answer = await api.decide(named["reply_id"], decision="approve", **wrong)
                assert (status, answer["reason"]) == (409, "changed"), answer
            # The right hash approves exactly that text.
            status, answer = await api.decide(
                named["reply_id"], decision="approve", text_sha256=named["text_sha256"]
            )
            assert status == 200 and answer["text_sha256"] == named["text_sha256"]

            # Two approvers at once, each with their own text.
            first, second = await asyncio.gather(
                api.decide(
                    raced["reply_id"], decision="approve", text="您好，已安排抢修。", version=1
                ),
                api.decide(
                    raced["reply_id"], decision="approve", text="您好，已转电力公司。", version=1
                ),
            )
            statuses = sorted([first[0], second[0]])
            assert statuses == [200, 409], (first, second)
            winner = first[1] if first[0] == 200 else second[1]
            loser = second[1] if first[0] == 200 else first[1]
            assert loser["reason"] in ("decided", "changed")

            # Longer than the webhook platform's 500 characters in one reply: refused.
            status, answer = await api.decide(
                long["reply_id"], decision="approve", text="您好，" * 200, version=1
            )
            assert (status, answer["reason"], answer["max_chars"]) == (422, "too_long", 500)

            def posted() -> dict[str, dict[str, Any]]:
                return {r["idempotency_key"]: r for r in world.replies("env12345")}

            async def both_posted() -> bool:
                return {named["reply_id"], raced["reply_id"]} <= set(posted())

            await eventually(both_posted, timeout=20)
            stored = await store_replies(daemon)

    on_platform = posted()
    assert set(on_platform) == {named["reply_id"], raced["reply_id"]}
    assert world.platforms["env12345"].requests["POST /replies"] == 2
    assert on_platform[named["reply_id"]]["text"] == named["text"]
    assert text_sha256(on_platform[raced["reply_id"]]["text"]) == winner["text_sha256"]
    assert {r.reply_id: r.state for r in stored}[long["reply_id"]] == "awaiting_approval"
