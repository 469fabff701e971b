"""Held ticketing commands (``bridge/runtime/held.py``) on SQLite and PostgreSQL, published on
the in-memory broker: two processes releasing the same department at once publish each held
command once; one of an operation only releases that operation; a command held again while its
release runs is kept; the audit trail has each hold and release."""

from __future__ import annotations

import asyncio
from collections import Counter

from govbridge_tools.testing import BusTap, MemoryBroker

from bridge.runtime.held import HeldCommands
from bridge.store import SqlStore, audit
from schemas.messages import TicketCommand
from tests.conftest import eventually
from tests.contract.harness_open311 import Open311Harness


def commands(n: int) -> list[TicketCommand]:
    h = Open311Harness()
    return [h.command(i) for i in range(n)]


async def test_two_processes_release_each_held_command_once(
    store: SqlStore, memory_broker: MemoryBroker
) -> None:
    held = commands(20)
    first, second = HeldCommands(store, memory_broker), HeldCommands(store, memory_broker)
    async with BusTap(memory_broker, "inquiry.routed.#") as tap:
        for c in held:
            await first.hold(c, "ticket system refused: Invalid API key")
        append = held[0].model_copy(update={"command_id": "cmd-append-1", "action": "append"})
        await first.hold(append, "ticket system refused: Invalid API key")
        assert await second.counts() == {"transport": {"create": 20, "append": 1}}

        creates = await asyncio.gather(
            first.release("transport", why="credentials changed", operation="create"),
            second.release("transport", why="credentials changed", operation="create"),
        )
        assert sum(creates) == 20

        async def all_arrived() -> bool:
            return len(tap.bodies()) >= 20

        await eventually(all_arrived)
        ids = Counter(b["command_id"] for b in tap.bodies())
        assert set(ids) == {c.command_id for c in held} and set(ids.values()) == {1}
        assert await first.counts() == {"transport": {"append": 1}}  # another operation: kept
        assert first.waiting("transport") == 1 and first.waiting("transport", "create") == 0

        assert await second.release("transport", why="retry now", actor="ops-li") == 1
        assert await first.counts() == {}
    records = await audit.recent(store.db, 100)
    assert sum(r["action"] == "ticket.held" for r in records) == 21
    released = [r for r in records if r["action"] == "ticket.released"]
    assert len(released) == 21 and released[0]["actor"] == "ops-li"


async def test_a_command_held_again_during_its_release_is_kept(
    store: SqlStore, memory_broker: MemoryBroker
) -> None:
    [command] = commands(1)
    broker = memory_broker
    held = HeldCommands(store, broker)
    await held.hold(command, "refused")

    published = broker.publish

    async def publish_and_refuse_again(key: str, message: TicketCommand) -> None:
        await published(key, message)
        await held.hold(message, "refused again")  # the consumer was quicker than the delete

    broker.publish = publish_and_refuse_again  # type: ignore[method-assign,assignment]
    try:
        assert await held.release("transport", why="credentials changed") == 1
    finally:
        broker.publish = published  # type: ignore[method-assign]
    assert await held.counts() == {"transport": {"create": 1}}
