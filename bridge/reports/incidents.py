"""Incidents as officials read them (issue 24): one incident with its cases, and the surge list
(the incidents that surged, with their size, growth per hour, places and 舆情 clock). The same
data serves ``GET /api/incidents``, ``GET /api/incidents/{id}`` and an inquiry's journey. No
case shows another citizen's words or name: ids, roles, tickets and times only."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from bridge.store import Store


async def incident(store: Store, incident_id: str) -> dict[str, Any] | None:
    """The incident (followed to the one it is part of), its lead, span, size, the tickets its
    cases are on and, once it surged, the surge and its 舆情 clock; then every case."""
    row = await store.get_incident(incident_id)
    if row is None:
        return None
    cases = await store.incident_cases(row.incident_id)
    tickets: dict[str, str | None] = {}
    for c in cases:
        stored = await store.get_inquiry(c.inquiry_id)
        tickets[c.inquiry_id] = stored.ticket_id if stored is not None else None
    return {
        **asdict(row),
        "size": len(cases),
        "tickets": len({t for t in tickets.values() if t}),
        "cases": [
            {
                "inquiry_id": c.inquiry_id,
                "role": c.role,
                "lead_inquiry": c.lead_inquiry,
                "ticket_id": tickets.get(c.inquiry_id),
                "category": c.category,
                "similarity": c.similarity,
                "written_at": c.written_at,
            }
            for c in cases
        ],
    }


async def surges(
    store: Store, now: datetime, department: str | None = None
) -> list[dict[str, Any]]:
    """The incidents that surged, latest first: size (every case), growth per hour (cases of
    the surge's category written in the hour before ``now``), places, when the public answer
    is due, when it was given, and whether the clock ran out before it was."""
    out = []
    for row in await store.surged_incidents(department):
        category = row.surge_category or "other"
        sizes = await store.incident_sizes([row.incident_id])
        last_hour, _, _ = await store.surge_count(
            row.incident_id, category, now - timedelta(hours=1), now
        )
        due = row.public_answer_due
        out.append(
            {
                "incident_id": row.incident_id,
                "department": row.department,
                "category": category,
                "lead_inquiry": row.lead_inquiry,
                "size": sizes.get(row.incident_id, 0),
                "size_at_surge": row.surge_size,
                "growth_per_hour": last_hour,
                "places": (row.places or "").split(),
                "first_at": row.first_at,
                "last_at": row.last_at,
                "surge_at": row.surge_at,
                "public_answer_due": due,
                "public_answer_at": row.public_answer_at,
                "overdue": row.public_answer_at is None
                and due is not None
                and datetime.fromisoformat(due) < now,
            }
        )
    return out
