"""The ``refuse`` outage the ticket-system simulators share: the port stops listening."""

from __future__ import annotations

from typing import Protocol


class Listener(Protocol):
    async def listen(self) -> None: ...

    async def stop_listening(self) -> None: ...


class HasOutage(Protocol):
    outage: str | None


async def change_outage(state: HasOutage, listener: Listener | None, mode: str | None) -> None:
    """Set ``state.outage`` to ``mode``; entering ``"refuse"`` stops listening. The end of a
    refusal is announced only once the port listens again, so a client that sees the outage
    lifted never finds the port still closed."""
    previous = state.outage
    if listener is not None and previous == "refuse" and mode != "refuse":
        await listener.listen()
    state.outage = mode
    if listener is not None and mode == "refuse" and previous != "refuse":
        await listener.stop_listening()
