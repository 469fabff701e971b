"""Status replies on the in-memory broker: ticket events delivered out of order and replayed
(published on ``ticket.updated.<dept>`` in scrambled order with duplicates, against tickets
recorded in the store) produce replies only in lifecycle order, each status at most once; a late
event after a later status was posted posts nothing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from govbridge_tools.simulators.rest import demo_ticketing_config
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.testing import Running, Simulators

from bridge.daemon import Daemon
from bridge.store import NewInquiry
from schemas.messages import ThreadRef, TicketEvent, reference_for
from schemas.vocab import TicketStatus
from tests.conftest import bridge_config, eventually, running_bridge

DEPT = "transport"
HANDLE = "hotline12345"
PLATFORM = "hotline12345"
SECRET = "order-test-secret"

# What the backend reported, in lifecycle order; a delivery scrambles and repeats these.
LIFECYCLE = (TicketStatus.REFERRED, TicketStatus.IN_PROGRESS, TicketStatus.RESOLVED)


@dataclass
class Platform:
    state: WebhookPlatformState
    server: Running[WebhookPlatformState]

    def replies(self, ticket_id: str | None = None) -> list[dict[str, Any]]:
        """Replies the platform holds, in the order they arrived."""
        return [
            r
            for r in self.state.reply_list()
            if ticket_id is None or r.get("ticket_id") == ticket_id
        ]


@pytest.fixture
async def platform(sims: Simulators) -> Platform:
    server = await sims.webhook(secret=SECRET, account_handle=HANDLE)
    return Platform(server.state, server)


def config(tmp_path: Path, platform: Platform) -> Any:
    return bridge_config(
        tmp_path,
        departments=[
            {
                "id": DEPT,
                "name": "市交通委",
                "approval": "none",
                "sla": {"complaint": "15wd"},
                # never called: only the reply role runs, events are published by the test
                "ticketing": {**demo_ticketing_config("http://127.0.0.1:9"), "poll": "0s"},
            }
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": HANDLE,
                "department": DEPT,
                "secret": SECRET,
                "reply_url": platform.server.url + "/replies",
                "platform": PLATFORM,
            }
        ],
    )


async def record_ticket(daemon: Daemon, n: int) -> str:
    """An inquiry and its ticket as triage and ticketing would have recorded them."""
    assert daemon.ctx is not None
    store = daemon.ctx.store
    inquiry_id = f"inq_order{n:04d}"
    thread = ThreadRef(root_id=f"msg-{n}")
    await store.record_inquiry(
        NewInquiry(
            inquiry_id=inquiry_id,
            platform=PLATFORM,
            account=HANDLE,
            kind="mention",
            thread_key=f"{PLATFORM}:{HANDLE}:msg-{n}",
            state="ticketed",
            department=DEPT,
            category="complaint",
            public_text="出租车拒载，请处理",
            citizen_handle=f"citizen{n}",
            visibility="public",
            thread_json=thread.model_dump_json(),
        )
    )
    ticket_id = f"T-{n:06d}"
    await store.record_ticket(
        department=DEPT,
        ticket_id=ticket_id,
        reference=reference_for(inquiry_id),
        inquiry_id=inquiry_id,
        thread_key=f"{PLATFORM}:{HANDLE}:msg-{n}",
        status="received",
        status_rank=TicketStatus.RECEIVED.rank,
        native_status="NEW",
        status_at=datetime.now(UTC).isoformat(),
    )
    return ticket_id


def event(ticket_id: str, status: TicketStatus, *, late: bool = False) -> TicketEvent:
    """The backend's change to ``status`` (the same change always has the same event id)."""
    created = status == TicketStatus.RECEIVED
    step = 0 if created else LIFECYCLE.index(status) + 1
    return TicketEvent(
        event_id=f"{ticket_id}:{'created' if created else status.value}{':late' if late else ''}",
        department=DEPT,
        ticket_id=ticket_id,
        reference=None,
        status=status,
        native_status=status.value.upper(),
        occurred_at=datetime(2025, 3, 3, 9, 0, tzinfo=UTC) + timedelta(minutes=step),
        source="create" if created else "poll",
    )


async def acked(daemon: Daemon, stage: str) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "govbridge_messages_acked_total", {"stage": stage}
    )
    return value or 0.0


async def settled(daemon: Daemon, composed: float) -> bool:
    """Every published event composed, and no reply left between approved and posted."""
    assert daemon.ctx is not None
    if await acked(daemon, "reply") < composed:
        return False
    replies = await daemon.ctx.store.list_replies()
    return all(r.state in ("posted", "superseded") for r in replies)


