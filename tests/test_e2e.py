"""End to end through the real RabbitMQ: 520 citizens' inquiries (550 deliveries) from a Weibo
account and a pushing 12345 platform, every role of an in-process bridge, an Open311 and a REST
ticket system.

The mix is known: noise (thanks, emoji, spam, empty, repeated characters), follow-ups in the
threads of open tickets, private messages, personal data, and platform re-deliveries of the
same pushes. Officials move every ticket through its lifecycle in the simulators. Counts are
checked exactly against what the test did (never against what the bridge reports about itself):
tickets in the backends = routed inquiries, follow-ups appended, replies = tickets × applied
statuses (+ officials' notes), zero duplicate tickets or replies, no phone or ID number in any
public reply.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.kit import AppServer
from govbridge_tools.simulators import open311 as open311_sim
from govbridge_tools.simulators.open311 import Open311Server, Open311State
from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.simulators.webhook import create_app as webhook_app
from govbridge_tools.simulators.weibo import Limits, WeiboState
from govbridge_tools.simulators.weibo import create_app as weibo_app

from bridge.privacy import pii
from tests.conftest import bridge_config, eventually, running_bridge

WEIBO = "北京交通"
HOTLINE = "hotline12345"
PUSH_SECRET = "e2e-push-secret"
CALLBACK_SECRET = "e2e-callback-secret"

# The mix: 520 inquiries from citizens (480 first messages, 40 follow-ups), and 30 more
# deliveries when the pushing platform sends three batches again.
WEIBO_NEW, WEIBO_FOLLOW_UPS, WEIBO_NOISE = 230, 20, 20
HOTLINE_NEW, HOTLINE_FOLLOW_UPS, HOTLINE_NOISE = 210, 20, 20
HOTLINE_BATCH, HOTLINE_REDELIVERED_BATCHES = 10, 3
PRIVATE_EVERY = 9  # every 9th new hotline inquiry is a private message

PLACES = (
    "朝阳路",
    "建国门外大街",
    "西直门",
    "国贸桥",
    "望京西园",
    "回龙观",
    "天通苑",
    "五道口",
    "方庄",
    "石景山",
    "亦庄",
    "通州北苑",
)
TRANSPORT_TEXTS = (
    "{place}公交站的站牌被车撞倒了，已经{n}天没人管，太危险了",
    "地铁{line}号线{place}站早高峰太挤了，根本上不去，能不能加开班次？",
    "请问{place}附近办理学生公交卡需要带什么材料？",
    "{place}路口的红绿灯坏了{n}天，车辆乱行很危险，请尽快修复",
    "投诉{place}的出租车拒载，车牌京B{plate}，我的电话{phone}，请回电",
    "建议在{place}地铁站出口增设共享单车停放点，现在乱停乱放",
    "表扬{line}路公交司机，今天在{place}帮老人搬行李上车，很暖心",
)
URBAN_TEXTS = (
    "{place}小区北门路灯坏了{n}天，晚上很黑，求助尽快维修",
    "{place}的垃圾桶{n}天没人清运了，臭气熏天，怎么办",
    "举报{place}某工地夜间施工到凌晨两点，严重扰民，没有夜间施工许可",
    "{place}人行道上的井盖松动，已经有{n}个老人差点摔倒",
    "我的身份证号{id_number}，在{place}办理门前三包登记一直不通过，想咨询需要什么材料",
    "{place}门口占道经营，晚上烧烤油烟很大，投诉好几次了",
)
FOLLOW_UP_TEXTS = (
    "补充一下：{place}这边早上七点到八点最严重，希望尽快解决",
    "补充：具体位置在{place}路口东侧，靠近公交站",
    "再补充一点，{place}周边的居民都反映过这个问题",
)
NOISE_TEXTS = (
    "谢谢",
    "👍👍👍",
    "加微信 fp{n} 代开发票，兼职日结，刷单返利",
    "哈哈哈哈哈哈",
    "",
)

# What officials do, step by step. A tuple carries the official's public note.
Step = tuple[str, str | None]
TRANSPORT_PLAN: list[Step] = [
    ("internal_referral", None),
    ("in_progress", None),
    ("fixed", "已协调运营公司处理完毕，如有疑问可拨打13911112222咨询。"),
]
URBAN_PLAN: list[Step] = [("ASSIGNED", None), ("IN_PROGRESS", None), ("DONE", "已派人处理完毕。")]
URBAN_REJECTED_PLAN: list[Step] = [
    ("ASSIGNED", None),
    ("REJECTED", "经核实该事项属于区级部门职责，已告知您反映渠道。"),
]


def id_number(n: int) -> str:
    body = f"110105{1950 + n % 50}0{1 + n % 9}1{n % 10}{n % 7}{n % 10}{(n * 7) % 10}"
    return body + pii.id_check_char(body)


def phone(n: int) -> str:
    return f"13{8 - n % 3}{n:08d}"


def inquiry_text(templates: tuple[str, ...], n: int) -> str:
    return templates[n % len(templates)].format(
        place=PLACES[n % len(PLACES)],
        n=2 + n % 6,
        line=1 + n % 15,
        plate=f"{n:05d}",
        phone=phone(n),
        id_number=id_number(n),
    )


@dataclass
class World:
    weibo: WeiboState
    weibo_url: str
    hotline: WebhookPlatformState
    hotline_url: str
    open311: Open311State
    open311_url: str
    rest: RestTicketState
    rest_url: str
    servers: list[Any] = field(default_factory=list)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    weibo = WeiboState(
        official_name=WEIBO, limits=Limits(calls=1_000_000, posts=1000, comments=1_000_000)
    )
    weibo_server = await AppServer(weibo_app(weibo)).start()
    hotline = WebhookPlatformState(secret=PUSH_SECRET, account_handle=HOTLINE)
    hotline_server = await AppServer(webhook_app(hotline)).start()
    open311 = await Open311Server(Open311State(agency="市交通委")).start()
    rest = RestSimServer(RestTicketState(callback_secret=CALLBACK_SECRET))
    await rest.start()
    w = World(
        weibo,
        weibo_server.url,
        hotline,
        hotline_server.url,
        open311.state,
        open311.base_url,
        rest.state,
        rest.url,
        [weibo_server, hotline_server, open311, rest],
    )
    try:
        yield w
    finally:
        for server in w.servers:
            await (server.stop() if isinstance(server, AppServer) else server.close())


def config(tmp_path: Path, w: World) -> Any:
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                "sla": {"consultation": "2wd", "complaint": "15wd", "other": "10wd"},
                "ticketing": {
                    **open311_sim.demo_ticketing_config(w.open311_url),
                    "poll": "300ms",
                    "poll_overlap": "5m",
                },
            },
            {
                "id": "urban",
                "name": "市城管委",
                "approval": "none",
                "sla": {"help": "3wd", "complaint": "13wd", "other": "10wd"},
                # Signed callbacks and polling both deliver every change: dedupe must hold.
                "ticketing": {
                    **demo_ticketing_config(w.rest_url),
                    "poll": "500ms",
                    "callback_secret": CALLBACK_SECRET,
                },
            },
        ],
        accounts=[
            {
                "adapter": "weibo",
                "handle": WEIBO,
                "department": "transport",
                "token": w.weibo.token,
                "base_url": w.weibo_url + "/2/",
                "poll": "300ms",
                "page_size": 200,
                "reply_limit": {"max_calls": 100_000, "period": "1s"},
            },
            {
                "adapter": "webhook",
                "handle": HOTLINE,
                "department": "urban",
                "secret": PUSH_SECRET,
                "reply_url": w.hotline_url + "/replies",
                "platform": HOTLINE,
            },
        ],
    )


@dataclass
class Script:
    """What the test sent, kept to compute every expectation."""

    weibo_posts: list[int] = field(default_factory=list)  # official post of each new inquiry
    weibo_citizens: list[str] = field(default_factory=list)  # who wrote it
    weibo_comments: list[int] = field(default_factory=list)  # their comment
    hotline_items: list[dict[str, Any]] = field(default_factory=list)
    noise: int = 0
    follow_ups: int = 0
    redelivered: int = 0


def send_weibo(w: World, script: Script) -> None:
    every = (WEIBO_NEW + WEIBO_NOISE) // WEIBO_NOISE
    noise_at = {5 + k * every for k in range(WEIBO_NOISE)}
    for n in range(WEIBO_NEW + WEIBO_NOISE):
        post = w.weibo.add_official_post(f"【通告】第{n}期交通服务公告，欢迎留言。")
        if n in noise_at:
            text = NOISE_TEXTS[n % len(NOISE_TEXTS)].format(n=n)
            script.noise += 1
        else:
            text = inquiry_text(TRANSPORT_TEXTS, n)
            script.weibo_posts.append(post.id)
            script.weibo_citizens.append(f"微博市民{n:04d}")
        c = w.weibo.add_citizen_comment(text, citizen=f"微博市民{n:04d}", status_id=post.id)
        if n not in noise_at:
            script.weibo_comments.append(c.id)


async def send_hotline(w: World, script: Script) -> None:
    every = (HOTLINE_NEW + HOTLINE_NOISE) // HOTLINE_NOISE
    noise_at = {3 + k * every for k in range(HOTLINE_NOISE)}
    batch: list[dict[str, Any]] = []
    docs: list[dict[str, Any]] = []
    for n in range(HOTLINE_NEW + HOTLINE_NOISE):
        author = {"id": f"{880000 + n}", "handle": f"热线市民{n:04d}"}
        if n in noise_at:
            text = NOISE_TEXTS[n % len(NOISE_TEXTS)].format(n=n)
            item = w.hotline.citizen_item(n, text=text, author=author)
            script.noise += 1
        else:
            private = len(script.hotline_items) % PRIVATE_EVERY == 4
            extra = {"kind": "direct_message", "visibility": "private"} if private else {}
            item = w.hotline.citizen_item(
                n, text=inquiry_text(URBAN_TEXTS, n), author=author, **extra
            )
            script.hotline_items.append(item)
        batch.append(item)
        if len(batch) == HOTLINE_BATCH:
            # a push unanswered in 5 s is sent again, as platforms do (load 13 made one wait)
            assert await w.hotline.push(batch, retries=3) == 202
            docs.append({"items": batch})
            batch = []
    if batch:
        assert await w.hotline.push(batch, retries=3) == 202
        docs.append({"items": batch})
    # The platform delivers some pushes again (e.g. it missed our 202).
    for doc in docs[1 : 1 + HOTLINE_REDELIVERED_BATCHES]:
        assert await w.hotline.push_raw(doc) == 202
        script.redelivered += len(doc["items"])


async def send_follow_ups(w: World, script: Script) -> None:
    """Citizens add to their own conversations whose tickets are open: appended, never new
    tickets. On Weibo half answer their own comment, half the bridge's answer to it."""
    for k in range(WEIBO_FOLLOW_UPS):
        own, citizen = script.weibo_comments[k * 7], script.weibo_citizens[k * 7]
        text = FOLLOW_UP_TEXTS[k % len(FOLLOW_UP_TEXTS)].format(place=PLACES[k % len(PLACES)])
        if k % 2:
            answer = next(c for c in weibo_replies(w) if c.reply_cid == own)
            w.weibo.add_citizen_comment(text, citizen=citizen, reply_cid=answer.id)
        else:
            w.weibo.add_citizen_comment(text, citizen=citizen, reply_cid=own)
        script.follow_ups += 1
    items = []
    for k in range(HOTLINE_FOLLOW_UPS):
        original = script.hotline_items[k * 9 + 1]
        assert original.get("kind", "mention") == "mention"
        text = FOLLOW_UP_TEXTS[k % len(FOLLOW_UP_TEXTS)].format(place=PLACES[k % len(PLACES)])
        items.append(
            w.hotline.citizen_item(
                1000 + k,
                text=text,
                author=original["author"],
                thread={"root_id": original["thread"]["root_id"]},
            )
        )
        script.follow_ups += 1
    assert await w.hotline.push(items) == 202


