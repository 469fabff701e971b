"""Personal data on every path to a public thread, end to end on the in-memory broker (issue
20, must-show 2): what the platform shows, counted in the Weibo simulator's own records.

- A citizen's comment carrying a phone number is stored for display masked.
- Officials' notes typed into the ticket system with numbers written as officials write them
  ("已联系市民，电话139，8765，4321", Chinese numerals, an ID grouped with ``/``, a landline, bidi
  isolates inside the number) are published masked, in a department that approves nothing.
- An approver's edit carrying a number is refused (422) with the masked text, in the new
  single approval and in the older "edit" decision alike; once the masked text is approved it
  is published byte for byte.
- The last gate before posting: a reply the store holds as approved with a number in it (as a
  draft composed by an older version could be) is published masked, and the audit trail says
  so (``reply.masked``) without the number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from govbridge_tools.simulators.rest import RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.weibo import Limits, WeiboState
from govbridge_tools.testing import Simulators

from bridge.privacy import pii
from bridge.store import audit, text_sha256
from schemas import routing
from schemas.messages import ReplyRequest
from tests.conftest import bridge_config, eventually, running_bridge

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACTOR = "admin-token"  # who decides with the bearer token (it cannot name anyone else)
NOTES = (
    "已联系市民，电话139，8765，4321",
    "已电话回访（一三九 八七六五 四三二一），市民表示满意",
    "经核实，市民身份证110105/19491231/002X名下无欠费记录",
    "已致电市民家中座机（0571）8765-4321说明处理进度",
    "承办人已与市民\u2066139\u2069\u20668765\u2069\u20664321\u2069约定周三上门",
)
NUMBERS = ("8765", "4321", "19491231", "八七六五")


@dataclass
class World:
    weibo: dict[str, WeiboState]  # department -> its account's platform
    tickets: dict[str, RestTicketState]  # department -> its ticket system
    urls: dict[str, str] = field(default_factory=dict)

    def official_comments(self, dept: str) -> list[str]:
        w = self.weibo[dept]
        return [c.text for c in w.comments.values() if c.user_id == w.official_uid]

    async def published(self, dept: str, n: int) -> None:
        """Wait until the department's account has published ``n`` comments."""

        async def reached() -> bool:
            return len(self.official_comments(dept)) >= n

        await eventually(reached, timeout=30)


@pytest.fixture
async def world(sims: Simulators) -> World:
    w = World({}, {})
    for dept, name in (("transport", "市交通委"), ("environment", "市生态环境局")):
        limits = Limits(calls=10_000, comments=10_000)
        weibo, rest = await sims.weibo(official_name=name, limits=limits), await sims.rest()
        w.weibo[dept], w.tickets[dept] = weibo.state, rest.state
        w.urls[dept], w.urls[f"{dept}-tickets"] = weibo.url, rest.url
    return w


def config(tmp_path: Path, w: World) -> Any:
    def dept(dept_id: str, name: str, approval: str) -> dict[str, Any]:
        return {
            "id": dept_id,
            "name": name,
            "approval": approval,
            "sla": {"complaint": "15wd", "help": "10wd", "consultation": "2wd"},
            "ticketing": {**demo_ticketing_config(w.urls[f"{dept_id}-tickets"]), "poll": "200ms"},
        }

    def account(dept_id: str) -> dict[str, Any]:
        return {
            "adapter": "weibo",
            "handle": w.weibo[dept_id].official_name,
            "department": dept_id,
            "token": w.weibo[dept_id].token,
            "base_url": w.urls[dept_id] + "/2/",
            "poll": "200ms",
        }

    return bridge_config(
        tmp_path,
        departments=[
            dept("transport", "市交通委", "none"),
            dept("environment", "市生态环境局", "all-manual"),
        ],
        accounts=[account("transport"), account("environment")],
    )


def comment(w: World, dept: str, text: str, citizen: str) -> None:
    post = w.weibo[dept].add_official_post("【通告】欢迎留言反映问题。")
    w.weibo[dept].add_citizen_comment(text, citizen=citizen, status_id=post.id)


async def decide(http: aiohttp.ClientSession, base: str, reply_id: str, **body: Any) -> Any:
    async with http.post(
        f"{base}/api/approvals/{reply_id}", json={"actor": ACTOR, **body}, headers=AUTH
    ) as resp:
        return resp.status, await resp.json()


