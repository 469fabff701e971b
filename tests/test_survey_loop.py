"""Must-show 3 of issue 22: the 回访 loop and reopening (重办), through the real RabbitMQ, the
whole bridge and the simulators; counts from the simulators' own records.

One hotline account (a webhook platform) for two departments: transport on an Open311 server
with ``servicerequestupdates`` (strict mode), urban on a REST system with a reopen call. Five
citizens, each with a ticket an official resolves; ``[survey]`` asks one second after the final
status and waits four seconds for an answer:
- 甲 (Open311) answers "4" (未解决): the ticket is reopened by a ``servicerequestupdates`` POST
  with status ``reopen``, the citizen is told, an official resolves it again, the citizen hears
  已办结 for the new cycle (its own reply) and is asked again; "1" ends it;
- 乙 (REST) answers "没解决，还是老样子": the REST reopen call, the same loop;
- 丙 stays silent: no response, counted once the answer period has passed;
- 丁 answers "呵呵，真满意" (sarcasm, unclear): one polite re-ask, then "2" (基本满意);
- 戊 is unclear twice: unrated after the one re-ask, never asked a third time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

from bridge.inspect.inspection import inspect_accounts
from bridge.reports.performance import Period, rank_period
from bridge.store import Store
from tests.conftest import bridge_config, eventually, running_bridge

SECRET = "survey-loop-secret"
ASK = "请问您反映的问题是否已解决"  # the survey template (not survey_again)
REASK = "抱歉没能看明白"  # in survey_again
REOPENED = "已重新办理"  # the reopened template
RESOLVED = "已办结"
_EPOCH, _FAR = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def item(n: str, text: str, author: str, **thread: Any) -> dict[str, Any]:
    return {
        "external_id": n,
        "kind": "comment",
        "author": {"id": author, "handle": f"user{author}"},
        "text": text,
        # stamped when written, as the platform does (a fixed date here fell out of the
        # ranking's "last day" once the calendar passed it)
        "created_at": datetime.now(UTC).isoformat(),
        "thread": {"root_id": "ann-1", "root_author_id": "official", **thread},
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


class Scene:
    """The platform's own record of what each citizen was sent."""

    def __init__(self, platform: WebhookPlatformState, store: Store) -> None:
        self.platform = platform
        self.store = store
        self.inquiry: dict[str, str] = {}  # citizen's first message id → inquiry id

    async def learn(self) -> None:
        for row in await self.store.list_inquiries():
            if row.external_id:
                self.inquiry[row.external_id] = row.inquiry_id

    def sent(self, first: str) -> list[str]:
        """Texts posted to the citizen of conversation ``first``, in order."""
        return [
            r["text"]
            for r in sorted(self.platform.reply_list(), key=lambda r: r["id"])
            if r["inquiry_id"] == self.inquiry.get(first)
        ]

    def count(self, first: str, marker: str) -> int:
        return sum(marker in t for t in self.sent(first))

    async def until(self, first: str, marker: str, n: int = 1, timeout: float = 30) -> None:
        async def seen() -> bool:
            await self.learn()
            return self.count(first, marker) >= n

        try:
            await eventually(seen, timeout)
        except AssertionError:
            sent = self.sent(first)
            raise AssertionError(f"{first}: {marker!r} x{n} not sent; sent {sent}") from None


