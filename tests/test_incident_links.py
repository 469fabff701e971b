"""Incidents kept in the store (bridge/triage/incident_links.py, bridge/store/incidents.py), on
SQLite and PostgreSQL, without a broker: what two triage processes and a restart see.

- Two processes deciding a burst main's cases at the same time, each with its own index, make
  one incident with one lead; the others are merged into the lead (merge) or linked (suggest).
- A process started later rebuilds its index from the store and puts the next report in the
  same incident.
- The surge is raised once (one event, one alert) whichever process decides the case that makes
  it, with its 舆情 clock in the incident's row; a surge needs the threshold within the window.
- ``incidents = "off"`` stores nothing; a redelivered inquiry keeps its link.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from govbridge_tools.simulators.rest import demo_ticketing_config
from prometheus_client import CollectorRegistry

from bridge.runtime.alerts import Alerts
from bridge.store import NewInquiry, SqlStore, open_store
from bridge.telemetry.metrics import Metrics
from bridge.triage.incident_links import SURGE_ALERT, IncidentLinker
from schemas.messages import Author, IncidentSurge, Inquiry, Message, ThreadRef
from schemas.vocab import Category, InquiryKind, InquiryState
from tests.conftest import bridge_config
from tests.pg import pg_database
from tests.test_incidents_e2e import burst

BURST = [burst(n) for n in range(10)]  # each resembles every other one
OTHER = "请问水费可以在手机上交吗？营业厅太远了"


@dataclass
class FakeBroker:
    published: list[tuple[str, Message]] = field(default_factory=list)

    async def publish(self, routing_key: str, message: Message) -> None:
        self.published.append((routing_key, message))


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/govbridge.db"
    else:
        async with pg_database("gbtest_inc") as url:
            yield url


def process(tmp_path: Path, store: SqlStore, mode: str = "merge", **incidents: Any) -> Any:
    """One triage process's view: its config, the shared store, its own broker and alerts."""
    cfg = bridge_config(
        tmp_path,
        departments=[
            {
                "id": "water",
                "name": "市水务集团",
                "incidents": mode,
                "ticketing": demo_ticketing_config("http://127.0.0.1:9"),
            }
        ],
        incidents=incidents,
    )
    return SimpleNamespace(
        cfg=cfg,
        store=store,
        broker=FakeBroker(),
        alerts=Alerts(Metrics(CollectorRegistry())),
    )


def inquiry(n: int, text: str, at: datetime) -> Inquiry:
    return Inquiry.create(
        platform="hotline",
        account="hotline",
        kind=InquiryKind.MENTION,
        external_id=f"m-{n}",
        author=Author(id=str(1000 + n), handle=f"user{n}"),
        text=text,
        created_at=at,
        thread=ThreadRef(root_id=f"m-{n}"),
    )


async def triage(linker: IncidentLinker, store: SqlStore, inq: Inquiry) -> Any:
    """What the triage role does around the link: decide it, then record the inquiry."""
    dept = linker.ctx.cfg.department("water")
    link = await linker.link(inq, inq.text, dept, Category.COMPLAINT, files_now=True)
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=inq.inquiry_id,
            platform=inq.platform,
            account=inq.account,
            kind=inq.kind.value,
            thread_key=inq.thread_key,
            state=InquiryState.TRIAGED,
            department="water",
            category="complaint",
            public_text=inq.text,
        )
    )
    return link


async def two_processes(
    tmp_path: Path, url: str, mode: str = "merge", **incidents: Any
) -> tuple[list[Any], list[SqlStore]]:
    stores = [await open_store(url), await open_store(url)]
    ctxs = [process(tmp_path, s, mode, **incidents) for s in stores]
    return ctxs, stores


@pytest.mark.parametrize("mode", ["merge", "suggest"])
async def test_two_processes_and_a_restart_keep_one_incident(
    tmp_path: Path, store_url: str, mode: str
) -> None:
    ctxs, stores = await two_processes(tmp_path, store_url, mode)
    a, b = (IncidentLinker(cast(Any, c)) for c in ctxs)
    try:
        await a.start()
        await b.start()
        now = datetime.now(UTC)
        inqs = [inquiry(n, t, now - timedelta(minutes=30 - n)) for n, t in enumerate(BURST)]
        # the first alone (it is the lead), then the rest split over both processes at once
        await triage(a, stores[0], inqs[0])
        await asyncio.gather(
            *(
                triage(a if n % 2 else b, stores[n % 2], inq)
                for n, inq in enumerate(inqs[1:], start=1)
            )
        )
        other = inquiry(99, OTHER, now)
        await triage(b, stores[1], other)

        lead = inqs[0].inquiry_id
        cases = await stores[0].incident_cases(lead)
        assert cases[0].inquiry_id == lead
        assert {c.inquiry_id for c in cases} == {i.inquiry_id for i in inqs}
        later = "merged" if mode == "merge" else "linked"
        assert [c.role for c in cases] == ["lead"] + [later] * (len(BURST) - 1)
        assert all(c.lead_inquiry == (lead if mode == "merge" else None) for c in cases[1:])
        row = await stores[0].get_incident(lead)
        assert row is not None and row.lead_inquiry == lead
        other_case = await stores[0].get_incident_case(other.inquiry_id)
        assert other_case is not None and other_case.incident_id != lead
        merged = await stores[0].merged_cases(lead)
        assert len(merged) == (len(BURST) - 1 if mode == "merge" else 0)

        # a restarted process rebuilds its index from the store
        c_store = await open_store(store_url)
        try:
            c = IncidentLinker(cast(Any, process(tmp_path, c_store, mode)))
            await c.start()
            assert len(c.index) == len(BURST) + 1
            late = inquiry(50, "解放路128号爆管到现在还没修好吗，水还在冒", datetime.now(UTC))
            link = await triage(c, c_store, late)
            assert link.case.incident_id == lead
            assert link.case.role == later
        finally:
            await c_store.close()
    finally:
        for s in stores:
            await s.close()


