"""The bus is not trusted (issue 20, must-show 3), through the real RabbitMQ: the bridge signs
what it publishes for its own stages, and a message it did not sign changes nothing and posts
nothing.

Three departments, one per approval mode (``none``, ``templated-auto``, ``all-manual``), each
with its own REST ticket system and its own pushing platform. Citizens' inquiries go through
first (tickets, replies, one awaiting approval); then someone with publish rights on the
exchange (and who can read it, so knows the bridge's messages and key id) sends forged
``ticket.updated``, ``inquiry.routed`` and ``reply.requested`` messages for every department:
unsigned, signed with a key of their own (claiming the bridge's key id), and genuine messages
replayed under another routing key. Counted where it matters: the platforms' own records of
what was posted to them, the ticket systems' records of what was created, every table of the
store, the dead-letter queues and the audit trail.

Then a key rotation: two processes, one still signing with the old key, one already with the
new, hand messages to each other in both directions; nothing is lost or dead-lettered.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import aiohttp
import aiormq
import pytest
from govbridge_tools.simulators.rest import RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.testing import BusTap, Seen, Simulators, free_port
from pydantic import SecretStr

from bridge.cli.dlq import _act, cli_actor
from bridge.config import ConfigError, parse_config, weak_keys
from bridge.daemon import Daemon
from bridge.runtime.broker import (
    FAILED_AT_HEADER,
    REASON_HEADER,
    ROUTING_HEADER,
    STAGE_HEADER,
    Broker,
    PublishError,
    Unauthenticated,
)
from bridge.runtime.deadletters import Recorder, fetch, predates_signing
from bridge.runtime.topology import ROUTING_KEYS, STAGE_BINDINGS, Topology
from bridge.runtime.worker import DeadLetter, Delivery, Retry, Stage, Worker
from bridge.security.bus import SIGNATURE_HEADER, SIGNED_FOR_HEADER
from bridge.security.keyring import DEVELOPMENT_KEYS, Keyring
from bridge.store import audit, open_store
from bridge.store.errors import StoreUnavailable
from schemas.config import GovbridgeConfig
from schemas.messages import (
    ReplyPosted,
    ReplyRequest,
    ThreadRef,
    TicketCommand,
    TicketEvent,
    inquiry_id_for,
)
from schemas.vocab import TicketStatus, Visibility
from tests.bus import publish_forged, signed_with
from tests.conftest import (
    AMQP_URL,
    bridge_config,
    broker_config,
    config_toml,
    delete_topology,
    eventually,
    running_bridge,
)
from tests.test_cli_ops import COMPOSE_TOML, COMPOSE_YML, ROOT, parse_compose, run_cli

SECRET = "bus-auth-test-push-secret"
ATTACKER_KEY = "the forger's own signing key, 32+ characters"
PHISHING = "您的诉求已办结。领取补贴请登录 http://gov-butie.example.cn 填写银行卡号"


@dataclass(frozen=True)
class Dept:
    id: str
    name: str
    approval: str
    handle: str  # its official account on its own pushing platform
    platform: str
    text: str  # what a citizen writes to it


DEPTS = (
    Dept(
        "parks", "市园林局", "none", "parks12345", "hotline1",
        "公园东门的健身器材坏了两个，螺丝都松了，小孩在上面玩很危险，麻烦尽快来修一下",
    ),
    Dept(
        "roads", "市道路管理处", "templated-auto", "roads12345", "hotline2",
        "解放路和建设街路口的井盖塌了一半，昨晚骑电动车差点摔了，请派人处理！！",
    ),
    Dept(
        "water", "市水务局", "all-manual", "water12345", "hotline3",
        "我们小区（幸福里3号楼）已经停水两天了，也没看到通知，请问什么时候能恢复？",
    ),
)  # fmt: skip


@dataclass
class World:
    """Each department's pushing platform and ticket system (simulators of the test)."""

    platforms: dict[str, WebhookPlatformState] = field(default_factory=dict)  # by department
    tickets: dict[str, RestTicketState] = field(default_factory=dict)  # by department
    urls: dict[str, str] = field(default_factory=dict)  # department -> its platform's base URL

    def posts(self) -> dict[str, int]:
        """Replies each platform was asked to post (every POST, accepted or not)."""
        return {d: p.requests["POST /replies"] for d, p in self.platforms.items()}

    def ticket_writes(self) -> dict[str, tuple[int, int]]:
        """Tickets each ticket system holds, and the writes it was asked for."""
        return {
            d: (len(t.tickets), sum(n for k, n in t.requests.items() if not k.startswith("GET")))
            for d, t in self.tickets.items()
        }


@pytest.fixture
async def world(sims: Simulators) -> World:
    w = World()
    for dept in DEPTS:
        platform = await sims.webhook(secret=SECRET, account_handle=dept.handle)
        w.platforms[dept.id], w.urls[dept.id] = platform.state, platform.url
        w.tickets[dept.id] = (await sims.rest()).state
    return w


def config(tmp_path: Path, world: World, **sections: Any) -> GovbridgeConfig:
    departments, accounts = [], []
    for dept in DEPTS:
        server = world.tickets[dept.id].server
        assert server is not None
        departments.append(
            {
                "id": dept.id,
                "name": dept.name,
                "approval": dept.approval,
                "sla": {"complaint": "15wd", "help": "10wd", "consultation": "2wd"},
                "ticketing": {**demo_ticketing_config(server.url), "poll": "1h"},
            }
        )
        accounts.append(
            {
                "adapter": "webhook",
                "handle": dept.handle,
                "department": dept.id,
                "secret": SECRET,
                "reply_url": world.urls[dept.id] + "/replies",
                "platform": dept.platform,
            }
        )
    return bridge_config(tmp_path, departments=departments, accounts=accounts, **sections)


def connect_platforms(daemon: Daemon, world: World) -> None:
    for dept in DEPTS:
        world.platforms[
            dept.id
        ].push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/{dept.handle}"


