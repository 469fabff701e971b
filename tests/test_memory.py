"""A process gives its start-up's freed heap back to the system (bridge/runtime/memory.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# 100,000 blocks of 1 KiB (malloc's, not Python's small-object arenas), all freed but the
# last, which keeps the heap's top in use: glibc does not shrink such a heap by itself.
PROBE = """
import ctypes
from bridge.runtime.memory import _malloc_trim, release_free_heap

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

if _malloc_trim() is None:
    print("no malloc_trim")
    raise SystemExit(0)
blocks = [bytes(1024) for _ in range(100_000)]
last = blocks.pop()
del blocks
before = rss_kb()
given_back = release_free_heap()
print(given_back, before - rss_kb(), len(last))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_freed_heap_goes_back_to_the_system() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if out == ["no", "malloc_trim"]:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    given_back, freed_kb, kept = out
    assert given_back == "True"
    assert int(freed_kb) > 50_000  # of the ~100 MB freed, most leave the resident set
    assert kept == "1024"
