"""The demo's orchestration: start the simulators and every role, send the script, move the
tickets as officials would, wait for every reply, print each journey and the summary, check
that no personal data reached a public reply or a log line, and clean up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import AMQP_URL_ENV, parse_config
from bridge.daemon import Daemon
from bridge.privacy import pii
from bridge.reports.performance import department_reports, pad, render_table
from bridge.runtime.topology import Topology
from bridge.store import StoredInquiry, StoredTicket
from bridge.telemetry.logging import configure_logging
from bridge.web.operators import add_operator
from govbridge_tools.demo.data import (
    ADMIN_TOKEN,
    CALLBACK_SECRET,
    SCRIPT,
    WEBHOOK_SECRET,
    build_config,
)
from govbridge_tools.kit import AppServer, amqp_url, broker_reachable
from schemas.messages import ReplyRequest
from schemas.vocab import Category, TicketStatus


async def run_demo(args: argparse.Namespace) -> int:
    url = amqp_url()
    if not broker_reachable(url):
        print(
            f"RabbitMQ is not reachable at {urllib.parse.urlsplit(url).netloc.split('@')[-1]}.\n"
            "Start it with one of:\n"
            "  rabbitmq-server -detached          (Debian/Ubuntu package rabbitmq-server)\n"
            "  docker compose up -d rabbitmq      (from this repository)\n"
            f"or set {AMQP_URL_ENV}=amqp://user:pass@host:5672/",
            file=sys.stderr,
        )
        return 1
    # SIGINT/SIGTERM cancel the demo, so the finally below still stops the bridge and
    # deletes the demo's queues and exchanges.
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        if not main.cancelling():  # a second signal must not cut the clean-up short
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="govbridge-demo-"))
    log_path = Path(args.log_file) if args.log_file else workdir / "govbridge.log"
    log_file = log_path.open("w", encoding="utf-8")
    _log_to(log_file)
    started = time.monotonic()
    demo = Demo(workdir)
    try:
        await demo.start_simulators()
        exchange = f"govbridge-demo-{uuid.uuid4().hex[:8]}"
        cfg = parse_config(
            build_config(demo.sims, exchange, f"sqlite:///{workdir}/demo.db"), "<demo>"
        )
        demo.daemon = Daemon(cfg)
        await demo.daemon.start()
        demo.base = f"http://127.0.0.1:{demo.daemon.http_port}"
        demo.sims["rest"].state.callback_url = f"{demo.base}/hooks/tickets/urban"
        demo.sims["hotline"].state.push_url = f"{demo.base}/hooks/sources/hotline12345"
        # a console operator for this run (the store is the demo's own, in its workdir)
        assert demo.daemon.ctx is not None
        password = secrets.token_urlsafe(9)
        await add_operator(demo.daemon.ctx.store, "demo", "admin", password, actor="demo")
        print(
            f"govbridge demo: RabbitMQ {urllib.parse.urlsplit(url).hostname}, "
            f"exchange {exchange}, console {demo.base}/ (sign in as demo / {password}),"
            f" logs {log_path}"
        )
        await demo.send_script()
        ok = await demo.run_lifecycle(deadline=started + args.timeout)
        log_file.flush()
        ok = await demo.report(log_path, time.monotonic() - started) and ok
        if args.keep_running:
            print(f"--keep-running: serving at {demo.base} (Ctrl-C to stop)", flush=True)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # until SIGINT/SIGTERM cancels us
        return 0 if ok else 1
    finally:
        await demo.stop()
        log_file.close()


def _log_to(stream: Any) -> None:
    import structlog

    configure_logging("info", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sims: dict[str, Any] = {}
        self.servers: list[Any] = []
        self.daemon: Daemon | None = None
        self.base = ""
        self.external: dict[int, str] = {}  # script index -> "channel:platform id" of the item
        self.approved: list[str] = []

    async def start_simulators(self) -> None:
        from govbridge_tools.simulators.mastodon import MastodonSimState
        from govbridge_tools.simulators.open311 import Open311Server, Open311State
        from govbridge_tools.simulators.rest import RestSimServer, RestTicketState
        from govbridge_tools.simulators.webhook import WebhookPlatformState
        from govbridge_tools.simulators.webhook import create_app as webhook_app
        from govbridge_tools.simulators.weibo import Limits, WeiboState
        from govbridge_tools.simulators.weibo import create_app as weibo_app

        for key, name, uid, first_id in (
            ("weibo-jt", "北京交通", 1_900_000_001, 4_900_000_000_000_000),
            ("weibo-cg", "北京城管", 1_900_000_002, 4_910_000_000_000_000),
        ):
            # The demo polls every 0.5 s: far above the test tier's 150 calls an hour.
            state = WeiboState(
                official_name=name,
                official_uid=uid,
                first_id=first_id,
                limits=Limits(calls=100_000, posts=1000, comments=1000),
            )
            server = await AppServer(weibo_app(state)).start()
            self.sims[key], self.sims[f"{key}-url"] = state, server.url
            self.servers.append(server)
        o311 = await Open311Server(Open311State(agency="市交通委")).start()
        o311_xml = await Open311Server(Open311State(agency="市生态环境局", xml_only=True)).start()
        rest = RestSimServer(RestTicketState(callback_secret=CALLBACK_SECRET))
        await rest.start()
        hotline_state = WebhookPlatformState(secret=WEBHOOK_SECRET, account_handle="hotline12345")
        hotline = await AppServer(webhook_app(hotline_state)).start()
        hotline.state = hotline_state  # type: ignore[attr-defined]
        mastodon = await MastodonSimState(official="shengtai").start()
        self.sims.update(
            open311=o311, open311_xml=o311_xml, rest=rest, hotline=hotline, mastodon=mastodon
        )
        self.servers += [o311, o311_xml, rest, hotline, mastodon]

    async def send_script(self) -> None:
        mastodon_citizens: dict[str, Any] = {}
        for i, item in enumerate(SCRIPT):
            if item.channel.startswith("weibo"):
                state = self.sims[item.channel]
                if item.kind == "comment":
                    if item.follow_up_of is not None:  # the citizen answers their own comment
                        comment = state.add_citizen_comment(
                            item.text,
                            citizen=item.citizen,
                            reply_cid=int(self.external[item.follow_up_of]),
                        )
                    else:
                        post_id = state.add_official_post().id
                        comment = state.add_citizen_comment(
                            item.text, citizen=item.citizen, status_id=post_id
                        )
                    self.external[i] = str(comment.id)
                else:
                    self.external[i] = str(
                        state.add_mention_post(item.text, citizen=item.citizen).id
                    )
            elif item.channel == "mastodon":
                sim = self.sims["mastodon"]
                if item.citizen not in mastodon_citizens:
                    mastodon_citizens[item.citizen] = await sim.create_citizen(item.citizen)
                citizen = mastodon_citizens[item.citizen]
                reply_to = self.external.get(item.follow_up_of) if item.follow_up_of else None
                if item.kind == "dm":
                    status = await sim.direct_message(citizen, item.text)
                else:
                    status = await sim.mention(citizen, item.text, in_reply_to_id=reply_to)
                self.external[i] = str(status["id"])
            else:  # the 12345 app pushes; a duplicate is the platform's retry of the same item
                state = self.sims["hotline"].state
                if item.duplicate_of is not None:
                    doc = state.pushes[-1]
                    status_code = await state.push_raw(doc)
                    self.external[i] = self.external[item.duplicate_of]
                else:
                    doc_item = state.citizen_item(
                        i, text=item.text, author={"id": "880001", "handle": item.citizen}
                    )
                    status_code = await state.push([doc_item])
                    self.external[i] = doc_item["external_id"]
                if status_code != 202:
                    print(f"  push answered {status_code}", file=sys.stderr)

    async def _store_rows(self) -> tuple[list[StoredInquiry], list[StoredTicket]]:
        assert self.daemon and self.daemon.ctx
        store = self.daemon.ctx.store
        return await store.list_inquiries(), await store.list_tickets()

    async def run_lifecycle(self, deadline: float) -> bool:
        """Officials work the tickets; replies are approved; wait until all are posted."""
        assert self.daemon and self.daemon.ctx
        store = self.daemon.ctx.store
        steps: dict[str, list[str | tuple[str, str]]] = {
            "transport": [
                "internal_referral",
                "in_progress",
                ("fixed", "经核查，相关问题已交由承办单位处理完毕。"),
            ],
            "urban": ["ASSIGNED", "IN_PROGRESS", "DONE"],
            "environment": ["in_progress", ("fixed", "执法人员已到现场核查并依法处理。")],
        }
        progress: dict[tuple[str, str], int] = {}
        moved_at: dict[tuple[str, str], int] = {}
        expected_inquiries = len({self.external[i] for i in range(len(SCRIPT))})
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:
            while time.monotonic() < deadline:
                inquiries, tickets = await self._store_rows()
                settled = [r for r in inquiries if r.state in ("ignored", "ticketed", "appended")]
                for t in tickets:
                    key = (t.department, t.ticket_id)
                    n = progress.get(key, 0)
                    plan = steps[t.department]
                    if n < len(plan) and await self._ready_for_step(t, moved_at.get(key)):
                        moved_at[key] = (await store.get_ticket(*key) or t).status_rank
                        await self._move(t, plan[n])
                        progress[key] = n + 1
                await self._approve(http)
                replies = await store.list_replies()
                finished = all(
                    progress.get((t.department, t.ticket_id), 0) == len(steps[t.department])
                    for t in tickets
                )
                pending = [r for r in replies if r.state in ("approved", "awaiting_approval")]
                final_posted = {
                    r.inquiry_id for r in replies if r.state == "posted" and r.status == "resolved"
                }
                all_final = all(t.inquiry_id in final_posted for t in tickets)
                if (
                    len(settled) >= expected_inquiries
                    and tickets
                    and finished
                    and not pending
                    and all_final
                ):
                    return True
                await asyncio.sleep(0.3)
        print("demo: timed out before every reply was posted", file=sys.stderr)
        return False

    async def _ready_for_step(self, ticket: StoredTicket, moved_at_rank: int | None) -> bool:
        """Officials act one step at a time, after the bridge has seen the previous step."""
        assert self.daemon and self.daemon.ctx
        current = await self.daemon.ctx.store.get_ticket(ticket.department, ticket.ticket_id)
        return current is not None and (
            moved_at_rank is None or current.status_rank > moved_at_rank
        )

    async def _move(self, ticket: StoredTicket, step: str | tuple[str, str]) -> None:
        status, note = step if isinstance(step, tuple) else (step, None)
        dept, tid = ticket.department, ticket.ticket_id
        if dept == "urban":
            await self.sims["rest"].state.move(tid, status, note)
        else:
            sim = self.sims["open311" if dept == "transport" else "open311_xml"]
            sim.state.set_status(tid, status, note)

    async def _approve(self, http: aiohttp.ClientSession) -> None:
        async with http.get(f"{self.base}/api/approvals") as resp:
            items = (await resp.json())["approvals"]
        for item in items:
            body: dict[str, Any] = {"decision": "approve"}  # decided as admin-token
            if not item["templated"] and not self.approved:
                body = {
                    "decision": "edit",
                    "text": item["text"] + "感谢您的监督。",
                }
            async with http.post(
                f"{self.base}/api/approvals/{item['reply_id']}", json=body
            ) as resp:
                if resp.status == 200:
                    self.approved.append(item["reply_id"])

    async def report(self, log_path: Path, elapsed: float) -> bool:
        """One row per inquiry, a summary, and the personal-data check. False if short."""
        assert self.daemon and self.daemon.ctx
        store = self.daemon.ctx.store
        inquiries, tickets = await self._store_rows()
        by_ticket = {(t.department, t.ticket_id): t for t in tickets}
        statuses = await store.applied_statuses()
        replies = await store.list_replies()
        public_texts = await self._public_replies()
        ok = True
        print()
        print(
            f"{'#':>2} {'platform':<12} {'department':<11} {'category':<8} {'ticket':<14}"
            f" {'status history':<34} replies"
        )
        for n, row in enumerate(inquiries, 1):
            dept = row.department or "-"
            cat = Category(row.category).label if row.category else "-"
            if row.state == "ignored":
                hist, ticket, line = "", "-", f"ignored: {row.reason}"
            else:
                ticket = row.ticket_id or "-"
                t = by_ticket.get((dept, ticket))
                own = t is not None and t.inquiry_id == row.inquiry_id
                if own:
                    steps = ["received", *statuses.get((dept, ticket), [])]
                    hist = " > ".join(TicketStatus(s).label for s in steps)
                else:
                    hist = (
                        "follow-up added to the citizen's ticket"
                        if row.state in ("appended", "kept_on_record")
                        else row.state
                    )
                posted = [
                    r for r in replies if r.inquiry_id == row.inquiry_id and r.state == "posted"
                ]
                line = f"{len(posted)} posted"
                status_replies = [r.status for r in posted if r.status]
                notes = sum(1 for r in posted if not r.templated)
                if status_replies:
                    line += f", last status {TicketStatus(status_replies[-1]).label}"
                if any(r.templated and not r.status for r in posted):
                    line += ", acknowledged"
                if notes:
                    line += f", {notes} official note{'s' if notes > 1 else ''}"
                if own and not any(r.status == "resolved" for r in posted):
                    ok = False
                    line += "  << no final reply"
            print(
                f"{n:>2} {row.platform:<12} {dept:<11} {pad(cat, 8)} {ticket:<14}"
                f" {pad(hist, 34)} {line}"
            )
        sample = next((r for r in inquiries if "[手机号]" in (r.public_text or "")), None)
        if sample is not None:
            print()
            print(f"one thread as the public sees it ({sample.platform}):")
            print(f"  citizen: {sample.public_text}")
            for r in replies:
                if r.inquiry_id == sample.inquiry_id and r.state == "posted":
                    req = ReplyRequest.model_validate_json(r.request_json)
                    print(f"  {r.account}: {pii.redact_text(r.final_text or req.text)}")
        ignored = [r for r in inquiries if r.state == "ignored"]
        appended = [r for r in inquiries if r.state == "appended"]
        ticketed = [r for r in inquiries if r.state == "ticketed"]
        posted_all = [r for r in replies if r.state == "posted"]
        decisions = [r for r in replies if r.decided_by]
        leaks = [t for t in public_texts if pii.find_personal_data(t)]
        log_text = await asyncio.to_thread(log_path.read_text, encoding="utf-8")
        log_lines = log_text.splitlines()
        log_leaks = sum(1 for line in log_lines if pii.find_personal_data(line))
        sent = len({self.external[i] for i in range(len(SCRIPT))})
        print()
        print(
            f"inquiries sent: {len(SCRIPT)} ({len(SCRIPT) - sent} platform re-delivery"
            f" deduplicated) -> recorded {len(inquiries)}: ignored {len(ignored)},"
            f" appended {len(appended)}, tickets {len(tickets)}"
        )
        actors = ", ".join(sorted({r.decided_by or "" for r in decisions})) or "-"
        print(
            f"replies posted: {len(posted_all)}; approval decisions: {len(decisions)} (by {actors})"
        )
        print(
            f"personal data in {len(public_texts)} public replies: {len(leaks)};"
            f" in {len(log_lines)} log lines: {log_leaks}"
        )
        print(f"elapsed: {elapsed:.1f} s")
        print()
        reports, ignored_by_reason = await department_reports(store, self.daemon.cfg)
        print(render_table(reports, ignored_by_reason))
        print()
        if leaks or log_leaks or len(inquiries) != sent:
            ok = False
        ok = ok and len(tickets) == len(ticketed) and bool(appended)
        print("demo: OK" if ok else "demo: FAILED (see rows above)")
        return ok

    async def _public_replies(self) -> list[str]:
        texts = [
            r["text"] for key in ("weibo-jt", "weibo-cg") for r in self.sims[key].posted_replies()
        ]
        texts += [
            r["text"]
            for r in await self.sims["mastodon"].official_replies()
            if r.get("visibility") in ("public", "unlisted")
        ]
        texts += [str(r.get("text", "")) for r in self.sims["hotline"].state.reply_list()]
        return texts

    async def stop(self) -> None:
        if self.daemon is not None:
            with contextlib.suppress(Exception):
                await self.daemon.stop()
            with contextlib.suppress(Exception):
                await _delete_topology(self.daemon)
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                await (server.stop() if hasattr(server, "stop") else server.close())


async def _delete_topology(daemon: Daemon) -> None:
    import aio_pika

    conn = await aio_pika.connect(daemon.cfg.broker.url.get_secret_value())
    async with conn:
        await Topology(daemon.cfg.broker).delete(await conn.channel())
