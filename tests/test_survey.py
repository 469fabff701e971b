"""The 回访 answer parser (bridge/triage/survey.py), its labelled answers (tests/data/survey),
``govbridge survey eval`` and the question templates whose menu digits it reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bridge.cli.main import build_parser
from bridge.cli.survey import read_answers
from bridge.reply.templates import DEFAULT_TEMPLATES, render
from bridge.triage.survey import MENU, evaluate, parse_answer
from schemas.config import DepartmentConfig

DATA = Path(__file__).resolve().parent / "data" / "survey"
TUNE, HELD_BACK = DATA / "tune.jsonl", DATA / "held-back.jsonl"


def govbridge(*argv: str) -> int:
    """A command as ``govbridge`` runs it, without ``main``'s logging set-up (which would point
    later tests' log output at this test's captured stderr)."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


def test_the_labelled_set_is_large_varied_and_split_by_its_rule() -> None:
    tune, held = read_answers(TUNE), read_answers(HELD_BACK)
    assert len(tune) + len(held) >= 300
    # Every third answer in the written order is held back: 470 written, 156 held back.
    assert len(held) == (len(tune) + len(held)) // 3
    texts = [text for text, _, _ in tune + held]
    assert len(set(texts)) == len(texts), "an answer in both parts, or twice"
    for part in (tune, held):  # each part holds every kind of label
        assert {s for _, s, _ in part} == {True, False, None}
        assert {q for _, _, q in part} == {"满意", "基本满意", "不满意", None}


def test_held_back_accuracy_is_at_least_95_percent_for_each_field() -> None:
    """Measured on answers never tuned on: 154/156 solved, 153/156 satisfaction when this
    was written (docs/reliability.md); the floor asserted is the issue's target."""
    report = evaluate(read_answers(HELD_BACK))
    assert report.total == 156
    assert report.accuracy("solved") >= 0.95, report.format(show_errors=True)
    assert report.accuracy("satisfaction") >= 0.95, report.format(show_errors=True)
    tuned = evaluate(read_answers(TUNE))
    assert tuned.accuracy("solved") >= 0.95 and tuned.accuracy("satisfaction") >= 0.95


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("呵呵，真满意", "sarcasm"),
        ("太满意了，修了三个月", "sarcasm"),
        ("[微笑]真满意", "sarcasm"),
        ("谢谢啊，终于等到了，都过去半年了呢🙂", "sarcasm"),
        ("好一个已办结", "sarcasm"),
        ("1，其实还没修好", "contradiction"),
        ("4，已经修好了，满意", "contradiction"),
        ("满意，不满意", "contradiction"),
        ("你们几点下班？", "no answer"),
        ("楼上又在装修", "no answer"),
        ("5", "no answer"),
        ("", "no answer"),
    ],
)
def test_unclear_answers_are_flagged_to_be_asked_again(text: str, reason: str) -> None:
    answer = parse_answer(text)
    assert answer.unclear == reason and answer.needs_asking_again
    if reason != "contradiction":
        assert (answer.solved, answer.satisfaction) == (None, None)


@pytest.mark.parametrize(
    ("text", "solved", "satisfaction"),
    [
        ("已解决，满意", True, "满意"),
        ("还没修", False, None),
        ("修好了但是拖了快一个月", True, "基本满意"),
        ("不是很满意", None, "不满意"),
        ("没有不满意", None, "满意"),
        ("不是不满意，就是希望以后快一点", None, "基本满意"),
        ("解决了一半", False, None),
        ("修好了又坏了", False, None),
        ("一般", None, "基本满意"),
        ("差评", None, "不满意"),
        ("👍", None, "满意"),
        ("👎", None, "不满意"),
        ("已解決，很滿意", True, "满意"),  # traditional characters
        ("冇解决", False, None),  # Cantonese
        ("⭐⭐⭐", None, "基本满意"),
        ("打5分", None, "满意"),
        ("1星都不想给", None, "不满意"),
        ("没解决，但是工作人员态度挺好的", False, None),
    ],
)
def test_what_people_write_is_read(
    text: str, solved: bool | None, satisfaction: str | None
) -> None:
    answer = parse_answer(text)
    assert (answer.solved, answer.satisfaction, answer.unclear) == (solved, satisfaction, "")


