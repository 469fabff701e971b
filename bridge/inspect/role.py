"""inspect: the account inspection (巡检) on a clock, so a silent account is noticed.

Every ``[inspection] check_every`` (1 hour; the first pass one interval after start) the role
inspects every configured account (``bridge.inspect.inspection``: its own timeline read by its
source, its inquiries over ``[inspection] period``). For each line an account is over —
``dormant``, ``zombie``, ``zero_activity`` — it raises an alert (kind ``account_flagged``,
the account, the line as the operation: ``/readyz``, ``govbridge_alert``) and publishes
``account.flagged.<department>`` (``AccountFlagged``) once per crossing, however many
processes run the role: a dormant account once per silence (until it posts again), a zombie
once a day while it lasts, an empty account once. An account back under a line clears its
alert. An approval backlog is never a line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from bridge.inspect.inspection import AccountInspection, inspect_accounts, read_timelines
from bridge.runtime.periodic import PeriodicRole
from schemas import routing
from schemas.messages import AccountFlagged

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.inspect")

ALERT = "account_flagged"
FLAGS = ("dormant", "zombie", "zero_activity")
_CST_DAY = 8 * 3600  # seconds east of UTC: a zombie is announced once per Beijing day


def episode(row: AccountInspection, flag: str, now: datetime) -> str:
    """The crossing a flag belongs to: a silence ends with the next post, a zombie is
    announced again each day it lasts, an empty account once."""
    if flag == "dormant":
        return f"{row.account}:dormant:{row.last_post or 'never'}"
    if flag == "zombie":
        day = int((now.timestamp() + _CST_DAY) // 86400)
        return f"{row.account}:zombie:{day}"
    return f"{row.account}:{flag}"


def reason(row: AccountInspection, flag: str, unanswered_after: timedelta) -> str:
    if flag == "dormant":
        return f"no own post for {row.days_since_post:.0f} days"
    if flag == "zombie":
        hours = unanswered_after.total_seconds() / 3600
        span = f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"
        return f"{row.unanswered} inquiries without any reply for over {span}"
    return "never posted, never answered"


class InspectRole(PeriodicRole):
    name = "inspect"
    scan_at_start = False

    def interval(self) -> float:
        return self.ctx.cfg.inspection.check_every.total_seconds()

    async def scan(self, now: datetime | None = None) -> list[AccountFlagged]:
        """One inspection of every account; returns the events published (each once per
        crossing)."""
        now = now or datetime.now(UTC)
        cfg, store = self.ctx.cfg, self.ctx.store
        timelines = await read_timelines(self.ctx.adapters.sources())
        rows = await inspect_accounts(
            store,
            cfg,
            timelines,
            now,
            since=now - cfg.inspection.period,
            dormant_after=cfg.inspection.dormant_after,
        )
        published: list[AccountFlagged] = []
        for row in rows:
            for flag in FLAGS:
                if flag not in row.flags:
                    self.ctx.alerts.succeeded(ALERT, row.account, flag)
                    continue
                self.ctx.alerts.raise_(
                    ALERT, row.account, reason(row, flag, cfg.inspection.unanswered_after), flag
                )
                if not await store.record_once("account_flagged", episode(row, flag, now)):
                    continue
                event = AccountFlagged(
                    department=row.department,
                    account=row.account,
                    platform=row.platform,
                    flag=flag,
                    flags=row.flags,
                    last_post=datetime.fromisoformat(row.last_post) if row.last_post else None,
                    days_since_post=row.days_since_post,
                    received=row.received,
                    answered=row.answered,
                    unanswered=row.unanswered,
                    backlog=row.backlog,
                    inspected_at=now,
                )
                log.warning(
                    "account flagged", account=row.account, flag=flag, department=row.department
                )
                await self.ctx.broker.publish(routing.account_flagged(row.department), event)
                published.append(event)
        return published


def create(ctx: BridgeContext) -> InspectRole:
    return InspectRole(ctx)
