"""The console's read and action endpoints that no single stage owns: inquiry search, overdue
and at-risk work, dead letters (list, replay, drop), accounts, and the audit trail. Served by the
``http`` role; who may call what is ``bridge/operators.py``'s policy.

Dead letters are read and replayed with ``bridge/cmd_dlq.py``'s core (``describe``, ``fetch``,
``replay_headers``): the same view and the same replay as ``govbridge dlq``, never the body.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge import audit
from bridge.cmd_dlq import describe, fetch, replay_headers
from bridge.http import json_error, operator_name, read_json, require_admin
from bridge.rejected import STAGE as INGEST
from bridge.report import CST
from bridge.runtime import PublishError
from bridge.templates import deadline_for
from bridge.topology import STAGE_BINDINGS
from schemas.config import AccountConfig
from schemas.vocab import Category, TicketStatus

if TYPE_CHECKING:
    from bridge.daemon import BridgeContext

SEARCH_LIMIT = 200
DLQ_LIMIT = 100


class ConsoleApi:
    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        r = ctx.app.router
        r.add_get("/api/inquiries", self.search)
        r.add_get("/api/overdue", self.overdue)
        r.add_get("/api/dead-letters", self.dead_letters)
        r.add_post("/api/dead-letters/{stage}/{action}", self.act_on_dead_letter)
        r.add_get("/api/accounts", self.accounts)
        r.add_get("/api/audit", self.audit_records)

    # ------------------------------------------------------------------ inquiries
    async def search(self, request: web.Request) -> web.Response:
        """``?q=`` text (in the redacted text), ``handle``, ``ticket``, ``department``,
        ``status`` (the inquiry's state or its ticket's status), ``from``/``to`` (dates, CST)."""
        require_admin(request)
        q = request.query
        sql = (
            "SELECT i.inquiry_id, i.platform, i.account, i.kind, i.state, i.department,"
            " i.category, i.ticket_id, i.public_text, i.citizen_handle, i.created_at,"
            " t.status AS ticket_status FROM inquiries i LEFT JOIN tickets t"
            " ON t.department = i.department AND t.ticket_id = i.ticket_id WHERE 1 = 1"
        )
        params: list[Any] = []
        if q.get("q"):
            sql += " AND i.public_text LIKE ?"
            params.append(f"%{q['q']}%")
        if q.get("handle"):
            sql += " AND i.citizen_handle = ?"
            params.append(q["handle"].lstrip("@"))
        if q.get("ticket"):
            sql += " AND i.ticket_id = ?"
            params.append(q["ticket"])
        if q.get("department"):
            sql += " AND i.department = ?"
            params.append(q["department"])
        if q.get("status"):
            sql += " AND (i.state = ? OR t.status = ?)"
            params += [q["status"], q["status"]]
        for key, op in (("from", ">="), ("to", "<")):
            if q.get(key):
                try:
                    day = datetime.fromisoformat(q[key]).replace(tzinfo=CST)
                except ValueError:
                    return json_error(400, f"{key} must be a date (YYYY-MM-DD)")
                if key == "to":
                    day = day.replace(hour=23, minute=59, second=59)
                sql += f" AND i.created_at {op} ?"
                params.append(day.astimezone(UTC).isoformat(timespec="microseconds"))
        rows = await self.ctx.store.db.fetchall(
            sql + " ORDER BY i.created_at DESC LIMIT ?", (*params, SEARCH_LIMIT)
        )
        return web.json_response({"inquiries": rows, "limit": SEARCH_LIMIT})

    # ------------------------------------------------------------------ SLA clocks
    async def overdue(self, request: web.Request) -> web.Response:
        """Open tickets past their deadline or within ``sla.warn_before`` of it."""
        require_admin(request)
        now = datetime.now(UTC)
        cfg, store = self.ctx.cfg, self.ctx.store
        items: list[dict[str, Any]] = []
        for t in await store.list_tickets():
            if TicketStatus(t.status).is_final:
                continue
            try:
                dept = cfg.department(t.department)
            except KeyError:
                continue
            inquiry = await store.get_inquiry(t.inquiry_id)
            category = inquiry.category if inquiry is not None else None
            created = datetime.fromisoformat(t.created_at).astimezone(UTC)
            deadline = deadline_for(dept, Category(category or "other"), created)
            if deadline is None:
                continue
            left = (deadline - now).total_seconds()
            if left > cfg.sla.warn_before.total_seconds():
                continue
            items.append(
                {
                    "department": dept.id,
                    "department_name": dept.name,
                    "ticket_id": t.ticket_id,
                    "inquiry_id": t.inquiry_id,
                    "status": t.status,
                    "category": category,
                    "deadline": deadline.isoformat(),
                    "seconds_left": round(left),
                    "overdue": left < 0,
                }
            )
        items.sort(key=lambda i: i["seconds_left"])
        return web.json_response({"tickets": items})

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
                    describe(stage, queue, m, broker.cfg.delivery_limit).as_dict() for m in messages
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
        body = await read_json(request)
        message_id = body.get("message_id") if isinstance(body, dict) else None
        if not isinstance(message_id, str) or not message_id:
            return json_error(400, 'body must be {"message_id": "..."}')
        broker = self.ctx.broker
        queues = broker.topology.queues(stage)
        channel = await broker.channel()
        try:
            messages = await fetch(channel, queues.dead, DLQ_LIMIT)
            found = next((m for m in messages if m.message_id == message_id), None)
            if found is None:
                return json_error(404, f"no dead letter {message_id} in {queues.dead}")
            info = describe(stage, queues.dead, found, broker.cfg.delivery_limit)
            if action == "replay":
                try:
                    await broker.publish_raw(
                        "",
                        queues.work,
                        found.body,
                        type_=found.type,
                        headers=replay_headers(found),
                        correlation_id=found.correlation_id,
                    )
                except PublishError as exc:
                    return json_error(503, f"not replayed (kept): {exc}")
            await found.ack()
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        await audit.append(
            self.ctx.store.db,
            "dead_letter.replayed" if action == "replay" else "dead_letter.dropped",
            actor=operator_name(request),
            inquiry_id=info.ids.get("inquiry_id"),
            subject=message_id,
            stage=stage,
            reason=info.reason[:200],
        )
        return web.json_response({"message_id": message_id, "stage": stage, "done": action})

    # ------------------------------------------------------------------ accounts
    async def accounts(self, request: web.Request) -> web.Response:
        """Each account: its department, alerts, what waits to be posted, paused state."""
        require_admin(request)
        alerts = self.ctx.alerts.describe()
        backlog: dict[str, Any] = {}
        if "outbox" in self.ctx.details:
            with contextlib.suppress(Exception):
                backlog = await self.ctx.details["outbox"]()
        out = []
        for acc in self.ctx.cfg.accounts:
            platform = acc.platform_name
            key = f"{platform}:{acc.handle}"
            mine = [a for a in alerts if acc.handle in str(a.get("name", ""))]
            out.append(
                {
                    "quota": await self._quota_use(acc, platform),
                    "adapter": acc.adapter,
                    "platform": platform,
                    "handle": acc.handle,
                    "department": acc.department,
                    "alerts": mine,
                    "healthy": not mine,
                    "outbox": backlog.get(key),
                    "reply_limit": acc.reply_limit.model_dump(mode="json")
                    if acc.reply_limit
                    else None,
                }
            )
        return web.json_response({"accounts": out})

    async def _quota_use(self, acc: AccountConfig, platform: str) -> dict[str, Any] | None:
        """The posting quota (the account's ``reply_limit``, else the adapter's) and the calls
        counted in its current window (shared by every process through the store)."""
        limit: tuple[int, timedelta] | None = None
        if acc.reply_limit is not None:
            limit = acc.reply_limit.max_calls, acc.reply_limit.period
        else:  # the adapter's own limit (the daemon's adapters, closed by the daemon)
            source = self.ctx.adapters.sources().get(f"{acc.adapter}:{acc.handle}")
            cap = source.capabilities.reply_rate_limit if source is not None else None
            limit = (cap.max_calls, cap.period) if cap is not None else None
        if limit is None:
            return None
        since = (datetime.now(UTC) - limit[1]).isoformat(timespec="microseconds")
        rows = await self.ctx.store.db.fetchall(
            "SELECT SUM(weight) AS used FROM post_calls WHERE platform = ? AND account = ?"
            " AND (done_at IS NULL OR done_at > ?)",
            (platform, acc.handle, since),
        )
        used = int(rows[0]["used"] or 0) if rows else 0
        return {"used": used, "max_calls": limit[0], "period_s": limit[1].total_seconds()}

    # ------------------------------------------------------------------ audit
    async def audit_records(self, request: web.Request) -> web.Response:
        require_admin(request)
        try:
            limit = max(1, min(500, int(request.query.get("limit", "100"))))
        except ValueError:
            return json_error(400, "limit must be a number")
        records = await audit.recent(self.ctx.store.db, limit=limit)
        out: dict[str, Any] = {"records": records}
        if request.query.get("verify"):  # walks the whole chain: asked for, not on every load
            verdict = await audit.verify(self.ctx.store.db)
            out["chain"] = {"ok": verdict.ok, "head": verdict.head, "problem": verdict.problem}
        return web.json_response(out)
