"""Read-only queries that reports and the console ask across aggregates: the search over
inquiries with their tickets' status, a ticket's events, when tickets were first final, and
the weight of an account's recent post calls."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.store.base import StoreBase
from bridge.store.drivers import iso
from bridge.store.rows import StoredTicket, stored_ticket
from schemas.states import ExtensionState
from schemas.vocab import FINAL_STATUSES, Category, InquiryState, TicketStatus


@dataclass(frozen=True)
class InquirySearch:
    """What the console's search asks for (``None``: any). ``text`` is matched literally
    inside the redacted text, ``handle`` inside the citizen's handle (any case); ``status`` is
    the inquiry's state or its ticket's status; ``since`` inclusive, ``until`` exclusive."""

    text: str | None = None
    handle: str | None = None
    ticket_id: str | None = None
    department: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200


@dataclass(frozen=True)
class TicketEventRow:
    event_id: str
    status: str
    native_status: str
    occurred_at: str
    applied: bool
    recorded_at: str
    cycle: int | None


def asked_time(created_at: str | None, posted_at: str | None) -> datetime | None:
    """When the citizen asked: the platform's time of the post (``posted_at``), unless it is
    later than when the bridge recorded the inquiry (``created_at``: a skewed clock) or
    unknown; then the recording time."""
    recorded = datetime.fromisoformat(created_at).astimezone(UTC) if created_at else None
    posted = datetime.fromisoformat(posted_at).astimezone(UTC) if posted_at else None
    if posted is None or recorded is None:
        return recorded
    return min(posted, recorded)


@dataclass(frozen=True)
class RateInquiry:
    """What the rates and the inspection need of one inquiry (no text, no handle): where it
    came in, when it was posted and recorded, when its first reply was posted, and whether a
    reply of it waits for an approver (``awaiting``) or for a posting slot (``queued``)."""

    inquiry_id: str
    platform: str
    account: str
    state: str
    department: str | None
    category: str | None
    created_at: str
    posted_at: str | None
    first_reply_at: str | None
    awaiting: bool
    queued: bool

    @property
    def asked(self) -> datetime | None:
        return asked_time(self.created_at, self.posted_at)

    @property
    def waiting(self) -> bool:
        """A reply of it is in the account's backlog."""
        return self.awaiting or self.queued


@dataclass(frozen=True)
class RateTicket:
    """What the on-time rate needs of one ticket: its department, status, when it was created,
    its inquiry's category and account, and when it first reached a final status."""

    department: str
    ticket_id: str
    status: str
    created_at: str
    category: str | None
    platform: str | None
    account: str | None
    final_at: str | None


# Every stored time (``iso``) is at least this: ``posted_at >= ANY_TIME`` is a range on an
# index where ``IS NOT NULL`` is not.
ANY_TIME = "0"


def _rate_ticket_select(finals: int) -> str:
    """A ticket with its inquiry's category and account and when an applied event of one of
    ``finals`` final statuses (bound first) was first recorded: the rates' ticket row."""
    marks = ", ".join("?" for _ in range(finals))
    return (
        "SELECT t.department, t.ticket_id, t.status, t.created_at, i.category, i.platform,"
        " i.account,"
        " (SELECT MIN(e.recorded_at) FROM ticket_events e WHERE e.department = t.department"
        f"  AND e.ticket_id = t.ticket_id AND e.applied = 1 AND e.status IN ({marks}))"
        " AS final_at"
        " FROM tickets t LEFT JOIN inquiries i ON i.inquiry_id = t.inquiry_id"
    )


def like_escape(text: str) -> str:
    """``text`` matched as itself by ``LIKE … ESCAPE '\\'`` (``%`` and ``_`` are not
    wildcards)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class OpenTicket:
    """An open ticket with what its clock needs: the inquiry's category and when the current
    handling cycle started (``reopened_at``, else ``created_at``)."""

    department: str
    ticket_id: str
    inquiry_id: str
    status: str
    created_at: str
    reopened_at: str | None
    cycle: int
    category: str | None


@dataclass(frozen=True)
class StartSpan:
    """The open tickets of a department and category (a missing or empty category is
    ``other``) whose current handling cycle started at ``since`` or later (``None``: any time)
    and before ``before`` (stored times, ``iso``): the overdue page's windows."""

    department: str
    category: str
    since: str | None
    before: str