async def test_survey_loop_reopens_on_open311_and_rest_counts_silence_and_reasks_once(
    tmp_path: Path, open311: Open311Server, rest: RestSimServer, capfd: pytest.CaptureFixture[str]
) -> None:
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    hooks = await AppServer(webhook_app(platform)).start()
    rest_ticketing = {
        **demo_ticketing_config(rest.url),
        "poll": "300ms",
        "reopen": {"path": "/tickets/{ticket_id}/reopen", "body": {"reason": "{description}"}},
    }
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "none",
                "ticketing": {**open311_config(open311.base_url), "poll": "300ms"},
            },
            {"id": "urban", "name": "市城管委", "approval": "none", "ticketing": rest_ticketing},
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": "hotline",
                "department": "transport",
                "secret": SECRET,
                "reply_url": hooks.url + "/replies",
                "platform": "hotline",
            }
        ],
        routes=[{"keywords": ["垃圾"], "department": "urban"}],
        survey={"delay": "1s", "answer_within": "4s", "check_every": "200ms"},
    )
    citizens = {
        "c-1": ("公交站台顶棚漏雨", "41"),  # 甲: 未解决 on Open311
        "c-2": ("小区门口垃圾成堆没人清理", "42"),  # 乙: 未解决 on REST
        "c-3": ("路口红绿灯坏了好几天", "43"),  # 丙: silence
        "c-4": ("小区门口井盖松动很危险", "44"),  # 丁: unclear, re-asked, answers
        "c-5": ("地铁三号线早高峰太挤", "45"),  # 戊: unclear twice
    }
    try:
        async with running_bridge(cfg) as daemon:
            assert daemon.ctx is not None
            store = daemon.ctx.store
            scene = Scene(platform, store)
            platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
            pushed = [item(n, text, who) for n, (text, who) in citizens.items()]
            assert await platform.push(pushed) == 202

            async def say(first: str, n: str, text: str) -> None:
                author = citizens[first][1]
                assert await platform.push([item(n, text, author, parent_id=first)]) == 202

            for first in citizens:
                await scene.until(first, "已受理")
            rows = {r.external_id: r for r in await store.list_inquiries()}
            ticket = {k: rows[k].ticket_id or "" for k in citizens}
            assert rows["c-2"].department == "urban"
            assert len(open311.state.tickets) == 4 and len(rest.state.tickets) == 1

            # Officials resolve every ticket; each citizen hears 已办结, then the question.
            for first in ("c-1", "c-3", "c-4", "c-5"):
                open311.state.set_status(ticket[first], "fixed", None)
            await rest.state.move(ticket["c-2"], "DONE", callback=False)
            for first in citizens:
                await scene.until(first, RESOLVED)
                await scene.until(first, ASK)

            await say("c-1", "a-1", "4")  # 未解决
            await say("c-2", "a-2", "没解决，还是老样子")
            await say("c-4", "a-4", "呵呵，真满意")  # sarcasm: unclear
            await say("c-5", "a-5", "呵呵")
            # (丙 says nothing)

            # 甲 and 乙: reopened in their systems, told, resolved again with their own replies.
            await scene.until("c-1", REOPENED)
            await scene.until("c-2", REOPENED)
            assert len(open311.state.reopens(ticket["c-1"])) == 1
            assert [r["ticket_id"] for r in rest.state.reopens] == [ticket["c-2"]]
            assert rest.state.tickets[ticket["c-2"]]["status"] == "REOPENED"
            assert open311.state.tickets[ticket["c-1"]].status == "open"
            stored = await store.get_ticket("transport", ticket["c-1"])
            assert stored is not None and stored.cycle == 1 and stored.status == "reopened"
            alerts = daemon.ctx.alerts.active
            assert ("case_reopened", f"transport:{ticket['c-1']}") in alerts
            assert ("case_reopened", f"urban:{ticket['c-2']}") in alerts
            await asyncio.sleep(1.1)  # the backends report times to the second
            open311.state.set_status(ticket["c-1"], "fixed", None)
            await rest.state.move(ticket["c-2"], "DONE", callback=False)
            await scene.until("c-1", RESOLVED, 2)
            await scene.until("c-2", RESOLVED, 2)

            # 丁 and 戊: the one polite re-ask.
            await scene.until("c-4", REASK)
            await scene.until("c-5", REASK)
            await say("c-4", "b-4", "2")
            await say("c-5", "b-5", "呵呵，真满意")

            # The reopened cycles are asked again: 甲 is satisfied now, 乙 stays silent.
            await scene.until("c-1", ASK, 2)
            await say("c-1", "b-1", "1")

            async def concluded() -> bool:
                return len(await store.survey_results(_EPOCH, _FAR)) == 7

            await eventually(concluded, timeout=30)
            # The platform delivers the two reopening answers again: the reopen is sent again
            # (a crash may have come before it was) and happens nowhere a second time.
            await say("c-1", "a-1", "4")
            await say("c-2", "a-2", "没解决，还是老样子")
            await asyncio.sleep(2.0)
            results = {(r.ticket_id, r.cycle): r for r in await store.survey_results(_EPOCH, _FAR)}
            answers = {r.external_id: r for r in await store.list_inquiries()}
            sent = {first: scene.sent(first) for first in citizens}
            alerts_after = daemon.ctx.alerts.active
            asks_open311 = len(open311.state.reopens())
            reopen_calls = rest.state.requests["POST /tickets/{id}/reopen"]
            update_posts = open311.state.requests_by_route["POST /servicerequestupdates.{fmt}"]
            now = datetime.now(UTC)
            today = Period(now - timedelta(days=1), now + timedelta(seconds=1), "today")
            ranking = await rank_period(store, cfg, today, now)
            inspected = await inspect_accounts(store, cfg, {}, now, since=now - timedelta(days=1))
    finally:
        await hooks.stop()

    def result(first: str, cycle: int = 0) -> tuple[str, bool | None, str | None, int]:
        r = results[(ticket[first], cycle)]
        return (r.outcome, r.solved, r.satisfaction, r.asks)

    # The results, as the parser read them (never the words).
    assert result("c-1") == ("answered", False, None, 1)
    assert result("c-1", 1) == ("answered", True, "满意", 1)
    assert result("c-2") == ("answered", False, None, 1)
    assert result("c-2", 1) == ("no_response", None, None, 1)
    assert result("c-3") == ("no_response", None, None, 1)
    assert result("c-4") == ("answered", True, "基本满意", 2)
    assert result("c-5") == ("unrated", None, None, 2)
    assert results[(ticket["c-5"], 0)].unclear == "sarcasm"

    # What each citizen was sent (the platform's own record): every status once per cycle,
    # the question once per cycle, the re-ask only after an unclear answer, never twice.
    marks = {first: Counter() for first in citizens}
    for first, texts in sent.items():
        for text in texts:
            for marker in ("已受理", RESOLVED, ASK, REASK, REOPENED):
                marks[first][marker] += marker in text
    # (the question itself says 已办结, so it is counted under RESOLVED as well)
    assert marks["c-1"] == Counter({"已受理": 1, RESOLVED: 4, ASK: 2, REOPENED: 1, REASK: 0})
    assert marks["c-2"] == Counter({"已受理": 1, RESOLVED: 4, ASK: 2, REOPENED: 1, REASK: 0})
    assert marks["c-3"] == Counter({"已受理": 1, RESOLVED: 2, ASK: 1, REOPENED: 0, REASK: 0})
    assert marks["c-4"] == Counter({"已受理": 1, RESOLVED: 2, ASK: 1, REOPENED: 0, REASK: 1})
    assert marks["c-5"] == Counter({"已受理": 1, RESOLVED: 2, ASK: 1, REOPENED: 0, REASK: 1})

    # Reopened once in each system; the simulators saw no second reopen.
    assert asks_open311 == 1
    assert len(rest.state.reopens) == 1
    assert reopen_calls == 2  # sent again for the redelivered answer, taken once
    assert update_posts == 2  # the same update_id twice: one update (asks_open311 above)
    assert len(open311.state.tickets) == 4 and len(rest.state.tickets) == 1  # no new tickets
    # The officials' alert ended when the reopened case was final again.
    assert not [k for k in alerts_after if k[0] == "case_reopened"]

    # The answers are inquiries of their own, read as answers (not follow-ups, never routed),
    # and nothing a citizen answered was appended to a ticket as a comment.
    for n in ("a-1", "a-2", "a-4", "a-5", "b-1", "b-4", "b-5"):
        assert answers[n].state == "survey_answer", (n, answers[n].state)
    assert rest.state.tickets[ticket["c-2"]]["comments"] == []
    assert not [u for u in open311.state.updates if u.origin == "client" and u.status != "reopen"]

    # The rates read the loop's results; an answer is not an inquiry waiting for a reply (the
    # 响应率 counts the five inquiries, the inspection finds nothing unanswered).
    rates = {d.key: d.rates for d in ranking.departments}
    assert (rates["transport"].response_counted, rates["urban"].response_counted) == (4, 1)
    # transport: 甲 cycle 0 not solved, cycle 1 solved, 丁 solved; 丙 no response, 戊 unrated
    assert (rates["transport"].solved, rates["transport"].resolution_counted) == (2, 3)
    assert (rates["transport"].no_response, rates["transport"].unrated) == (1, 1)
    assert (rates["urban"].solved, rates["urban"].resolution_counted) == (0, 1)
    (account,) = inspected
    assert (account.received, account.answered, account.unanswered) == (5, 5, 0)

    # Answers are personal data: the log says what was read, never what was written.
    out, err = capfd.readouterr()
    logged = out + err
    assert logged.count("survey answer read") >= 7
    for words in ("没解决，还是老样子", "呵呵", "真满意"):
        assert words not in logged


