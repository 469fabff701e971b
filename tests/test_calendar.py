"""Working days with 调休: one calendar for every clock (bridge/deadlines.py), chinese-calendar's
published arrangement for the years it carries, ``[calendar]`` overrides for later years and
local holidays, days counted in Beijing time, and ``govbridge check`` warning past coverage."""

from __future__ import annotations

import argparse
import tomllib
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge import deadlines
from bridge.cli import check
from bridge.config import ConfigError, parse_config
from bridge.deadlines import WorkCalendar, calendar_of, deadline_for, format_deadline
from bridge.reports.performance import department_reports
from bridge.store import NewInquiry, open_store
from schemas.config import CalendarConfig, GovbridgeConfig
from schemas.vocab import Category
from tests.conftest import AMQP_URL

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "govbridge.toml"
BEIJING = timezone(timedelta(hours=8))


@pytest.fixture(autouse=True)
def library_ends_in_2026(monkeypatch: pytest.MonkeyPatch) -> None:
    """chinese-calendar 1.11 carries 2004–2026; a later release that carries 2027 must not turn
    these tests of "a year nobody gave" into tests of nothing, so 2027 stays uncovered here."""
    assert deadlines.LIBRARY_YEARS[0] <= 2004 and deadlines.LIBRARY_YEARS[1] >= 2026
    monkeypatch.setattr(deadlines, "LIBRARY_YEARS", (2004, 2026))


def config(calendar: dict[str, Any] | None = None, **dept: Any) -> GovbridgeConfig:
    """A config with one department whose limits are in working days."""
    department = {
        "id": "urban",
        "name": "市城管委",
        "sla": {"consultation": "1wd", "help": "2wd", "complaint": "3wd", "other": "10wd"},
        "ticketing": {"adapter": "rest"},
        **dept,
    }
    return GovbridgeConfig.model_validate(
        {"departments": [department], **({"calendar": calendar} if calendar else {})}
    )


def beijing(*args: int) -> datetime:
    return datetime(*args, tzinfo=BEIJING)  # type: ignore[misc]


def test_2026_make_up_working_days_and_holidays_as_the_state_council_published_them() -> None:
    cal = WorkCalendar.of(CalendarConfig())
    # Spring Festival 2026: 15–23 February off, Saturdays 14 and 28 February worked.
    # National Day 2026: 1–7 October off, Sunday 20 September and Saturday 10 October worked.
    worked_weekend_days = [date(2026, 2, 14), date(2026, 2, 28), date(2026, 9, 20)]
    worked_weekend_days.append(date(2026, 10, 10))
    for day in worked_weekend_days:
        assert day.weekday() >= 5 and cal.is_workday(day), day
    holiday_weekdays = [date(2026, 2, 16), date(2026, 2, 23), date(2026, 10, 7)]
    holiday_weekdays += [date(2026, 10, d) for d in (1, 2, 5, 6)]
    for day in holiday_weekdays:
        assert day.weekday() < 5 and not cal.is_workday(day), day
    assert cal.is_workday(date(2026, 2, 24)) and cal.is_workday(date(2026, 10, 8))
    # The whole of February 2026: 20 weekdays, 6 of them holidays, 2 Saturdays worked.
    february = [date(2026, 2, d) for d in range(1, 29)]
    assert sum(cal.is_workday(d) for d in february) == 16


def test_deadlines_in_working_days_across_the_spring_festival_and_national_day() -> None:
    dept = config().departments[0]
    # Friday 13 February, 10:00: the Saturday after is worked (day 1), then nine days off.
    friday = beijing(2026, 2, 13, 10, 0)
    assert deadline_for(dept, Category.HELP, friday) == beijing(2026, 2, 24, 10, 0)
    assert deadline_for(dept, Category.CONSULTATION, friday) == beijing(2026, 2, 14, 10, 0)
    # Received on the worked Saturday itself: counting starts the next day, past the holiday.
    assert deadline_for(dept, Category.CONSULTATION, beijing(2026, 2, 14, 9)) == beijing(
        2026, 2, 24, 9
    )
    # Friday 18 September: Sunday 20 September is worked, so 3 working days end on Tuesday.
    assert deadline_for(dept, Category.COMPLAINT, beijing(2026, 9, 18, 9)) == beijing(
        2026, 9, 22, 9
    )
    # Wednesday 30 September: 1–7 October off, 8 and 9 October, then Saturday 10 October.
    eve = beijing(2026, 9, 30, 15, 0)
    assert deadline_for(dept, Category.HELP, eve) == beijing(2026, 10, 9, 15, 0)
    assert deadline_for(dept, Category.COMPLAINT, eve) == beijing(2026, 10, 10, 15, 0)
    # 10 working days from Thursday 12 February: 13, 14 (Sat), 24–27, 28 (Sat), 2, 3, 4 March.
    assert deadline_for(dept, Category.OTHER, beijing(2026, 2, 12, 8)) == beijing(2026, 3, 4, 8)
    assert format_deadline(deadline_for(dept, Category.HELP, friday)) == "2026年2月24日"


