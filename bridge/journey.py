"""One inquiry's journey: received, routed (and why), its ticket with every status, every reply
with who decided it, and the audit trail's records of it.

The same data serves ``GET /api/inquiries/{id}`` (the console's journey page) and
``govbridge trace INQUIRY_ID``, so what an official sees and what an operator prints agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from bridge import audit
from bridge.store import Store


async def journey(store: Store, inquiry_id: str) -> dict[str, Any] | None:
    """The journey of ``inquiry_id`` as JSON-able data, or None if the bridge has no such
    inquiry."""
    row = await store.get_inquiry(inquiry_id)
    if row is None:
        return None
    inquiry = {k: v for k, v in asdict(row).items() if k != "thread_json"}
    if inquiry.get("explanation"):  # why triage chose the category (bridge/classify.py)
        inquiry["explanation"] = json.loads(inquiry["explanation"])
    # The whole conversation: the first inquiry and the citizen's follow-ups, with their
    # states (``kept_on_record`` where the ticket system takes no follow-ups).
    owner = row.conversation or inquiry_id
    conversation = [
        {
            "inquiry_id": r.inquiry_id,
            "state": r.state,
            "public_text": r.public_text,
            "created_at": r.created_at,
            "first": r.inquiry_id == owner,
        }
        for r in await store.conversation_inquiries(owner)
    ]
    ticket: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    if row.department and row.ticket_id:
        stored = await store.get_ticket(row.department, row.ticket_id)
        ticket = None if stored is None else asdict(stored)
    else:  # recorded, not yet noted on the inquiry
        own = await store.db.fetchall(
            "SELECT * FROM tickets WHERE inquiry_id = ? ORDER BY created_at", (inquiry_id,)
        )
        ticket = own[0] if own else None
    if ticket is not None:
        events = await store.db.fetchall(
            "SELECT event_id, status, native_status, occurred_at, applied, recorded_at, cycle"
            " FROM ticket_events WHERE department = ? AND ticket_id = ?"
            " ORDER BY recorded_at, event_id",
            (ticket["department"], ticket["ticket_id"]),
        )
        for e in events:
            e["applied"] = bool(e["applied"])
    attempt = await store.create_attempt_for_inquiry(inquiry_id)
    replies = await store.list_replies(inquiry_id=inquiry_id)
    return {
        "inquiry": inquiry,
        "conversation": conversation,
        "ticket": ticket,
        "events": events,
        "create_attempt": None
        if attempt is None
        else {k: v for k, v in asdict(attempt).items() if k != "command_json"},
        "replies": [json.loads(json.dumps(r.__dict__)) for r in replies],
        "audit": await audit.records_for(store.db, inquiry_id),
    }


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
    for e in data.get("events", []):
        mark = "" if e["applied"] else "  (not applied: replay or late)"
        lines.append(f"  status     {e['occurred_at']}  {e['status']} ({e['native_status']}){mark}")
    for r in data["replies"]:
        who = f" by {r['decided_by']} ({r['decision']})" if r.get("decided_by") else ""
        lines.append(
            f"  reply      {r['created_at']}  {r['status'] or 'note'}: {r['state']}{who}"
            + (f", posted {r['posted_at']}" if r.get("posted_at") else "")
        )
    if len(data["conversation"]) > 1:
        lines.append("  conversation:")
        for c in data["conversation"]:
            lines.append(
                f"    {c['created_at']}  {c['inquiry_id']}  {c['state']}"
                + ("  (first)" if c["first"] else "")
            )
    if data["audit"]:
        lines.append("  audit trail:")
        for a in data["audit"]:
            detail = ", ".join(f"{k}={v}" for k, v in a["detail"].items())
            lines.append(f"    #{a['seq']} {a['at']}  {a['action']}  by {a['actor']}  {detail}")
    return "\n".join(lines)