def hotline(platform_url: str) -> dict[str, Any]:
    return {
        "adapter": "webhook",
        "handle": "hotline",
        "department": "transport",
        "secret": SECRET,
        "reply_url": platform_url + "/replies",
        "platform": "hotline",
    }


def transport(open311: Open311Server) -> dict[str, Any]:
    return {
        "id": "transport",
        "name": "市交通委",
        "approval": "none",
        "ticketing": {**open311_config(open311.base_url), "poll": "300ms"},
    }


async def test_reopen_on_a_server_without_updates_files_a_linked_request(tmp_path: Path) -> None:
    """A plain GeoReport server (quirks: no servicerequestupdates, so no reopen update): a
    未解决 answer files one new request in the same system naming the old ticket, the bridge's
    case re-enters its lifecycle and the citizen is told."""
    backend = await Open311Server(Open311State(agency="市交通委", quirks=True)).start()
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    hooks = await AppServer(webhook_app(platform)).start()
    cfg = bridge_config(
        tmp_path,
        departments=[transport(backend)],
        accounts=[hotline(hooks.url)],
        survey={"delay": "500ms", "check_every": "200ms"},
    )
    try:
        async with running_bridge(cfg) as daemon:
            assert daemon.ctx is not None
            store = daemon.ctx.store
            scene = Scene(platform, store)
            platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
            assert await platform.push([item("c-1", "公交站台顶棚漏雨", "41")]) == 202
            await scene.until("c-1", "已受理")
            (old,) = backend.state.tickets
            backend.state.set_status(old, "closed", None)
            await scene.until("c-1", ASK)
            assert await platform.push([item("a-1", "还没修", "41", parent_id="c-1")]) == 202
            await scene.until("c-1", REOPENED)
            stored = await store.get_ticket("transport", old)
            sent = scene.sent("c-1")
    finally:
        await hooks.stop()
        await backend.close()
    assert len(backend.state.tickets) == 2  # the old one and one linked request
    new = next(t for k, t in backend.state.tickets.items() if k != old)
    assert f"关联原工单{old}" in (new.description or "")
    assert not backend.state.reopens()  # nothing to post a reopen update to
    assert stored is not None and stored.cycle == 1 and stored.status == "reopened"
    assert sum(REOPENED in t for t in sent) == 1


