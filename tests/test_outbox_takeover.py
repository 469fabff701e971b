"""A reply claim tied to its owner's life (issue 25): a process SIGKILLed in the middle of a
post leaves its claim to another process at once, not after the outbox's fixed ``lease`` (ten
minutes here, longer than the test).

Two ``govbridge run --roles reply`` processes share one store (SQLite, then PostgreSQL). The
platform (a webhook reply endpoint) holds the first POST it gets and never commits it; the
process that sent it is SIGKILLed while it waits for the answer. Counted on the platform: the
POSTs it got, from which process (the adapters' User-Agent names the pid), and the replies it
stored.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.testing import Simulators

from bridge.reply.role import record_reply
from bridge.store import SqlStore, open_store
from schemas.messages import ThreadRef
from tests.conftest import AMQP_URL, bridge_config, config_toml, delete_topology, eventually
from tests.test_delivery import hotline_account, reply_request
from tests.test_sla import DEPT

ROOT = Path(__file__).resolve().parent.parent


async def test_a_dead_owners_claim_is_taken_at_once_and_its_owner_can_no_longer_settle_it(
    store: SqlStore,
) -> None:
    """The store's side: a claim is taken before its lease runs out only when its owner is
    named dead; the owner, should it still be alive after all (its lease connection cut),
    can then neither finish nor give back the claim that is no longer its own."""
    for n in (1, 2):  # two replies of one inquiry: the second waits for the first
        await store.add_reply(
            reply_id=f"t{n}",
            inquiry_id="inq_t",
            platform="webhook",
            account="hotline",
            department="d",
            status=("received", "in_progress")[n - 1],
            templated=True,
            state="approved",
            request_json="{}",
        )
    t0 = datetime(2031, 5, 1, 10, 0, tzinfo=UTC)
    lease = timedelta(minutes=10)

    first = await store.claim_reply("webhook", "hotline", owner="a", lease=lease, now=t0)
    assert first.reply is not None and first.reply.reply_id == "t1"
    assert await store.live_claim_owners("webhook", "hotline", t0) == ["a"]
    alive = await store.claim_reply("webhook", "hotline", owner="b", lease=lease, now=t0)
    assert alive.reply is None  # a lives: its claim holds, and t2 waits behind it
    await store.start_copy("t1")  # a made its call (the row is written before it)
    taken = await store.claim_reply(
        "webhook", "hotline", owner="b", lease=lease, now=t0, dead_owners=["a"]
    )
    assert taken.reply is not None and taken.reply.reply_id == "t1"
    assert taken.reply.uncertain and taken.reply.post_attempts == 2
    assert not await store.finish_post(first, state="posted", external_ids=["x"], outcome="posted")
    await store.release_post(first, uncertain=False)  # no effect: not a's any more
    row = await store.get_reply("t1")
    assert row is not None and row.state == "posting"
    assert await store.live_claim_owners("webhook", "hotline", t0) == ["b"]
    assert await store.finish_post(taken, state="posted", external_ids=["y"], outcome="posted")
    row = await store.get_reply("t1")
    assert row is not None and (row.state, row.external_ids) == ("posted", ["y"])
    # b dies in turn, before its call for t2: c takes t2 over, and not as uncertain (no call
    # was made, so there is nothing to look for before posting)
    second = await store.claim_reply("webhook", "hotline", owner="b", lease=lease, now=t0)
    assert second.reply is not None and second.reply.reply_id == "t2"
    again = await store.claim_reply(
        "webhook", "hotline", owner="c", lease=lease, now=t0, dead_owners=["b"]
    )
    assert again.reply is not None and again.reply.reply_id == "t2"
    assert not again.reply.uncertain and again.reply.post_attempts == 2


async def test_a_post_cut_off_by_sigkill_is_posted_once_by_another_process_within_seconds(
    tmp_path: Path, store_url: str
) -> None:
    state = WebhookPlatformState(secret="s", account_handle="hotline")
    posts: list[tuple[int, float]] = []  # (pid, monotonic) of every POST /replies
    held = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def post_reply(request: web.Request) -> web.Response:
        raw = await request.read()
        found = re.search(r"pid (\d+)", request.headers.get("User-Agent", ""))
        pid = int(found.group(1)) if found else -1
        posts.append((pid, time.monotonic()))
        if not held.done():  # the first: held, never committed (its client will be dead)
            held.set_result(pid)
            await release.wait()
            return web.json_response({"error": "gone"}, status=503)
        return state.receive_reply(request.headers, raw)

    app = web.Application()
    app.router.add_post("/replies", post_reply)
    server = await AppServer(app).start()
    cfg = bridge_config(
        tmp_path,
        departments=[{**DEPT, "approval": "none"}],
        accounts=[hotline_account(server.url + "/replies")],
        store={"url": store_url},
        outbox={"lease": "10m", "scan_every": "200ms"},
    )
    path = tmp_path / "gb.toml"
    path.write_text(config_toml(cfg), encoding="utf-8")
    store = await open_store(cfg.store.url)
    assert await record_reply(store, reply_request(1), "none")
    procs = await two_outboxes(path, tmp_path)
    try:
        holder = await asyncio.wait_for(held, 60)
        (victim,) = [p for p in procs if p.pid == holder]
        (other,) = [p for p in procs if p.pid != holder]
        claimed = await store.get_reply("rep_0001")
        assert claimed is not None and claimed.state == "posting"
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await victim.wait()

        async def stored() -> bool:
            return len(state.replies) >= 1

        await eventually(stored, timeout=30)
        took = posts[-1][1] - killed_at

        async def recorded() -> bool:
            reply = await store.get_reply("rep_0001")
            return reply is not None and reply.state == "posted"

        await eventually(recorded, timeout=10)
        await asyncio.sleep(0.5)  # a second post would show up now
        reply = await store.get_reply("rep_0001")
        copies = await store.list_copies("rep_0001")
    finally:
        release.set()
        for p in procs:
            if p.returncode is None:
                p.terminate()
        for p in procs:
            await asyncio.wait_for(p.wait(), 30)
        await store.close()
        await server.stop()
        await delete_topology(cfg.broker)
    print(f"\n{store_url.split(':')[0]}: posted by the other process {took:.2f} s after the kill")
    assert [pid for pid, _ in posts] == [victim.pid, other.pid]  # one cut off, one posted
    assert len(state.replies) == 1  # the citizen sees it once
    assert took < 10  # seconds, not the ten-minute lease
    assert reply is not None and reply.post_attempts == 2 and reply.uncertain
    assert [(c.attempt, c.answer) for c in copies] == [(1, "calling"), (2, "posted")]


async def test_a_killed_post_the_server_commits_anyway_is_found_not_posted_again(
    tmp_path: Path, sims: Simulators
) -> None:
    """Mastodon (quirks: it commits a status whatever became of the client, and ignores
    ``Idempotency-Key``): the SIGKILLed process's post is committed after the kill. The
    process that takes the claim over looks in the thread before posting (the settle steps,
    here 0.5, 1, 2, 4 s) and finds it: one POST, one visible reply, within seconds."""
    masto = (await sims.mastodon(quirks=True, filter_private_mentions=False)).state
    citizen = await masto.create_citizen("shimin_kill")
    status = await masto.mention(citizen, "建国门桥下的积水一直没人处理")
    gate = asyncio.Event()
    masto.commit_late(gate)  # the first POST waits for the gate, then is committed
    account = {**masto.account_config("urban"), "poll": "0s", "timeout": "20s"}
    cfg = bridge_config(
        tmp_path,
        departments=[{**DEPT, "approval": "none"}],
        accounts=[account],
        outbox={"lease": "10m", "scan_every": "200ms", "settle": ["500ms", "1s", "2s", "4s"]},
    )
    path = tmp_path / "gb.toml"
    path.write_text(config_toml(cfg), encoding="utf-8")
    request = reply_request(2).model_copy(
        update={
            "platform": "mastodon",
            "account": masto.official,
            "thread": ThreadRef(
                root_id=str(status["id"]),
                reply_to={"status_id": str(status["id"]), "acct": citizen.acct},
            ),
            "citizen_handle": citizen.acct,
        }
    )
    store = await open_store(cfg.store.url)
    assert await record_reply(store, request, "none")
    logs = [tmp_path / f"outbox{k}.log" for k in range(2)]
    procs = await two_outboxes(path, tmp_path)
    try:

        async def in_flight() -> bool:
            return masto.posts_in_flight == 1

        await eventually(in_flight, timeout=60)
        rows = await store.db.fetchall(
            "SELECT lease_owner FROM replies WHERE reply_id = ?", (request.reply_id,)
        )
        owner = str(rows[0]["lease_owner"])
        (victim,) = [p for p, log in zip(procs, logs, strict=True) if owner in log.read_text()]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await victim.wait()
        gate.set()  # the server commits the dead client's post now

        async def recorded() -> bool:
            reply = await store.get_reply(request.reply_id)
            return reply is not None and reply.state == "posted"

        await eventually(recorded, timeout=30)
        took = time.monotonic() - killed_at
        await masto.posts_settled()
        await asyncio.sleep(0.5)  # a second post would show up now
        reply = await store.get_reply(request.reply_id)
        visible = [r for r in await masto.official_replies() if r["in_reply_to_id"]]
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
        for p in procs:
            await asyncio.wait_for(p.wait(), 30)
        await store.close()
        await delete_topology(cfg.broker)
    print(f"\nmastodon: found by the other process {took:.2f} s after the kill")
    assert len(masto.posts) == 1  # one POST ever: the killed process's
    assert len(visible) == 1 and visible[0]["in_reply_to_id"] == str(status["id"])
    assert reply is not None and reply.outcome == "already_posted"
    assert took < 10


async def two_outboxes(path: Path, tmp_path: Path) -> list[asyncio.subprocess.Process]:
    """Two bridge processes running only the reply role on one config, each logging to
    ``outbox<k>.log`` beside it."""
    env = {**os.environ, "GOVBRIDGE_AMQP_URL": AMQP_URL}
    return [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bridge.cli", "run", "-c", str(path), "--roles", "reply"),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"outbox{k}.log").open("wb"),
        )
        for k in range(2)
    ]
