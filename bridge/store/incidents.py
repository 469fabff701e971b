"""Incidents: each new inquiry's link to the incident it is a case of (``incident_cases``), and
each incident's lead case, span and surge (``incidents``). Triage decides a department's cases
one at a time under ``lock_incidents`` (in a transaction), so every process appends them in one
order (``seq``) and catches up from it before it decides the next."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bridge.store.base import StoreBase
from bridge.store.drivers import iso, now_iso
from bridge.store.rows import IncidentCase, IncidentRow, KnownCase
from schemas.vocab import IncidentRole


class IncidentsStore(StoreBase):
    @staticmethod
    def _case(row: dict[str, Any]) -> IncidentCase:
        return IncidentCase(**{**row, "similarity": float(row["similarity"])})

    @staticmethod
    def _incident(row: dict[str, Any]) -> IncidentRow:
        return IncidentRow(**{**row, "surge_announced": bool(row["surge_announced"])})

    async def lock_incidents(self, department: str) -> None:
        """Inside a transaction: decide this department's cases one at a time (every process)."""
        await self.db.lock(f"incidents:{department}")

    async def known_cases(
        self, department: str, *, after_seq: int, written_since: datetime, limit: int = 5000
    ) -> list[KnownCase]:
        """The department's cases decided after ``after_seq`` (written since ``written_since``),
        in the order they were decided, with their public text: what the incident index of a
        process that did not decide them learns."""
        rows = await self.db.fetchall(
            "SELECT seq, inquiry_id, incident_id, text, written_at FROM incident_cases"
            " WHERE department = ? AND seq > ? AND written_at >= ? ORDER BY seq LIMIT ?",
            (department, after_seq, iso(written_since), limit),
        )
        return [KnownCase(**r) for r in rows]

    async def last_case_seq(self, department: str) -> int:
        rows = await self.db.fetchall(
            "SELECT MAX(seq) AS seq FROM incident_cases WHERE department = ?", (department,)
        )
        return int(rows[0]["seq"] or 0) if rows else 0

    async def get_incident_case(self, inquiry_id: str) -> IncidentCase | None:
        rows = await self.db.fetchall(
            "SELECT * FROM incident_cases WHERE inquiry_id = ?", (inquiry_id,)
        )
        return self._case(rows[0]) if rows else None

    async def get_incident(self, incident_id: str) -> IncidentRow | None:
        """The incident, following ``merged_into`` to the one it is part of now."""
        seen: set[str] = set()
        while incident_id not in seen:
            seen.add(incident_id)
            rows = await self.db.fetchall(
                "SELECT * FROM incidents WHERE incident_id = ?", (incident_id,)
            )
            if not rows:
                return None
            row = self._incident(rows[0])
            if row.merged_into is None:
                return row
            incident_id = row.merged_into
        return None  # a cycle: never written, but never followed for ever either

    async def incident_cases(self, incident_id: str) -> list[IncidentCase]:
        """Every case of an incident, in the order they were decided."""
        rows = await self.db.fetchall(
            "SELECT * FROM incident_cases WHERE incident_id = ? ORDER BY seq", (incident_id,)
        )
        return [self._case(r) for r in rows]

    async def merged_cases(self, lead_inquiry: str) -> list[IncidentCase]:
        """The cases merged into ``lead_inquiry``'s ticket: the citizens its status changes
        answer besides its own."""
        rows = await self.db.fetchall(
            "SELECT * FROM incident_cases WHERE lead_inquiry = ? AND role = ? ORDER BY seq",
            (lead_inquiry, IncidentRole.MERGED),
        )
        return [self._case(r) for r in rows]

    async def record_incident_case(
        self,
        *,
        inquiry_id: str,
        incident_id: str,
        department: str,
        category: str,
        role: IncidentRole,
        lead_inquiry: str | None,
        similarity: float,
        matched: str | None,
        text: str,
        written_at: datetime,
        becomes_lead: bool,
    ) -> IncidentCase:
        """Link an inquiry to its incident (once: a second call returns the first link) and
        keep the incident's span; ``becomes_lead``: the case is the one whose ticket the
        incident is handled on (only if the incident has none yet)."""
        now, written = now_iso(), iso(written_at)
        await self.db.execute(
            "INSERT INTO incidents (incident_id, department, lead_inquiry, first_at, last_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id) DO NOTHING",
            (incident_id, department, None, written, written, now),
        )
        await self.db.execute(
            "INSERT INTO incident_cases (inquiry_id, incident_id, department, category, role,"
            " lead_inquiry, similarity, matched, text, written_at, joined_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (inquiry_id) DO NOTHING",
            (
                inquiry_id,
                incident_id,
                department,
                category,
                role,
                lead_inquiry,
                round(similarity, 4),
                matched,
                text,
                written,
                now,
            ),
        )
        await self.db.execute(
            "UPDATE incidents SET first_at = CASE WHEN first_at > ? THEN ? ELSE first_at END,"
            " last_at = CASE WHEN last_at < ? THEN ? ELSE last_at END WHERE incident_id = ?",
            (written, written, written, written, incident_id),
        )
        if becomes_lead:
            await self.db.execute(
                "UPDATE incidents SET lead_inquiry = ? WHERE incident_id = ?"
                " AND lead_inquiry IS NULL",
                (inquiry_id, incident_id),
            )
        case = await self.get_incident_case(inquiry_id)
        assert case is not None
        if case.joined_at == now:  # this call linked it
            await self.record_audit(
                "incident.linked",
                inquiry_id=inquiry_id,
                subject=incident_id,
                role=role,
                lead_inquiry=case.lead_inquiry,
                similarity=case.similarity,
                matched=matched,
            )
        return case

    async def merge_incidents(self, into: str, others: Sequence[str]) -> None:
        """Incidents found to be one: their cases move to ``into`` (their leads keep their
        tickets), and each is marked as merged into it."""
        for other in others:
            if other == into:
                continue
            await self.db.execute(
                "UPDATE incident_cases SET incident_id = ? WHERE incident_id = ?", (into, other)
            )
            await self.db.execute(
                "UPDATE incidents SET merged_into = ? WHERE incident_id = ?", (into, other)
            )

    async def surge_count(
        self, incident_id: str, category: str, since: datetime, until: datetime
    ) -> tuple[int, str | None, int]:
        """Cases of the incident in ``category`` written in [since, until]: how many, when the
        first of them was written, and how many in the last hour before ``until``."""
        rows = await self.db.fetchall(
            "SELECT written_at FROM incident_cases WHERE incident_id = ? AND category = ?"
            " AND written_at >= ? AND written_at <= ? ORDER BY written_at",
            (incident_id, category, iso(since), iso(until)),
        )
        times = [r["written_at"] for r in rows]
        hour_ago = iso(until - timedelta(hours=1))
        recent = sum(1 for t in times if t > hour_ago)
        return len(times), (times[0] if times else None), recent

    async def mark_surge(
        self,
        incident_id: str,
        *,
        category: str,
        size: int,
        at: datetime,
        public_answer_due: datetime,
        places: str,
        by: str,
    ) -> bool:
        """The incident surged with case ``by``: start its 舆情 clock, once (True the first
        time)."""
        n = await self.db.execute(
            "UPDATE incidents SET surge_category = ?, surge_at = ?, surge_size = ?,"
            " public_answer_due = ?, places = ?, surge_by = ?"
            " WHERE incident_id = ? AND surge_at IS NULL",
            (category, iso(at), size, iso(public_answer_due), places, by, incident_id),
        )
        if n > 0:
            await self.record_audit(
                "incident.surge",
                inquiry_id=by,
                subject=incident_id,
                category=category,
                size=size,
                public_answer_due=iso(public_answer_due),
            )
        return n > 0

    async def split_case(self, inquiry_id: str, *, actor: str) -> IncidentCase | None:
        """An official splits a case out of its incident: it becomes an incident of its own,
        its lead (the caller gives it a ticket of its own if it had none). Audited."""
        async with self.transaction() as tx:
            case = await tx.get_incident_case(inquiry_id)
            if case is None:
                return None
            await tx.db.execute(
                "UPDATE incident_cases SET incident_id = ?, role = ?, lead_inquiry = NULL"
                " WHERE inquiry_id = ?",
                (inquiry_id, IncidentRole.LEAD, inquiry_id),
            )
            await tx.db.execute(
                "INSERT INTO incidents (incident_id, department, lead_inquiry, first_at, last_at,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    inquiry_id,
                    case.department,
                    inquiry_id,
                    case.written_at,
                    case.written_at,
                    now_iso(),
                ),
            )
            await tx.record_audit(
                "incident.split",
                actor=actor,
                inquiry_id=inquiry_id,
                subject=case.incident_id,
                was=case.role,
                lead_inquiry=case.lead_inquiry,
            )
            return await tx.get_incident_case(inquiry_id)

    async def join_incidents(self, into: str, other: str, *, actor: str) -> bool:
        """An official merges incident ``other`` into ``into`` (both current, different, of
        one department): its cases move, each keeping its role and ticket. Audited."""
        async with self.transaction() as tx:
            a, b = await tx.get_incident(into), await tx.get_incident(other)
            if a is None or b is None or a.incident_id == b.incident_id:
                return False
            if a.department != b.department:
                return False
            await tx.merge_incidents(a.incident_id, [b.incident_id])
            await tx.db.execute(
                "UPDATE incidents SET first_at = CASE WHEN first_at > ? THEN ? ELSE first_at END,"
                " last_at = CASE WHEN last_at < ? THEN ? ELSE last_at END WHERE incident_id = ?",
                (b.first_at, b.first_at, b.last_at, b.last_at, a.incident_id),
            )
            await tx.record_audit(
                "incident.merged", actor=actor, subject=a.incident_id, joined=b.incident_id
            )
        return True

    async def record_public_answer(self, incident_id: str, *, actor: str, link: str | None) -> bool:
        """An official gave the surge's public answer: its 舆情 clock stops (once; True then).
        Audited."""
        at = now_iso()
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "UPDATE incidents SET public_answer_at = ?, public_answer_by = ?"
                " WHERE incident_id = ? AND surge_at IS NOT NULL AND public_answer_at IS NULL",
                (at, actor, incident_id),
            )
            if n > 0:
                await tx.record_audit(
                    "incident.answered", actor=actor, subject=incident_id, link=link
                )
        return n > 0

    async def surge_announced(self, incident_id: str) -> None:
        """Its event is on the exchange and its alert raised."""
        await self.db.execute(
            "UPDATE incidents SET surge_announced = 1 WHERE incident_id = ?", (incident_id,)
        )

    async def surged_incidents(self, department: str | None = None) -> list[IncidentRow]:
        """Incidents that surged, the latest first (the surge list)."""
        where = "surge_at IS NOT NULL AND merged_into IS NULL"
        params: tuple[str, ...] = ()
        if department is not None:
            where, params = where + " AND department = ?", (department,)
        rows = await self.db.fetchall(
            f"SELECT * FROM incidents WHERE {where} ORDER BY surge_at DESC LIMIT 200",
            params,
        )
        return [self._incident(r) for r in rows]

    async def incident_sizes(self, incident_ids: Sequence[str]) -> dict[str, int]:
        if not incident_ids:
            return {}
        marks = ", ".join("?" for _ in incident_ids)
        rows = await self.db.fetchall(
            f"SELECT incident_id, COUNT(*) AS n FROM incident_cases"
            f" WHERE incident_id IN ({marks}) GROUP BY incident_id",
            tuple(incident_ids),
        )
        return {r["incident_id"]: int(r["n"]) for r in rows}