async def test_a_pending_question_survives_a_restart_and_two_processes_ask_once(
    tmp_path: Path, open311: Open311Server
) -> None:
    """The question is scheduled in the store when the ticket is resolved; the bridge stops
    before it is due; two bridges (every role each) then start on the same PostgreSQL store and
    exchange: the citizen is asked once."""
    from bridge.daemon import ALL_ROLES, Daemon
    from tests.conftest import delete_topology
    from tests.pg import pg_database

    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    hooks = await AppServer(webhook_app(platform)).start()
    async with pg_database() as url:
        cfg = bridge_config(
            tmp_path,
            store={"url": url},
            departments=[transport(open311)],
            accounts=[hotline(hooks.url)],
            survey={"delay": "3s", "check_every": "100ms"},
        )
        daemons: list[Daemon] = []
        try:
            first = Daemon(cfg, ALL_ROLES)
            await first.start()
            daemons.append(first)
            assert first.ctx is not None
            scene = Scene(platform, first.ctx.store)
            platform.push_url = f"http://127.0.0.1:{first.http_port}/hooks/sources/hotline"
            assert await platform.push([item("c-1", "公交站台顶棚漏雨", "41")]) == 202
            await scene.until("c-1", "已受理")
            (ticket_id,) = open311.state.tickets
            open311.state.set_status(ticket_id, "fixed", None)
            await scene.until("c-1", RESOLVED)
            ask = await first.ctx.store.get_survey_ask("transport", ticket_id, 0)
            assert ask is not None and ask.state == "scheduled"
            await first.stop()  # a restart before the question is due
            daemons.remove(first)
            assert scene.count("c-1", ASK) == 0
            for _ in range(2):
                daemon = Daemon(cfg, ALL_ROLES)
                await daemon.start()
                daemons.append(daemon)
            assert daemons[0].ctx is not None
            store = daemons[0].ctx.store
            scene.store = store
            platform.push_url = f"http://127.0.0.1:{daemons[1].http_port}/hooks/sources/hotline"
            await scene.until("c-1", ASK)
            await asyncio.sleep(1.0)  # both processes have passed over it several times
            asked = await store.get_survey_ask("transport", ticket_id, 0)
            assert await platform.push([item("a-1", "满意，谢谢", "41", parent_id="c-1")]) == 202

            async def answered() -> bool:
                return bool(await store.survey_results(_EPOCH, _FAR))

            await eventually(answered)
            (result,) = await store.survey_results(_EPOCH, _FAR)
            sent = scene.sent("c-1")
        finally:
            for daemon in daemons:
                await daemon.stop()
            await delete_topology(cfg.broker)
            await hooks.stop()
    assert sum(ASK in t for t in sent) == 1
    assert asked is not None and asked.state == "asked" and asked.asks == 1
    assert (result.outcome, result.satisfaction, result.asks) == ("answered", "满意", 1)


