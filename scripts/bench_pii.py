"""How long ``bridge.privacy.pii.redact`` takes on the texts it meets (docs/performance.md).

Four sets: citizens' inquiries as triage sees them (tests/data/triage, 1,787 texts), the
personal-data corpus' positives and negatives (tests/data/pii), and log lines as the structlog
processor sees them. Prints microseconds per call (median and 99th percentile over the set,
each text timed as the best of ``--repeat`` runs) and the one-off cost of building the fold
table. Run it against another checkout by putting that checkout first on ``PYTHONPATH``.

    .venv/bin/python scripts/bench_pii.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bridge.privacy import pii

ROOT = Path(__file__).resolve().parent.parent
LOG_LINES = [
    "outbox step failed; retrying error=ConnectionResetError(104, 'Connection reset by peer')",
    "reply posted account=weibo:北京交通 inquiry_id=inq_5656a19e8db12cbf outcome=posted",
    "inquiry routed action=create attempt=0 category=complaint confidence=0.83 department=urban",
    "consumer started prefetch=16 queue=govbridge.reply stage=reply",
    "ticket created department=environment reference=GB-56E7B756CCC2EF73 ticket_id=T-000002",
    "http listening port=36431",
    "reply awaits approval department=environment reply_id=rep_158141663f1add3ce139c893",
]


def texts() -> dict[str, list[str]]:
    triage = [
        str(json.loads(line)["text"])
        for name in ("train.jsonl", "heldback.jsonl")
        for line in (ROOT / "tests/data/triage" / name).read_text("utf-8").splitlines()
        if line.strip()
    ]
    escape = re.compile(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})")
    mark = re.compile(r"⟦(?:m|l|id|e):([^⟧]*)⟧")

    def corpus(name: str) -> list[str]:
        lines = (ROOT / "tests/data/pii" / name).read_text("utf-8").splitlines()
        return [
            mark.sub(r"\1", escape.sub(lambda m: chr(int(m[1] or m[2], 16)), line))
            for line in lines
            if line.strip() and not line.startswith("#")
        ]

    return {
        "inquiries (tests/data/triage)": triage,
        "corpus positives": corpus("positives.txt"),
        "corpus negatives": corpus("negatives.txt"),
        "log lines": LOG_LINES * 20,
    }


def timed(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    start = time.perf_counter()
    pii.redact("电话①③⑨")  # builds whatever the matcher builds once
    print(f"first call (fold table): {(time.perf_counter() - start) * 1e3:.0f} ms")
    for name, items in texts().items():
        costs = sorted(timed(lambda t=t: pii.redact(t), args.repeat) for t in items)
        p99 = costs[min(len(costs) - 1, int(len(costs) * 0.99))]
        chars = statistics.mean(len(t) for t in items)
        print(
            f"{name}: {len(items)} texts, {chars:.0f} chars on average;"
            f" median {statistics.median(costs):.1f} µs, p99 {p99:.1f} µs, total"
            f" {sum(costs) / 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