def test_a_utc_start_near_midnight_counts_from_the_beijing_day() -> None:
    dept = config().departments[0]
    # 16:30 UTC on Friday 13 February is 00:30 on Saturday 14 February in Beijing (a worked
    # Saturday): one working day later is Tuesday 24 February, not Saturday 14 February.
    after_midnight = datetime(2026, 2, 13, 16, 30, tzinfo=UTC)
    deadline = deadline_for(dept, Category.CONSULTATION, after_midnight)
    assert deadline == beijing(2026, 2, 24, 0, 30)
    assert deadline is not None and deadline.utcoffset() == timedelta(hours=8)
    assert format_deadline(deadline) == "2026年2月24日"
    # An hour earlier it is still Friday in Beijing: the worked Saturday is the day.
    before_midnight = datetime(2026, 2, 13, 15, 30, tzinfo=UTC)
    assert deadline_for(dept, Category.CONSULTATION, before_midnight) == beijing(
        2026, 2, 14, 23, 30
    )
    # A deadline held in UTC is printed as the Beijing date when the zone is given.
    assert format_deadline(datetime(2026, 2, 23, 16, 30, tzinfo=UTC), BEIJING) == "2026年2月24日"
    # Hours are hours whatever the calendar; the answer is in Beijing time too.
    hourly = config(sla={"complaint": "2h"}).departments[0]
    two_hours = deadline_for(hourly, Category.COMPLAINT, after_midnight)
    assert two_hours == after_midnight + timedelta(hours=2)
    assert two_hours is not None and two_hours.utcoffset() == timedelta(hours=8)


def test_a_2027_deadline_without_overrides_counts_weekdays_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A year nobody covers is counted Monday to Friday, announced once in the log (check
    warns 60 days ahead): clocks never stop, so no citizen is left without a date."""
    deadlines._warned.discard(2027)
    dept = config().departments[0]
    # 10 working days from Friday 18 December 2026: 21–25 and 28–31 December (9), then
    # Friday 1 January 2027 counted as a weekday (chinese-calendar gives no 2027 here).
    with capture_logs() as logs:
        first = deadline_for(dept, Category.OTHER, beijing(2026, 12, 18, 10))
        again = deadline_for(dept, Category.OTHER, beijing(2026, 12, 21, 10))
    assert first == beijing(2027, 1, 1, 10)
    assert again == beijing(2027, 1, 4, 10)
    warned = [e for e in logs if e.get("year") == 2027]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert "no working-day calendar for 2027" in warned[0]["reason"]
    assert "[calendar]" in warned[0]["reason"] and "years" in warned[0]["reason"]
    # A deadline that stays in 2026 counts the published arrangement as before.
    assert deadline_for(dept, Category.COMPLAINT, beijing(2026, 12, 18, 10)) == beijing(
        2026, 12, 23, 10
    )


async def test_reports_across_the_uncovered_year_keep_counting(tmp_path: Path) -> None:
    """A report on 4 January 2027 still answers: the 15-working-day ticket of 18 December is
    counted with 2027's weekdays and is neither overdue nor at risk yet."""
    friday = beijing(2026, 12, 18, 10)
    cfg = config(sla={"complaint": "15wd"})
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        await store.record_inquiry(
            NewInquiry(
                inquiry_id="inq_0",
                thread_key="t0",
                state="ticketed",
                department="urban",
                category="complaint",
                platform="weibo",
                account="acc",
                kind="comment",
            )
        )
        await store.record_ticket(
            department="urban",
            ticket_id="T0",
            reference="GB-0",
            inquiry_id="inq_0",
            thread_key="t0",
            status="received",
            status_rank=10,
            native_status="NEW",
            status_at=friday.isoformat(),
        )
        await store.db.execute("UPDATE tickets SET created_at = ?", (friday.isoformat(),))
        for now in (beijing(2026, 12, 30, 12), beijing(2027, 1, 4, 12)):
            reports, _ = await department_reports(store, cfg, now)
            assert (reports[0].tickets, reports[0].open_overdue) == (1, 0)
        reports, _ = await department_reports(store, cfg, beijing(2027, 1, 12, 12))
        assert reports[0].open_overdue == 1  # 15 working days ended on Friday 8 January
    finally:
        await store.close()


def test_a_2027_deadline_with_overrides_is_computed() -> None:
    calendar = {"years": [2027], "holidays": ["2027-01-01"], "workdays": ["2027-01-09"]}
    dept = config(calendar).departments[0]
    # From Friday 25 December 2026: 28–31 December (4), 1 January off, 4–8 January (9),
    # Saturday 9 January worked (10).
    assert deadline_for(dept, Category.OTHER, beijing(2026, 12, 25, 10)) == beijing(2027, 1, 9, 10)
    cal = calendar_of(dept)
    assert not cal.is_workday(date(2027, 1, 1)) and cal.is_workday(date(2027, 1, 9))
    assert not cal.is_workday(date(2027, 1, 10)) and cal.is_workday(date(2027, 1, 11))
    # A year nobody gave counts Monday to Friday.
    assert cal.is_workday(date(2028, 1, 3)) and not cal.is_workday(date(2028, 1, 8))