@pytest.mark.parametrize(
    ("final_local", "asked_local"),
    [
        # a Saturday that is a make-up working day (调休 for National Day 2026) is the next one
        ("2026-09-19T15:00", "2026-09-20T09:00"),
        # the eve of the 1–7 October holiday: the question waits for Thursday 8 October
        ("2026-09-30T18:30", "2026-10-08T09:00"),
        # Friday 9 October: Saturday 10 October is a make-up working day
        ("2026-10-09T11:00", "2026-10-10T09:00"),
        # an ordinary Friday: Monday
        ("2026-11-27T16:00", "2026-11-30T09:00"),
    ],
)
def test_the_question_is_due_at_nine_on_the_next_working_day(
    tmp_path: Path, final_local: str, asked_local: str
) -> None:
    from zoneinfo import ZoneInfo

    from bridge.reply.role import survey_due

    beijing = ZoneInfo("Asia/Shanghai")
    cfg = bridge_config(tmp_path, departments=[transport_stub()])
    final = datetime.fromisoformat(final_local).replace(tzinfo=beijing)
    due = survey_due("next_working_day", cfg.departments[0], final.astimezone(UTC))
    assert due.astimezone(beijing) == datetime.fromisoformat(asked_local).replace(tzinfo=beijing)
    assert survey_due(timedelta(hours=24), cfg.departments[0], final) == final + timedelta(hours=24)


def transport_stub() -> dict[str, Any]:
    return {
        "id": "transport",
        "name": "市交通委",
        "ticketing": open311_config("http://127.0.0.1:9"),
    }


@dataclass
class ManualCase:
    """An all-manual department's resolved case whose 回访 question is the next draft: the
    scene, its store and ticket, and the approval queue as an approver uses it."""

    scene: Scene
    store: Store
    ticket_id: str
    http: aiohttp.ClientSession
    base: str

    async def waiting(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.base}/api/approvals") as resp:
            items: list[dict[str, Any]] = (await resp.json())["approvals"]
            return items

    async def decide(self, decision: str) -> str:
        """Decide the one draft waiting (once there is one); returns its text."""

        async def one() -> bool:
            return bool(await self.waiting())

        await eventually(one)
        (item,) = await self.waiting()
        body = {"decision": decision, "version": item["version"], "reason": "市民不愿回访"}
        async with self.http.post(f"{self.base}/api/approvals/{item['reply_id']}", json=body) as r:
            assert r.status == 200, await r.text()
        return str(item["text"])