@dataclass
class Officials:
    """Officials moving tickets in the backends; what they did is the expectation."""

    w: World
    plans: dict[tuple[str, str], list[Step]] = field(default_factory=dict)
    done: dict[tuple[str, str], int] = field(default_factory=dict)
    acks: Counter[str] = field(default_factory=Counter)  # follow-ups acknowledged, per dept

    def assign(self) -> None:
        """A plan for every ticket the backends hold (every 10th REST ticket is rejected)."""
        for ticket_id in self.w.open311.tickets:
            self.plans[("transport", ticket_id)] = TRANSPORT_PLAN
        for n, ticket_id in enumerate(self.w.rest.tickets):
            self.plans[("urban", ticket_id)] = URBAN_REJECTED_PLAN if n % 10 == 0 else URBAN_PLAN
        self.done = dict.fromkeys(self.plans, 0)

    async def step(self, index: int) -> int:
        moved = 0
        for (dept, ticket_id), plan in self.plans.items():
            if index >= len(plan):
                continue
            status, note = plan[index]
            if dept == "transport":
                self.w.open311.set_status(ticket_id, status, note)
            else:
                await self.w.rest.move(ticket_id, status, note)
            self.done[(dept, ticket_id)] = index + 1
            moved += 1
        return moved

    def expected_replies(self, dept: str) -> int:
        """Per ticket: "received" at creation, one per forward move, one per public note;
        and one acknowledgement per follow-up."""
        total = self.acks[dept]
        for key, plan in self.plans.items():
            if key[0] == dept:
                steps = plan[: self.done[key]]
                total += 1 + len(steps) + sum(1 for _, note in steps if note)
        return total


