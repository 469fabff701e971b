"""Account inspection (巡检): for every configured account, whether it lives up to the
national criteria for government accounts (国办发〔2018〕123号, 国办秘函〔2019〕19号: an update
at least every two weeks, effective interaction, no empty accounts).

Per account: when it last published on its own timeline (read by the source adapter where it
can, ``adapters.base.ReadsOwnTimeline``; otherwise, as for a webhook platform, the last reply
the bridge posted from it), the inquiries it received over the period, how many were answered,
are waiting for an approver or for a posting slot (its backlog), or were left without any
interaction past the first-response limit, the answer rate and the median first response.

Flags:

- ``dormant`` (睡眠): no own post for ``dormant_after`` (14 days) or more;
- ``zombie`` (不互动): inquiries left without interaction (no reply drafted, none posted) for
  longer than ``[inspection].unanswered_after`` (a day). Replies awaiting approval or a posting
  slot are the account's **backlog**, shown as such: an account whose answers wait for an
  approver is busy, not a zombie;
- ``zero_activity`` (零活动): it has never published and never answered anyone.

No text, handle or other personal data of citizens is in an inspection: counts and times only.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.base import ReadsOwnTimeline
from bridge.store import Store, iso
from schemas.config import GovbridgeConfig
from schemas.vocab import (
    REPLY_AWAITING_STATES,
    REPLY_QUEUED_STATES,
    InquiryState,
    ReplyState,
)

DORMANT_AFTER = timedelta(days=14)


@dataclass(frozen=True)
class OwnTimeline:
    """What was learnt of an account's own posts: the newest (``None``: it has none) and
    how (``timeline``: read from the platform; ``replies``: the last reply the bridge posted,
    for a source that cannot read its timeline; ``unknown``: the platform could not be asked,
    ``error`` says why)."""

    last_post: datetime | None
    source: str
    error: str | None = None


@dataclass
class AccountInspection:
    account: str  # adapter:handle
    platform: str
    department: str
    last_post: str | None = None
    last_post_source: str = "replies"
    days_since_post: float | None = None
    timeline_error: str | None = None
    last_reply: str | None = None  # the last reply the bridge posted from it (ever)
    received: int = 0  # inquiries over the period (noise excluded)
    answered: int = 0  # with a reply posted
    awaiting_approval: int = 0  # backlog: a reply waits for an approver
    waiting_to_post: int = 0  # backlog: an approved reply waits for a posting slot
    unanswered: int = 0  # no interaction at all for longer than unanswered_after
    answer_rate: float | None = None  # answered / received
    median_first_response_s: float | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def backlog(self) -> int:
        return self.awaiting_approval + self.waiting_to_post

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "backlog": self.backlog}


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


async def inspect_accounts(
    store: Store,
    cfg: GovbridgeConfig,
    timelines: dict[str, OwnTimeline],
    now: datetime | None = None,
    *,
    since: datetime | None = None,
    dormant_after: timedelta = DORMANT_AFTER,
) -> list[AccountInspection]:
    """Every configured account's inspection over the period from ``since`` (default 30 days
    before ``now``); ``timelines`` holds what the adapters read of their own posts (an account
    missing from it is judged by the last reply the bridge posted)."""
    now = now or datetime.now(UTC)
    start = since or now - timedelta(days=30)
    last_reply = {
        where: at
        for where, text in (await store.last_replies(ReplyState.POSTED)).items()
        if (at := _ts(text)) is not None
    }
    out: dict[str, AccountInspection] = {}
    waits: dict[str, list[float]] = {}
    for acc in cfg.accounts:
        row = AccountInspection(acc.key, acc.platform_name, acc.department)
        replied = last_reply.get((acc.platform_name, acc.handle)) or last_reply.get(
            (acc.adapter, acc.handle)
        )
        row.last_reply = replied.isoformat() if replied else None
        seen = timelines.get(acc.key, OwnTimeline(replied, "replies"))
        last = seen.last_post if seen.source != "unknown" else None
        row.last_post_source, row.timeline_error = seen.source, seen.error
        row.last_post = last.isoformat() if last else None
        if last is not None:
            row.days_since_post = round((now - last).total_seconds() / 86400, 2)
        out[acc.key], waits[acc.key] = row, []
    # counted by the store per account and what became of each inquiry; only the answered
    # ones read row by row, for the median wait
    left_out = (InquiryState.IGNORED, InquiryState.SURVEY_ANSWER)  # 回访 answers too
    period_from, period_to = iso(start), iso(now)
    for platform, handle, kind, n in await store.inspection_counts(
        period_from,
        period_to,
        iso(now - cfg.inspection.unanswered_after),
        left_out,
        ReplyState.POSTED,
        REPLY_AWAITING_STATES,
        REPLY_QUEUED_STATES,
    ):
        account = cfg.account_on(platform, handle)
        if account is None:
            continue
        row = out[account.key]
        row.received += n
        if kind == "answered":
            row.answered += n
        elif kind == "awaiting":
            row.awaiting_approval += n
        elif kind == "queued":
            row.waiting_to_post += n
        elif kind == "late":
            row.unanswered += n
    for platform, handle, asked, first_reply_at in await store.inspection_answers(
        period_from, period_to, left_out, ReplyState.POSTED
    ):
        account = cfg.account_on(platform, handle)
        if account is not None:
            waits[account.key].append(
                (
                    datetime.fromisoformat(first_reply_at) - datetime.fromisoformat(asked)
                ).total_seconds()
            )
    for name, row in out.items():
        row.answer_rate = row.answered / row.received if row.received else None
        if waits[name]:
            row.median_first_response_s = statistics.median(waits[name])
        if row.last_post_source != "unknown" and (
            row.days_since_post is not None and row.days_since_post >= dormant_after.days
        ):
            row.flags.append("dormant")
        if row.unanswered:
            row.flags.append("zombie")
        if row.last_post_source != "unknown" and row.last_post is None and row.last_reply is None:
            row.flags.append("zero_activity")
    return list(out.values())


FLAG_LABELS = {"dormant": "睡眠 dormant", "zombie": "僵尸 zombie", "zero_activity": "零活动 zero"}


def render_inspection_table(rows: list[AccountInspection], dormant_after: timedelta) -> str:
    head = (
        f"{'account':<24}{'last post':>12}{'received':>10}{'answered':>10}{'unanswered':>12}"
        f"{'backlog':>9}{'rate':>7}{'median 1st':>12}  flags"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.last_post_source == "unknown":
            post = "?"
        elif r.days_since_post is None:
            post = "never"
        else:
            post = f"{r.days_since_post:.1f} d"
        rate = "-" if r.answer_rate is None else f"{r.answer_rate:.0%}"
        wait = "-" if r.median_first_response_s is None else _human(r.median_first_response_s)
        flags = ", ".join(FLAG_LABELS[f] for f in r.flags) or "ok"
        lines.append(
            f"{r.account:<24}{post:>12}{r.received:>10}{r.answered:>10}{r.unanswered:>12}"
            f"{r.backlog:>9}{rate:>7}{wait:>12}  {flags}"
        )
    for r in rows:
        if r.timeline_error:
            lines.append(f"{r.account}: own timeline not read ({r.timeline_error})")
        if r.backlog:
            lines.append(
                f"{r.account}: backlog {r.backlog} ({r.awaiting_approval} awaiting approval,"
                f" {r.waiting_to_post} waiting to be posted), not counted as unanswered"
            )
    lines.append(
        f"dormant: no own post for {dormant_after.days} days; zombie: inquiries without any"
        " reply for longer than [inspection].unanswered_after; zero: never posted, never answered"
    )
    return "\n".join(lines)


def render_inspection_json(
    rows: list[AccountInspection], now: datetime, since: datetime, dormant_after: timedelta
) -> str:
    return json.dumps(
        {
            "at": now.isoformat(),
            "since": since.isoformat(),
            "dormant_after_days": dormant_after.days,
            "accounts": [r.as_dict() for r in rows],
        },
        ensure_ascii=False,
        indent=2,
    )


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def read_timelines(
    sources: Mapping[str, object], timeout: float = 15.0
) -> dict[str, OwnTimeline]:
    """Ask every account's source (by account key) for its own last post, all at once (at
    most ``timeout`` seconds each). A source that cannot read its timeline is left out (it is
    judged by the replies the bridge posted); one whose platform fails is ``unknown`` with
    the error's kind and message (adapters name no secret in their errors)."""
    found: dict[str, OwnTimeline] = {}

    async def one(key: str, source: object) -> None:
        if not isinstance(source, ReadsOwnTimeline):
            return
        try:
            last = await asyncio.wait_for(source.last_own_post(), timeout)
        except Exception as exc:  # any failure: this account's post time is unknown
            found[key] = OwnTimeline(None, "unknown", f"{type(exc).__name__}: {str(exc)[:160]}")
        else:
            found[key] = OwnTimeline(last, "timeline")

    await asyncio.gather(*(one(k, s) for k, s in sources.items()))
    return found
