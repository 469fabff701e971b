"""Ports a test picks now and a process it starts binds later. Picked below the kernel's
ephemeral range (32768 and up here), where no other test's client connection or port-0 server
can take it in between: with parallel workers that happened."""

from __future__ import annotations

import random
import socket

BELOW_EPHEMERAL = (20_000, 32_000)


def free_port_range(n: int = 1) -> int:
    """A base port with ``n`` consecutive ports free right now."""
    low, high = BELOW_EPHEMERAL
    for _ in range(500):
        base = random.randint(low, high - n)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports between {low} and {high}")


def free_port() -> int:
    """One port free right now, for a server another process will start."""
    return free_port_range(1)