def test_each_menu_digit_means_what_the_question_says() -> None:
    """The templates print the menu; each digit, alone or with its own words, is read as the
    menu line it stands for, and the words of each line alone read the same."""
    for key in ("survey", "survey_again"):
        options = dict(re.findall(r"([1-9]) ([^；。]+)", DEFAULT_TEMPLATES[key]))
        assert set(options) == {str(d) for d in MENU}, key
        for digit, words in options.items():
            meaning = MENU[int(digit)]
            for text in (digit, f"{digit}。", f"选{digit}", f"{digit} {words}", words):
                answer = parse_answer(text)
                assert (answer.solved, answer.satisfaction) == meaning, (text, answer)
    assert parse_answer("１").solved is True  # a full-width digit


def test_survey_templates_render_and_a_department_may_word_its_own() -> None:
    dept = DepartmentConfig.model_validate(
        {
            "id": "urban",
            "name": "市城管委",
            "ticketing": {"adapter": "rest"},
            "replies": {"survey": "工单{ticket_id}办结了，{department}想听听您的意见：回复1-4。"},
        }
    )
    assert render(dept, "survey", ticket_id="T-9").startswith("工单T-9办结了，市城管委")
    again = render(dept, "survey_again", ticket_id="T-9")
    assert "工单T-9" in again and "4 未解决" in again
    with pytest.raises(ValueError, match="unknown placeholder"):
        DepartmentConfig.model_validate(
            {
                "id": "urban",
                "name": "市城管委",
                "ticketing": {"adapter": "rest"},
                "replies": {"survey_again": "{citizen_name}您好"},
            }
        )


def test_survey_eval_prints_the_tables_and_one_line_per_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"text": "已解决，满意", "solved": True, "satisfaction": "满意"},
        {"text": "还没修", "solved": False, "satisfaction": None},
        {"text": "一般", "solved": None, "satisfaction": "基本满意"},
        # labelled wrongly on purpose: the parser reads not solved and 不满意
        {"text": "没解决，不满意", "solved": True, "satisfaction": "满意"},
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8"
    )
    assert govbridge("survey", "eval", str(path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["solved accuracy 0.750 (3/4)", "satisfaction accuracy 0.750 (3/4)"]
    assert out[0] == "solved: rows = labelled, columns = parsed"
    assert "satisfaction: rows = labelled, columns = parsed" in out
    solved_row = next(line for line in out if line.startswith("true "))
    assert solved_row.split()[1:] == ["1", "1", "0"]  # labelled true: 1 read true, 1 false
    satisfied_row = next(line for line in out if line.startswith("满意 "))
    assert satisfied_row.split()[1:] == ["1", "0", "1", "0"]
    # --errors names what was misread
    assert govbridge("survey", "eval", "--errors", str(path)) == 0
    assert "没解决，不满意" in capsys.readouterr().out


def test_survey_eval_on_the_held_back_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert govbridge("survey", "eval", str(HELD_BACK)) == 0
    lines = capsys.readouterr().out.splitlines()
    for field, line in zip(("solved", "satisfaction"), lines[-2:], strict=True):
        m = re.fullmatch(rf"{field} accuracy (\d\.\d{{3}}) \((\d+)/156\)", line)
        assert m is not None, line
        assert float(m.group(1)) >= 0.95 and f"{int(m.group(2)) / 156:.3f}" == m.group(1)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ('{"text": "满意", "solved": null}', ":1: missing satisfaction"),
        ('{"text": "满意", "solved": "yes", "satisfaction": null}', ":1: solved must be"),
        ('\n{"text": "满意", "solved": null, "satisfaction": "ok"}', ":2: satisfaction must be"),
        ("not json", ":1: not JSON"),
        ("", ": no answers"),
    ],
)
def test_survey_eval_refuses_a_bad_file_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, what: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    assert govbridge("survey", "eval", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"govbridge survey eval: {path}") and what in err, err