async def snapshot(daemon: Daemon) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store but the audit trail (checked on its own). The
    process's pending operation events (the genuine creates' and posts' successes, written by
    the alerts' periodic sync) are written first, so the rows do not depend on when it ran."""
    assert daemon.ctx is not None
    await daemon.alerts.sync(daemon.ctx.store)
    db = daemon.ctx.store.db
    tables = [
        r["name"]
        for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        if r["name"] != "audit_log"
    ]
    assert {"inquiries", "tickets", "replies", "create_attempts"} <= set(tables)
    return {
        t: sorted(tuple(map(str, r.values())) for r in await db.fetchall(f"SELECT * FROM {t}"))
        for t in tables
    }


async def dead_letters(cfg: GovbridgeConfig, stage: str) -> list[aio_pika.IncomingMessage]:
    """The stage's dead letters, read and left in place."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{cfg.broker.exchange}.{stage}.dead", ensure=False)
        got = []
        while (m := await queue.get(no_ack=False, fail=False)) is not None:
            got.append(m)
        return got  # unacknowledged: back in the queue when the channel closes


def header(headers: dict[str, Any], name: str) -> str | None:
    value = headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


def kid_of(seen: Seen) -> str:
    return str(header(seen.headers, SIGNATURE_HEADER)).split(":")[1]


@dataclass
class Forgery:
    stage: str  # whose dead-letter queue it must end in
    routing_key: str
    type: str
    body: bytes
    headers: dict[str, Any]
    why: str  # the start of the dead letter's reason after "unauthenticated: "


def forgeries(tap: BusTap, replies: dict[str, str], our_kid: str) -> list[Forgery]:
    """27 forged messages: 3 kinds x 3 departments x (unsigned, another key, a replay)."""
    by_dept = {d.id: d for d in DEPTS}

    def genuine(routing_key: str) -> Seen:
        (seen,) = tap.on(routing_key)
        return seen

    out: list[Forgery] = []
    for n, dept in enumerate(DEPTS):
        other = DEPTS[(n + 1) % len(DEPTS)]
        # a false "resolved" with a phishing note, for the department's real ticket
        created = TicketEvent.model_validate_json(genuine(f"ticket.created.{dept.id}").body)
        event = created.model_copy(
            update={
                "event_id": f"forged-{dept.id}",
                "status": TicketStatus.RESOLVED,
                "native_status": "CLOSED",
                "note": PHISHING,
                "source": "poll",
            }
        )
        # a ticket no citizen asked for, in the department's ticket system
        routed = TicketCommand.model_validate_json(genuine(f"inquiry.routed.{dept.id}").body)
        fake = routed.inquiry.model_copy(
            update={
                "external_id": "forged-1",
                "inquiry_id": inquiry_id_for(dept.platform, dept.handle, "mention", "forged-1"),
                "text": "紧急通知：" + PHISHING,
            }
        )
        command = routed.model_copy(
            update={"command_id": f"forged-{dept.id}", "inquiry": fake, "public_text": fake.text}
        )
        # a phishing reply posted from the department's account (in all-manual: the reply
        # that waits for an official, as if approved)
        template = dept if dept.approval != "all-manual" else other
        model = ReplyRequest.model_validate_json(
            genuine(f"reply.requested.{template.platform}").body
        )
        request = model.model_copy(
            update={
                "reply_id": replies.get(dept.id, f"forged-{dept.id}"),
                "platform": dept.platform,
                "account": dept.handle,
                "department": dept.id,
                "text": PHISHING,
            }
        )
        kinds = [
            ("reply", f"ticket.updated.{dept.id}", event),
            ("ticketing", f"inquiry.routed.{dept.id}", command),
            ("outbox", f"reply.requested.{dept.platform}", request),
        ]
        for stage, key, message in kinds:
            type_, body = type(message).__name__, message.model_dump_json().encode()
            out.append(Forgery(stage, key, type_, body, {}, "unsigned"))
            out.append(
                Forgery(
                    stage, key, type_, body,
                    signed_with(ATTACKER_KEY, key, body, type_, claim_key_id=our_kid),
                    "signature does not match the message",
                )
            )  # fmt: skip
        # genuine messages of another department (same kinds of body) under this one's keys
        replayed = [
            ("reply", f"ticket.updated.{dept.id}", genuine(f"ticket.created.{other.id}")),
            ("ticketing", f"inquiry.routed.{dept.id}", genuine(f"inquiry.routed.{other.id}")),
        ]
        source = by_dept["roads" if dept.id == "parks" else "parks"].platform
        replayed.append(
            ("outbox", f"reply.requested.{dept.platform}", genuine(f"reply.requested.{source}"))
        )
        for stage, key, seen in replayed:
            out.append(
                Forgery(stage, key, seen.type or "", seen.body, dict(seen.headers), "signed for")
            )
    return out


async def test_forged_messages_change_nothing_post_nothing_and_are_audited(
    tmp_path: Path, world: World
) -> None:
    cfg = config(tmp_path, world)
    roles = ["ingest", "triage", "ticketing", "reply", "http"]
    async with BusTap(cfg.broker) as tap, running_bridge(cfg, roles) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        connect_platforms(daemon, world)
        for n, dept in enumerate(DEPTS):
            item = world.platforms[dept.id].citizen_item(n, text=dept.text)
            assert await world.platforms[dept.id].push([item]) == 202

        async def settled() -> bool:
            """Three tickets, the two automatic replies posted and announced, one waiting."""
            replies = await store.list_replies()
            announced = await store.db.fetchall(
                "SELECT reply_id FROM replies WHERE state = 'posted' AND announced = 1"
            )
            return (
                all(len(world.tickets[d.id].tickets) == 1 for d in DEPTS)
                and len(replies) == 3
                and len(announced) == 2
                and sum(r.state == "awaiting_approval" for r in replies) == 1
                and len(tap.on("reply.posted.hotline1") + tap.on("reply.posted.hotline2")) == 2
            )

        await eventually(settled, timeout=30)
        assert world.posts() == {"parks": 1, "roads": 1, "water": 0}
        waiting = await store.list_replies(state="awaiting_approval")
        our_kid = kid_of(tap.on("inquiry.routed.parks")[0])
        assert our_kid == daemon.broker.bus.keys.signing_id
        before = await snapshot(daemon)
        ticket_writes = world.ticket_writes()
        audit_head = (await audit.verify(store.db)).head_seq

        forged = forgeries(tap, {"water": waiting[0].reply_id}, our_kid)
        assert len(forged) == 27
        for f in forged:
            await publish_forged(cfg.broker, f.routing_key, f.body, f.type, f.headers)

        async def all_dead() -> bool:
            counts = [len(await dead_letters(cfg, s)) for s in ("reply", "ticketing", "outbox")]
            return counts == [9, 9, 9]

        await eventually(all_dead, timeout=30)
        after = await snapshot(daemon)
        records = await store.db.fetchall(
            "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq", (audit_head,)
        )
        verdict = await audit.verify(store.db)
        dead = {s: await dead_letters(cfg, s) for s in ("reply", "ticketing", "outbox")}

    # nothing posted, nothing created, nothing changed
    assert world.posts() == {"parks": 1, "roads": 1, "water": 0}
    assert all(PHISHING not in r["text"] for p in world.platforms.values() for r in p.reply_list())
    assert world.ticket_writes() == ticket_writes
    assert after == before

    # each dead-lettered "unauthenticated", with the worker's usual headers and its reason
    def identity(routing_key: str, body: bytes, headers: dict[str, Any]) -> tuple[Any, ...]:
        return routing_key, body, header(headers, SIGNATURE_HEADER)

    by_body = {identity(f.routing_key, f.body, f.headers): f for f in forged}
    assert len(by_body) == 27
    for stage, messages in dead.items():
        for m in messages:
            f = by_body[identity(str(m.headers[ROUTING_HEADER]), m.body, dict(m.headers))]
            assert f.stage == stage == m.headers[STAGE_HEADER]
            assert str(m.headers[REASON_HEADER]).startswith(f"unauthenticated: {f.why}"), m.headers[
                REASON_HEADER
            ]
    assert {
        identity(str(m.headers[ROUTING_HEADER]), m.body, dict(m.headers))
        for ms in dead.values()
        for m in ms
    } == set(by_body)
    # each audited as refused, by the stage that refused it, without its body
    assert len(records) == 27 and verdict.ok
    assert {r["action"] for r in records} == {"message.unauthenticated"}
    assert all(r["actor"] == "bridge" and r["inquiry_id"] is None for r in records)
    details = [json.loads(r["detail"]) for r in records]
    assert sorted((d["stage"], d["routing_key"]) for d in details) == sorted(
        (f.stage, f.routing_key) for f in forged
    )
    reasons = sorted(d["reason"].split(" ")[0] for d in details)
    assert reasons.count("unsigned") == 9 and reasons.count("signature") == 9
    assert reasons.count("signed") == 9
    trail = json.dumps(records, ensure_ascii=False)
    assert PHISHING not in trail and "gov-butie" not in trail and "幸福里" not in trail


async def test_a_key_rotation_loses_nothing(tmp_path: Path, world: World) -> None:
    """Mid-rotation: one process has the new key as a second key (it still signs with the old
    one), the other already signs with the new key and keeps the old one. Each hands its
    messages to the other: inquiries received (old key) -> triage (new) -> ticketing (old) ->
    replies (new). Every inquiry gets its ticket and its reply; nothing is dead-lettered."""
    old, new = "the old bus key, rotated out: 0123456789abcdef", "the new bus key: fedcba9876543210"
    base = config(tmp_path, world)
    ahead = base.model_copy(deep=True)
    behind = base.model_copy(deep=True)
    behind.broker.signing_keys = [SecretStr(old), SecretStr(new)]
    ahead.broker.signing_keys = [SecretStr(new), SecretStr(old)]
    old_kid, new_kid = Keyring("bus", [old]).signing_id, Keyring("bus", [new]).signing_id
    parks = DEPTS[0]
    n = 12
    p_behind = Daemon(behind, ["ingest", "ticketing", "http"])
    p_ahead = Daemon(ahead, ["triage", "reply"])
    async with BusTap(base.broker) as tap:
        try:
            await p_behind.start()
            await p_ahead.start()
            connect_platforms(p_behind, world)
            platform = world.platforms[parks.id]
            texts = [
                f"{street}的路灯已经坏了{k + 2}天了，晚上一片漆黑，老人出门不方便"
                for k, street in enumerate(["人民路", "和平街", "东风路", "新华路"] * 3)
            ]
            for k, text in enumerate(texts[:n]):
                assert await platform.push([platform.citizen_item(k, text=text)]) == 202

            async def answered() -> bool:
                """Every reply on the platform and recorded as posted (the platform sees a
                reply just before the outbox writes that it did)."""
                assert p_ahead.ctx is not None
                stored = await p_ahead.ctx.store.list_replies()
                return (
                    len(platform.reply_list()) == n and [r.state for r in stored] == ["posted"] * n
                )

            await eventually(answered, timeout=60)
            assert p_ahead.ctx is not None
            replies = await p_ahead.ctx.store.list_replies()
            dead = {s: len(await dead_letters(base, s)) for s in ("triage", "ticketing", "reply")}
            dead["outbox"] = len(await dead_letters(base, "outbox"))
        finally:
            await p_ahead.stop()
            await p_behind.stop()
            await delete_topology(base.broker)
    assert len(world.tickets[parks.id].tickets) == n
    assert len(replies) == n and all(r.state == "posted" for r in replies)
    assert dead == {"triage": 0, "ticketing": 0, "reply": 0, "outbox": 0}
    signers = {
        kind: {kid_of(s) for s in tap.seen if s.routing_key.startswith(kind)}
        for kind in ("inquiry.received", "inquiry.routed", "ticket.created", "reply.requested")
    }
    assert signers == {
        "inquiry.received": {old_kid},
        "inquiry.routed": {new_kid},
        "ticket.created": {old_kid},
        "reply.requested": {new_kid},
    }
    assert all(s.headers[SIGNED_FOR_HEADER] == s.routing_key for s in tap.seen)


# --------------------------------------------------------------------------- dead letters
# A forged message in a dead-letter queue: shown as not signed, never replayed (the stage would
# refuse it again); dropping it, like any operator action, is recorded first or not done.


def outbox_bridge(tmp_path: Path) -> GovbridgeConfig:
    return bridge_config(tmp_path, departments=[URBAN], accounts=[HOTLINE])


URBAN = {
    "id": "urban",
    "name": "市城管委",
    "approval": "none",
    "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}},
}
HOTLINE = {
    "adapter": "webhook",
    "handle": "hotline",
    "department": "urban",
    "secret": "s",
    "reply_url": "http://127.0.0.1:9/replies",
}
AUTH = {"Authorization": "Bearer test-admin-token"}


def a_reply_request() -> bytes:
    return (
        ReplyRequest(
            reply_id="rep_forged",
            inquiry_id="inq_forged",
            platform="webhook",
            account="hotline",
            department="urban",
            thread=ThreadRef(root_id="m1", reply_to={"external_id": "m1"}),
            citizen_handle="citizen1",
            visibility=Visibility.PUBLIC,
            text=PHISHING,
        )
        .model_dump_json()
        .encode()
    )


async def test_a_forged_dead_letter_is_not_replayed_and_a_drop_is_recorded_first(
    tmp_path: Path,
) -> None:
    cfg = outbox_bridge(tmp_path)
    db_path = tmp_path / "govbridge.db"
    cfg_path = tmp_path / "govbridge.toml"
    cfg_path.write_text(config_toml(cfg))
    async with running_bridge(cfg, ["reply", "http"]) as daemon, aiohttp.ClientSession() as http:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        base = f"http://127.0.0.1:{daemon.http_port}"
        await publish_forged(cfg.broker, "reply.requested.webhook", a_reply_request(), None)

        async def listed() -> list[dict[str, Any]]:
            async with http.get(f"{base}/api/dead-letters", headers=AUTH) as resp:
                assert resp.status == 200
                rows = (await resp.json())["dead_letters"]
            return [r for r in rows if r.get("stage") == "outbox"]

        async def one() -> bool:
            return len(await listed()) == 1

        await eventually(one)
        (row,) = await listed()
        assert row["reason"] == "unauthenticated: unsigned"
        assert row["signed"] is False and row["not_signed_because"] == "unsigned"
        message_id = row["message_id"]
        head = (await audit.verify(store.db)).head_seq

        # the console refuses to replay it, and so does govbridge dlq
        async with http.post(
            f"{base}/api/dead-letters/outbox/replay", json={"message_id": message_id}, headers=AUTH
        ) as resp:
            assert resp.status == 409
            assert "did not sign" in (await resp.json())["error"]
        replay = await run_cli("dlq", "replay", "-c", str(cfg_path), "--stage", "outbox")
        assert replay.code == 1
        assert f"replay of {message_id} refused: the bridge did not sign it" in replay.err
        listing = await run_cli("dlq", "list", "-c", str(cfg_path), "--stage", "outbox")
        assert "not signed by the bridge (unsigned): replay refused" in listing.out
        assert PHISHING not in listing.out + listing.err + replay.out + replay.err
        assert len(await listed()) == 1

        # the store is locked (another writer holds it): the drop cannot be recorded, so it
        # is not done; the dead letter stays and the answer says why
        locker = sqlite3.connect(db_path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            async with http.post(
                f"{base}/api/dead-letters/outbox/drop",
                json={"message_id": message_id},
                headers=AUTH,
            ) as resp:
                assert resp.status == 503
                assert (
                    "not dropped (kept): the audit trail cannot be written"
                    in (await resp.json())["error"]
                )
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert len(await listed()) == 1
        assert (await audit.verify(store.db)).head_seq == head

        # once it can be recorded, it is dropped, and the record says who did it
        async with http.post(
            f"{base}/api/dead-letters/outbox/drop", json={"message_id": message_id}, headers=AUTH
        ) as resp:
            assert resp.status == 200
        assert await listed() == []
        records = await store.db.fetchall(
            "SELECT action, actor, subject FROM audit_log WHERE seq > ?", (head,)
        )
    assert records == [
        {"action": "dead_letter.dropped", "actor": "admin-token", "subject": message_id}
    ]


async def test_a_token_replacement_that_cannot_be_recorded_is_not_made(tmp_path: Path) -> None:
    """The other operator action recorded outside a store transaction: first the record,
    then the change."""
    cfg = outbox_bridge(tmp_path)
    url_path = "/api/accounts/webhook/hotline/token"
    async with running_bridge(cfg, ["ingest", "http"]) as daemon, aiohttp.ClientSession() as http:
        assert daemon.ctx is not None
        base = f"http://127.0.0.1:{daemon.http_port}"
        locker = sqlite3.connect(tmp_path / "govbridge.db", isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            async with http.put(base + url_path, json={"token": "new-token-1"}, headers=AUTH) as r:
                assert r.status == 503
                assert "token not replaced" in (await r.json())["error"]
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert daemon.ctx.cfg.account("hotline").token is None
        async with http.put(base + url_path, json={"token": "new-token-2"}, headers=AUTH) as r:
            assert r.status == 200
        token = daemon.ctx.cfg.account("hotline").token
        assert token is not None and token.get_secret_value() == "new-token-2"
        records = await audit.recent(daemon.ctx.store.db, actions=["account.token_replaced"])
    assert [(r["actor"], r["subject"]) for r in records] == [
        ("admin-token", "account:webhook:hotline")
    ]


async def test_govbridge_dlq_drop_does_nothing_while_the_store_is_locked(
    tmp_path: Path, broker: Broker
) -> None:
    """The command's own order: each dead letter is recorded, then acknowledged. With the
    store locked after the command started, nothing is dropped and nothing recorded."""
    cfg = bridge_config(tmp_path, broker=broker.cfg.model_dump())
    await publish_forged(broker.cfg, "reply.requested.webhook", a_reply_request(), None)
    worker = Worker(broker, Stage("outbox", ReplyRequest, _never))
    await worker.start()
    try:
        await eventually(lambda: _dead_count(broker, "outbox", 1))
    finally:
        await worker.stop()
    store = await open_store(cfg.store.url)
    queues = broker.topology.queues("outbox")
    channel = await broker.channel()
    locker = sqlite3.connect(tmp_path / "govbridge.db", isolation_level=None)
    try:
        messages = await fetch(channel, queues.dead, 10)
        assert len(messages) == 1
        locker.execute("BEGIN IMMEDIATE")
        args = argparse.Namespace(action="drop", yes=True, json=False, message_id=None, limit=10)
        failures = await _act(
            args, broker, "outbox", queues.dead, queues.work, messages, Recorder(store, cli_actor())
        )
        assert failures == 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        await channel.close()  # what was not acknowledged goes back
    try:
        assert await _dead_count(broker, "outbox", 1)
        assert (await audit.verify(store.db)).records == 0
    finally:
        await store.close()


async def _never(message: Any, delivery: Delivery) -> None:
    raise AssertionError("a handler must never see an unauthenticated message")


async def _dead_count(broker: Broker, stage: str, n: int) -> bool:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(broker.topology.queues(stage).dead, passive=True)
        return queue.declaration_result.message_count == n


# --------------------------------------------------------------------------- the worker


async def test_an_unauthenticated_message_waits_while_its_record_cannot_be_written(
    broker: Broker,
) -> None:
    """Audit first: while the store is unavailable the refused message sits in a delay tier
    (attempts not used up), and is dead-lettered only once its refusal is recorded."""
    calls: list[str] = []

    async def record(refused: Unauthenticated) -> None:
        calls.append(refused.reason)
        if len(calls) <= 3:
            raise StoreUnavailable("OperationalError: database is locked")

    broker.on_unauthenticated = record
    worker = Worker(broker, Stage("reply", TicketEvent, _never))
    await worker.start()
    try:
        body = b'{"event_id": "x", "department": "urban"}'
        await publish_forged(broker.cfg, "ticket.updated.urban", body, "TicketEvent")
        await eventually(lambda: _dead_count(broker, "reply", 1))
    finally:
        await worker.stop()
    assert calls == ["unsigned"] * 4
    assert broker.metrics.retried.labels("reply", "200ms")._value.get() == 3
    assert broker.metrics.dead_lettered.labels("reply", "unauthenticated")._value.get() == 1


async def test_a_refusal_that_can_never_be_recorded_ends_in_a_dead_letter_of_the_worker(
    broker: Broker,
) -> None:
    """Not the store: a bug in recording. The message goes through the delay tiers like any
    transient failure and is dead-lettered by the worker (its time, not the message's), never
    handled."""
    calls: list[str] = []

    async def broken(refused: Unauthenticated) -> None:
        calls.append(refused.reason)
        raise RuntimeError("audit writer bug")

    broker.on_unauthenticated = broken
    worker = Worker(broker, Stage("reply", TicketEvent, _never))
    await worker.start()
    try:
        claims = {FAILED_AT_HEADER: "2020-01-01T00:00:00+00:00"}
        await publish_forged(broker.cfg, "ticket.updated.urban", b"{}", "TicketEvent", claims)
        await eventually(lambda: _dead_count(broker, "reply", 1))
    finally:
        await worker.stop()
    (dead,) = await _read(broker, "reply")
    assert str(dead.headers[REASON_HEADER]).startswith(
        "attempts exhausted after 4 tries: refusal not recorded: RuntimeError('audit writer bug')"
    )
    assert not str(dead.headers[FAILED_AT_HEADER]).startswith("2020")
    assert calls == ["unsigned"] * 4


async def test_after_a_rotation_the_retired_key_is_refused(broker: Broker) -> None:
    """Once the old key is removed, what it signed is refused by name (its key id), and a
    message signed with the new key goes through."""
    handled: list[str] = []

    async def handle(event: TicketEvent, delivery: Delivery) -> None:
        handled.append(event.event_id)

    old = Broker(broker.cfg.model_copy(update={"signing_keys": [SecretStr("retired " * 5)]}))
    await old.connect(declare=False)
    worker = Worker(broker, Stage("reply", TicketEvent, handle))
    await worker.start()
    try:
        event = TicketEvent(
            event_id="ev-old",
            department="urban",
            ticket_id="T1",
            status=TicketStatus.IN_PROGRESS,
            native_status="ASSIGNED",
            occurred_at=datetime.now(UTC),
        )
        await old.publish("ticket.updated.urban", event)
        await broker.publish("ticket.updated.urban", event.model_copy(update={"event_id": "ev"}))
        await eventually(lambda: _dead_count(broker, "reply", 1))
        await eventually(lambda: _true(handled))
    finally:
        await worker.stop()
        await old.close()
    (dead,) = await _read(broker, "reply")
    assert str(dead.headers[REASON_HEADER]) == (
        f"unauthenticated: signed with key {old.bus.keys.signing_id!r}, which is not configured"
    )
    assert handled == ["ev"]


async def _true(items: list[str]) -> bool:
    return bool(items)


async def _read(broker: Broker, stage: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.topology.queues(stage).dead, ensure=False)
        got = []
        while (m := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(m)
        return got


# --------------------------------------------------------------------------- keys in config

BUS_KEY = "bK3v9QzL7wXe2RtY6uIo1PaS5dFgH8jK-bus"
AUDIT_KEY = "aM4n8BvC2xZl6KjH0gFd3SaP7oIu9YtR-audit"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"http": {"listen": "0.0.0.0:8080"}}, "http.listen 0.0.0.0:8080 is not loopback"),
        (
            {"broker": {"url": "amqp://govbridge:s3cr3t-pw@rabbit.internal:5672/"}},
            "the broker at rabbit.internal is not on this machine",
        ),
        (
            {"store": {"url": "postgresql://govbridge@db.internal/govbridge"}},
            "the store at db.internal is not on this machine",
        ),
    ],
    ids=["listener", "broker", "store"],
)
def test_keys_are_required_once_the_config_reaches_beyond_this_machine(
    tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    assert weak_keys(bridge_config(tmp_path)) == []  # the tests' own, like the demo
    problems = weak_keys(bridge_config(tmp_path, **change))
    assert [p.split(":")[0] for p in problems] == ["broker.signing_keys", "audit.keys"]
    assert all(reason in p and "published development key" in p for p in problems)
    keyed = bridge_config(
        tmp_path,
        **change,
        audit={"keys": [AUDIT_KEY]},
    )
    keyed.broker.signing_keys = [SecretStr(BUS_KEY), SecretStr("")]  # an unset old key
    assert weak_keys(keyed) == []


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("change-me", "is a published default"),
        (DEVELOPMENT_KEYS["bus"], "is a published default"),
        ("Zq8#a-short-key-1234", "is shorter than 32 characters"),
    ],
)
def test_a_weak_key_is_named_never_shown(tmp_path: Path, value: str, why: str) -> None:
    cfg = bridge_config(
        tmp_path, http={"listen": "0.0.0.0:8080"}, audit={"keys": [AUDIT_KEY, value]}
    )
    cfg.broker.signing_keys = [SecretStr(value)]
    problems = weak_keys(cfg)
    assert [p.split(":")[0] for p in problems] == ["broker.signing_keys[0]", "audit.keys[1]"]
    assert all(why in p for p in problems)
    assert value not in "\n".join(problems)


def test_the_audit_key_must_not_be_the_bus_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        bridge_config(tmp_path, broker={"signing_keys": [BUS_KEY]}, audit={"keys": [BUS_KEY]})
    assert "a key is also in broker.signing_keys" in "\n".join(caught.value.problems)
    assert BUS_KEY not in str(caught.value)


async def test_check_and_run_say_so_without_printing_a_key(tmp_path: Path) -> None:
    listen = f"0.0.0.0:{free_port()}"
    cfg = bridge_config(tmp_path, http={"listen": listen, "admin_token": "a-strong-admin-token-1"})
    path = tmp_path / "prod.toml"
    path.write_text(config_toml(cfg))
    checked = await run_cli("check", "-c", str(path), "--no-declare")
    assert checked.code == 1
    assert f"{path}: broker.signing_keys: not set, so the published development key" in checked.err
    assert f"{path}: audit.keys: not set" in checked.err and "keys     FAILED" in checked.err
    refused = await run_cli("run", "-c", str(path), "--roles", "sla")
    assert refused.code == 2 and "refusing missing, published or short keys" in refused.err

    cfg.broker.signing_keys = [SecretStr(BUS_KEY), SecretStr(BUS_KEY + "-old")]
    cfg.audit.keys = [SecretStr(AUDIT_KEY)]
    path.write_text(config_toml(cfg))
    checked = await run_cli("check", "-c", str(path), "--no-declare")
    assert checked.code == 0, checked.err
    bus, audit_kid = Keyring("bus", [BUS_KEY]).signing_id, Keyring("audit", [AUDIT_KEY]).signing_id
    assert f"keys     ok: bus key {bus} signs, 1 more verify; audit key {audit_kid} signs" in (
        checked.out
    )
    everything = checked.out + checked.err + refused.out + refused.err
    assert BUS_KEY not in everything and AUDIT_KEY not in everything

    local = tmp_path / "local.toml"
    local.write_text(config_toml(bridge_config(tmp_path)))
    checked = await run_cli("check", "-c", str(local), "--no-declare")
    assert checked.code == 0, checked.err
    assert "keys     ok: bus the published development key (no key configured)" in checked.out


def test_compose_and_the_examples(tmp_path: Path) -> None:
    """docker compose stops without both keys; with them the compose config passes; the
    example config runs on one machine without any."""
    services = parse_compose(COMPOSE_YML.read_text())["services"]
    for bridge in ("bridge", "bridge-2", "bridge-3"):
        env = services[bridge]["environment"]
        for name in ("GOVBRIDGE_BUS_KEY", "GOVBRIDGE_AUDIT_KEY"):
            assert env[name].startswith(f"${{{name}:?"), (bridge, name)
    compose = tomllib.loads(COMPOSE_TOML.read_text())
    env = {"GOVBRIDGE_BUS_KEY": BUS_KEY, "GOVBRIDGE_AUDIT_KEY": AUDIT_KEY}
    assert weak_keys(parse_config(compose, str(COMPOSE_TOML), env=env)) == []
    unset = weak_keys(parse_config(compose, str(COMPOSE_TOML), env={}))
    assert [p.split(":")[0] for p in unset] == ["broker.signing_keys", "audit.keys"]
    example = ROOT / "examples" / "govbridge.toml"
    cfg = parse_config(tomllib.loads(example.read_text()), str(example), env={})
    assert weak_keys(cfg) == [] and Keyring("bus", cfg.broker.signing_keys).development
    rotating = {**env, "GOVBRIDGE_BUS_KEY_OLD": BUS_KEY + "-old"}
    cfg = parse_config(tomllib.loads(example.read_text()), str(example), env=rotating)
    assert Keyring("bus", cfg.broker.signing_keys).ids == [
        Keyring("bus", [BUS_KEY]).signing_id,
        Keyring("bus", [BUS_KEY + "-old"]).signing_id,
    ]


# --------------------------------------------------------------------------- broker users


def commands(topology: Topology, bridge: str, reader: str, vhost: str) -> list[list[str]]:
    lines = topology.permissions(bridge, reader, vhost)
    assert lines[0].startswith("# ") and any(line.startswith("# Create them") for line in lines)
    return [shlex.split(line) for line in lines if not line.startswith("#")]


def test_the_printed_permissions_follow_the_topology() -> None:
    """Read as RabbitMQ reads them (the regular expressions are also Python's): the bridge's
    user reaches every name of its topology and nothing else; the reader only its own queues
    and the keys no stage consumes."""
    cfg = broker_config(exchange="gb-x7")
    topology = Topology(cfg)
    (bridge, bridge_topic, reader, reader_topic) = commands(topology, "gbb", "gbr", "/city")
    assert bridge[:5] == ["rabbitmqctl", "set_permissions", "-p", "/city", "gbb"]
    assert bridge_topic[:6] == [
        "rabbitmqctl",
        "set_topic_permissions",
        "-p",
        "/city",
        "gbb",
        "gb-x7",
    ]
    assert reader[:5] == ["rabbitmqctl", "set_permissions", "-p", "/city", "gbr"]
    assert reader_topic[:6] == [
        "rabbitmqctl",
        "set_topic_permissions",
        "-p",
        "/city",
        "gbr",
        "gb-x7",
    ]
    configure, write, read = (re.compile(p) for p in bridge[5:])
    names = [topology.exchange, topology.alternate_exchange, topology.dead_letter_exchange]
    names.append(topology.unroutable_queue)
    for stage in (*topology.stages, "ingest"):
        q = topology.queues(stage)
        names += [q.work, q.dead, *(name for _, name in q.retry)]
    for name in names:
        assert configure.match(name) and write.match(name) and read.match(name), name
    assert write.match("amq.default") and not configure.match("amq.default")
    for foreign in ("gb-x7x", "gb-x70.triage", "amq.topic", "gbr.posted", "other.gb-x7"):
        assert not (configure.match(foreign) or write.match(foreign) or read.match(foreign))
    publish, bind = (re.compile(p) for p in bridge_topic[6:])
    for example in ROUTING_KEYS.values():
        key = example.replace("<event>", "warning").replace("<", "").replace(">", "")
        assert publish.match(key), key
    assert not publish.match("bench.relayed") and not publish.match("#")
    for patterns in STAGE_BINDINGS.values():
        assert all(bind.match(p) for p in patterns)
    assert not (bind.match("#") or bind.match("reply.posted.*") or bind.match("inquiry.*"))
    configure, write, read = (re.compile(p) for p in reader[5:])
    assert configure.match("gbr.posted") and write.match("gbr.posted") and read.match("gbr.posted")
    assert read.match("gb-x7") and not write.match("gb-x7") and not write.match("amq.default")
    assert not any(p.match(n) for p in (configure, write, read) for n in names[1:])
    publish, bind = (re.compile(p) for p in reader_topic[6:])
    assert reader_topic[6] == "^$" and not publish.match("reply.posted.webhook")
    assert bind.match("reply.posted.*") and bind.match("sla.#") and bind.match("sla.breached.urban")
    assert not (bind.match("#") or bind.match("inquiry.received.*") or bind.match("ticket.#"))


async def _one_dead_letter(broker: Broker) -> bool:
    """Read through the bridge's own user (the test's guest is no user of this vhost)."""
    channel = await broker.channel()
    try:
        queue = await channel.declare_queue(broker.topology.queues("reply").dead, passive=True)
        return queue.declaration_result.message_count == 1
    finally:
        await channel.close()


def rabbitmqctl(*args: str, check: bool = True) -> None:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or not check, done.stderr


async def test_the_printed_permissions_on_a_vhost_and_users_of_the_tests_own() -> None:
    """The commands, run as printed: the bridge works as its user (declares its topology,
    publishes, retries through a delay tier, dead-letters); the reader reads reply.posted
    without any key and can publish nothing, bind nothing else and touch no bridge queue."""
    if shutil.which("rabbitmqctl") is None or "127.0.0.1" not in AMQP_URL:
        pytest.skip("needs the local RabbitMQ's rabbitmqctl")
    run = uuid.uuid4().hex[:8]
    vhost, bridge, reader = f"gbperm-{run}", f"gbb-{run}", f"gbr-{run}"
    password = {bridge: uuid.uuid4().hex, reader: uuid.uuid4().hex}
    cfg = broker_config(
        url=f"amqp://{bridge}:{password[bridge]}@127.0.0.1:5672/{quote(vhost, safe='')}",
        exchange="govbridge",
    )
    topology = Topology(cfg)
    rabbitmqctl("add_vhost", vhost)
    try:
        for user in (bridge, reader):
            rabbitmqctl("add_user", user, password[user])
        for command in commands(topology, bridge, reader, vhost):
            rabbitmqctl(*command[1:])

        # the bridge, as its user: the topology, a retry and a dead letter, a reply.posted
        broker = Broker(cfg)
        await broker.connect()
        attempts: list[int] = []

        async def handle(event: TicketEvent, delivery: Delivery) -> None:
            attempts.append(delivery.attempt)
            if delivery.attempt == 0:
                raise Retry("ticket system busy")
            raise DeadLetter("gave up")

        worker = Worker(broker, Stage("reply", TicketEvent, handle))
        await worker.start()
        reader_url = f"amqp://{reader}:{password[reader]}@127.0.0.1:5672/{quote(vhost, safe='')}"
        connection = await aio_pika.connect(reader_url)
        try:
            channel = await connection.channel()
            posted = await channel.declare_queue(f"{reader}.posted", durable=True)
            await posted.bind("govbridge", routing_key="reply.posted.*")
            event = TicketEvent(
                event_id="ev-1",
                department="urban",
                ticket_id="T1",
                status=TicketStatus.IN_PROGRESS,
                native_status="ASSIGNED",
                occurred_at=datetime.now(UTC),
            )
            await broker.publish("ticket.updated.urban", event)
            done = ReplyPosted(
                reply_id="rep_1", inquiry_id="inq_1", platform="webhook", account="hotline",
                external_ids=["r-1"],
            )  # fmt: skip
            await broker.publish("reply.posted.webhook", done)
            await eventually(lambda: _one_dead_letter(broker))
            with pytest.raises(PublishError, match="ACCESS_REFUSED"):  # not the bridge's key
                await broker.publish("bench.relayed", done)

            # the reader gets reply.posted as plain JSON, no key needed
            message = await posted.get(timeout=10, fail=True)
            assert message is not None
            assert ReplyPosted.model_validate_json(message.body).reply_id == "rep_1"
            await message.ack()

            for attempt in (
                _publish_topic,
                _publish_to_work_queue,
                functools.partial(_bind, posted.name, "inquiry.received.*"),
                functools.partial(_bind, posted.name, "#"),
                _read_a_bridge_queue,
                _declare_a_bridge_queue,
            ):
                channel = await connection.channel(publisher_confirms=True)
                with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                    await attempt(channel)
        finally:
            await worker.stop()
            await broker.close()
            await connection.close()
        assert attempts == [0, 1]
    finally:
        rabbitmqctl("delete_vhost", vhost)
        for user in (bridge, reader):
            rabbitmqctl("delete_user", user, check=False)


async def _publish_topic(channel: Any) -> None:
    exchange = await channel.get_exchange("govbridge", ensure=False)
    await exchange.publish(aio_pika.Message(b"{}"), routing_key="ticket.updated.urban")


async def _publish_to_work_queue(channel: Any) -> None:
    await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key="govbridge.reply")


async def _bind(queue_name: str, key: str, channel: Any) -> None:
    queue = await channel.get_queue(queue_name, ensure=False)
    await queue.bind("govbridge", routing_key=key)


async def _read_a_bridge_queue(channel: Any) -> None:
    queue = await channel.get_queue("govbridge.reply.dead", ensure=False)
    await queue.get(fail=False)


async def _declare_a_bridge_queue(channel: Any) -> None:
    await channel.declare_queue("govbridge.reply", durable=True)


async def test_dead_letters_from_before_signing_are_replayed_when_the_operator_says_so(
    tmp_path: Path, broker: Broker
) -> None:
    """After an upgrade: a dead letter the earlier version left (unsigned, dead-lettered
    before the upgrade) is signed and replayed with --sign-unsigned-before; a forged message
    sent since, even one claiming an old failure time, is not."""
    processed: list[str] = []

    async def handle(event: TicketEvent, delivery: Delivery) -> None:
        processed.append(event.event_id)

    def event(event_id: str) -> bytes:
        return (
            TicketEvent(
                event_id=event_id,
                department="transport",
                ticket_id="T1",
                status=TicketStatus.IN_PROGRESS,
                native_status="ASSIGNED",
                occurred_at=datetime.now(UTC),
            )
            .model_dump_json()
            .encode()
        )

    # what the earlier version's worker wrote when the ticket system refused an update
    await broker.publish_raw(
        broker.topology.dead_letter_exchange,
        "reply",
        event("ev-old"),
        type_="TicketEvent",
        headers={
            REASON_HEADER: "ticket system refused the update",
            STAGE_HEADER: "reply",
            ROUTING_HEADER: "ticket.updated.transport",
            FAILED_AT_HEADER: "2026-11-02T03:04:05+00:00",
        },
    )
    worker = Worker(broker, Stage("reply", TicketEvent, handle))
    await worker.start()
    try:
        claims_old = {FAILED_AT_HEADER: "2026-11-02T03:04:05+00:00", REASON_HEADER: "old"}
        await publish_forged(
            broker.cfg, "ticket.updated.transport", event("ev-forged"), "TicketEvent", claims_old
        )
        await eventually(lambda: _dead_count(broker, "reply", 2))
        upgraded = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        cfg = tmp_path / "dlq.toml"
        cfg.write_text(config_toml(bridge_config(tmp_path, broker=broker.cfg.model_dump())))
        plain = await run_cli("dlq", "replay", "-c", str(cfg), "--stage", "reply")
        assert plain.code == 1 and plain.err.count("refused: the bridge did not sign it") == 2
        assert await _dead_count(broker, "reply", 2)
        signed = await run_cli(
            "dlq", "replay", "-c", str(cfg), "--stage", "reply", "--sign-unsigned-before", upgraded
        )
        assert signed.code == 1 and signed.err.count("refused: the bridge did not sign it") == 1
        await eventually(lambda: _true(processed))
        assert await _dead_count(broker, "reply", 1)
    finally:
        await worker.stop()
    assert processed == ["ev-old"]
    (left,) = await _read(broker, "reply")
    assert TicketEvent.model_validate_json(left.body).event_id == "ev-forged"
    store = await open_store(f"sqlite:///{tmp_path}/govbridge.db")
    try:
        records = await audit.recent(store.db)
    finally:
        await store.close()
    assert [(r["action"], r["detail"].get("re_signed_for")) for r in records] == [
        ("dead_letter.replayed", "ticket.updated.transport")
    ]


def test_which_dead_letters_count_as_an_earlier_versions() -> None:
    """Only what a worker dead-lettered before the time given, with no signature at all."""
    upgrade = datetime(2026, 12, 1, 8, tzinfo=UTC)
    old = {REASON_HEADER: "refused", FAILED_AT_HEADER: "2026-11-02T03:04:05+00:00"}
    since = {REASON_HEADER: "unauthenticated: unsigned", FAILED_AT_HEADER: "2026-12-02T00:00:00"}
    cases = [
        (old, True),
        (since, False),  # dead-lettered after the upgrade (a time without zone is UTC)
        ({**old, SIGNATURE_HEADER: "v1:00000000:1:00"}, False),  # signed: checked as it is
        ({**old, "x-death": [{"time": datetime(2026, 11, 1)}]}, False),  # the broker's
        ({FAILED_AT_HEADER: old[FAILED_AT_HEADER]}, False),  # no worker's reason: not its time
    ]
    for headers, qualifies in cases:
        message: Any = argparse.Namespace(headers=headers)
        assert predates_signing(message, upgrade) is qualifies, headers
        assert predates_signing(message, None) is False
