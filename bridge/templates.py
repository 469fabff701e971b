"""Reply texts: zh-CN defaults per ticket status, overridable per department, and deadlines
counted in working days (weekends and configured holidays excluded)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from adapters import text as adapters_text
from schemas.config import DepartmentConfig
from schemas.vocab import Category, TicketStatus

DEFAULT_TEMPLATES: dict[str, str] = {
    "received": "您好，您反映的问题已受理，工单号{ticket_id}，{department}将在{deadline}前答复。",
    "referred": "您好，您反映的问题（工单号{ticket_id}）已转交承办单位办理。",
    "in_progress": "您好，工单{ticket_id}正在办理中，我们会及时告知进展。",
    "resolved": "您好，工单{ticket_id}已办结。感谢您的监督，如有疑问请继续留言。",
    "rejected": "您好，经核实，工单{ticket_id}不属于{department}受理范围，建议您向相关部门反映。",
    "returned": "您好，工单{ticket_id}正在重新分派承办单位，我们会尽快处理。",
    "reopened": "您好，工单{ticket_id}已重新办理，我们会再次答复您。",
    "closed": "您好，工单{ticket_id}已关闭。感谢您的反映。",
    "note": "{department}答复（工单{ticket_id}）：{note}",
    "holding": "您好，工单{ticket_id}仍在办理中，{department}将在{deadline}前答复。",
    "follow_up": "您好，您补充的内容已补充到工单{ticket_id}，{department}会一并办理。",
}


def template_for(dept: DepartmentConfig, key: str) -> str:
    return dept.replies.get(key) or DEFAULT_TEMPLATES[key]


def render(
    dept: DepartmentConfig,
    key: str,
    *,
    ticket_id: str,
    status: TicketStatus | None = None,
    deadline: str = "",
    note: str = "",
    category: Category | None = None,
) -> str:
    values = {
        "ticket_id": ticket_id,
        "deadline": deadline,
        "department": dept.name,
        "status": status.label if status else "",
        "note": note,
        "category": category.label if category else "",
    }
    return template_for(dept, key).format_map(values)


_SLA = re.compile(r"^\s*(\d+)\s*(wd|d|h|m)\s*$")


def add_working_days(start: date, days: int, holidays: Iterable[date] = ()) -> date:
    off = set(holidays)
    current = start
    added = 0
    while added < days:
        current += timedelta(days=1)
        if current.weekday() < 5 and current not in off:
            added += 1
    return current


def deadline_for(
    dept: DepartmentConfig,
    category: Category,
    start: datetime,
    holidays: Iterable[date] = (),
) -> datetime | None:
    """When the department must answer an inquiry of this category (None if no limit set)."""
    limit = dept.sla.get(category.value)
    if limit is None:
        return None
    m = _SLA.match(limit)
    if m is None:
        return None
    n, unit = int(m.group(1)), m.group(2)
    if unit == "wd":
        day = add_working_days(start.date(), n, holidays)
        return start.replace(year=day.year, month=day.month, day=day.day)
    return (
        start + {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]
    )


def format_deadline(when: datetime | None) -> str:
    return (
        when.strftime("%Y年%m月%d日").replace("年0", "年").replace("月0", "月")
        if when
        else "规定时限"
    )


def fit(text: str, limit: int) -> str:
    """Shorten to ``limit`` characters between user-perceived characters (never inside an
    emoji or flag sequence), marking the cut with …"""
    return adapters_text.fit(text, limit)