def test_a_departments_local_days_count_for_its_clocks_only() -> None:
    shared = {"holidays": ["2026-03-06"]}  # a local holiday of the whole city
    cfg = GovbridgeConfig.model_validate(
        {
            "calendar": shared,
            "departments": [
                {
                    "id": "urban",
                    "name": "市城管委",
                    "sla": {"help": "2wd"},
                    "ticketing": {"adapter": "rest"},
                    # it works the city's holiday, and rests on Monday 9 March
                    "calendar": {"workdays": ["2026-03-06"], "holidays": ["2026-03-09"]},
                },
                {
                    "id": "transport",
                    "name": "市交通委",
                    "sla": {"help": "2wd"},
                    "ticketing": {"adapter": "rest"},
                },
            ],
        }
    )
    urban, transport = cfg.departments
    thursday = beijing(2026, 3, 5, 11)
    assert deadline_for(urban, Category.HELP, thursday) == beijing(2026, 3, 10, 11)
    assert deadline_for(transport, Category.HELP, thursday) == beijing(2026, 3, 10, 11)
    assert deadline_for(urban, Category.HELP, beijing(2026, 3, 4, 11)) == beijing(2026, 3, 6, 11)
    assert deadline_for(transport, Category.HELP, beijing(2026, 3, 4, 11)) == beijing(
        2026, 3, 9, 11
    )


def test_calendar_config_errors_name_file_key_and_what() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    cases = {
        'timezone = "Asia/Beijing"': ("calendar.timezone", "unknown time zone 'Asia/Beijing'"),
        'holidays = ["2027-01-01"]\nworkdays = ["2027-01-01"]': (
            "calendar",
            "2027-01-01 is in both holidays and workdays",
        ),
        "years = [27]": ("calendar.years", "27 is not a year"),
        'holidays = ["2027-02-30"]': ("calendar.holidays", "2027-02-30"),
    }
    for replacement, (key, what) in cases.items():
        broken = text.replace('timezone = "Asia/Shanghai"', replacement, 1)
        if not replacement.startswith("timezone"):
            broken = text.replace("holidays = []", "", 1).replace("workdays = []", "", 1)
            broken = broken.replace("years = []", "", 1)
            broken = broken.replace("[calendar]\n", f"[calendar]\n{replacement}\n", 1)
        with pytest.raises(ConfigError) as raised:
            parse_config(tomllib.loads(broken), "govbridge.toml", env={})
        message = str(raised.value)
        assert f"govbridge.toml: {key}" in message and what in message, message


def test_check_warns_when_the_next_60_days_pass_the_calendar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = config()
    assert check._warn_calendar("gb.toml", cfg, date(2026, 12, 7)) == [2027]
    err = capsys.readouterr().err
    assert err.startswith("warning  gb.toml: calendar.years: no working-day calendar for 2027")
    assert "2027-02-05" in err  # the end of the 60 days
    # Early enough, nothing to say; a config that gives 2027 silences it.
    assert check._warn_calendar("gb.toml", cfg, date(2026, 10, 1)) == []
    assert check._warn_calendar("gb.toml", config({"years": [2027]}), date(2026, 12, 7)) == []
    # Dates of 2027 without the year: the warning says what is missing.
    half_done = config({"holidays": ["2027-01-01"]})
    assert check._warn_calendar("gb.toml", half_done, date(2026, 12, 7)) == [2027]
    assert "1 date(s) of 2027 are listed: add 2027 to years" in capsys.readouterr().err
    assert capsys.readouterr().out == ""


async def test_govbridge_check_prints_the_calendar_warning_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole command on 7 December 2026 (its clock pinned): the example config gives no
    2027, so it warns, naming the file and key; the check itself passes."""
    monkeypatch.setattr(WorkCalendar, "today", lambda self, now=None: date(2026, 12, 7))
    monkeypatch.setenv("GOVBRIDGE_AMQP_URL", AMQP_URL)
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        'exchange = "govbridge"', f'exchange = "gbtest-{uuid.uuid4().hex[:10]}"', 1
    )
    text = text.replace('url = "sqlite:///./govbridge.db"', f'url = "sqlite:///{tmp_path}/g.db"')
    path = tmp_path / "govbridge.toml"
    path.write_text(text, encoding="utf-8")
    args = argparse.Namespace(config=str(path), adapters=False, no_declare=True)
    code = await check._check(args)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert f"warning  {path}: calendar.years: no working-day calendar for 2027" in err
    # Once the config gives 2027, no warning.
    path.write_text(text.replace("years = []", "years = [2027]", 1), encoding="utf-8")
    assert await check._check(args) == 0
    assert "calendar" not in capsys.readouterr().err