def weibo_replies(w: World) -> list[Any]:
    return [c for c in w.weibo.comments.values() if c.user_id == w.weibo.official_uid]


async def wait_for(what: str, predicate: Callable[[], Awaitable[bool]], timeout: float) -> float:
    started = time.monotonic()
    try:
        await eventually(predicate, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"not reached within {timeout} s: {what}") from None
    return time.monotonic() - started


async def test_520_inquiries_end_to_end_counts_exact(tmp_path: Path, world: World) -> None:
    w = world
    script = Script()
    officials = Officials(w)
    timings: dict[str, float] = {}
    began = time.monotonic()
    async with running_bridge(config(tmp_path, w)) as daemon:
        assert daemon.ctx is not None
        store = daemon.ctx.store
        base = f"http://127.0.0.1:{daemon.http_port}"
        w.hotline.push_url = f"{base}/hooks/sources/{HOTLINE}"
        w.rest.callback_url = f"{base}/hooks/tickets/urban"

        # 1. New inquiries and noise; the platform re-delivers some pushes.
        send_weibo(w, script)
        await send_hotline(w, script)
        n_tickets = len(script.weibo_posts) + len(script.hotline_items)
        assert n_tickets == WEIBO_NEW + HOTLINE_NEW

        async def all_ticketed() -> bool:
            rows = await store.list_inquiries()
            states = Counter(r.state for r in rows)
            return states["ticketed"] == n_tickets and states["ignored"] == script.noise

        async def replies_posted() -> bool:
            return len(weibo_replies(w)) == officials.expected_replies("transport") and len(
                w.hotline.replies
            ) == officials.expected_replies("urban")

        timings["ticketed"] = await wait_for("every inquiry ticketed", all_ticketed, 120)
        officials.assign()
        assert len(officials.plans) == n_tickets
        timings["received replies"] = await wait_for("received replies", replies_posted, 90)

        # 2. Follow-ups in the citizens' own conversations, whose tickets are open.
        await send_follow_ups(w, script)
        officials.acks.update({"transport": WEIBO_FOLLOW_UPS, "urban": HOTLINE_FOLLOW_UPS})

        async def all_appended() -> bool:
            states = Counter(r.state for r in await store.list_inquiries())
            return states["appended"] == script.follow_ups

        timings["appended"] = await wait_for("follow-ups appended", all_appended, 90)
        timings["acknowledged"] = await wait_for("follow-ups acknowledged", replies_posted, 90)

        # 3. Officials work every ticket, one step at a time across all tickets.
        for index in range(max(len(p) for p in officials.plans.values())):
            moved = await officials.step(index)
            timings[f"step {index + 1} ({moved} moves)"] = await wait_for(
                f"replies after step {index + 1}", replies_posted, 90
            )
        # Let anything extra (a duplicate, a late event) show up before counting.
        await asyncio.sleep(1.5)
        inquiries = await store.list_inquiries()
        tickets = await store.list_tickets()
        stored_replies = await store.list_replies()
        dead = sum(
            s.value
            for m in daemon.metrics.dead_lettered.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )
    elapsed = time.monotonic() - began

    assert dead == 0  # nothing dead-lettered on the way
    # -- inquiries: every distinct message recorded once; noise ignored with its reason
    sent = WEIBO_NEW + WEIBO_NOISE + HOTLINE_NEW + HOTLINE_NOISE + script.follow_ups
    states = Counter(r.state for r in inquiries)
    assert len(inquiries) == sent
    assert states == {
        "ticketed": n_tickets,
        "appended": script.follow_ups,
        "ignored": script.noise,
    }
    assert all(r.reason for r in inquiries if r.state == "ignored")
    reasons = Counter(r.reason for r in inquiries if r.state == "ignored")

    # -- tickets: one per routed inquiry in the backends, none twice (by reference)
    o311_refs = [t["reference"] for t in w.open311.snapshot()]
    rest_refs = [t["reference"] for t in w.rest.ticket_list()]
    assert len(o311_refs) == len(script.weibo_posts)
    assert len(rest_refs) == len(script.hotline_items)
    assert len(set(o311_refs + rest_refs)) == n_tickets
    assert set(o311_refs + rest_refs) == {t.reference for t in tickets}

    # -- follow-ups appended to the existing tickets
    appended_o311 = sum(len(t["appended"]) for t in w.open311.snapshot())
    appended_rest = sum(len(t["comments"]) for t in w.rest.tickets.values())
    assert appended_o311 == WEIBO_FOLLOW_UPS
    assert appended_rest == HOTLINE_FOLLOW_UPS
    # each to the ticket of its own thread (every follow-up went to a different thread)
    assert sum(1 for t in w.open311.snapshot() if t["appended"]) == WEIBO_FOLLOW_UPS
    assert sum(1 for t in w.rest.tickets.values() if t["comments"]) == HOTLINE_FOLLOW_UPS

    # -- replies: tickets × statuses applied (+ notes), each once, in the citizen's thread
    wb = weibo_replies(w)
    hl = w.hotline.reply_list()
    assert len(wb) == officials.expected_replies("transport")
    assert len(hl) == officials.expected_replies("urban")
    per_post = Counter(c.status_id for c in wb)
    assert set(per_post) == set(script.weibo_posts)
    statuses = 1 + len(TRANSPORT_PLAN) + 1  # + the acknowledgement where a follow-up came
    assert Counter(per_post.values()) == {
        statuses: len(script.weibo_posts) - WEIBO_FOLLOW_UPS,
        statuses + 1: WEIBO_FOLLOW_UPS,
    }
    acks = [c for c in wb if "已补充到工单" in c.text]
    assert len(acks) == WEIBO_FOLLOW_UPS  # each answers the follow-up comment itself
    follow_up_ids = {
        c.id for c in w.weibo.comments.values() if c.user_id != w.weibo.official_uid and c.reply_cid
    }
    assert {c.reply_cid for c in acks} == follow_up_ids
    assert len({(c.status_id, c.text) for c in wb}) == len(wb)
    hl_acks = [r for r in hl if "已补充到工单" in r["text"]]
    assert len(hl_acks) == HOTLINE_FOLLOW_UPS
    hl = [r for r in hl if r not in hl_acks]
    per_thread = Counter(r["thread"]["root_id"] for r in hl)
    assert set(per_thread) == {i["thread"]["root_id"] for i in script.hotline_items}
    assert Counter(per_thread.values()) == Counter(
        1 + len(plan) + sum(1 for _, note in plan if note)
        for (d, _), plan in officials.plans.items()
        if d == "urban"
    )
    assert len({(r["thread"]["root_id"], r["text"]) for r in hl}) == len(hl)
    assert len({r["idempotency_key"] for r in hl}) == len(hl)
    private_roots = {
        i["thread"]["root_id"] for i in script.hotline_items if i.get("visibility") == "private"
    }
    # a private question gets private answers; an official's note (case details) is answered
    # privately too, since the hotline platform can (Weibo's notes stay public, redacted)
    assert all(
        (r["visibility"] == "private")
        == (r["thread"]["root_id"] in private_roots or "答复（工单" in r["text"])
        for r in hl
    )
    assert any(r["visibility"] == "private" and "答复（工单" in r["text"] for r in hl)
    posted = [r for r in stored_replies if r.state == "posted"]
    assert len(posted) == len(stored_replies) == len(wb) + len(hl) + len(hl_acks)

    # -- no phone or ID number in any public reply
    public = [c.text for c in wb] + [r["text"] for r in hl if r["visibility"] == "public"]
    leaks = [t for t in public if pii.find_personal_data(t)]
    assert leaks == []
    assert any("[手机号]" in t for t in public)  # the official's note had one; it was masked

    print(
        f"\n{sent + script.redelivered} messages ({script.redelivered} re-delivered) -> "
        f"{len(inquiries)} inquiries: {n_tickets} tickets ({len(o311_refs)} Open311, "
        f"{len(rest_refs)} REST), {script.follow_ups} follow-ups appended, {script.noise} noise "
        f"ignored {dict(reasons)}\nreplies: {len(wb)} on Weibo + {len(hl)} on the hotline "
        f"({len(hl) - len([r for r in hl if r['visibility'] == 'public'])} private); "
        f"reply POSTs to the hotline: {w.hotline.requests['POST /replies']}; "
        f"{len(public)} public replies, 0 with personal data\n"
        f"phases: {', '.join(f'{k} {v:.1f}s' for k, v in timings.items())}; total {elapsed:.1f}s"
    )