def assert_lifecycle_order(posted: list[dict[str, Any]]) -> None:
    statuses = [TicketStatus(r["status"]) for r in posted]
    ranks = [s.rank for s in statuses]
    assert len(set(statuses)) == len(statuses), f"a status posted twice: {statuses}"
    assert ranks == sorted(ranks), f"posted out of lifecycle order: {statuses}"


async def test_scrambled_replayed_events_reply_in_order_once(
    tmp_path: Path, platform: Platform
) -> None:
    """One event at a time, scrambled and repeated: only an event that moves the ticket forward
    produces a reply; expectations are computed from the delivery order."""
    delivery = [
        TicketStatus.IN_PROGRESS,
        TicketStatus.REFERRED,  # older than in_progress: late
        TicketStatus.IN_PROGRESS,  # replay
        TicketStatus.RECEIVED,  # the creation event, arriving last of all
        TicketStatus.RESOLVED,
        TicketStatus.REFERRED,  # replay of a late event
        TicketStatus.RESOLVED,  # replay
        TicketStatus.IN_PROGRESS,  # replay, older
    ]
    async with running_bridge(
        config(tmp_path, platform), roles=("reply",), in_memory=True
    ) as daemon:
        assert daemon.ctx is not None
        ticket_id = await record_ticket(daemon, 1)
        for n, status in enumerate(delivery, 1):
            await daemon.ctx.broker.publish(f"ticket.updated.{DEPT}", event(ticket_id, status))
            await eventually(lambda n=n: settled(daemon, n), timeout=20)  # type: ignore[misc]
        stored = {r.status: r.state for r in await daemon.ctx.store.list_replies()}

    expected: list[str] = []
    highest = TicketStatus.RECEIVED.rank  # the ticket was recorded as received
    for status in delivery:
        if status.rank > highest:
            expected.append(status.value)
            highest = status.rank
    posted = platform.replies(ticket_id)
    print(f"\ndelivered {[s.value for s in delivery]} -> posted {[r['status'] for r in posted]}")
    assert [r["status"] for r in posted] == expected == ["in_progress", "resolved"]
    assert_lifecycle_order(posted)
    # The creation event came after a later status had been posted: its reply is superseded.
    assert stored["received"] == "superseded"
    assert "referred" not in stored  # a late event composes nothing at all


async def test_burst_of_scrambled_duplicates_then_late_events(
    tmp_path: Path, platform: Platform
) -> None:
    """Many tickets' events all at once, shuffled with duplicates (concurrent consumers), then
    late and replayed events after the final status was posted."""
    n_tickets = 25
    rng = random.Random(5)
    async with running_bridge(
        config(tmp_path, platform), roles=("reply",), in_memory=True
    ) as daemon:
        assert daemon.ctx is not None
        tickets = [await record_ticket(daemon, n) for n in range(1, n_tickets + 1)]
        burst = [
            event(t, s)
            for t in tickets
            for s in (TicketStatus.RECEIVED, *LIFECYCLE)
            for _ in range(rng.randint(1, 3))
        ]
        rng.shuffle(burst)
        await daemon.ctx.broker.publish_many([(f"ticket.updated.{DEPT}", e) for e in burst])
        await eventually(lambda: settled(daemon, len(burst)), timeout=40)
        after_burst = len(platform.replies())

        # Every final reply is out; now the backend re-sends old changes and a late referral.
        late = [event(t, TicketStatus.REFERRED, late=True) for t in tickets]
        late += [event(t, s) for t in tickets for s in LIFECYCLE]
        rng.shuffle(late)
        await daemon.ctx.broker.publish_many([(f"ticket.updated.{DEPT}", e) for e in late])
        await eventually(lambda: settled(daemon, len(burst) + len(late)), timeout=40)
        late_rows = await daemon.ctx.store.db.fetchall(
            "SELECT applied FROM ticket_events WHERE event_id LIKE '%:late'"
        )

    replies = platform.replies()
    print(
        f"\n{len(burst)} events for {n_tickets} tickets in one shuffled burst -> {after_burst}"
        f" replies; then {len(late)} late/replayed events -> {len(replies) - after_burst} more"
    )
    assert len(replies) == after_burst  # nothing posted for late or replayed events
    assert len(late_rows) == n_tickets and not any(r["applied"] for r in late_rows)
    for t in tickets:
        posted = platform.replies(t)
        assert_lifecycle_order(posted)
        assert [r["status"] for r in posted][-1] == "resolved"
    assert len({r["idempotency_key"] for r in replies}) == len(replies)
