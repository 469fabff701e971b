"""``govbridge bench --stage incidents``: the cost of :meth:`IncidentIndex.add` with a full
window, and the memory the index takes. No broker: the engine is pure logic.

The inquiries are the hand-written corpus (``tests/data/incidents``; a few built-in lines when
run outside a checkout) with their streets, sites and house numbers replaced at random from a
few thousand made-up names, spread over 12 departments and over the window, so the index holds
``--in-window`` inquiries (default 100,000) of realistic length and vocabulary, with
near-duplicates as common as in the corpus. The first ``--in-window`` adds fill the window;
the next ``--measure`` adds (default 10,000) are timed one by one, in wall-clock time and in
the thread's CPU time (which a machine busy with other work does not inflate). Memory is the
growth of the process's resident set while the window fills (``/proc/self/statm``): the
entries, the place index and the MinHash/LSH tables (jieba is loaded before).
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.triage.incidents import IncidentConfig, IncidentIndex

CORPUS = Path(__file__).resolve().parents[3] / "tests" / "data" / "incidents"
FALLBACK = [
    "解放路128号门口水管爆了，水冲起一米多高，路上全是水",
    "中山路200号附近路灯坏了好几天了，晚上走路看不见",
    "阳光小区东门的垃圾三天没人清运了，臭气熏天",
    "幸福里小区3栋电梯又坏了，住18楼的老人下不了楼",
    "请问水费可以在手机上交吗？营业厅太远了",
    "建设路地铁工地半夜还在施工，噪音太大根本睡不着",
]
DEPARTMENTS = [f"dept{i}" for i in range(12)]
_CHARS = (
    "东西南北中新华民建设和平解放人光明幸福长江黄河文化学府青年工农胜利朝阳滨湖花园迎宾红星"
    "金色翠锦绣丽景碧桂"
)
_STREET = re.compile(r"[\u4e00-\u9fff]{2}(?:大道|路|街)")
_SITE = re.compile(r"[\u4e00-\u9fff]{2}(?:小区|花园|家园|苑|湾)")
_NUMBER = re.compile(r"\d{1,4}号")


def _texts() -> list[str]:
    texts: list[str] = []
    for name in ("tune.jsonl", "heldback.jsonl"):
        path = CORPUS / name
        if path.exists():
            texts += [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines()]
    return texts or FALLBACK


def inquiries(n: int, window: timedelta, seed: int = 24) -> list[tuple[str, str, datetime]]:
    """``n`` (text, department, created_at) spread evenly over ``window``."""
    rng = random.Random(seed)
    texts = _texts()

    def name() -> str:
        return rng.choice(_CHARS) + rng.choice(_CHARS)

    out = []
    start = datetime(2026, 11, 2, tzinfo=UTC)
    step = window / n
    for i in range(n):
        t = rng.choice(texts)
        t = _STREET.sub(lambda m: name() + m.group()[-1], t)
        t = _SITE.sub(lambda m: name() + m.group()[2:], t)
        t = _NUMBER.sub(lambda _: f"{rng.randint(1, 400)}号", t)
        out.append((t, rng.choice(DEPARTMENTS), start + step * i))
    return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run(in_window: int = 100_000, measure: int = 10_000) -> dict[str, Any]:
    config = IncidentConfig()
    # all inside one window: the fill and the measured adds fit (nothing expires)
    items = inquiries(in_window + measure, config.window * 0.95)
    IncidentIndex(config).add("warm-up", "预热：加载分词器", "warm-up", items[0][2])  # jieba, idf
    index = IncidentIndex(config)
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    for i, (text, dept, at) in enumerate(items[:in_window]):
        index.add(str(i), text, dept, at)
    fill_s = time.perf_counter() - t0
    rss1 = _rss_bytes()
    latencies = []
    cpu = []
    for i, (text, dept, at) in enumerate(items[in_window:], in_window):
        started, cpu0 = time.perf_counter(), time.thread_time()
        index.add(str(i), text, dept, at)
        latencies.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu0)
    lat = sorted(latencies)
    cpu.sort()
    return {
        "stage": "incidents",
        "in_window": len(index) - measure,
        "measured_adds": measure,
        "fill_s": round(fill_s, 1),
        "fill_ms_per_add": round(fill_s * 1000 / in_window, 3),
        "add_p50_ms": round(statistics.median(lat) * 1000, 3),
        "add_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
        "add_max_ms": round(lat[-1] * 1000, 3),
        # CPU time of each add: what the add costs, without the waits for a busy machine's CPU
        "add_cpu_p50_ms": round(statistics.median(cpu) * 1000, 3),
        "add_cpu_p99_ms": round(cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))] * 1000, 3),
        "load_average": round(os.getloadavg()[0], 2),
        "memory_mb": round((rss1 - rss0) / 1e6, 1),
        "memory_bytes_per_inquiry": round((rss1 - rss0) / max(1, in_window)),
    }
