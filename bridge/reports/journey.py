"""One inquiry's journey: received, routed (and why), its ticket with every status, every reply
with who decided it, and the audit trail's records of it.

The same data serves ``GET /api/inquiries/{id}`` (the console's journey page) and
``govbridge trace INQUIRY_ID``, so what an official sees and what an operator prints agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from bridge.reports import incidents
from bridge.store import Store


async def journey(store: Store, inquiry_id: str) -> dict[str, Any] | None:
    """The journey of ``inquiry_id`` as JSON-able data, or None if the bridge has no such
    inquiry."""
    row = await store.get_inquiry(inquiry_id)
    if row is None:
        return None
    inquiry = {k: v for k, v in asdict(row).items() if k != "thread_json"}
    if inquiry.get("explanation"):  # why triage chose the category (bridge/triage/classify.py)
        inquiry["explanation"] = json.loads(inquiry["explanation"])
    # The whole conversation: the first inquiry and the citizen's follow-ups, with their
    # states (``forwarded`` or ``kept_on_record`` where the ticket system takes no
    # follow-ups) and, for those, how each reached the officials (``follow_up``: channel,
    # state, the linked request).
    owner = row.conversation or inquiry_id
    rows = await store.conversation_inquiries(owner)
    deliveries = {
        d.inquiry_id: d for d in await store.follow_up_deliveries([r.inquiry_id for r in rows])
    }
    conversation = [
        {
            "inquiry_id": r.inquiry_id,
            "state": r.state,
            "public_text": r.public_text,
            "created_at": r.created_at,
            "first": r.inquiry_id == owner,
            **(
                {
                    "follow_up": {
                        "channel": d.channel,
                        "state": d.state,
                        "linked_id": d.linked_id,
                        "detail": d.detail,
                    }
                }
                if (d := deliveries.get(r.inquiry_id)) is not None
                else {}
            ),
        }
        for r in rows
    ]
    ticket: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    if row.department and row.ticket_id:
        stored = await store.get_ticket(row.department, row.ticket_id)
        ticket = None if stored is None else asdict(stored)
    else:  # recorded, not yet noted on the inquiry
        own = await store.tickets_of_inquiry(inquiry_id)
        ticket = asdict(own[0]) if own else None
    if ticket is not None:
        events = [
            asdict(e) for e in await store.ticket_events(ticket["department"], ticket["ticket_id"])
        ]
    attempt = await store.create_attempt_for_inquiry(inquiry_id)
    # every ticket the case has had (a 转派 closes one and opens the next), oldest first
    tickets = sorted(
        (asdict(t) for t in await store.tickets_of_inquiry(inquiry_id)),
        key=lambda t: str(t["created_at"]),
    )
    incident = await _incident(store, owner)
    replies = await store.list_replies(inquiry_id=inquiry_id)
    return {
        "inquiry": inquiry,
        "conversation": conversation,
        "ticket": ticket,
        "tickets": tickets,
        "events": events,
        "create_attempt": None
        if attempt is None
        else {k: v for k, v in asdict(attempt).items() if k != "command_json"},
        "replies": [json.loads(json.dumps(r.__dict__)) for r in replies],
        "incident": incident,
        "audit": await store.audit_records_for(inquiry_id),
        # internal notes: for operators (the journey is an operator's page), never public
        "notes": [asdict(n) for n in await store.notes_for(inquiry_id)],
        # 延期 requests, pending and decided
        "extensions": [asdict(x) for x in await store.extensions_for(inquiry_id)],
    }


async def _incident(store: Store, inquiry_id: str) -> dict[str, Any] | None:
    """The incident the inquiry's conversation is a case of: this case (its role: ``lead``,
    ``merged`` into the lead's ticket, or ``linked`` with a ticket of its own) and the
    incident with every case (``bridge/reports/incidents.py``)."""
    case = await store.get_incident_case(inquiry_id)
    if case is None:
        return None
    found = await incidents.incident(store, case.incident_id)
    return {"case": asdict(case), **(found or {"incident_id": case.incident_id})}


def render_text(data: dict[str, Any]) -> str:
    """The journey for a terminal: one line per step, oldest first."""
    inq = data["inquiry"]
    lines = [
        f"inquiry {inq['inquiry_id']}  {inq['platform']}:{inq['account']}  ({inq['kind']})",
        f"  state      {inq['state']}" + (f" ({inq['reason']})" if inq.get("reason") else ""),
        f"  text       {inq.get('public_text') or ''}",
    ]
    if inq.get("department"):
        how = inq.get("explanation") or {}
        lines.append(
            f"  routed     {inq['department']} / {inq.get('category') or '-'}"
            f"  decided by {how.get('decided_by', 'conversation')}"
            + (f", confidence {how['confidence']}" if "confidence" in how else "")
        )
        evidence = ", ".join(f"{w} {v}" for w, v in how.get("evidence", []))
        if evidence:
            lines.append(f"  evidence   {evidence}")
    ticket = data.get("ticket")
    if ticket:
        lines.append(
            f"  ticket     {ticket['department']}/{ticket['ticket_id']}  now {ticket['status']}"
            f" ({ticket['native_status']})"
        )
    for t in data.get("tickets", []):
        if ticket and (t["department"], t["ticket_id"]) == (
            ticket["department"],
            ticket["ticket_id"],
        ):
            continue
        lines.append(
            f"  earlier    {t['department']}/{t['ticket_id']}  {t['status']} ({t['native_status']})"
        )
    for n in data.get("notes", []):
        lines.append(f"  note       {n['created_at']}  {n['author']}: {n['text']}  (internal)")
    for e in data.get("events", []):
        mark = "" if e["applied"] else "  (not applied: replay or late)"
        lines.append(f"  status     {e['occurred_at']}  {e['status']} ({e['native_status']}){mark}")
    for r in data["replies"]:
        who = f" by {r['decided_by']} ({r['decision']})" if r.get("decided_by") else ""
        lines.append(
            f"  reply      {r['created_at']}  {r['status'] or 'note'}: {r['state']}{who}"
            + (f", posted {r['posted_at']}" if r.get("posted_at") else "")
        )
    inc = data.get("incident")
    if inc:
        case = inc["case"]
        lines.append(
            f"  incident   {inc['incident_id']}  {case['role']}"
            + (f" (on the ticket of {case['lead_inquiry']})" if case.get("lead_inquiry") else "")
            + f"  {inc.get('size', 1)} cases, {inc.get('tickets', 0)} ticket(s)"
        )
        if inc.get("surge_at"):
            lines.append(
                f"  surge      {inc['surge_at']}  {inc.get('surge_size')} in"
                f" {inc.get('surge_category')}  public answer due {inc['public_answer_due']}"
                + (f"  places {inc['places']}" if inc.get("places") else "")
            )
    if len(data["conversation"]) > 1:
        lines.append("  conversation:")
        for c in data["conversation"]:
            via = c.get("follow_up")
            lines.append(
                f"    {c['created_at']}  {c['inquiry_id']}  {c['state']}"
                + ("  (first)" if c["first"] else "")
                + (f"  via {via['channel']}: {via['state']}" if via else "")
                + (f" as {via['linked_id']}" if via and via["linked_id"] else "")
            )
    if data["audit"]:
        lines.append("  audit trail:")
        for a in data["audit"]:
            detail = ", ".join(f"{k}={v}" for k, v in a["detail"].items())
            lines.append(f"    #{a['seq']} {a['at']}  {a['action']}  by {a['actor']}  {detail}")
    return "\n".join(lines)
