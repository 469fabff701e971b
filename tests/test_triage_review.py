"""Inquiries the classifier is unsure of are held for an official's check (must show 4).

On the in-memory broker (the test of two processes: the real one) and the REST ticket-system
simulator: a low-confidence inquiry is held (no ticket), listed at ``/api/triage/review``
with its explanation; an official's correction files it at once under the corrected category
(the ticket's title carries it) and is recorded with actor and time; ``govbridge triage
export-corrections`` exports it as a training item. An inquiry nobody checks is filed with the
model's guess when its wait ends, and a late check is still recorded. Confident inquiries and
operator-rule hits are never held.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from govbridge_tools.simulators.rest import RestTicketState, demo_ticketing_config
from govbridge_tools.testing import Simulators

from bridge.cli.triage import main as triage_cli
from bridge.daemon import Daemon
from bridge.store import SqlStore
from bridge.triage.classify import Classification, Classifier
from bridge.triage.review import ReviewQueue
from bridge.triage.role import TriageRole
from schemas.messages import Author, Inquiry, ThreadRef, TicketCommand, stable_id
from schemas.vocab import Category, InquiryKind
from tests.conftest import bridge_config, eventually, running_bridge

AUTH = {"Authorization": "Bearer test-admin-token"}
OFFICIAL = "admin-token"  # who checks with the bearer token (it cannot name anyone else)

CONFIDENT = "请问社保卡丢了在哪里补办，需要带什么材料？"
RULE_HIT = "小区门口的井盖又松了，过车就响"


def unsure_text() -> tuple[str, Classification]:
    """An inquiry the shipped model is unsure about (a grievance that reads like a question)."""
    text = "小区门口的路灯晚上不亮，能不能安排人来看一下，谢谢"
    return text, Classifier().classify(text)


@pytest.fixture
async def tickets(sims: Simulators) -> RestTicketState:
    return (await sims.rest()).state


def config(tmp_path: Path, tickets: RestTicketState, review_below: float) -> Any:
    assert tickets.server is not None
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": "city",
                "name": "市城管委",
                "ticketing": {**demo_ticketing_config(tickets.server.url), "poll": "0s"},
            }
        ],
        routes=[{"keywords": ["小区", "社保卡"], "department": "city"}],
        triage={
            "review_below": review_below,
            "review_timeout": "10m",
            "categories": {"help": {"井盖": 3}},
        },
    )


async def send(daemon: Daemon, text: str, n: int) -> str:
    inquiry = Inquiry.create(
        platform="weibo",
        account="citygov",
        kind=InquiryKind.MENTION,
        external_id=f"review-{n}",
        author=Author(id=f"u{n}", handle=f"citizen{n}"),
        text=text,
        created_at=datetime.now(UTC),
        thread=ThreadRef(root_id=f"review-{n}"),
    )
    assert daemon.ctx is not None
    await daemon.ctx.broker.publish("inquiry.received.weibo", inquiry)
    return inquiry.inquiry_id


async def state_of(daemon: Daemon, inquiry_id: str) -> str | None:
    assert daemon.ctx is not None
    row = await daemon.ctx.store.get_inquiry(inquiry_id)
    return None if row is None else str(row.state)


def titles(tickets: RestTicketState) -> list[str]:
    return sorted(str(t["title"]) for t in tickets.tickets.values())


async def test_held_inquiry_is_checked_filed_corrected_and_exported(
    tmp_path: Path, tickets: RestTicketState
) -> None:
    text, guess = unsure_text()
    confident = Classifier().classify(CONFIDENT)
    threshold = round((guess.confidence + confident.confidence) / 2, 3)
    assert guess.confidence < threshold < confident.confidence, "pick other example texts"
    correct = Category.COMPLAINT if guess.category is not Category.COMPLAINT else Category.HELP
    cfg = config(tmp_path, tickets, threshold)
    # reply serves the trace API (GET /api/inquiries/{id})
    async with running_bridge(
        cfg, ["triage", "ticketing", "reply", "http"], in_memory=True
    ) as daemon:
        base = f"http://127.0.0.1:{daemon.http_port}"
        held_id = await send(daemon, text, 1)
        sure_id = await send(daemon, CONFIDENT, 2)
        rule_id = await send(daemon, RULE_HIT, 3)

        async def settled() -> bool:
            return (
                await state_of(daemon, held_id) == "held_for_review"
                and await state_of(daemon, sure_id) == "ticketed"
                and await state_of(daemon, rule_id) == "ticketed"
            )

        await eventually(settled)
        assert titles(tickets) == sorted(
            [f"【{confident.category.label}】{CONFIDENT[:30]}", f"【求助】{RULE_HIT}"]
        )

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/triage/review") as resp:
                assert resp.status == 401
            async with http.get(f"{base}/api/triage/review", headers=AUTH) as resp:
                held = (await resp.json())["held"]
            assert [h["inquiry_id"] for h in held] == [held_id]
            assert held[0]["text"] == text
            assert held[0]["model_category"] == guess.category.value
            assert held[0]["confidence"] == pytest.approx(guess.confidence, abs=1e-3)
            assert held[0]["explanation"]["evidence"]

            url = f"{base}/api/triage/review/{held_id}"
            async with http.post(
                url, json={"category": "nonsense", "actor": OFFICIAL}, headers=AUTH
            ) as resp:
                assert resp.status == 400
            body = {"category": correct.value, "actor": OFFICIAL}
            async with http.post(url, json=body, headers=AUTH) as resp:
                assert resp.status == 200
                decided = await resp.json()
            assert decided["state"] == "corrected" and decided["filed"] == "filed now"
            assert decided["decided_by"] == OFFICIAL and decided["decided_at"]
            async with http.post(url, json=body, headers=AUTH) as resp:
                assert resp.status == 409

            async def filed() -> bool:
                return await state_of(daemon, held_id) == "ticketed"

            await eventually(filed)
            assert f"【{correct.label}】{text[:30]}" in titles(tickets)
            async with http.get(f"{base}/api/triage/review", headers=AUTH) as resp:
                assert (await resp.json())["held"] == []
            async with http.get(f"{base}/api/inquiries/{sure_id}", headers=AUTH) as resp:
                traced = (await resp.json())["inquiry"]
            assert traced["explanation"]["decided_by"] == "model"
            assert traced["confidence"] == pytest.approx(confident.confidence, abs=1e-3)
            async with http.get(f"{base}/api/inquiries/{rule_id}", headers=AUTH) as resp:
                traced = (await resp.json())["inquiry"]
            assert traced["explanation"]["decided_by"] == "triage.categories.help"
            assert traced["explanation"]["evidence"] == [["井盖", 3.0]]

        assert daemon.ctx is not None
        row = await daemon.ctx.store.get_inquiry(held_id)
        assert row is not None and row.category == correct.value

    conf = tmp_path / "export.toml"
    conf.write_text(f'[store]\nurl = "{cfg.store.url}"\n', "utf-8")
    out = tmp_path / "corrections.jsonl"
    argv = ["export-corrections", "-c", str(conf), "--out", str(out)]
    assert await asyncio.to_thread(triage_cli, argv) == 0
    exported = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(exported) == 1
    item = exported[0]
    assert item["text"] == text and item["category"] == correct.value and item["noise"] is None
    assert item["source"] == "official-correction"
    assert item["model_category"] == guess.category.value
    assert OFFICIAL not in json.dumps(item, ensure_ascii=False)


async def test_held_inquiry_is_checked_through_a_process_without_the_triage_role(
    tmp_path: Path, tickets: RestTicketState
) -> None:
    """The review API is the daemon's, not the triage role's: an official reaching a process
    that runs only ``http`` lists and checks what another process held, and it is filed (two
    processes: on the real broker)."""
    text, guess = unsure_text()
    correct = Category.COMPLAINT if guess.category is not Category.COMPLAINT else Category.HELP
    cfg = config(tmp_path, tickets, 0.999)
    async with running_bridge(cfg, ["triage", "ticketing"]) as worker:
        assert worker.http_port is None  # no HTTP here: the official reaches another process
        held_id = await send(worker, text, 1)

        async def held() -> bool:
            return await state_of(worker, held_id) == "held_for_review"

        await eventually(held)
        front = Daemon(cfg, ["http"])
        await front.start()
        try:
            assert front.ctx is not None and "triage" not in front.ctx.roles
            base = f"http://127.0.0.1:{front.http_port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/api/triage/review", headers=AUTH) as resp:
                    assert resp.status == 200
                    assert [h["inquiry_id"] for h in (await resp.json())["held"]] == [held_id]
                body = {"category": correct.value, "actor": OFFICIAL}
                async with http.post(
                    f"{base}/api/triage/review/{held_id}", json=body, headers=AUTH
                ) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["filed"] == "filed now"
        finally:
            await front.stop()

        async def filed() -> bool:
            return await state_of(worker, held_id) == "ticketed"

        await eventually(filed)
        assert titles(tickets) == [f"【{correct.label}】{text[:30]}"]


async def test_unchecked_inquiry_is_filed_with_the_guess_and_a_late_check_is_kept(
    tmp_path: Path, tickets: RestTicketState
) -> None:
    text, guess = unsure_text()
    cfg = config(tmp_path, tickets, 0.999)
    async with running_bridge(cfg, ["triage", "ticketing", "http"], in_memory=True) as daemon:
        held_id = await send(daemon, text, 1)

        async def held() -> bool:
            return await state_of(daemon, held_id) == "held_for_review"

        await eventually(held)
        assert daemon.ctx is not None
        role = daemon.ctx.roles["triage"]
        assert isinstance(role, TriageRole)
        assert await role.review.sweep() == 0  # still waiting
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        await daemon.ctx.store.db.execute(
            "UPDATE triage_reviews SET release_after = ? WHERE inquiry_id = ?", (past, held_id)
        )
        assert await role.review.sweep() == 1

        async def filed() -> bool:
            return await state_of(daemon, held_id) == "ticketed"

        await eventually(filed)
        assert titles(tickets) == [f"【{guess.category.label}】{text[:30]}"]

        late = Category.REPORT if guess.category is not Category.REPORT else Category.OTHER
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/api/triage/review/{held_id}",
                json={"category": late.value, "actor": OFFICIAL},
                headers=AUTH,
            ) as resp,
        ):
            assert resp.status == 200
            body = await resp.json()
        assert body["state"] == "corrected_late" and "already filed" in body["filed"]
        assert len(tickets.tickets) == 1  # no second ticket
        items = await ReviewQueue(daemon.ctx.store).training_items()
        assert [(i["category"], i["source"]) for i in items] == [
            (late.value, "official-correction")
        ]
        row = await daemon.ctx.store.get_inquiry(held_id)
        assert row is not None and row.category == late.value


async def test_review_queue_on_both_stores(store: SqlStore) -> None:
    queue = ReviewQueue(store)
    inquiry = Inquiry.create(
        platform="weibo",
        account="a",
        kind=InquiryKind.MENTION,
        external_id="x1",
        author=Author(id="u1", handle="c1"),
        text="路灯不亮",
        created_at=datetime.now(UTC),
        thread=ThreadRef(root_id="x1"),
    )
    command = TicketCommand(
        command_id=stable_id("cmd", inquiry.inquiry_id),
        action="create",
        inquiry=inquiry,
        department="city",
        category=Category.OTHER,
        reference="GB-X1",
        description=inquiry.text,
        public_text=inquiry.text,
    )
    guess = Classification(Category.OTHER, 0.4, (("路灯", 0.2),))
    await queue.hold(command, guess, "路灯不亮", timedelta(minutes=5))
    await queue.hold(command, guess, "路灯不亮", timedelta(minutes=5))  # redelivery: no-op
    assert [r.inquiry_id for r in await queue.pending()] == [inquiry.inquiry_id]
    assert await queue.expire() == 0
    assert await queue.decide(inquiry.inquiry_id, Category.OTHER, "甲") == "confirmed"
    assert await queue.decide(inquiry.inquiry_id, Category.HELP, "乙") is None
    assert [r.inquiry_id for r in await queue.unreleased()] == [inquiry.inquiry_id]
    await queue.mark_released(inquiry.inquiry_id)
    assert await queue.unreleased() == []
    assert await queue.training_items(include_confirmed=False) == []
    [item] = await queue.training_items()
    assert item["source"] == "official-confirmation" and item["category"] == "other"
