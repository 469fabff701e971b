"""回访 results: how each ticket's follow-up question ended, one row per handling cycle.

What is stored is what the answer parser (``bridge/triage/survey.py``, ``parse_answer``) made
of the citizen's words: solved or not, the satisfaction level, and why it was unclear. Never
the words themselves: the answer is personal data, kept (masked) with the inquiries, and the
rates (``bridge/reports/performance.py``) need only the reading. ``outcome`` (a
``SurveyOutcome``) says whether the citizen answered, stayed unclear after the one re-ask
(unrated), or never answered (no response); ``concluded_at`` is when that was settled, and the
month a result counts in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.store.base import StoreBase
from bridge.store.drivers import iso, now_iso
from schemas.messages import stable_id
from schemas.states import SurveyAskState, SurveyOutcome


class ParsedAnswer(Protocol):
    """What the store keeps of an answer: ``bridge.triage.survey.SurveyAnswer`` is one."""

    @property
    def solved(self) -> bool | None: ...

    @property
    def satisfaction(self) -> str | None: ...

    @property
    def unclear(self) -> str: ...


@dataclass(frozen=True)
class SurveyResult:
    """A row of ``survey_results``: the 回访 of ticket ``ticket_id``'s handling cycle
    ``cycle``, asked from the account the inquiry came to."""

    department: str
    ticket_id: str
    cycle: int
    inquiry_id: str
    platform: str
    account: str
    outcome: str  # a SurveyOutcome
    solved: bool | None
    satisfaction: str | None  # 满意 | 基本满意 | 不满意 | None
    unclear: str | None  # why the last answer could not be read (sarcasm, contradiction, …)
    asks: int  # the question and its re-ask: 1 or 2
    asked_at: str
    concluded_at: str


def survey_reply_id(inquiry_id: str, key: str, cycle: int) -> str:
    """The reply that asks (``survey``) or re-asks (``survey_again``) cycle ``cycle``'s 回访
    in conversation ``inquiry_id``: one per cycle, whichever process composes it."""
    return stable_id("rep", inquiry_id, key, f"cycle-{cycle}")


def outcome_of(answer: ParsedAnswer | None) -> SurveyOutcome:
    """No answer at all: no response; an answer still unclear: unrated; else answered."""
    if answer is None:
        return SurveyOutcome.NO_RESPONSE
    if answer.unclear:
        return SurveyOutcome.UNRATED
    return SurveyOutcome.ANSWERED


_COLUMNS = [f.name for f in dataclasses.fields(SurveyResult)]


@dataclass(frozen=True)
class SurveyAsk:
    """A row of ``survey_asks``: the 回访 of ticket ``ticket_id``'s cycle ``cycle`` from
    its final status to its result (``state`` a ``SurveyAskState``). ``unclear`` is why the
    last answer could not be read (the parser's reason, never the words)."""

    department: str
    ticket_id: str
    cycle: int
    inquiry_id: str
    platform: str
    account: str
    state: str
    asks: int
    due_at: str
    asked_at: str | None
    last_asked_at: str | None
    unclear: str | None
    outcome: str | None
    created_at: str


_ASK_COLUMNS = [f.name for f in dataclasses.fields(SurveyAsk)]
OPEN_ASKS = _OPEN = (SurveyAskState.ASKED, SurveyAskState.REASKED)


class SurveysStore(StoreBase):
    async def record_survey_result(
        self,
        *,
        department: str,
        ticket_id: str,
        cycle: int,
        inquiry_id: str,
        platform: str,
        account: str,
        answer: ParsedAnswer | None,
        asks: int,
        asked_at: datetime,
        concluded_at: datetime,
    ) -> SurveyResult:
        """Keep how a 回访 ended: ``answer`` is the parser's reading of the last answer
        (``None``: the citizen never answered). One row per ticket and cycle: recording the
        cycle again (the answer to the re-ask) replaces it. Audited as ``survey.recorded``
        with the reading only."""
        outcome = outcome_of(answer)
        row = SurveyResult(
            department=department,
            ticket_id=ticket_id,
            cycle=cycle,
            inquiry_id=inquiry_id,
            platform=platform,
            account=account,
            outcome=outcome,
            solved=None if answer is None or answer.unclear else answer.solved,
            satisfaction=None if answer is None or answer.unclear else answer.satisfaction,
            unclear=(answer.unclear or None) if answer is not None else None,
            asks=asks,
            asked_at=iso(asked_at),
            concluded_at=iso(concluded_at),
        )
        values = dataclasses.asdict(row)
        values["solved"] = None if row.solved is None else int(row.solved)
        keys = ("department", "ticket_id", "cycle")
        update = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in keys)
        async with self.transaction() as tx:
            await tx.db.execute(
                f"INSERT INTO survey_results ({', '.join(_COLUMNS)})"
                f" VALUES ({', '.join('?' for _ in _COLUMNS)})"
                f" ON CONFLICT (department, ticket_id, cycle) DO UPDATE SET {update}",
                tuple(values[c] for c in _COLUMNS),
            )
            await tx.record_audit(
                "survey.recorded",
                inquiry_id=inquiry_id,
                subject=f"{department}/{ticket_id}",
                cycle=cycle,
                outcome=str(outcome),
                solved=row.solved,
                satisfaction=row.satisfaction,
                unclear=row.unclear,
                asks=asks,
            )
        return row

    async def survey_results(
        self, since: datetime, until: datetime, department: str | None = None
    ) -> list[SurveyResult]:
        """The results concluded from ``since`` (inclusive) to ``until`` (exclusive), oldest
        first; only ``department``'s when given."""
        sql = "SELECT * FROM survey_results WHERE concluded_at >= ? AND concluded_at < ?"
        params: list[object] = [iso(since), iso(until)]
        if department is not None:
            sql += " AND department = ?"
            params.append(department)
        rows = await self.db.fetchall(sql + " ORDER BY concluded_at", tuple(params))
        return [
            SurveyResult(
                **{
                    **{c: r[c] for c in _COLUMNS},
                    "solved": None if r["solved"] is None else bool(r["solved"]),
                }
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ the 回访 loop
    async def schedule_survey(
        self,
        *,
        department: str,
        ticket_id: str,
        cycle: int,
        inquiry_id: str,
        platform: str,
        account: str,
        due_at: datetime,
    ) -> bool:
        """A ticket cycle reached a final status: its 回访 is due at ``due_at``. Once per
        ticket and cycle (a replayed event, or a second process, schedules nothing more);
        True when this call scheduled it."""
        added = await self.db.execute(
            "INSERT INTO survey_asks (department, ticket_id, cycle, inquiry_id, platform,"
            " account, state, asks, due_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
            " ON CONFLICT (department, ticket_id, cycle) DO NOTHING",
            (
                department,
                ticket_id,
                cycle,
                inquiry_id,
                platform,
                account,
                SurveyAskState.SCHEDULED,
                iso(due_at),
                now_iso(),
            ),
        )
        return added > 0

    async def survey_asks_due(self, now: datetime) -> list[SurveyAsk]:
        """The questions to send: scheduled ones whose time has come, and re-asks due."""
        rows = await self.db.fetchall(
            "SELECT * FROM survey_asks WHERE (state = ? AND due_at <= ?) OR state = ?"
            " ORDER BY due_at",
            (SurveyAskState.SCHEDULED, iso(now), SurveyAskState.REASK_DUE),
        )
        return [_ask(r) for r in rows]

    async def survey_asks_silent(self, asked_before: datetime) -> list[SurveyAsk]:
        """Questions (or re-asks) left unanswered since before ``asked_before``."""
        rows = await self.db.fetchall(
            "SELECT * FROM survey_asks WHERE state IN (?, ?) AND last_asked_at <= ?"
            " ORDER BY last_asked_at",
            (*_OPEN, iso(asked_before)),
        )
        return [_ask(r) for r in rows]

    async def open_survey_for(self, inquiry_id: str) -> SurveyAsk | None:
        """The question waiting for the citizen of conversation ``inquiry_id`` (asked or
        re-asked, not yet answered), the latest cycle's."""
        rows = await self.db.fetchall(
            "SELECT * FROM survey_asks WHERE inquiry_id = ? AND state IN (?, ?)"
            " ORDER BY cycle DESC",
            (inquiry_id, *_OPEN),
        )
        return _ask(rows[0]) if rows else None

    async def open_surveys_of(self, platform: str, account: str) -> int:
        """How many questions wait for an answer on an account (triage looks for answers
        only where one waits)."""
        rows = await self.db.fetchall(
            "SELECT COUNT(*) AS n FROM survey_asks WHERE platform = ? AND account = ?"
            " AND state IN (?, ?)",
            (platform, account, *_OPEN),
        )
        return int(rows[0]["n"]) if rows else 0

    async def get_survey_ask(self, department: str, ticket_id: str, cycle: int) -> SurveyAsk | None:
        rows = await self.db.fetchall(
            "SELECT * FROM survey_asks WHERE department = ? AND ticket_id = ? AND cycle = ?",
            (department, ticket_id, cycle),
        )
        return _ask(rows[0]) if rows else None

    async def move_survey_ask(
        self,
        ask: SurveyAsk,
        *,
        from_state: str,
        to_state: str,
        asked_at: datetime | None = None,
        unclear: str | None = None,
        outcome: str | None = None,
    ) -> bool:
        """Move a 回访 on, only from the state the caller saw: of two processes doing the same
        step, one moves it (True) and the other learns it was done. An ask or re-ask counts
        one more question and starts the silence clock."""
        sets, params = ["state = ?"], [to_state]
        if asked_at is not None:
            sets += ["asks = asks + 1", "last_asked_at = ?", "asked_at = COALESCE(asked_at, ?)"]
            params += [iso(asked_at), iso(asked_at)]
        if unclear is not None:
            sets.append("unclear = ?")
            params.append(unclear)
        if outcome is not None:
            sets.append("outcome = ?")
            params.append(outcome)
        moved = await self.db.execute(
            f"UPDATE survey_asks SET {', '.join(sets)}"
            " WHERE department = ? AND ticket_id = ? AND cycle = ? AND state = ?",
            (*params, ask.department, ask.ticket_id, ask.cycle, from_state),
        )
        return moved > 0


def _ask(row: dict[str, object]) -> SurveyAsk:
    return SurveyAsk(**{c: row[c] for c in _ASK_COLUMNS})  # type: ignore[arg-type]