async def test_a_surge_is_announced_once_whichever_process_decides_it(
    tmp_path: Path, store_url: str
) -> None:
    ctxs, stores = await two_processes(tmp_path, store_url, "suggest")
    a, b = (IncidentLinker(cast(Any, c)) for c in ctxs)
    try:
        now = datetime.now(UTC)
        inqs = [inquiry(n, t, now - timedelta(minutes=10 - n)) for n, t in enumerate(BURST[:6])]
        await triage(a, stores[0], inqs[0])
        await asyncio.gather(
            *(
                triage(a if n % 2 else b, stores[n % 2], inq)
                for n, inq in enumerate(inqs[1:], start=1)
            )
        )
        events = [m for c in ctxs for key, m in c.broker.published if key == "incident.surge.water"]
        assert len(events) == 1
        surge = events[0]
        assert isinstance(surge, IncidentSurge)
        assert surge.incident_id == inqs[0].inquiry_id
        assert surge.size >= 3 and surge.category == Category.COMPLAINT
        assert surge.public_answer_due - surge.raised_at == timedelta(hours=48)
        assert all(i.text not in surge.model_dump_json() for i in inqs)
        alerts = [k for c in ctxs for k in c.alerts.reasons() if k[0] == SURGE_ALERT]
        assert alerts == [(SURGE_ALERT, "water", "complaint")]
        row = await stores[0].get_incident(surge.incident_id)
        assert row is not None and row.surge_announced and row.surge_size == 3
        assert row.public_answer_due is not None and row.surge_at is not None
        due = datetime.fromisoformat(row.public_answer_due)
        assert due - datetime.fromisoformat(row.surge_at) == timedelta(hours=48)
        assert "解放路" in (row.places or "")
    finally:
        for s in stores:
            await s.close()


async def test_a_surge_needs_the_threshold_within_the_window(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/g.db")
    try:
        ctx = process(tmp_path, store, "suggest", surge_threshold=4, surge_window="24h")
        linker = IncidentLinker(cast(Any, ctx))
        start = datetime.now(UTC) - timedelta(hours=60)
        # 13 hours apart: never 4 within 24 hours, though all one incident (72 h window)
        for n in range(5):
            await triage(linker, store, inquiry(n, BURST[n], start + timedelta(hours=13 * n)))
        assert ctx.broker.published == []
        first = inquiry(0, BURST[0], start).inquiry_id
        assert len(await store.incident_cases(first)) == 5
        row = await store.get_incident(first)
        assert row is not None and row.surge_at is None
        # three more within the hour: the 4th in the window raises it
        recent = datetime.now(UTC)
        for n in range(5, 8):
            await triage(linker, store, inquiry(n, BURST[n], recent + timedelta(minutes=n)))
        assert [k for k, _ in ctx.broker.published] == ["incident.surge.water"]
    finally:
        await store.close()


async def test_off_stores_nothing_and_a_redelivery_keeps_its_link(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/g.db")
    try:
        now = datetime.now(UTC)
        off = IncidentLinker(cast(Any, process(tmp_path, store, "off")))
        assert await triage(off, store, inquiry(0, BURST[0], now)) is None
        assert await store.get_incident_case(inquiry(0, BURST[0], now).inquiry_id) is None

        on = IncidentLinker(cast(Any, process(tmp_path, store, "merge")))
        first = await triage(on, store, inquiry(1, BURST[1], now))
        second = await triage(on, store, inquiry(2, BURST[2], now))
        again = await on.link(
            inquiry(2, BURST[2], now),
            BURST[2],
            on.ctx.cfg.department("water"),
            Category.COMPLAINT,
            files_now=True,
        )
        assert again is not None and again.case == second.case
        assert second.case.role == "merged" and second.case.lead_inquiry == first.case.inquiry_id
        assert len(await store.incident_cases(first.case.incident_id)) == 2
    finally:
        await store.close()