@asynccontextmanager
async def a_resolved_manual_case(
    tmp_path: Path, open311: Open311Server
) -> AsyncIterator[ManualCase]:
    """One complaint in an ``all-manual`` department, its 已受理 and 已办结 approved and posted."""
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    hooks = await AppServer(webhook_app(platform)).start()
    cfg = bridge_config(
        tmp_path,
        departments=[{**transport(open311), "approval": "all-manual"}],
        accounts=[hotline(hooks.url)],
        survey={"delay": "300ms", "answer_within": "1s", "check_every": "100ms"},
    )
    auth = {"Authorization": "Bearer test-admin-token"}
    try:
        async with running_bridge(cfg) as daemon, aiohttp.ClientSession(headers=auth) as http:
            assert daemon.ctx is not None
            scene = Scene(platform, daemon.ctx.store)
            base = f"http://127.0.0.1:{daemon.http_port}"
            platform.push_url = f"{base}/hooks/sources/hotline"
            case = ManualCase(scene, daemon.ctx.store, "", http, base)
            assert await platform.push([item("c-1", "公交站台顶棚漏雨", "41")]) == 202
            assert "已受理" in await case.decide("approve")
            await scene.until("c-1", "已受理")
            (case.ticket_id,) = open311.state.tickets
            open311.state.set_status(case.ticket_id, "fixed", None)
            assert RESOLVED in await case.decide("approve")
            await scene.until("c-1", RESOLVED)
            yield case
    finally:
        await hooks.stop()


async def test_the_question_waits_for_an_approver_and_its_silence_only_once_posted(
    tmp_path: Path, open311: Open311Server
) -> None:
    """An ``all-manual`` department: the question is a reply like any other, so it waits in
    /api/approvals; while it waits the citizen has not been asked and no silence is counted;
    approved, it is posted once and its silence then ends the 回访 as no response."""
    async with a_resolved_manual_case(tmp_path, open311) as case:
        store, scene = case.store, case.scene

        async def question_waits() -> bool:
            return any(ASK in i["text"] for i in await case.waiting())

        await eventually(question_waits)
        await asyncio.sleep(2.0)  # twice answer_within: not silence, it was never asked
        held = await store.get_survey_ask("transport", case.ticket_id, 0)
        unasked = scene.count("c-1", ASK)
        results_while_waiting = await store.survey_results(_EPOCH, _FAR)
        assert ASK in await case.decide("approve")
        await scene.until("c-1", ASK)

        async def concluded() -> bool:
            return bool(await store.survey_results(_EPOCH, _FAR))

        await eventually(concluded)
        (result,) = await store.survey_results(_EPOCH, _FAR)
        asked = scene.count("c-1", ASK)
    assert held is not None and held.state == "asked"
    assert unasked == 0 and results_while_waiting == []
    assert asked == 1
    assert (result.outcome, result.asks) == ("no_response", 1)


async def test_a_question_the_approver_rejects_ends_the_survey_without_a_result(
    tmp_path: Path, open311: Open311Server
) -> None:
    """An approver rejects the 回访 question (say, the citizen asked not to be contacted): it
    is never posted, its silence is not counted as no response, the 回访 is closed as
    ``not_asked`` (it stayed open for ever before), and the citizen's next message is a new
    inquiry, not read as an answer to a question they never saw."""
    async with a_resolved_manual_case(tmp_path, open311) as case:
        store, scene = case.store, case.scene
        assert ASK in await case.decide("reject")

        async def closed() -> bool:
            ask = await store.get_survey_ask("transport", case.ticket_id, 0)
            return ask is not None and ask.state == "done"

        await eventually(closed)
        ask = await store.get_survey_ask("transport", case.ticket_id, 0)
        # the citizen writes again in the same thread: a new matter, not an answer
        answer = item("c-1-r", "已经解决了，谢谢", "41", parent_id="c-1")
        assert await scene.platform.push([answer]) == 202

        async def recorded() -> bool:
            return len(await store.list_inquiries()) == 2

        await eventually(recorded)
        await asyncio.sleep(1.0)  # a late reading of it as an answer would land now
        results = await store.survey_results(_EPOCH, _FAR)
        inquiries = {i.external_id: i for i in await store.list_inquiries()}
    assert ask is not None and ask.outcome == "not_asked"
    assert scene.count("c-1", ASK) == 0  # never posted
    assert results == []  # no result: not no_response, not answered
    assert inquiries["c-1-r"].state != "survey_answer"
