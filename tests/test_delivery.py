"""Delivery that stays exactly-once through crashes, races, forgeries and refusals, through the
real RabbitMQ; counts are taken from the platform simulators' own records.

- a crash injected between any two statements of status application: every status reply is
  posted exactly once after redelivery;
- an event that arrives before its ticket is recorded is applied once the ticket is;
- two outbox processes on one store: 500 replies, each posted exactly once;
- a server that ignores ``Idempotency-Key`` and commits after the client timed out: posted once;
- a forged ``reply.requested`` is dead-lettered with its reason and never posted;
- a definite create refusal dead-letters, and a replay after the fix creates exactly one
  ticket; an uncertain create settled by an official makes its replies flow;
- the unroutable queue stays within its documented bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators import open311 as open311_sim
from govbridge_tools.simulators.mastodon import MastodonSimState
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.simulators.webhook import create_app as webhook_app

from bridge.daemon import Daemon
from bridge.reply.role import record_reply, status_reply_id
from bridge.store import NewInquiry, SqlStore, open_store
from bridge.store.errors import StoreUnavailable
from schemas.messages import ReplyPosted, ReplyRequest, ThreadRef, TicketEvent
from schemas.vocab import TicketStatus, Visibility
from tests.conftest import AMQP_URL, bridge_config, config_toml, delete_topology, eventually
from tests.conftest import running_bridge as running
from tests.store_faults import FAULT_POINTS, FaultyExecutor, crash_once
from tests.test_sla import DEPT, seed

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def hotline() -> AsyncIterator[tuple[WebhookPlatformState, str]]:
    """A webhook platform that takes replies (and counts every POST it gets)."""
    state = WebhookPlatformState(secret="s", account_handle="hotline")
    server = await AppServer(webhook_app(state)).start()
    try:
        yield state, server.url + "/replies"
    finally:
        await server.stop()


def hotline_account(reply_url: str) -> dict[str, Any]:
    return {
        "adapter": "webhook",
        "handle": "hotline",
        "department": "urban",
        "secret": "s",
        "reply_url": reply_url,
    }


def status_event(event_id: str, ticket: str, status: TicketStatus, **kw: Any) -> TicketEvent:
    return TicketEvent(
        event_id=event_id,
        department="urban",
        ticket_id=ticket,
        status=status,
        native_status=status.value.upper(),
        occurred_at=datetime.now(UTC),
        **kw,
    )


# --------------------------------------------------------------------------- 3. crashes


@pytest.mark.parametrize("point", FAULT_POINTS)
async def test_crash_between_statements_of_status_application_loses_no_reply(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str], point: str
) -> None:
    platform, reply_url = hotline
    cfg = bridge_config(
        tmp_path, departments=[{**DEPT, "approval": "none"}], accounts=[hotline_account(reply_url)]
    )
    async with running(cfg, ["reply"]) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await seed(store, 1, "complaint", "received", age=timedelta(0))
        assert isinstance(store, SqlStore)
        crashed = crash_once(store, point)
        # an official's note comes with the resolution: two replies decided together
        event = status_event("chg-1", "T1", TicketStatus.RESOLVED, note="已修复")
        await daemon.ctx.broker.publish("ticket.updated.urban", event)

        async def both_posted() -> bool:
            return len(platform.replies) >= 2

        await eventually(both_posted)
        await asyncio.sleep(0.5)  # let a duplicate show up, if there were one
        ticket = await store.get_ticket("urban", "T1")
    assert crashed == [point]
    assert daemon.metrics.crashed.labels("reply")._value.get() == 1
    assert ticket is not None and ticket.status == "resolved"
    replies = platform.reply_list()
    assert platform.requests["POST /replies"] == 2  # each reply posted exactly once
    assert sorted(r["status"] or "note" for r in replies) == ["note", "resolved"]


# --------------------------------------------------------------------------- 4. early events


@pytest.mark.parametrize(
    "refused", ["INSERT INTO reply_copies", "UPDATE replies SET state = ?, external_ids"]
)
async def test_a_store_outage_around_a_post_call_does_not_wait_out_the_lease(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str], refused: str
) -> None:
    """The store unreachable just before a reply's post call (the copy row the call needs) or
    just after it (the outcome): the outbox writes it again once the store answers instead of
    leaving the claim to its lease (10 minutes here; 2 by default). Before the call the citizen
    was not told until the lease ran out; after it, the reply stayed "posting" in the store
    (and out of the dashboard's and the ranking's counts). One reply on the platform, posted
    in the store."""
    platform, reply_url = hotline
    cfg = bridge_config(
        tmp_path,
        departments=[{**DEPT, "approval": "none"}],
        accounts=[hotline_account(reply_url)],
        outbox={"lease": "10m"},
    )
    async with running(cfg, ["reply"], in_memory=True) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await seed(store, 1, "complaint", "received", age=timedelta(0))
        assert isinstance(store, SqlStore)
        refusals: list[str] = []

        def hook(when: str, sql: str) -> None:
            if when == "before" and sql.startswith(refused) and len(refusals) < 3:
                refusals.append(sql)
                raise StoreUnavailable("ConnectionRefusedError: the store is down")

        store.db = FaultyExecutor(store.db, hook)
        event = status_event("chg-1", "T1", TicketStatus.RESOLVED)
        await daemon.ctx.broker.publish("ticket.updated.urban", event)

        async def posted() -> bool:
            replies = await store.list_replies()
            return len(platform.replies) >= 1 and [r.state for r in replies] == ["posted"]

        await eventually(posted, timeout=30)  # waited for the 10-minute lease before
        await asyncio.sleep(0.5)  # a duplicate would show now
    assert len(refusals) == 3
    assert [r["text"].count("已办结") for r in platform.reply_list()] == [1]


async def test_event_before_its_ticket_is_recorded_is_applied_once_it_is(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str]
) -> None:
    platform, reply_url = hotline
    cfg = bridge_config(
        tmp_path, departments=[{**DEPT, "approval": "none"}], accounts=[hotline_account(reply_url)]
    )
    async with running(cfg, ["reply"]) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        # the create of GB-1 is in flight: the backend answered, the bridge has not recorded it
        assert await store.claim_create("GB-1", "urban", "inq_1")
        callback = status_event("cb-1", "T1", TicketStatus.IN_PROGRESS, reference="GB-1")
        await daemon.ctx.broker.publish("ticket.updated.urban", callback)

        async def retried() -> bool:
            return bool(daemon.metrics.retried.labels("reply", "200ms")._value.get() >= 1)

        await eventually(retried)
        assert platform.replies == {}
        await seed(store, 1, "complaint", "received", age=timedelta(0))  # the create lands
        await store.set_create_state("GB-1", "created", ticket_id="T1")

        async def applied() -> bool:
            return len(platform.replies) == 1

        await eventually(applied)
        ticket = await store.get_ticket("urban", "T1")
    assert ticket is not None and ticket.status == "in_progress"
    (reply,) = platform.reply_list()
    assert reply["status"] == "in_progress"


async def test_event_for_a_ticket_the_bridge_never_created_is_ignored(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str]
) -> None:
    platform, reply_url = hotline
    cfg = bridge_config(
        tmp_path, departments=[{**DEPT, "approval": "none"}], accounts=[hotline_account(reply_url)]
    )
    async with running(cfg, ["reply"]) as daemon:
        assert daemon.ctx is not None
        await daemon.ctx.broker.publish(
            "ticket.updated.urban", status_event("x-1", "FOREIGN-9", TicketStatus.RESOLVED)
        )

        async def handled() -> bool:
            return bool(daemon.metrics.acked.labels("reply")._value.get() >= 1)

        await eventually(handled)
    assert daemon.metrics.retried.labels("reply", "200ms")._value.get() == 0
    assert platform.replies == {}


# --------------------------------------------------------------------------- 5. outboxes


def reply_request(n: int, *, account: str = "hotline", platform: str = "webhook") -> ReplyRequest:
    return ReplyRequest(
        reply_id=f"rep_{n:04d}",
        inquiry_id=f"inq_{n:04d}",
        platform=platform,
        account=account,
        department="urban",
        thread=ThreadRef(root_id=f"m{n}", reply_to={"external_id": f"m{n}"}),
        citizen_handle=f"citizen{n}",
        visibility=Visibility.PUBLIC,
        text=f"您好，您反映的问题已受理，工单号T{n:05d}。",
        status=TicketStatus.RECEIVED,
        ticket_id=f"T{n:05d}",
    )


async def test_two_outbox_processes_on_one_store_post_500_replies_once_each(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str]
) -> None:
    platform, reply_url = hotline
    n = 500
    cfg = bridge_config(
        tmp_path,
        departments=[{**DEPT, "approval": "none"}],
        accounts=[hotline_account(reply_url)],
        outbox={"concurrency": 8, "scan_every": "200ms"},
    )
    path = tmp_path / "gb.toml"
    path.write_text(config_toml(cfg), encoding="utf-8")
    store = await open_store(cfg.store.url)
    for i in range(n):
        assert await record_reply(store, reply_request(i), "none")
    await store.close()
    env = {**os.environ, "GOVBRIDGE_AMQP_URL": AMQP_URL}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.cli",
            "run",
            "-c",
            str(path),
            "--roles",
            "reply",
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"outbox{k}.log").open("wb"),
        )
        for k in range(2)
    ]
    try:

        async def all_posted() -> bool:
            return len(platform.replies) >= n

        await eventually(all_posted, timeout=120)
        await asyncio.sleep(1.0)  # a duplicate would show up now
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            await asyncio.wait_for(p.wait(), 30)
        await delete_topology(cfg.broker)
    store = await open_store(cfg.store.url)
    stored = await store.list_replies()
    owners = await store.db.fetchall("SELECT lease_owner, COUNT(*) AS n FROM replies GROUP BY 1")
    await store.close()
    assert platform.requests["POST /replies"] == n  # no reply was sent twice, even once
    assert len(platform.replies) == n
    assert Counter(s.state for s in stored) == {"posted": n}
    assert len([o for o in owners if o["lease_owner"]]) == 2  # both processes did post
    assert all(p.returncode == 0 for p in procs)


async def test_reply_committed_after_the_client_timed_out_is_posted_once(tmp_path: Path) -> None:
    """The server ignores Idempotency-Key and answers only after the client gave up: the
    outbox looks for its own earlier reply in the thread before posting again."""
    async with MastodonSimState(filter_private_mentions=False) as masto:
        masto.ignore_idempotency_key = True
        masto.slow_commit = 2.0
        citizen = await masto.create_citizen("citizen1")
        status = await masto.mention(citizen, "路灯坏了")
        cfg = bridge_config(
            tmp_path,
            departments=[{**DEPT, "approval": "none"}],
            accounts=[{**masto.account_config("urban"), "poll": "0s"}],
            outbox={"lease": "2s"},  # a platform call is cut off after 1 s
        )
        async with running(cfg, ["reply"]) as daemon:
            assert daemon.ctx is not None
            request = ReplyRequest(
                reply_id="rep_slow",
                inquiry_id="inq_slow",
                platform="mastodon",
                account=masto.official,
                department="urban",
                thread=ThreadRef(
                    root_id=str(status["id"]),
                    reply_to={"status_id": str(status["id"]), "acct": citizen.acct},
                ),
                citizen_handle=citizen.acct,
                visibility=Visibility.PUBLIC,
                text="您好，您反映的问题已受理，工单号T1。",
                status=TicketStatus.RECEIVED,
                ticket_id="T1",
            )
            assert await record_reply(daemon.ctx.store, request, "none")
            await daemon.ctx.broker.publish("reply.requested.mastodon", request)

            async def settled() -> bool:
                stored = await daemon.ctx.store.get_reply("rep_slow")  # type: ignore[union-attr]
                return stored is not None and stored.state == "posted"

            await eventually(settled, timeout=30)
            stored = await daemon.ctx.store.get_reply("rep_slow")
            await asyncio.sleep(masto.slow_commit + 0.5)  # anything in flight lands
        replies = [r for r in await masto.official_replies() if r["in_reply_to_id"]]
    assert stored is not None and stored.post_attempts >= 2  # the first attempt timed out
    assert stored.outcome == "already_posted"  # found in the thread, not posted again
    assert len(replies) == 1 and replies[0]["in_reply_to_id"] == str(status["id"])


# --------------------------------------------------------------------------- 6. forgeries


async def read_dead(cfg: Any, stage: str) -> list[tuple[str, dict[str, Any]]]:
    conn = await aio_pika.connect(AMQP_URL)
    out = []
    async with conn:
        ch = await conn.channel()
        queue = await ch.get_queue(f"{cfg.broker.exchange}.{stage}.dead")
        while (msg := await queue.get(fail=False, no_ack=True)) is not None:
            out.append((str(msg.headers.get("x-govbridge-reason")), json.loads(msg.body)))
    return out


async def test_forged_reply_requests_are_dead_lettered_and_never_posted(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str]
) -> None:
    platform, reply_url = hotline
    cfg = bridge_config(
        tmp_path,
        departments=[{**DEPT, "approval": "all-manual"}],
        accounts=[hotline_account(reply_url)],
    )
    async with running(cfg, ["reply"]) as daemon:
        assert daemon.ctx is not None
        await seed(daemon.ctx.store, 1, "complaint", "received", age=timedelta(0))
        # the bridge composes a real reply: it waits for an official's approval
        await daemon.ctx.broker.publish(
            "ticket.updated.urban", status_event("chg-1", "T1", TicketStatus.IN_PROGRESS)
        )
        real_id = status_reply_id("inq_1", TicketStatus.IN_PROGRESS, 0)

        async def composed() -> bool:
            return await daemon.ctx.store.get_reply(real_id) is not None  # type: ignore[union-attr]

        await eventually(composed)
        # anyone who can publish to the broker tries to have replies posted
        invented = reply_request(7)
        unapproved = reply_request(1).model_copy(
            update={"reply_id": real_id, "text": "已办结，无需再反映。"}
        )
        for forged in (invented, unapproved):
            await daemon.ctx.broker.publish("reply.requested.webhook", forged)

        await eventually(lambda: _dead_in(cfg, "outbox", 2))
        await asyncio.sleep(0.5)
        stored = await daemon.ctx.store.get_reply(real_id)
        dead = await read_dead(cfg, "outbox")
    assert platform.requests["POST /replies"] == 0
    assert stored is not None and stored.state == "awaiting_approval"
    reasons = sorted(reason for reason, _ in dead)
    assert any("was not composed by the bridge" in r for r in reasons)
    assert any("is not approved (awaiting_approval)" in r for r in reasons)


# --------------------------------------------------------------------------- 8. refusals


async def test_invalid_service_dead_letters_and_a_replay_after_the_fix_creates_one_ticket(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str]
) -> None:
    platform, reply_url = hotline
    backend = await open311_sim.Open311Server(open311_sim.Open311State(agency="市城管委")).start()
    good = open311_sim.demo_ticketing_config(backend.base_url)
    bad = {**good, "service_codes": dict.fromkeys(good["service_codes"], "NO-SUCH")}

    def config(ticketing: dict[str, Any]) -> Any:
        return bridge_config(
            tmp_path,
            departments=[{**DEPT, "approval": "none", "ticketing": {**ticketing, "poll": "0s"}}],
            accounts=[{**hotline_account(reply_url), "platform": "hotline"}],
            broker={"exchange": exchange},
        )

    exchange = f"gbtest-refuse-{os.getpid()}"
    broken, fixed = config(bad), config(good)
    try:
        daemon = Daemon(broken, ["ingest", "triage", "ticketing", "reply", "http"])
        await daemon.start()
        try:
            platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
            assert await platform.push([platform.citizen_item(1)]) == 202
            await eventually(lambda: _dead_in(broken, "ticketing", 1))
            assert daemon.ctx is not None
            (attempt,) = await daemon.ctx.store.list_create_attempts()
        finally:
            await daemon.stop()
        assert attempt.state == "rejected"  # the claim is released
        assert "NO-SUCH" in (attempt.detail or "")
        assert backend.state.tickets == {}

        # the operator fixes the service codes, restarts, and replays the dead letter
        path = tmp_path / "fixed.toml"
        path.write_text(config_toml(fixed), encoding="utf-8")
        daemon = Daemon(fixed, ["triage", "ticketing", "reply"])
        await daemon.start()
        try:
            env = {**os.environ, "GOVBRIDGE_AMQP_URL": AMQP_URL}
            replay = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "bridge.cli", "dlq", "replay", "-c", str(path),
                 "--stage", "ticketing"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert replay.returncode == 0, replay.stdout + replay.stderr

            async def answered() -> bool:
                return len(backend.state.tickets) == 1 and len(platform.replies) == 1

            await eventually(answered)
            await asyncio.sleep(0.5)
        finally:
            await daemon.stop()
        assert len(backend.state.tickets) == 1  # exactly one ticket
        assert platform.reply_list()[0]["status"] == "received"
    finally:
        await backend.close()
        await delete_topology(fixed.broker)


async def _dead_in(cfg: Any, stage: str, n: int) -> bool:
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        queue = await ch.declare_queue(f"{cfg.broker.exchange}.{stage}.dead", passive=True)
        return bool(queue.declaration_result.message_count >= n)


async def test_an_attached_reconciliation_makes_its_replies_flow(
    tmp_path: Path, hotline: tuple[WebhookPlatformState, str]
) -> None:
    platform, reply_url = hotline
    cfg = bridge_config(
        tmp_path,
        departments=[{**DEPT, "approval": "none"}],
        accounts=[{**hotline_account(reply_url), "platform": "hotline"}],
    )
    async with running(cfg, ["ticketing", "reply", "http"]) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        await store.record_inquiry(
            NewInquiry(
                inquiry_id="inq_r",
                platform="hotline",
                account="hotline",
                kind="mention",
                thread_key="hotline:hotline:m1",
                state="needs_reconciliation",
                department="urban",
                category="complaint",
                citizen_handle="citizen1",
                visibility="public",
                thread_json=ThreadRef(
                    root_id="m1", reply_to={"external_id": "m1"}
                ).model_dump_json(),
            )
        )
        command = {
            "command_id": "cmd_r",
            "action": "create",
            "department": "urban",
            "category": "complaint",
            "reference": "GB-R",
            "description": "路灯坏了",
            "public_text": "路灯坏了",
            "inquiry": {
                "inquiry_id": "inq_r",
                "platform": "hotline",
                "account": "hotline",
                "kind": "mention",
                "external_id": "m1",
                "author": {"id": "1", "handle": "citizen1"},
                "text": "路灯坏了",
                "created_at": datetime.now(UTC).isoformat(),
                "thread": {"root_id": "m1", "reply_to": {"external_id": "m1"}},
            },
        }
        await store.claim_create("GB-R", "urban", "inq_r", command_json=json.dumps(command))
        await store.set_create_state("GB-R", "needs_reconciliation", detail="cannot search")
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.get(f"{base}/api/reconciliation") as resp:
                listed = (await resp.json())["needs_reconciliation"]
            assert [r["inquiry_id"] for r in listed] == ["inq_r"]
            async with http.post(
                f"{base}/api/reconciliation/inq_r", json={"action": "attach"}
            ) as resp:
                assert resp.status == 400  # attach needs the ticket id
            async with http.post(
                f"{base}/api/reconciliation/inq_r",
                json={"action": "attach", "ticket_id": "T-777"},
            ) as resp:
                assert resp.status == 200
                settled = await resp.json()
            async with http.post(
                f"{base}/api/reconciliation/inq_r",
                json={"action": "not_created"},
            ) as resp:
                assert resp.status == 409  # settled once

            async def replied() -> bool:
                return len(platform.replies) == 1

            await eventually(replied)
        inquiry = await store.get_inquiry("inq_r")
    assert settled["state"] == "created" and settled["decided_by"] == "admin-token"
    assert settled["decided_at"]
    assert inquiry is not None and inquiry.state == "ticketed"
    (reply,) = platform.reply_list()
    assert reply["ticket_id"] == "T-777" and reply["status"] == "received"


# --------------------------------------------------------------------------- 9. unroutable


async def test_unroutable_queue_holds_no_more_than_its_bound_after_10000_replies(
    tmp_path: Path,
) -> None:
    """Nobody listens to reply.posted.* here: what the outbox announces lands in the
    unroutable queue, which keeps at most ``unroutable_max_length`` (documented: 1000)."""
    cfg = bridge_config(tmp_path, departments=[DEPT])
    assert cfg.broker.unroutable_max_length == 1000
    async with running(cfg, []) as daemon:
        assert daemon.ctx is not None
        broker = daemon.ctx.broker
        posted = [
            (
                "reply.posted.weibo",
                ReplyPosted(
                    reply_id=f"rep_{i}",
                    inquiry_id=f"inq_{i}",
                    platform="weibo",
                    account="acc",
                    external_ids=[str(i)],
                ),
            )
            for i in range(10_000)
        ]
        for start in range(0, len(posted), 500):
            await broker.publish_many(posted[start : start + 500])
        conn = await aio_pika.connect(AMQP_URL)
        async with conn:
            ch = await conn.channel()
            queue = await ch.declare_queue(broker.topology.unroutable_queue, passive=True)
            held = queue.declaration_result.message_count or 0
    assert 0 < held <= cfg.broker.unroutable_max_length
