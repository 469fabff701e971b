"""``govbridge incidents eval FILE [--errors]``: how well the incident engine
(``bridge/triage/incidents.py``) groups labelled inquiries: how many labelled incidents it split
and how many incidents it merged wrongly, and one line ``pairwise precision P recall R f1 F``.

FILE is JSONL, one inquiry a line: ``{"text": …, "incident": label | null (a singleton),
"department": …, "created_at": ISO 8601 with a zone}``, optionally ``"place"`` (the platform's
place name) and ``"coords"`` ([latitude, longitude]). The inquiries are fed to one
:class:`IncidentIndex` in time order. A line that is not such an object is refused naming the
file, the line and what is wrong (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.triage.incidents import IncidentConfig, IncidentIndex, pairwise_scores


class BadInquiries(ValueError):
    """A labelled-inquiries file that cannot be read: the message names file, line and why."""


@dataclass(frozen=True, slots=True)
class Labelled:
    line: int
    text: str
    incident: str | None
    department: str
    created_at: datetime
    place: str | None
    coords: tuple[float, float] | None


def register(sub: Any) -> None:
    incidents = sub.add_parser("incidents", help="incidents: near-duplicate inquiries")
    actions = incidents.add_subparsers(dest="incidents_command", required=True, metavar="ACTION")
    ev = actions.add_parser("eval", help="measure incident grouping on labelled inquiries (JSONL)")
    ev.add_argument("file", help="JSONL: text, incident (label or null), department, created_at")
    ev.add_argument("--errors", action="store_true", help="also list every wrong split and merge")
    ev.add_argument(
        "--window-hours", type=float, default=None, help="the incident window (default 72)"
    )
    ev.set_defaults(func=cmd_eval)


def read_inquiries(path: Path) -> list[Labelled]:
    """The labelled inquiries of a JSONL file (blank lines skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInquiries(f"{path}: cannot read: {exc}") from None
    rows: list[Labelled] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInquiries(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise BadInquiries(f"{where}: not an object")
        missing = [k for k in ("text", "incident", "department", "created_at") if k not in item]
        if missing:
            raise BadInquiries(f"{where}: missing {', '.join(missing)}")
        text, incident, department = item["text"], item["incident"], item["department"]
        if not isinstance(text, str) or not text.strip():
            raise BadInquiries(f"{where}: text must be a non-empty string")
        if incident is not None and (not isinstance(incident, str) or not incident):
            raise BadInquiries(f"{where}: incident must be a label (string) or null")
        if not isinstance(department, str) or not department:
            raise BadInquiries(f"{where}: department must be a non-empty string")
        created_at = _when(item["created_at"], where)
        place = item.get("place")
        if place is not None and not isinstance(place, str):
            raise BadInquiries(f"{where}: place must be a string")
        rows.append(
            Labelled(number, text, incident, department, created_at, place, _coords(item, where))
        )
    if not rows:
        raise BadInquiries(f"{path}: no inquiries")
    return rows


def _when(raw: object, where: str) -> datetime:
    if not isinstance(raw, str):
        raise BadInquiries(f"{where}: created_at must be an ISO 8601 string")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadInquiries(f"{where}: created_at is not ISO 8601: {raw!r}") from None
    if when.tzinfo is None:
        raise BadInquiries(f"{where}: created_at has no time zone: {raw!r}")
    return when


def _coords(item: dict[str, Any], where: str) -> tuple[float, float] | None:
    raw = item.get("coords")
    if raw is None:
        return None
    ok = (
        isinstance(raw, list)
        and len(raw) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
        and -90 <= raw[0] <= 90
        and -180 <= raw[1] <= 180
    )
    if not ok:
        raise BadInquiries(f"{where}: coords must be [latitude, longitude], not {raw!r}")
    return (float(raw[0]), float(raw[1]))


@dataclass(slots=True)
class Evaluation:
    rows: list[Labelled]
    predicted: list[str]

    def format(self, *, show_errors: bool = False) -> str:
        truth = [r.incident for r in self.rows]
        precision, recall, f1 = pairwise_scores(truth, self.predicted)
        labelled: dict[str, list[int]] = defaultdict(list)
        found: dict[str, list[int]] = defaultdict(list)
        for i, (t, p) in enumerate(zip(truth, self.predicted, strict=True)):
            if t is not None:
                labelled[t].append(i)
            found[p].append(i)
        split = {t: ms for t, ms in labelled.items() if len({self.predicted[i] for i in ms}) > 1}
        merged = {
            p: ms
            for p, ms in found.items()
            if len({truth[i] if truth[i] is not None else f"\0{i}" for i in ms}) > 1
        }
        singletons = sum(1 for t in truth if t is None)
        out = [
            f"inquiries {len(self.rows)}: {len(labelled)} labelled incidents,"
            f" {singletons} singletons",
            f"found {sum(1 for ms in found.values() if len(ms) > 1)} incidents of 2 or more",
            f"wrongly split: {len(split)} of {len(labelled)} incidents",
            f"wrongly merged: {len(merged)} incidents join inquiries of different incidents"
            " or singletons",
        ]
        if show_errors:
            for label, members in sorted(split.items()):
                out.append(f"split {label}:")
                parts: dict[str, list[int]] = defaultdict(list)
                for i in members:
                    parts[self.predicted[i]].append(i)
                for part in parts.values():
                    out.append("  part: " + " | ".join(self._show(i) for i in part))
            for members in merged.values():
                out.append("merged:")
                for i in members:
                    known = truth[i]
                    out.append(f"  {known or '(singleton)'}: {self._show(i)}")
        out.append(f"pairwise precision {precision:.3f} recall {recall:.3f} f1 {f1:.3f}")
        return "\n".join(out)

    def _show(self, i: int) -> str:
        row = self.rows[i]
        return f"line {row.line} {row.text}"


def evaluate(rows: list[Labelled], config: IncidentConfig | None = None) -> Evaluation:
    """Feed the inquiries to one index in time order; the incidents it ends up with."""
    index = IncidentIndex(config)
    order = sorted(range(len(rows)), key=lambda i: rows[i].created_at)
    filed = [""] * len(rows)
    for i in order:
        r = rows[i]
        filed[i] = index.add(str(i), r.text, r.department, r.created_at, r.place, r.coords)
    # Incidents found to be one after the fact are counted as one.
    return Evaluation(rows, [index.resolve(incident) for incident in filed])


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        rows = read_inquiries(Path(args.file))
    except BadInquiries as exc:
        print(f"govbridge incidents eval: {exc}", file=sys.stderr)
        return 2
    config = IncidentConfig()
    if args.window_hours is not None:
        config = replace(config, window=timedelta(hours=args.window_hours))
    print(evaluate(rows, config).format(show_errors=args.errors))
    return 0