# Open tickets, in the words of migration 29's partial index (``tickets_open_due``): a query
# that says them can use it (the statuses are the vocabulary's constants, not input).
OPEN_TICKET = f"t.status NOT IN ({', '.join(repr(str(s)) for s in sorted(FINAL_STATUSES))})"
_OPEN_COLUMNS = (
    "t.department, t.ticket_id, t.inquiry_id, t.status, t.created_at, t.reopened_at, t.cycle,"
    " t.clock_category AS category"
)
_START = "COALESCE(t.reopened_at, t.created_at)"
# not extended: no approved extension in the ticket's current cycle
_NOT_EXTENDED = (
    "NOT EXISTS (SELECT 1 FROM case_extensions e WHERE e.department = t.department"
    " AND e.ticket_id = t.ticket_id AND e.cycle = t.cycle AND e.state = ?)"
)


def _span_where(span: StartSpan) -> tuple[str, list[Any]]:
    """One span: its department, category and starts, on ``tickets_open_due``."""
    clause = f"t.department = ? AND t.clock_category = ? AND {_START} < ?"
    params: list[Any] = [span.department, span.category, span.before]
    if span.since is not None:
        clause += f" AND {_START} >= ?"
        params.append(span.since)
    return clause, params


def _per_span(
    spans: Sequence[StartSpan], select: str, tail: str = "", *tail_params: Any
) -> tuple[str, list[Any]]:
    """``select`` over each span's open tickets that are not extended, as one statement:
    a ``UNION ALL`` of one range of ``tickets_open_due`` per span (an ``OR`` of the spans
    would read every ticket on SQLite)."""
    parts, params = [], []
    for span in spans:
        clause, more = _span_where(span)
        parts.append(
            f"SELECT * FROM (SELECT {select} FROM tickets t WHERE {OPEN_TICKET} AND {clause}"
            f" AND {_NOT_EXTENDED}{tail}) AS s"
        )
        params += [*more, ExtensionState.APPROVED, *tail_params]
    return " UNION ALL ".join(parts), params


