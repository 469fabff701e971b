"""Reads a stage makes together, one statement each (issue 26: fewer round trips per
inquiry): rows of two tables joined, each row's columns under a prefix of its own, so the
same dataclasses (``bridge.store.rows``) come out as from two ``SELECT *``."""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, TypeVar

from bridge.store.base import StoreBase
from bridge.store.rows import CreateAttempt, StoredInquiry, StoredTicket
from bridge.store.surveys import OPEN_ASKS

_R = TypeVar("_R")


@cache
def _columns(cls: type, alias: str) -> str:
    """``alias.col AS alias_col, …`` for every field (= column) of a row dataclass."""
    return ", ".join(f"{alias}.{f.name} AS {alias}_{f.name}" for f in dataclasses.fields(cls))


def _row(cls: type[_R], alias: str, row: dict[str, Any], key: str) -> _R | None:
    """The ``cls`` under ``alias_`` in a joined row; None when the outer join found none
    (its ``key`` column, never NULL in the table, is NULL)."""
    if row.get(f"{alias}_{key}") is None:
        return None
    return cls(**{f.name: row[f"{alias}_{f.name}"] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


class LookupsStore(StoreBase):
    async def ticket_and_inquiry(
        self, department: str, ticket_id: str
    ) -> tuple[StoredTicket | None, StoredInquiry | None]:
        """A ticket and the inquiry it was made for (the reply stage's one read before it
        writes)."""
        rows = await self.db.fetchall(
            f"SELECT {_columns(StoredTicket, 't')}, {_columns(StoredInquiry, 'i')}"
            " FROM tickets t LEFT JOIN inquiries i ON i.inquiry_id = t.inquiry_id"
            " WHERE t.department = ? AND t.ticket_id = ?",
            (department, ticket_id),
        )
        if not rows:
            return None, None
        return (
            _row(StoredTicket, "t", rows[0], "ticket_id"),
            _row(StoredInquiry, "i", rows[0], "inquiry_id"),
        )

    async def create_records(
        self, reference: str
    ) -> tuple[StoredTicket | None, CreateAttempt | None]:
        """The ticket recorded for a reference and its create attempt (ticketing's one read
        before a create): as ``ticket_by_reference`` and ``get_create_attempt``."""
        rows = await self.db.fetchall(
            f"SELECT {_columns(StoredTicket, 't')}, {_columns(CreateAttempt, 'a')}"
            " FROM (SELECT CAST(? AS TEXT) AS ref) k"
            " LEFT JOIN tickets t ON t.reference = k.ref"
            " LEFT JOIN create_attempts a ON a.reference = k.ref",
            (reference,),
        )
        return (
            _row(StoredTicket, "t", rows[0], "ticket_id"),
            _row(CreateAttempt, "a", rows[0], "reference"),
        )

    async def inquiry_and_open_surveys(
        self, inquiry_id: str, platform: str, account: str
    ) -> tuple[StoredInquiry | None, int]:
        """An inquiry as recorded (None: not yet) and how many 回访 questions wait for an
        answer on its account (triage's one read before it decides): as ``get_inquiry`` and
        ``open_surveys_of``."""
        rows = await self.db.fetchall(
            f"SELECT {_columns(StoredInquiry, 'i')}, (SELECT COUNT(*) FROM survey_asks s"
            " WHERE s.platform = ? AND s.account = ? AND s.state IN (?, ?)) AS open_surveys"
            " FROM (SELECT CAST(? AS TEXT) AS id) k"
            " LEFT JOIN inquiries i ON i.inquiry_id = k.id",
            (platform, account, *OPEN_ASKS, inquiry_id),
        )
        return _row(StoredInquiry, "i", rows[0], "inquiry_id"), int(rows[0]["open_surveys"])
