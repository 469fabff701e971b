"""The console's read and action endpoints that no single stage owns: inquiry search, overdue
and at-risk work, dead letters (list, replay, drop), accounts, the monthly ranking, the
account inspection (巡检), and the audit trail. Served by the
``http`` role; who may call what is ``bridge/web/operators.py``'s policy.

Dead letters are read, replayed and dropped with ``bridge/runtime/deadletters.py`` (``describe``,
``fetch``, ``act``): the same view and the same replay as ``govbridge dlq``, never the body. A
replay or drop is recorded in the audit trail before it is done: when the record cannot be
written the answer is 503 and the dead letter stays; a dead letter the bridge did not sign is
not replayed (409).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from bridge.inspect.inspection import AccountInspection, inspect_accounts, read_timelines
from bridge.reports.overdue import KINDS, overdue_page
from bridge.reports.performance import (
    CST,
    Ranking,
    RankingCache,
    check_window,
    parse_period,
    parse_since,
    rank_months_apart,
)
from bridge.runtime.deadletters import (
    INGEST,
    NotRecorded,
    NotReplayed,
    Recorder,
    act,
    describe,
    fetch,
)
from bridge.runtime.http import json_error
from bridge.runtime.topology import STAGE_BINDINGS
from bridge.store.reports import InquirySearch
from bridge.web.bodies import DeadLetterAction, parse
from bridge.web.credentials import ticket_system_rows
from bridge.web.kept import Flights, KeptAnswers, background
from bridge.web.kept_pages import inspection_shelf
from bridge.web.server import operator_name, require_admin
from schemas.config import AccountConfig
from schemas.vocab import Category, TicketStatus

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.console")

SEARCH_LIMIT = 200
DLQ_LIMIT = 100


def search_days(
    start: str | None, end: str | None, longest: timedelta
) -> tuple[datetime | None, datetime | None]:
    """The search's ``from``/``to`` dates (CST) as UTC bounds: ``from`` at 00:00, ``to`` at
    23:59:59. ``ValueError`` with the reason for a date that is unreadable or outside the
    calendar, ``from`` after ``to``, or a range longer than ``http.max_range``."""
    bounds: list[datetime | None] = []
    for key, text in (("from", start), ("to", end)):
        if not text:
            bounds.append(None)
            continue
        try:
            day = datetime.fromisoformat(text[:40]).replace(tzinfo=CST)
            if key == "to":
                day = day.replace(hour=23, minute=59, second=59)
            bounds.append(day.astimezone(UTC))
        except ValueError:
            raise ValueError(f"{key} must be a date (YYYY-MM-DD)") from None
        except OverflowError:
            raise ValueError(f"{key}: out of the calendar's range") from None
    first, last = bounds
    if first is not None and last is not None:  # the days covered, both ends included
        check_window(first, max(first, last + timedelta(seconds=1)), longest, "from … to")
        check_window(first, last, None, "from … to")
    return first, last


class ConsoleApi:
    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        # the months as counted (10 min; the current one 1 min); those over, in the store too
        self.ranked = RankingCache(shared=True)
        # one counting of the ranking per ``until`` at a time: a visit awaits the running one
        self.ranking_flights: Flights[list[Ranking]] = Flights()
        # in the store too: counted by one process, shown by the others and the next to start
        self.inspected: KeptAnswers[tuple[datetime, list[AccountInspection]]] = KeptAnswers(
            shelf=inspection_shelf(ctx.store)
        )
        r = ctx.app.router
        r.add_get("/api/inquiries", self.search)
        r.add_get("/api/overdue", self.overdue)
        r.add_get("/api/dead-letters", self.dead_letters)
        r.add_post("/api/dead-letters/{stage}/{action}", self.act_on_dead_letter)
        r.add_get("/api/accounts", self.accounts)
        r.add_get("/api/audit", self.audit_records)
        r.add_get("/api/ranking", self.ranking)
        r.add_get("/api/inspection", self.inspection)
        r.add_get("/api/labels", self.labels)

    async def labels(self, request: web.Request) -> web.Response:
        """What the console shows instead of codes: the configured time zone, each
        department's name, each account (key, platform, handle, department), and the Chinese
        names of ticket statuses and categories (the console has the English ones)."""
        require_admin(request)
        cfg = self.ctx.cfg
        return web.json_response(
            {
                "timezone": cfg.calendar.timezone,
                "departments": {d.id: d.name for d in cfg.departments},
                "accounts": [
                    {
                        "key": a.key,
                        "platform": a.platform_name,
                        "handle": a.handle,
                        "department": a.department,
                    }
                    for a in cfg.accounts
                ],
                "statuses": {s.value: s.label for s in TicketStatus},
                "categories": {c.value: c.label for c in Category},
            }
        )

    # ------------------------------------------------------------------ inquiries
    async def search(self, request: web.Request) -> web.Response:
        """``?q=`` text (in the redacted text; ``%`` and ``_`` are themselves, not
        wildcards), ``handle``, ``ticket``, ``department``, ``status`` (the inquiry's state or
        its ticket's status), ``from``/``to`` (dates, CST; at most ``http.max_range`` apart)."""
        require_admin(request)
        q = request.query
        try:
            days = search_days(q.get("from"), q.get("to"), self.ctx.cfg.http.max_range)
        except ValueError as exc:
            return json_error(400, str(exc))
        rows = await self.ctx.store.search_inquiries(
            InquirySearch(
                text=q.get("q") or None,
                handle=q["handle"].lstrip("@") if q.get("handle") else None,
                ticket_id=q.get("ticket") or None,
                department=q.get("department") or None,
                status=q.get("status") or None,
                since=days[0],
                until=days[1],
                limit=SEARCH_LIMIT,
            )
        )
        return web.json_response({"inquiries": rows, "limit": SEARCH_LIMIT})

    # ------------------------------------------------------------------ SLA clocks
    async def overdue(self, request: web.Request) -> web.Response:
        """Open tickets past their deadline or within ``sla.warn_before`` of it, most overdue
        first (``bridge.reports.overdue``): ``?department=&kind=(overdue|at_risk)&limit=
        (1-200, 50)&offset=``; with ``total`` (matching) and the ``overdue`` and ``at_risk``
        counts of the department filter."""
        require_admin(request)
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return json_error(400, "limit and offset must be integers")
        if not 1 <= limit <= 200 or offset < 0:
            return json_error(400, "limit must be 1 to 200 and offset 0 or more")
        department = q.get("department") or None
        if department is not None and department not in {d.id for d in self.ctx.cfg.departments}:
            return json_error(400, f"unknown department {department!r}")
        kind = q.get("kind") or None
        if kind is not None and kind not in KINDS:
            return json_error(400, "kind must be overdue or at_risk")
        page = await overdue_page(
            self.ctx.store,
            self.ctx.cfg,
            datetime.now(UTC),
            department=department,
            kind=kind,
            limit=limit,
            offset=offset,
        )
        return web.json_response(
            {
                "tickets": page.tickets,
                "total": page.total,
                "overdue": page.overdue,
                "at_risk": page.at_risk,
                "limit": limit,
                "offset": offset,
            }
        )

    # ------------------------------------------------------------------ dead letters
    async def dead_letters(self, request: web.Request) -> web.Response:
        require_admin(request)
        broker = self.ctx.broker
        out = []
        for stage in (*STAGE_BINDINGS, INGEST):
            queue = broker.topology.queues(stage).dead
            channel = await broker.channel()
            try:
                messages = await fetch(channel, queue, DLQ_LIMIT)
                out += [
                    describe(stage, queue, m, broker.cfg.delivery_limit, broker).as_dict()
                    for m in messages
                ]
            except Exception as exc:  # an undeclared queue closes the channel
                out.append({"stage": stage, "queue": queue, "error": type(exc).__name__})
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()  # what was read goes back, unacknowledged
        return web.json_response({"dead_letters": out})

    async def act_on_dead_letter(self, request: web.Request) -> web.Response:
        """``POST /api/dead-letters/{stage}/replay|drop`` with ``{"message_id": "…"}``."""
        require_admin(request)
        stage, action = request.match_info["stage"], request.match_info["action"]
        if stage not in STAGE_BINDINGS and stage != INGEST:
            return json_error(404, f"no stage {stage!r}")
        if action not in ("replay", "drop"):
            return json_error(404, "action must be replay or drop")
        if stage == INGEST and action == "replay":
            return json_error(
                400,
                "ingest items are read again by their adapter: govbridge dlq replay --stage ingest",
            )
        message_id = (await parse(request, DeadLetterAction)).message_id
        broker = self.ctx.broker
        dead = broker.topology.queues(stage).dead
        channel = await broker.channel()
        try:
            messages = await fetch(channel, dead, DLQ_LIMIT)
            found = next((m for m in messages if m.message_id == message_id), None)
            if found is None:
                return json_error(404, f"no dead letter {message_id} in {dead}")
            info = describe(stage, dead, found, broker.cfg.delivery_limit, broker)
            if action == "replay" and info.unsigned is not None:
                return json_error(
                    409,
                    f"not replayed (kept): the bridge did not sign this message ({info.unsigned})",
                )
            record = Recorder(self.ctx.store, operator_name(request))
            try:
                await act(broker, "replay" if action == "replay" else "drop", found, info, record)
            except NotRecorded as exc:
                done = "replayed" if action == "replay" else "dropped"
                return json_error(
                    503, f"not {done} (kept): the audit trail cannot be written now ({exc})"
                )
            except NotReplayed as exc:
                return json_error(503, f"not replayed (kept): {exc}")
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return web.json_response({"message_id": message_id, "stage": stage, "done": action})

    # ------------------------------------------------------------------ accounts
    async def accounts(self, request: web.Request) -> web.Response:
        """Each account: its department, alerts, last success of its poll and posts, what waits
        to be posted, paused state; and each department's ticket system (its own row)."""
        require_admin(request)
        alerts = self.ctx.alerts.describe()
        backlog: dict[str, Any] = {}
        if "outbox" in self.ctx.details:
            with contextlib.suppress(Exception):
                backlog = await self.ctx.details["outbox"]()
        out = []
        for acc in self.ctx.cfg.accounts:
            platform = acc.platform_name
            mine = [a for a in alerts if a.get("name") == acc.key]
            status = self.ctx.alerts.status("account_auth", acc.key)
            out.append(
                {
                    "quota": await self._quota_use(acc, platform),
                    "adapter": acc.adapter,
                    "platform": platform,
                    "handle": acc.handle,
                    "department": acc.department,
                    "alerts": mine,
                    "healthy": not mine,
                    "last_success": {op: st.last_ok_at for op, st in sorted(status.items())},
                    "outbox": backlog.get(acc.key),
                    "reply_limit": acc.reply_limit.model_dump(mode="json")
                    if acc.reply_limit
                    else None,
                }
            )
        return web.json_response(
            {"accounts": out, "ticket_systems": await ticket_system_rows(self.ctx)}
        )

    async def _quota_use(self, acc: AccountConfig, platform: str) -> dict[str, Any] | None:
        """The posting quota (the account's ``reply_limit``, else the adapter's) and the calls
        counted in its current window (shared by every process through the store)."""
        limit: tuple[int, timedelta] | None = None
        if acc.reply_limit is not None:
            limit = acc.reply_limit.max_calls, acc.reply_limit.period
        else:  # the adapter's own limit (the daemon's adapters, closed by the daemon)
            source = self.ctx.adapters.sources().get(acc.key)
            cap = source.capabilities.reply_rate_limit if source is not None else None
            limit = (cap.max_calls, cap.period) if cap is not None else None
        if limit is None:
            return None
        used = await self.ctx.store.post_calls_used(
            platform, acc.handle, datetime.now(UTC) - limit[1]
        )
        return {"used": used, "max_calls": limit[0], "period_s": limit[1].total_seconds()}

    # ------------------------------------------------------------------ ranking
    async def ranking(self, request: web.Request) -> web.Response:
        """The last 12 months' rankings, oldest first, the current month so far last (or the
        12 months up to ``?until=2026-11``): each department's 响应率, 解决率, 满意率, on-time
        rate, score and rank per month (computed off the event loop,
        ``bridge.reports.performance.rank_months``; the months that are over kept as counted
        while nothing in them changes and for up to 10 minutes, the current month for one,
        ``RankingCache``: each month says when, ``as_of``)."""
        require_admin(request)
        now = datetime.now(UTC)
        ending = None
        if request.query.get("until"):
            try:
                ending = parse_period(request.query["until"][:7], now).start
            except ValueError as exc:
                return json_error(400, str(exc))
        rankings = await self._rankings(now, ending)
        counted = rankings[-1].as_of if ending is None and rankings else None
        if counted is not None and now - counted > self.ranked.current_max_age:
            self._recount_ranking()  # shown as it was counted; counted again meanwhile
        return web.json_response(
            {
                "at": now.isoformat(),
                "months": [
                    {
                        "period": r.period.as_dict(),
                        # when its responses and tickets were counted (a month that is over,
                        # kept: RankingCache); its 回访 results are as of now
                        "as_of": (r.as_of or now).isoformat(),
                        "departments": [s.as_dict() for s in r.departments],
                    }
                    for r in rankings
                ],
                "weights": self.ctx.cfg.ranking.weights.model_dump(),
            }
        )

    async def _rankings(self, now: datetime, ending: datetime | None) -> list[Ranking]:
        """The 12 months up to ``ending``: while a counting of them runs (a visit's, the
        background's, the warm-up's), a visit whose months are all kept is shown them at
        once, and any other awaits that counting instead of counting again."""
        cfg = self.ctx.cfg
        if self.ranking_flights.get(ending) is not None and self.ranked.covers(
            cfg, now, 12, ending, stale_current=True
        ):
            return await rank_months_apart(cfg, now, 12, ending, self.ranked, stale_current=True)
        return await self.ranking_flights.join(
            ending,
            lambda: rank_months_apart(cfg, now, 12, ending, self.ranked, stale_current=True),
        )

    def _recount_ranking(self) -> asyncio.Task[list[Ranking]]:
        """Count the current month (and any month no longer kept) again in the background,
        unless a counting runs: the next visit has it."""
        task = self.ranking_flights.start(
            None,
            lambda: rank_months_apart(self.ctx.cfg, datetime.now(UTC), 12, None, self.ranked),
        )
        background(task, "ranking")
        return task

    async def warm_ranking(self) -> None:
        """Count the 12 months the ranking page asks first, so that its first visit finds
        them kept (a failure is logged)."""
        with contextlib.suppress(Exception):
            await self._recount_ranking()

    async def warm_inspection(self) -> None:
        """Count the inspection the page asks first (its default period, asking the platforms
        as the page does), so that its first visit finds it kept (a failure is logged)."""
        with contextlib.suppress(Exception):
            await self.inspected.warm((None, False), self._inspection_count(None, False))

    # ------------------------------------------------------------------ inspection
    async def inspection(self, request: web.Request) -> web.Response:
        """The account inspection (巡检, ``bridge.inspect.inspection``): ``?since=30d``
        (at most ``http.max_range``), ``offline=1`` to ask no platform (each account judged by
        the replies the bridge posted). Each account's own timeline is read by the daemon's
        own sources. Kept for a minute (``bridge.web.kept``: ``at`` says when it was
        counted)."""
        require_admin(request)
        now = datetime.now(UTC)
        try:
            text = request.query.get("since")
            longest = self.ctx.cfg.http.max_range
            since = (
                parse_since(text, now, longest) if text else now - self.ctx.cfg.inspection.period
            )
        except ValueError as exc:
            return json_error(400, str(exc))
        offline = bool(request.query.get("offline"))
        # kept as counted for a minute (then counted again in the background): "at" says when
        count = self._inspection_count(text, offline)
        (since, rows), at = await self.inspected.get((text, offline), now, count)
        return web.json_response(
            {
                "at": at.isoformat(),
                "since": since.isoformat(),
                "dormant_after_days": self.ctx.cfg.inspection.dormant_after.days,
                "accounts": [r.as_dict() for r in rows],
            }
        )

    def _inspection_count(
        self, text: str | None, offline: bool
    ) -> Callable[[datetime], Awaitable[tuple[datetime, list[AccountInspection]]]]:
        """The inspection of ``?since=text`` (default ``inspection.period``), counted as of
        a time: the period's start and each account's row."""
        cfg = self.ctx.cfg

        async def count(at: datetime) -> tuple[datetime, list[AccountInspection]]:
            start = (
                parse_since(text, at, cfg.http.max_range) if text else at - cfg.inspection.period
            )
            timelines = {} if offline else await read_timelines(self.ctx.adapters.sources())
            rows = await inspect_accounts(
                self.ctx.store,
                cfg,
                timelines,
                at,
                since=start,
                dormant_after=cfg.inspection.dormant_after,
            )
            return start, rows

        return count

    # ------------------------------------------------------------------ audit
    async def audit_records(self, request: web.Request) -> web.Response:
        require_admin(request)
        try:
            limit = max(1, min(500, int(request.query.get("limit", "100"))))
        except ValueError:
            return json_error(400, "limit must be a number")
        records = await self.ctx.store.recent_audit(limit=limit)
        out: dict[str, Any] = {"records": records}
        if request.query.get("verify"):  # walks the whole chain: asked for, not on every load
            verdict = await self.ctx.store.verify_audit()
            out["chain"] = {
                "ok": verdict.ok,
                "head": verdict.head,
                "problem": verdict.problem,
                "unsigned": verdict.unsigned,
            }
        return web.json_response(out)
