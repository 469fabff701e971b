"""govbridge's test world, shared by every test (as ``nameko.testing`` is nameko's): a clock the
test moves, a tap on the bus, the simulators started in-process, signed webhooks, and an
in-memory broker that routes by the stage table so a stage's logic runs without RabbitMQ.
The runtime never imports it (tests/test_layering.py)."""

from govbridge_tools.testing.bus import BusTap, Seen
from govbridge_tools.testing.clock import ManualClock
from govbridge_tools.testing.hooks import SignedHook, encode
from govbridge_tools.testing.memory import MemoryBroker, topic_matches
from govbridge_tools.testing.ports import free_port, free_port_range
from govbridge_tools.testing.sims import Running, Simulators

__all__ = [
    "BusTap",
    "ManualClock",
    "MemoryBroker",
    "Running",
    "Seen",
    "SignedHook",
    "Simulators",
    "encode",
    "free_port",
    "free_port_range",
    "topic_matches",
]
