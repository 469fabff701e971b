"""The answers of the console's dashboard and account inspection as kept in the store
(``bridge.web.kept.Shelf``): each as JSON that reads back to the very same values. A row
of another shape (an older or newer bridge's, or damaged) does not decode: it is ignored
and the page counted again."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from bridge.inspect.inspection import AccountInspection
from bridge.reports.performance import DepartmentReport
from bridge.web.kept import KeptRows, Shelf

ReportAnswer = tuple[datetime, list[DepartmentReport], dict[str, int]]
InspectionAnswer = tuple[datetime, list[AccountInspection]]

D = TypeVar("D", DepartmentReport, AccountInspection)


def _time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise TypeError("a time must be ISO text")
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("a time without a time zone")
    return at.astimezone(UTC)


def _rows(cls: type[D], data: Any) -> list[D]:
    """Each row exactly as its fields: none missing, none unknown."""
    names = {f.name for f in fields(cls)}
    out = []
    for row in data:
        if not isinstance(row, dict) or set(row) != names:
            raise ValueError(f"not a {cls.__name__}")
        out.append(cls(**row))
    return out


def encode_report(answer: ReportAnswer) -> dict[str, Any]:
    since, reports, ignored = answer
    return {
        "since": since.isoformat(),
        "reports": [asdict(r) for r in reports],
        "ignored": ignored,
    }


def decode_report(data: Any) -> ReportAnswer:
    ignored = data["ignored"]
    if not isinstance(ignored, dict) or not all(isinstance(n, int) for n in ignored.values()):
        raise ValueError("ignored: counts by name")
    return _time(data["since"]), _rows(DepartmentReport, data["reports"]), dict(ignored)


def encode_inspection(answer: InspectionAnswer) -> dict[str, Any]:
    since, rows = answer
    return {"since": since.isoformat(), "accounts": [asdict(r) for r in rows]}


def decode_inspection(data: Any) -> InspectionAnswer:
    return _time(data["since"]), _rows(AccountInspection, data["accounts"])


def report_shelf(rows: KeptRows) -> Shelf[ReportAnswer]:
    return Shelf(rows, "report", encode_report, decode_report)


def inspection_shelf(rows: KeptRows) -> Shelf[InspectionAnswer]:
    return Shelf(rows, "inspection", encode_inspection, decode_inspection)
