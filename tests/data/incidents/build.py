"""Turn the hand-written corpus (``incidents-*.txt``, ``singletons-*.txt``) into the JSONL that
``govbridge incidents eval`` reads, split before any engine was written: every third incident
and every third singleton (in the order written) go to ``heldback.jsonl``, the rest to
``tune.jsonl``. The texts are written by hand; this only adds the JSON, the times and the split.

    python tests/data/incidents/build.py
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent
TZ = "+08:00"
COORDS = re.compile(r"^(-?\d+\.\d+),(-?\d+\.\d+)$")


def _line(text: str) -> tuple[dict[str, object], str]:
    """An optional ``{place}`` or ``{lat,lon}`` in front of the words."""
    extra: dict[str, object] = {}
    m = re.match(r"^\{([^}]*)\}\s*", text)
    if m:
        text = text[m.end() :]
        c = COORDS.match(m.group(1))
        if c:
            extra["coords"] = [float(c.group(1)), float(c.group(2))]
        else:
            extra["place"] = m.group(1)
    return extra, text.strip()


def incidents() -> list[list[dict[str, object]]]:
    out: list[list[dict[str, object]]] = []
    for path in sorted(HERE.glob("incidents-*.txt")):
        current: list[dict[str, object]] | None = None
        label = department = ""
        start = datetime.min
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip() or raw.startswith("#"):
                continue
            if raw.startswith("=="):
                label, department, when = (p.strip() for p in raw[2:].split("|"))
                start = datetime.fromisoformat(when)
                current = []
                out.append(current)
                continue
            assert current is not None, f"{path}: a line before the first incident"
            offset, _, rest = raw.partition(" ")
            extra, text = _line(rest)
            at = start + timedelta(minutes=int(offset.lstrip("+")))
            current.append(
                {
                    "text": text,
                    "incident": label,
                    "department": department,
                    "created_at": at.isoformat() + TZ,
                    **extra,
                }
            )
    return out


def singletons() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for path in sorted(HERE.glob("singletons-*.txt")):
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.startswith("- "):
                continue
            department, when, rest = (p.strip() for p in raw[2:].split("|", 2))
            extra, text = _line(rest)
            at = datetime.strptime("2026-" + when, "%Y-%m-%d %H:%M")
            out.append(
                {
                    "text": text,
                    "incident": None,
                    "department": department,
                    "created_at": at.isoformat() + TZ,
                    **extra,
                }
            )
    return out


def main() -> None:
    tune: list[dict[str, object]] = []
    held: list[dict[str, object]] = []
    for i, incident in enumerate(incidents()):
        (held if i % 3 == 2 else tune).extend(incident)
    for i, single in enumerate(singletons()):
        (held if i % 3 == 2 else tune).append(single)
    for name, rows in (("tune.jsonl", tune), ("heldback.jsonl", held)):
        rows.sort(key=lambda r: str(r["created_at"]))
        with (HERE / name).open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
