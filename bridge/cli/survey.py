"""``govbridge survey eval FILE [--errors]``: how well the 回访 answer parser
(``bridge/triage/survey.py``) reads labelled answers: the confusion table of each field and
one accuracy line per field (``solved accuracy 0.950 (57/60)``).

FILE is JSONL, one answer a line: ``{"text": …, "solved": true | false | null,
"satisfaction": "满意" | "基本满意" | "不满意" | null}`` (null: unclear or not said). A line
that is not such an object is refused naming the file, the line and what is wrong (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bridge.triage.survey import SATISFACTION_LEVELS, Satisfaction, evaluate


class BadAnswers(ValueError):
    """A labelled-answers file that cannot be read: the message names file, line and why."""


def register(sub: Any) -> None:
    survey = sub.add_parser("survey", help="回访 (follow-up survey) answers")
    actions = survey.add_subparsers(dest="survey_command", required=True, metavar="ACTION")
    ev = actions.add_parser("eval", help="measure the answer parser on labelled answers (JSONL)")
    ev.add_argument("file", help="JSONL: text, solved (true/false/null), satisfaction")
    ev.add_argument("--errors", action="store_true", help="also list every answer misread")
    ev.set_defaults(func=cmd_eval)


def read_answers(path: Path) -> list[tuple[str, bool | None, Satisfaction | None]]:
    """The labelled answers of a JSONL file (blank lines skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadAnswers(f"{path}: cannot read: {exc}") from None
    rows: list[tuple[str, bool | None, Satisfaction | None]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadAnswers(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise BadAnswers(f"{where}: not an object")
        missing = [k for k in ("text", "solved", "satisfaction") if k not in item]
        if missing:
            raise BadAnswers(f"{where}: missing {', '.join(missing)}")
        text, solved, satisfaction = item["text"], item["solved"], item["satisfaction"]
        if not isinstance(text, str):
            raise BadAnswers(f"{where}: text must be a string")
        if solved is not None and not isinstance(solved, bool):
            raise BadAnswers(f"{where}: solved must be true, false or null, not {solved!r}")
        if satisfaction is not None and satisfaction not in SATISFACTION_LEVELS:
            raise BadAnswers(
                f"{where}: satisfaction must be one of {', '.join(SATISFACTION_LEVELS)} or"
                f" null, not {satisfaction!r}"
            )
        rows.append((text, solved, satisfaction))
    if not rows:
        raise BadAnswers(f"{path}: no answers")
    return rows


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        rows = read_answers(Path(args.file))
    except BadAnswers as exc:
        print(f"govbridge survey eval: {exc}", file=sys.stderr)
        return 2
    print(evaluate(rows).format(show_errors=args.errors))
    return 0