class ReportsStore(StoreBase):
    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The reports' reads: on SQLite off the event loop (``fetchall_apart``); in a
        transaction, on PostgreSQL (asyncpg waits without blocking) or through a test's
        wrapper that offers only ``fetchall``, as every other read."""
        apart = getattr(self.db, "fetchall_apart", None)
        if apart is None:
            return await self.db.fetchall(sql, params)
        rows: list[dict[str, Any]] = await apart(sql, params)
        return rows

    async def count_started(self, spans: Sequence[StartSpan]) -> int:
        """How many open tickets of the listed spans there are, leaving out those with an
        approved extension in their current cycle: ranges of ``tickets_open_due``."""
        if not spans:
            return 0
        sql, params = _per_span(spans, "COUNT(*) AS n")
        return sum(int(r["n"]) for r in await self._read(sql, params))

    async def tickets_started(
        self, spans: Sequence[StartSpan], *, limit: int | None = None
    ) -> list[OpenTicket]:
        """The open tickets of the listed spans, with what their clock needs (leaving out
        those with an approved extension in their current cycle); with ``limit``, the first
        so many of each span by start of their current cycle (then ticket)."""
        if not spans:
            return []
        if limit is None:
            sql, params = _per_span(spans, _OPEN_COLUMNS)
        else:
            order = f" ORDER BY {_START}, t.ticket_id LIMIT ?"
            sql, params = _per_span(spans, _OPEN_COLUMNS, order, limit)
        return [OpenTicket(**r) for r in await self._read(sql, params)]

    async def extended_open_tickets(self, department: str | None = None) -> list[OpenTicket]:
        """The open tickets (of one department) with an approved extension in their current
        cycle: their deadline is the extension's, whatever their category's limit."""
        rows = await self._read(
            f"SELECT DISTINCT {_OPEN_COLUMNS} FROM case_extensions e"
            " CROSS JOIN tickets t WHERE t.department = e.department"
            " AND t.ticket_id = e.ticket_id AND t.cycle = e.cycle"
            f" AND e.state = ? AND {OPEN_TICKET}"
            + (" AND e.department = ?" if department is not None else ""),
            [ExtensionState.APPROVED, *([department] if department is not None else [])],
        )
        return [OpenTicket(**r) for r in rows]

    async def search_inquiries(self, search: InquirySearch) -> list[dict[str, Any]]:
        """Newest first, at most ``search.limit``: the inquiry's listed columns and its
        ticket's status (``ticket_status``), as the console serves them."""
        sql = (
            "SELECT i.inquiry_id, i.platform, i.account, i.kind, i.state, i.department,"
            " i.category, i.ticket_id, i.public_text, i.citizen_handle, i.created_at,"
            " t.status AS ticket_status FROM inquiries i LEFT JOIN tickets t"
            " ON t.department = i.department AND t.ticket_id = i.ticket_id WHERE 1 = 1"
        )
        params: list[Any] = []
        if search.text:
            sql += " AND i.public_text LIKE ? ESCAPE '\\'"
            params.append(f"%{like_escape(search.text)}%")
        if search.handle:  # a part of the handle, in any case
            sql += " AND LOWER(i.citizen_handle) LIKE ? ESCAPE '\\'"
            params.append(f"%{like_escape(search.handle.lower())}%")
        if search.ticket_id:
            sql += " AND i.ticket_id = ?"
            params.append(search.ticket_id)
        if search.department:
            sql += " AND i.department = ?"
            params.append(search.department)
        if search.status:
            sql += " AND (i.state = ? OR t.status = ?)"
            params += [search.status, search.status]
        if search.since is not None:
            sql += " AND i.created_at >= ?"
            params.append(search.since.isoformat(timespec="microseconds"))
        if search.until is not None:
            sql += " AND i.created_at < ?"
            params.append(search.until.isoformat(timespec="microseconds"))
        return await self._read(
            sql + " ORDER BY i.created_at DESC LIMIT ?", (*params, search.limit)
        )

    async def tickets_of_inquiry(self, inquiry_id: str) -> list[StoredTicket]:
        """The tickets recorded for an inquiry, oldest first."""
        rows = await self._read(
            "SELECT * FROM tickets WHERE inquiry_id = ? ORDER BY created_at", (inquiry_id,)
        )
        return [stored_ticket(r) for r in rows]

    async def ticket_events(self, department: str, ticket_id: str) -> list[TicketEventRow]:
        """A ticket's events in the order they were recorded."""
        rows = await self._read(
            "SELECT event_id, status, native_status, occurred_at, applied, recorded_at, cycle"
            " FROM ticket_events WHERE department = ? AND ticket_id = ?"
            " ORDER BY recorded_at, event_id",
            (department, ticket_id),
        )
        return [TicketEventRow(**{**r, "applied": bool(r["applied"])}) for r in rows]

    async def first_applied(self, statuses: Sequence[str]) -> dict[tuple[str, str], str]:
        """Per (department, ticket id): when an applied event of one of ``statuses`` was
        first recorded."""
        marks = ", ".join("?" for _ in statuses)
        rows = await self._read(
            "SELECT department, ticket_id, MIN(recorded_at) AS at FROM ticket_events"
            f" WHERE applied = 1 AND status IN ({marks}) GROUP BY department, ticket_id",
            tuple(statuses),
        )
        return {(r["department"], r["ticket_id"]): r["at"] for r in rows if r["at"]}

    async def applied_statuses(self) -> dict[tuple[str, str], list[str]]:
        """Per (department, ticket id): the statuses its applied events moved it through,
        in the order they happened."""
        rows = await self._read(
            "SELECT department, ticket_id, status FROM ticket_events WHERE applied = 1"
            " ORDER BY occurred_at"
        )
        statuses: dict[tuple[str, str], list[str]] = {}
        for r in rows:
            statuses.setdefault((r["department"], r["ticket_id"]), []).append(r["status"])
        return statuses

    async def rate_inquiries(
        self,
        since: str,
        until: str,
        posted: str,
        awaiting: Sequence[str],
        queued: Sequence[str],
    ) -> list[RateInquiry]:
        """The inquiries asked from ``since`` to ``until`` (recorded at or after ``since``,
        and recorded or posted on the platform before ``until``; ISO times as stored), each
        with its first reply in state ``posted`` and whether a reply is in one of the
        ``awaiting`` states, or of the ``queued`` ones. Slim rows: a month of a busy bridge
        without its texts."""
        a_marks = ", ".join("?" for _ in awaiting)
        q_marks = ", ".join("?" for _ in queued)
        rows = await self._read(
            "SELECT i.inquiry_id, i.platform, i.account, i.state, i.department, i.category,"
            " i.created_at, i.posted_at,"
            " (SELECT MIN(r.posted_at) FROM replies r WHERE r.inquiry_id = i.inquiry_id"
            "  AND r.state = ?) AS first_reply_at,"
            " EXISTS (SELECT 1 FROM replies w WHERE w.inquiry_id = i.inquiry_id"
            f"  AND w.state IN ({a_marks})) AS awaiting,"
            " EXISTS (SELECT 1 FROM replies q WHERE q.inquiry_id = i.inquiry_id"
            f"  AND q.state IN ({q_marks})) AS queued"
            " FROM inquiries i WHERE i.created_at >= ?"
            " AND (i.created_at < ? OR i.posted_at < ?)",
            (posted, *awaiting, *queued, since, until, until),
        )
        return [
            RateInquiry(**{**r, "awaiting": bool(r["awaiting"]), "queued": bool(r["queued"])})
            for r in rows
        ]

    async def rate_tickets(self, since: str, until: str, final: Sequence[str]) -> list[RateTicket]:
        """The tickets created from ``since`` to ``until`` (ISO times as stored), with their
        inquiry's category and account and when an applied event of a ``final`` status was
        first recorded."""
        rows = await self._read(
            _rate_ticket_select(len(final)) + " WHERE t.created_at >= ? AND t.created_at < ?",
            (*final, since, until),
        )
        return [RateTicket(**r) for r in rows]

    async def last_replies(self, posted: str) -> dict[tuple[str, str], str]:
        """Per (platform, account): when its latest reply in state ``posted`` was posted."""
        rows = await self._read(
            "SELECT platform, account, MAX(posted_at) AS at FROM replies WHERE state = ?"
            " GROUP BY platform, account",
            (posted,),
        )
        return {(r["platform"], r["account"]): r["at"] for r in rows if r["at"]}

    async def post_calls_used(self, platform: str, account: str, since: datetime) -> int:
        """The weight of an account's post calls running or ended after ``since``."""
        rows = await self._read(
            "SELECT SUM(weight) AS used FROM post_calls WHERE platform = ? AND account = ?"
            " AND (done_at IS NULL OR done_at > ?)",
            (platform, account, since.isoformat(timespec="microseconds")),
        )
        return int(rows[0]["used"] or 0) if rows else 0

    # ------------------------------------------------------------ the ranking's reads
    # The rates are counted from groups: what the store can count is counted per hour (the
    # periods are whole local days, so whole hours of UTC); only the rows whose figure
    # depends on their own time are returned one by one (answered inquiries, final tickets).
    def _ranked_inquiries(self, left_out: Sequence[str]) -> str:
        """Per inquiry of a window (``?`` bound: the posted state, since, until, until, the
        states ``left_out``, then ``extra`` conditions): department, platform, account, when
        asked (``asked_time``) and when its first reply in the posted state was posted."""
        marks = ", ".join("?" for _ in left_out)
        return (
            f"SELECT i.department, i.platform, i.account, {self._ASKED} AS asked,"
            " (SELECT MIN(r.posted_at) FROM replies r WHERE r.inquiry_id = i.inquiry_id"
            "  AND r.state = ?) AS first_reply_at"
            " FROM inquiries i WHERE i.created_at >= ? AND (i.created_at < ? OR i.posted_at < ?)"
            f" AND i.department IS NOT NULL AND i.state NOT IN ({marks})"
        )

    async def ranked_inquiries(
        self, since: str, until: str, left_out: Sequence[str], posted: str
    ) -> list[tuple[str, str, str, str, str | None, int]]:
        """The inquiries ``rate_inquiries`` reads (with a department, of a state not in
        ``left_out``): those answered (a reply in state ``posted`` has a time) one by one,
        (department, platform, account, when asked, when first answered, 1); the others
        counted per (department, platform, account, hour asked as stored, None, n)."""
        rows = await self._read(
            "SELECT department, platform, account, CASE WHEN first_reply_at IS NULL"
            " THEN SUBSTR(asked, 1, 13) ELSE asked END AS asked, first_reply_at,"
            f" COUNT(*) AS n FROM ({self._ranked_inquiries(left_out)}) s"
            " GROUP BY 1, 2, 3, 4, 5",
            (posted, since, until, until, *left_out),
        )
        return [
            (
                r["department"], r["platform"], r["account"], r["asked"], r["first_reply_at"],
                int(r["n"]),
            )
            for r in rows
        ]  # fmt: skip

    async def unanswered_asked(
        self,
        since: str,
        until: str,
        left_out: Sequence[str],
        posted: str,
        group: tuple[str, str, str],
        hour: str,
        next_hour: str,
    ) -> list[str]:
        """When each inquiry of one unanswered group of ``ranked_inquiries`` was asked
        (department, platform, account of ``group``; asked from ``hour`` to ``next_hour``)."""
        rows = await self._read(
            f"SELECT asked FROM ({self._ranked_inquiries(left_out)}"
            " AND i.created_at >= ? AND i.department = ? AND i.platform = ? AND i.account = ?) s"
            " WHERE first_reply_at IS NULL AND asked >= ? AND asked < ?",
            (posted, since, until, until, *left_out, hour, *group, hour, next_hour),
        )
        return [r["asked"] for r in rows]

    _RANKED_TICKET_KEYS = (
        "t.department, COALESCE(NULLIF(i.category, ''), ?) AS category,"
        " COALESCE(NULLIF(i.platform, ''), ?) AS platform,"
        " COALESCE(NULLIF(i.account, ''), ?) AS account"
    )  # bound: the category, platform and account put for none (``UNKNOWN_KEYS``)
    UNKNOWN_KEYS = (Category.OTHER, "?", "?")

    async def ranked_tickets(
        self, since: str, until: str, final: Sequence[str]
    ) -> list[tuple[str, str, str, str, str, str | None, bool, int]]:
        """The tickets ``rate_tickets`` reads: those at a ``final`` status one by one,
        (department, inquiry's category or ``other``, platform or ``?``, account or ``?``,
        created_at, when first final, True, 1); the open ones counted per (department,
        category, platform, account, hour of creation as stored, None, False, n)."""
        marks = ", ".join("?" for _ in final)
        rows = await self._read(
            "SELECT department, category, platform, account, at, final_at, done, COUNT(*) AS n"
            f" FROM (SELECT {self._RANKED_TICKET_KEYS},"
            f" CASE WHEN t.status IN ({marks}) THEN t.created_at"
            "  ELSE SUBSTR(t.created_at, 1, 13) END AS at,"
            f" CASE WHEN t.status IN ({marks}) THEN (SELECT MIN(e.recorded_at)"
            "  FROM ticket_events e WHERE e.department = t.department"
            f"  AND e.ticket_id = t.ticket_id AND e.applied = 1 AND e.status IN ({marks}))"
            "  END AS final_at,"
            f" CASE WHEN t.status IN ({marks}) THEN 1 ELSE 0 END AS done"
            " FROM tickets t LEFT JOIN inquiries i ON i.inquiry_id = t.inquiry_id"
            " WHERE t.created_at >= ? AND t.created_at < ?) s GROUP BY 1, 2, 3, 4, 5, 6, 7",
            (*self.UNKNOWN_KEYS, *final, *final, *final, *final, since, until),
        )
        return [
            (
                r["department"], r["category"], r["platform"], r["account"], r["at"],
                r["final_at"], bool(r["done"]), int(r["n"]),
            )
            for r in rows
        ]  # fmt: skip

    async def open_created(
        self,
        final: Sequence[str],
        group: tuple[str, str, str, str],
        hour: str,
        next_hour: str,
    ) -> list[str]:
        """When each ticket of one open group of ``ranked_tickets`` was created (department,
        category, platform, account of ``group``; from ``hour`` to ``next_hour``)."""
        marks = ", ".join("?" for _ in final)
        rows = await self._read(
            "SELECT created_at FROM (SELECT t.created_at, t.status,"
            f" {self._RANKED_TICKET_KEYS} FROM tickets t"
            " LEFT JOIN inquiries i ON i.inquiry_id = t.inquiry_id"
            " WHERE t.created_at >= ? AND t.created_at < ? AND t.department = ?) s"
            f" WHERE status NOT IN ({marks}) AND category = ? AND platform = ? AND account = ?",
            (*self.UNKNOWN_KEYS, hour, next_hour, group[0], *final, *group[1:]),
        )
        return [r["created_at"] for r in rows]

    async def survey_counts(
        self, since: datetime, until: datetime
    ) -> list[tuple[str, str, str, str, bool | None, str | None, int]]:
        """The 回访 results concluded from ``since`` to ``until`` (exclusive) counted per
        (department, platform, account, outcome, solved, satisfaction)."""
        rows = await self._read(
            "SELECT department, platform, account, outcome, solved, satisfaction,"
            " COUNT(*) AS n FROM survey_results WHERE concluded_at >= ? AND concluded_at < ?"
            " GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6",
            (iso(since), iso(until)),
        )
        return [
            (
                r["department"], r["platform"], r["account"], r["outcome"],
                None if r["solved"] is None else bool(r["solved"]), r["satisfaction"],
                int(r["n"]),
            )
            for r in rows
        ]  # fmt: skip

    async def month_marks(
        self, bounds: Sequence[str], departments: Sequence[str]
    ) -> dict[int, tuple[int, ...]]:
        """For each period between two consecutive ``bounds`` (ISO times as stored, in
        order), numbered from 0: its inquiries (by recording) counted, and per state and per
        one of ``departments``; its tickets (by creation) per status. From indexes alone,
        one pass over each (no sort: a ``GROUP BY`` sorted them)."""
        states = [v.value for v in InquiryState]
        statuses = [v.value for v in TicketStatus]

        def sums(column: str, values: Sequence[str]) -> str:
            return ", ".join(
                f"SUM(CASE WHEN {column} = ? THEN 1 ELSE 0 END) AS {column}_{k}"
                for k in range(len(values))
            )

        out: dict[int, tuple[int, ...]] = {}
        for n, (start, end) in enumerate(itertools.pairwise(bounds)):
            inquiries = await self._read(
                f"SELECT COUNT(*) AS n, {sums('state', states)}"
                + "".join(f", {sums('department', departments)}" for _ in departments[:1])
                + " FROM inquiries WHERE created_at >= ? AND created_at < ?",
                (*states, *departments, start, end),
            )
            tickets = await self._read(
                f"SELECT COUNT(*) AS n, {sums('status', statuses)} FROM tickets"
                f" WHERE status IN ({', '.join('?' for _ in statuses)})"
                " AND created_at >= ? AND created_at < ?",
                (*statuses, *statuses, start, end),
            )
            out[n] = tuple(int(v or 0) for row in (*inquiries, *tickets) for v in row.values())
        return out

    # ------------------------------------------------------------ the dashboard's reads
    # A period is ``since`` to ``until``, ISO times as stored; ``until`` inclusive when
    # ``through`` (a period up to now), exclusive otherwise.

    async def period_inquiry_hours(
        self, since: str, until: str, through: bool, left_out: Sequence[str], appended: str
    ) -> list[tuple[str, str, bool, int]]:
        """The inquiries recorded in the period with a department and a state not in
        ``left_out``, counted per (department, hour as stored, whether ``appended``)."""
        marks = ", ".join("?" for _ in left_out)
        rows = await self._read(
            "SELECT department, SUBSTR(created_at, 1, 13) AS hour,"
            " CASE WHEN state = ? THEN 1 ELSE 0 END AS appended, COUNT(*) AS n"
            " FROM inquiries WHERE created_at >= ?"
            f" AND created_at {'<=' if through else '<'} ?"
            f" AND department IS NOT NULL AND state NOT IN ({marks}) GROUP BY 1, 2, 3",
            (appended, since, until, *left_out),
        )
        return [(r["department"], r["hour"], bool(r["appended"]), int(r["n"])) for r in rows]

    async def period_first_replies(
        self, since: str, until: str, through: bool, left_out: Sequence[str], posted: str
    ) -> list[tuple[str, str, str]]:
        """Of the inquiries ``period_inquiry_hours`` counts, those with a reply in state
        ``posted`` that has a time: (department, created_at, when the first was posted)."""
        marks = ", ".join("?" for _ in left_out)
        rows = await self._read(
            "SELECT i.department, i.created_at, MIN(r.posted_at) AS first_reply_at"
            # the posted replies found by their index on (state, posted time), then their
            # inquiries: CROSS JOIN keeps SQLite in that order whatever its statistics say
            " FROM replies r CROSS JOIN inquiries i"
            " WHERE i.inquiry_id = r.inquiry_id AND r.state = ? AND r.posted_at >= ?"
            f" AND i.created_at >= ? AND i.created_at {'<=' if through else '<'} ?"
            f" AND i.department IS NOT NULL AND i.state NOT IN ({marks})"
            " GROUP BY i.inquiry_id, i.department, i.created_at",
            (posted, ANY_TIME, since, until, *left_out),
        )
        return [(r["department"], r["created_at"], r["first_reply_at"]) for r in rows]

    async def ignored_reasons(
        self, since: str, until: str, through: bool, ignored: str
    ) -> dict[str | None, int]:
        """The inquiries in state ``ignored`` recorded in the period, counted by reason."""
        rows = await self._read(
            "SELECT reason, COUNT(*) AS n FROM inquiries WHERE state = ? AND created_at >= ?"
            f" AND created_at {'<=' if through else '<'} ? GROUP BY reason",
            (ignored, since, until),
        )
        return {r["reason"]: int(r["n"]) for r in rows}

    async def first_inquiry_at(self) -> str | None:
        rows = await self._read("SELECT MIN(created_at) AS at FROM inquiries")
        return rows[0]["at"] if rows else None

    _UNANSWERED = (
        " FROM inquiries i WHERE i.department IS NOT NULL AND i.state NOT IN ({out})"
        " AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.inquiry_id = i.inquiry_id"
        "  AND ((r.state = ? AND r.posted_at IS NOT NULL) OR r.state IN ({backlog})))"
    )

    async def unanswered_hours(
        self,
        left_out: Sequence[str],
        posted: str,
        backlog: Sequence[str],
        limited: Sequence[str],
    ) -> list[dict[str, Any]]:
        """Every inquiry with a department, a state not in ``left_out``, no reply posted
        (state ``posted`` with a time) and none in a ``backlog`` state, counted per
        (department, category or ``other``, platform, account, hour recorded as stored),
        with the first of each group (``first``: created_at and inquiry_id); only those of
        a department and category ``limited`` lists (``urban/complaint``)."""
        if not limited:
            return []
        where = self._UNANSWERED.format(
            out=", ".join("?" for _ in left_out), backlog=", ".join("?" for _ in backlog)
        )
        return await self._read(
            "SELECT i.department, COALESCE(NULLIF(i.category, ''), ?) AS category,"
            " i.platform, i.account, SUBSTR(i.created_at, 1, 13) AS hour, COUNT(*) AS n,"
            " MIN(i.created_at || ' ' || i.inquiry_id) AS first"
            f"{where} AND i.department || '/' || COALESCE(NULLIF(i.category, ''), ?)"
            f" IN ({', '.join('?' for _ in limited)}) GROUP BY 1, 2, 3, 4, 5",
            (Category.OTHER, *left_out, posted, *backlog, Category.OTHER, *limited),
        )

    async def unanswered_in_hour(
        self,
        left_out: Sequence[str],
        posted: str,
        backlog: Sequence[str],
        group: dict[str, Any],
        next_hour: str,
    ) -> list[tuple[str, str]]:
        """The inquiries of one ``unanswered_hours`` group: (created_at, inquiry_id)."""
        where = self._UNANSWERED.format(
            out=", ".join("?" for _ in left_out), backlog=", ".join("?" for _ in backlog)
        )
        rows = await self._read(
            f"SELECT i.created_at, i.inquiry_id{where} AND i.department = ?"
            " AND COALESCE(NULLIF(i.category, ''), ?) = ? AND i.platform = ? AND i.account = ?"
            " AND i.created_at >= ? AND i.created_at < ?",
            (
                *left_out, posted, *backlog, group["department"], Category.OTHER,
                group["category"], group["platform"], group["account"], group["hour"], next_hour,
            ),
        )  # fmt: skip
        return [(r["created_at"], r["inquiry_id"]) for r in rows]

    async def open_ticket_hours(
        self, final: Sequence[str], limited: Sequence[str]
    ) -> list[tuple[str, str, str, int]]:
        """The tickets not at a ``final`` status counted per (department, inquiry's category
        or ``other``, hour of creation as stored: ``2026-12-07T09``); only those of a
        department and category ``limited`` lists (``urban/complaint``)."""
        if not limited:
            return []
        marks = ", ".join("?" for _ in final)
        rows = await self._read(
            "SELECT t.department, COALESCE(NULLIF(i.category, ''), ?) AS category,"
            " SUBSTR(t.created_at, 1, 13) AS hour, COUNT(*) AS n"
            " FROM tickets t LEFT JOIN inquiries i ON i.inquiry_id = t.inquiry_id"
            f" WHERE t.status NOT IN ({marks})"
            " AND t.department || '/' || COALESCE(NULLIF(i.category, ''), ?)"
            f" IN ({', '.join('?' for _ in limited)}) GROUP BY 1, 2, 3",
            (Category.OTHER, *final, Category.OTHER, *limited),
        )
        return [(r["department"], r["category"], r["hour"], int(r["n"])) for r in rows]

    async def open_ticket_times(
        self, final: Sequence[str], department: str, category: str, hour: str, next_hour: str
    ) -> list[str]:
        """When each ticket of one ``open_ticket_hours`` group was created (from ``hour``
        to ``next_hour``, both as stored: ``2026-12-07T09``)."""
        marks = ", ".join("?" for _ in final)
        rows = await self._read(
            "SELECT t.created_at FROM tickets t LEFT JOIN inquiries i"
            " ON i.inquiry_id = t.inquiry_id"
            f" WHERE t.status NOT IN ({marks}) AND t.department = ?"
            " AND COALESCE(NULLIF(i.category, ''), ?) = ?"
            " AND t.created_at >= ? AND t.created_at < ?",
            (*final, department, Category.OTHER, category, hour, next_hour),
        )
        return [r["created_at"] for r in rows]

    async def period_tickets(
        self, since: str, until: str, through: bool, final: Sequence[str]
    ) -> tuple[dict[str, int], list[RateTicket]]:
        """The tickets created in the period: counted per department, and those at a
        ``final`` status with their inquiry's category and when they first reached one."""
        cmp = "<=" if through else "<"
        rows = await self._read(
            "SELECT department, COUNT(*) AS n FROM tickets WHERE created_at >= ?"
            f" AND created_at {cmp} ? GROUP BY department",
            (since, until),
        )
        marks = ", ".join("?" for _ in final)
        done = await self._read(
            _rate_ticket_select(len(final))
            + f" WHERE t.created_at >= ? AND t.created_at {cmp} ? AND t.status IN ({marks})",
            (*final, since, until, *final),
        )
        return {r["department"]: int(r["n"]) for r in rows}, [RateTicket(**r) for r in done]

    async def final_hours(
        self, since: str, until: str, through: bool, final: Sequence[str]
    ) -> list[tuple[str, str, int]]:
        """The tickets that first reached a ``final`` status (an applied event) in the
        period, counted per (department, hour as stored)."""
        marks = ", ".join("?" for _ in final)
        rows = await self._read(
            "SELECT f.department, SUBSTR(f.at, 1, 13) AS hour, COUNT(*) AS n FROM"
            " (SELECT department, ticket_id, MIN(recorded_at) AS at FROM ticket_events"
            f"  WHERE applied = 1 AND status IN ({marks}) GROUP BY department, ticket_id) f"
            " JOIN tickets t ON t.department = f.department AND t.ticket_id = f.ticket_id"
            f" WHERE f.at >= ? AND f.at {'<=' if through else '<'} ?"
            " GROUP BY 1, 2",
            (*final, since, until),
        )
        return [(r["department"], r["hour"], int(r["n"])) for r in rows]

    async def reply_counts(
        self, since: str, until: str, through: bool, posted: str, awaiting: str
    ) -> dict[str, tuple[int, int]]:
        """Per department: the replies posted in the period, and those in state
        ``awaiting`` now."""
        out: dict[str, list[int]] = {}
        for r in await self._read(
            "SELECT department, COUNT(*) AS n FROM replies WHERE state = ? AND posted_at >= ?"
            f" AND posted_at {'<=' if through else '<'} ? GROUP BY department",
            (posted, since, until),
        ):
            out.setdefault(r["department"], [0, 0])[0] = int(r["n"])
        for r in await self._read(
            "SELECT department, COUNT(*) AS n FROM replies WHERE state = ? GROUP BY department",
            (awaiting,),
        ):
            out.setdefault(r["department"], [0, 0])[1] = int(r["n"])
        return {d: (p, a) for d, (p, a) in out.items()}

    # ------------------------------------------------------------ the inspection's reads
    _ASKED = (
        "CASE WHEN i.posted_at IS NOT NULL AND i.posted_at < i.created_at"
        " THEN i.posted_at ELSE i.created_at END"
    )

    async def inspection_counts(
        self,
        since: str,
        until: str,
        late_before: str,
        left_out: Sequence[str],
        posted: str,
        awaiting: Sequence[str],
        queued: Sequence[str],
    ) -> list[tuple[str, str, str, int]]:
        """The inquiries asked (``asked_time``) from ``since`` to ``until`` inclusive and
        recorded from ``since``, of a state not in ``left_out``, counted per (platform,
        account, what became of them): ``answered`` (a reply in state ``posted`` has a
        time), else ``awaiting`` or ``queued`` (a reply in one of those states), else
        ``late`` (asked before ``late_before``) or ``recent``."""
        a_marks = ", ".join("?" for _ in awaiting)
        q_marks = ", ".join("?" for _ in queued)
        o_marks = ", ".join("?" for _ in left_out)
        rows = await self._read(
            # one look at the inquiry's replies: the best of what they say (MIN)
            "SELECT i.platform, i.account, COALESCE((SELECT MIN(CASE"
            " WHEN r.state = ? AND r.posted_at IS NOT NULL THEN 1"
            f" WHEN r.state IN ({a_marks}) THEN 2 WHEN r.state IN ({q_marks}) THEN 3 END)"
            "  FROM replies r WHERE r.inquiry_id = i.inquiry_id),"
            f" CASE WHEN {self._ASKED} < ? THEN 4 ELSE 5 END) AS kind, COUNT(*) AS n"
            f" FROM inquiries i WHERE i.created_at >= ? AND {self._ASKED} >= ?"
            f" AND {self._ASKED} <= ? AND i.state NOT IN ({o_marks}) GROUP BY 1, 2, 3",
            (posted, *awaiting, *queued, late_before, since, since, until, *left_out),
        )
        kinds = {1: "answered", 2: "awaiting", 3: "queued", 4: "late", 5: "recent"}
        return [(r["platform"], r["account"], kinds[r["kind"]], int(r["n"])) for r in rows]

    async def inspection_answers(
        self, since: str, until: str, left_out: Sequence[str], posted: str
    ) -> list[tuple[str, str, str, str]]:
        """Of the inquiries ``inspection_counts`` counts as ``answered``: (platform,
        account, when asked, when the first reply was posted)."""
        o_marks = ", ".join("?" for _ in left_out)
        rows = await self._read(
            f"SELECT i.platform, i.account, {self._ASKED} AS asked,"
            " MIN(r.posted_at) AS first_reply_at"
            " FROM replies r CROSS JOIN inquiries i"  # the posted replies first, as above
            " WHERE i.inquiry_id = r.inquiry_id AND r.state = ? AND r.posted_at >= ?"
            f" AND i.created_at >= ? AND {self._ASKED} >= ? AND {self._ASKED} <= ?"
            f" AND i.state NOT IN ({o_marks})"
            " GROUP BY i.inquiry_id, i.platform, i.account, i.created_at, i.posted_at",
            (posted, ANY_TIME, since, since, until, *left_out),
        )
        return [(r["platform"], r["account"], r["asked"], r["first_reply_at"]) for r in rows]