async def test_no_number_reaches_a_public_thread(tmp_path: Path, world: World) -> None:
    w = world
    async with (
        running_bridge(config(tmp_path, w), in_memory=True) as daemon,
        aiohttp.ClientSession() as http,
    ):
        assert daemon.ctx is not None
        store = daemon.ctx.store
        base = f"http://127.0.0.1:{daemon.http_port}"

        # 1. A citizen leaves a number in a comment; the department approves nothing.
        comment(
            w,
            "transport",
            "地铁站电梯坏了一周了，老人上下很不方便，我电话139、8765、4321",
            "乘客小王",
        )
        await w.published("transport", 1)
        [inquiry] = await store.list_inquiries()
        assert inquiry.public_text is not None and "[手机号]" in inquiry.public_text
        assert not any(n in inquiry.public_text for n in NUMBERS)
        [ticket] = await store.list_tickets("transport")

        # 2. An official types notes with numbers into the ticket system: each is published.
        system = w.tickets["transport"]
        await system.move(ticket.ticket_id, "IN_PROGRESS", NOTES[0], callback=False)
        for note in NOTES[1:]:
            await system.move(ticket.ticket_id, "IN_PROGRESS", note, callback=False)
        wanted = 1 + 1 + len(NOTES)  # received, in progress, the notes

        await w.published("transport", wanted)

        # 3. An approver edits a draft and puts a number in it (public Weibo thread).
        comment(w, "environment", "河边有人偷排污水，晚上味道很大", "环保志愿者")
        comment(w, "environment", "工厂烟囱半夜冒黑烟", "附近居民")

        async def drafts() -> list[dict[str, Any]]:
            async with http.get(f"{base}/api/approvals", headers=AUTH) as resp:
                items: list[dict[str, Any]] = (await resp.json())["approvals"]
                return items

        async def two_drafts() -> bool:
            return len(await drafts()) == 2

        await eventually(two_drafts, timeout=30)
        first, second = await drafts()
        edited = "您好，排污问题已交执法大队核查，如需补充线索请致电139/8765/4321。"
        status, refused = await decide(
            http, base, first["reply_id"], decision="approve", text=edited, version=1
        )
        assert (status, refused["reason"]) == (422, "personal_data")
        status, legacy = await decide(http, base, first["reply_id"], decision="edit", text=edited)
        assert (status, legacy["masked_text"]) == (422, refused["masked_text"])
        masked = refused["masked_text"]
        status, done = await decide(
            http, base, first["reply_id"], decision="approve", text=masked, version=1
        )
        assert status == 200 and done["text_sha256"] == text_sha256(masked)

        # 4. The last gate: a reply the store holds as approved with a number in it (as an
        # older version could have drafted it) is published masked, and the trail says so.
        slipped = "您好，烟囱冒黑烟问题已受理，可拨打(139)8765-4321了解进度。"
        await store.db.execute(
            "UPDATE replies SET state = 'approved', final_text = ?, decided_by = ?"
            " WHERE reply_id = ?",
            (slipped, "older-version", second["reply_id"]),
        )
        row = await store.get_reply(second["reply_id"])
        assert row is not None
        request = ReplyRequest.model_validate_json(row.request_json)
        await daemon.ctx.broker.publish(routing.reply_requested(request.platform), request)

        await w.published("environment", 2)
        records = await audit.recent(store.db, limit=500, actions=["reply.masked"])
        verdict = await audit.verify(store.db)

    transport, environment = w.official_comments("transport"), w.official_comments("environment")
    published = transport + environment
    print(
        f"\npublic replies: {len(transport)} on 市交通委 ({len(NOTES)} notes),"
        f" {len(environment)} on 市生态环境局; with personal data:"
        f" {sum(1 for t in published if pii.find_personal_data(t))};"
        f" masked at the last gate: {len(records)}"
    )
    assert len(transport) == wanted and len(environment) == 2
    # No number anywhere in what the platform published, in any form.
    assert [t for t in published if pii.find_personal_data(t)] == []
    assert [t for t in published if any(n in t for n in NUMBERS)] == []
    # Each note published, masked where its number was and nowhere else.
    notes = [t for t in transport if "答复（工单" in t]
    masks = ["[手机号]", "[手机号]", "[身份证号]", "[电话]", "[手机号]"]
    assert len(notes) == len(NOTES)
    for note, text, mask in zip(NOTES, notes, masks, strict=True):
        assert text.endswith(f"市交通委答复（工单{ticket.ticket_id}）：{pii.redact_text(note)}")
        assert mask in text
    assert pii.redact_text(NOTES[0]) == "已联系市民，电话[手机号]"
    # The approver's confirmed text, byte for byte; the slipped one masked by the last gate.
    assert any(t.endswith(f":{masked}") for t in environment), environment
    assert masked == edited.replace("139/8765/4321", "[手机号]")
    assert any(t.endswith(f":{pii.redact_text(slipped)}") for t in environment), environment
    assert [(r["subject"], r["detail"]["kinds"]) for r in records] == [
        (second["reply_id"], ["mobile"])
    ]
    # No part of the number in the records' words. Their time, hashes and HMAC may hold any
    # four digits ("fb8a78765f…" once failed this check when it read the whole record).
    words = [
        {k: v for k, v in r.items() if k not in ("at", "hash", "prev_hash", "mac")} for r in records
    ]
    assert "8765" not in re.sub(r"[0-9a-f]{16,}", "<hex>", json.dumps(words, ensure_ascii=False))
    assert verdict.ok, verdict.problem
