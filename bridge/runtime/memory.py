"""The C heap of a long-running process (glibc's malloc; elsewhere this does nothing).

Python's small objects live in its own arenas, everything larger (dict tables, lists, bytes,
the buffers of SQLite, OpenSSL and the AMQP frames) in malloc's. glibc keeps freed memory for
later: what a start-up loads and drops (jieba's dictionary file read into a trie, the triage
model's JSON, the migrations) stays in the process's resident set, in the middle of the heap
where it is not given back by itself. Measured in docs/performance.md ("Memory")."""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: glibc's, if linked
    except (OSError, AttributeError):  # musl, macOS, Windows: no such function
        return None


def release_free_heap() -> bool:
    """Give the free pages of every malloc arena back to the system (``malloc_trim(0)``), after
    a burst of allocations that is over (a start-up's loading): a few milliseconds. True if
    any were given back."""
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))
