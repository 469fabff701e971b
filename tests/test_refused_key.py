"""A ticket system that refuses the bridge's key (issue 19, must-show 1), against the Open311
simulator's ``quirks`` mode, which answers a wrong key ``400 {"code":400,"detail":["Invalid API
key"]}`` on ``POST requests`` and answers ``GET requests`` without any key, as the public server
does.

The alert is about creates: the status polls that keep succeeding in between do not clear it,
and ``/readyz``, the ``govbridge_alert`` metric and the ticket system's row agree. The command is
held in the store, not in the hour-long delay tier: fixing the key (a ``PUT`` through the API, a
config reload by SIGHUP, or a key replaced through another process) files it within 30 s, once,
counted in the simulator's own records.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from govbridge_tools.simulators import open311 as open311_sim
from govbridge_tools.testing import free_port
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.runtime.broker import Broker
from schemas.config import GovbridgeConfig
from schemas.messages import TicketCommand
from tests.conftest import (
    bridge_config,
    config_toml,
    delete_topology,
    eventually,
    running_bridge,
)
from tests.contract.harness_open311 import API_KEY, Open311Harness
from tests.test_cli_ops import cli_env, govbridge

ADMIN = {"Authorization": "Bearer test-admin-token"}
WRONG_KEY = "key-from-last-years-handover-mail"
# replaced credentials are kept encrypted with this (credentials.keys)
VAULT = {"keys": [Fernet.generate_key().decode()]}
POSTS = "POST /requests.{fmt}"
POLLS = "GET /requests.{fmt}"


@pytest.fixture
async def refusing() -> AsyncIterator[Open311Harness]:
    """The quirks server; it takes ``API_KEY``, and the bridge will be given another."""
    h = Open311Harness(quirks=True)
    async with h.running():
        yield h


def ticketing(h: Open311Harness, key: str, **extra: Any) -> dict[str, Any]:
    """The department's block as its operator writes it: status polled every 200 ms, and the
    recheck of held commands left at an hour so only the fix itself can release them."""
    assert h.server is not None
    return {
        **open311_sim.demo_ticketing_config(h.server.base_url, key),
        "poll": "200ms",
        "auth_recheck": "1h",
        **extra,
    }


def department(block: dict[str, Any]) -> dict[str, Any]:
    return {"id": "transport", "name": "市交通委", "ticketing": block}


def filed(h: Open311Harness, command: TicketCommand) -> int:
    """Tickets in the simulator that carry this command's reference (the quirks server drops
    attributes; the reference is in the description)."""
    return sum(command.reference in t.description for t in h.state.tickets.values())


class View:
    """What an operator sees over HTTP: /readyz, the ticket systems' rows, the metric."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def readyz(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/readyz", headers=ADMIN) as resp:
            body: dict[str, Any] = await resp.json()
            return body

    async def row(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/api/ticket-systems", headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            [row] = (await resp.json())["ticket_systems"]
            return dict(row)

    async def alert_metric(self, operation: str) -> float:
        """The ``govbridge_alert`` gauge for the department's ``operation`` (0 when none)."""
        async with self.http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        values = [
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "govbridge_alert"
            and s.labels.get("name") == "transport"
            and s.labels.get("operation") == operation
        ]
        return max(values, default=0.0)

    async def auth_alerts(self) -> list[tuple[str, str, str]]:
        ready = await self.readyz()
        return [
            (a["kind"], a["name"], a.get("operation", ""))
            for a in ready["alerts"]
            if a["kind"] == "ticketing_auth"
        ]

    async def held(self) -> int:
        return int((await self.row())["held"])


async def test_refused_key_alert_outlives_polls_and_a_replaced_key_files_the_held_inquiry_once(
    refusing: Open311Harness, tmp_path: Path
) -> None:
    cfg = bridge_config(
        tmp_path, departments=[department(ticketing(refusing, WRONG_KEY))], credentials=VAULT
    )
    path = tmp_path / "govbridge.toml"
    path.write_text(config_toml(cfg))  # the file, for govbridge check
    command = refusing.command(1)
    routes = refusing.state.requests_by_route
    async with (
        running_bridge(cfg, ["ticketing", "sync", "http"]) as daemon,
        aiohttp.ClientSession() as http,
    ):
        view = View(http, f"http://127.0.0.1:{daemon.http_port}")
        assert daemon.ctx is not None
        await daemon.ctx.broker.publish(f"inquiry.routed.{command.department}", command)

        async def held() -> bool:
            return await view.held() == 1

        await eventually(held)
        assert routes[POSTS] == 1

        # The sync stage keeps polling successfully (this server needs no key for GET) ...
        polls = routes[POLLS]

        async def polled_a_while() -> bool:
            row = await view.row()  # the last success is read back from the store
            return routes[POLLS] >= polls + 10 and row["last_success"].get("poll") is not None

        await eventually(polled_a_while)
        # ... and the create's alert stays, everywhere the operator looks.
        assert await view.auth_alerts() == [("ticketing_auth", "transport", "create")]
        assert await view.alert_metric("create") == 1.0
        assert await view.alert_metric("poll") == 0.0
        row = await view.row()
        assert row["state"] == "paused: auth" and row["held"] == 1
        assert row["last_success"].get("create") is None
        assert "Invalid API key" in row["alerts"][0]["reason"]
        assert refusing.state.tickets == {}
        assert routes[POSTS] == 1, "the held command was tried again with the same key"
        posts = routes[POSTS]
        code, out = await check_adapters(path)
        by_check = routes[POSTS] - posts  # its key probe is a POST without a service code
        assert code == 1 and "api_key of 'transport' is refused: " in out
        assert "held     transport: 1 command(s) waiting" in out and "(create: 1)" in out

        # The operator puts the right key in through the API.
        url = f"{view.base}/api/ticket-systems/transport/credentials"
        async with http.put(url, json={"api_key": API_KEY}) as resp:
            assert resp.status == 401  # not without the admin token
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.put(url, json={"api_key": API_KEY}, headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
        assert answer["fields"] == ["api_key"] and API_KEY not in str(answer)

        await eventually(lambda: _true(filed(refusing, command) == 1), timeout=30)
        print(f"held inquiry filed {loop.time() - started:.2f} s after the key was replaced")

        async def healed() -> bool:
            row = await view.row()
            return (
                await view.auth_alerts() == []
                and row["state"] == "ok"
                and row["held"] == 0
                and row["last_success"].get("create") is not None
                and await view.alert_metric("create") == 0.0
            )

        await eventually(healed)
        # Exactly once: more polls and a shared sync later, still one ticket, two POSTs of the
        # bridge's (the refused one and the one that created it).
        polls = routes[POLLS]
        await eventually(lambda: _true(routes[POLLS] >= polls + 10))
        assert filed(refusing, command) == 1 and len(refusing.state.tickets) == 1
        assert routes[POSTS] - by_check == 2
        posts = routes[POSTS]
        code, out = await check_adapters(path)  # the file still has the old key
        assert code == 0 and "tickets  transport (open311) ok" in out, out
        assert "[api_key replaced through the API by admin-token at " in out
        assert "held " not in out
        for text in (str(await view.readyz()), str(await view.row()), out):
            assert API_KEY not in text and WRONG_KEY not in text

        store = daemon.ctx.store
        actions = [
            (r["action"], r["actor"])
            for r in await store.db.fetchall("SELECT action, actor FROM audit_log ORDER BY seq")
            if r["action"].startswith(("ticket", "credential"))
        ]
        assert ("ticketing.credentials_replaced", "admin-token") in actions
        assert ("ticket.held", "bridge") in actions
        assert ("ticket.released", "admin-token") in actions
        assert ("ticket.created", "bridge") in actions


async def test_config_reload_by_sighup_files_the_held_inquiry_once(
    refusing: Open311Harness, tmp_path: Path
) -> None:
    """A real ``govbridge run`` process: the operator corrects the key in the config file and
    sends SIGHUP; the held inquiry is filed within 30 s, once."""
    port = free_port()
    wrong = bridge_config(
        tmp_path,
        departments=[department(ticketing(refusing, WRONG_KEY))],
        http={"listen": f"127.0.0.1:{port}"},
        credentials=VAULT,
    )
    data = wrong.model_dump(mode="python", serialize_as_any=True)
    path = tmp_path / "govbridge.toml"
    path.write_text(config_toml(wrong))
    fixed = parse_config(
        {**data, "departments": [department(ticketing(refusing, API_KEY))]}, env={}
    )
    command = refusing.command(2)
    routes = refusing.state.requests_by_route
    try:
        async with (
            daemon_process(path, "ticketing,sync,http", port) as (proc, log_lines),
            aiohttp.ClientSession() as http,
        ):
            view = View(http, f"http://127.0.0.1:{port}")
            broker = Broker(wrong.broker)
            await broker.connect()
            try:
                await broker.publish(f"inquiry.routed.{command.department}", command)
            finally:
                await broker.close()

            async def held() -> bool:
                return await view.held() == 1

            await eventually(held, 30)
            assert await view.auth_alerts() == [("ticketing_auth", "transport", "create")]

            path.write_text(config_toml(fixed))  # the operator corrects the file ...
            loop = asyncio.get_running_loop()
            started = loop.time()
            proc.send_signal(signal.SIGHUP)  # ... and tells the daemon

            await eventually(lambda: _true(filed(refusing, command) == 1), timeout=30)
            print(f"held inquiry filed {loop.time() - started:.2f} s after SIGHUP")

            async def healed() -> bool:
                return await view.auth_alerts() == [] and await view.held() == 0

            await eventually(healed)
            polls = routes[POLLS]
            await eventually(lambda: _true(routes[POLLS] >= polls + 10))
            assert filed(refusing, command) == 1 and len(refusing.state.tickets) == 1
            assert routes[POSTS] == 2
        assert proc.returncode == 0
        text = "".join(log_lines)
        assert "config reloaded" in text
        assert API_KEY not in text and WRONG_KEY not in text, "a key reached the log"
    finally:
        await delete_topology(wrong.broker)


async def test_a_key_replaced_through_another_process_releases_what_this_one_holds(
    refusing: Open311Harness, tmp_path: Path
) -> None:
    """Two processes on one store and one broker: the first serves HTTP only, the second
    runs ticketing with the wrong key and holds four inquiries. The key is replaced through the
    first; it releases the held commands (the store is shared) and the second takes the key up
    from the store (at once when the ticket system refuses its old one, else within its next
    look), so all four are filed, each once, and the alerts clear in both."""
    first_cfg = bridge_config(
        tmp_path, departments=[department(ticketing(refusing, WRONG_KEY))], credentials=VAULT
    )
    data = first_cfg.model_dump(mode="python", serialize_as_any=True)
    second_cfg: GovbridgeConfig = parse_config(data, env={})  # the same file, another process
    commands = [refusing.command(10 + n) for n in range(4)]
    async with (
        running_bridge(first_cfg, ["http"]) as first,
        aiohttp.ClientSession() as http,
    ):
        second = Daemon(second_cfg, ["ticketing"])
        await second.start()
        try:
            assert first.ctx is not None and second.ctx is not None
            view = View(http, f"http://127.0.0.1:{first.http_port}")
            for command in commands:
                await first.ctx.broker.publish(f"inquiry.routed.{command.department}", command)

            async def all_held() -> bool:
                return await view.held() == len(commands)

            await eventually(all_held)

            async def both_alerted() -> bool:
                return all(
                    ("ticketing_auth", "transport") in d.alerts.active for d in (first, second)
                )

            await eventually(both_alerted)  # the first learns it from the store
            assert refusing.state.tickets == {}

            url = f"{view.base}/api/ticket-systems/transport/credentials"
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with http.put(url, json={"api_key": API_KEY}, headers=ADMIN) as resp:
                assert resp.status == 200, await resp.text()

            async def all_filed() -> bool:
                return all(filed(refusing, c) == 1 for c in commands)

            await eventually(all_filed, timeout=30)
            print(f"4 held inquiries filed by another process {loop.time() - started:.2f} s after")

            async def cleared_everywhere() -> bool:
                return all(not d.alerts.active for d in (first, second))

            await eventually(cleared_everywhere)
            assert len(refusing.state.tickets) == len(commands)
            assert refusing.state.requests_by_route[POSTS] >= len(commands) + 1
            assert await view.held() == 0
            # the second process uses the replaced key (from the store, decrypted)
            system = second.ctx.adapters.ticket_systems()["transport"]
            assert system.cfg.api_key.get_secret_value() == API_KEY  # type: ignore[attr-defined]
        finally:
            await second.stop()


async def _true(value: bool) -> bool:
    return value


async def check_adapters(path: Path) -> tuple[int, str]:
    """``govbridge check --adapters -c path``: its exit code and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        *govbridge("check", "--adapters", "-c", str(path)),
        env=cli_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@contextlib.asynccontextmanager
async def daemon_process(
    path: Path, roles: str, port: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """``govbridge run -c path --roles …`` as its own process, ready (HTTP on ``port``);
    SIGTERM at the end (it must exit 0). Yields the process and its log lines so far."""
    env = cli_env()
    proc = await asyncio.create_subprocess_exec(
        *govbridge("--log-json", "run", "-c", str(path), "--roles", roles),
        env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log_lines: list[str] = []

    async def read_log() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            log_lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read_log())
    try:

        async def started() -> bool:
            assert proc.returncode is None, "".join(log_lines)
            return any("govbridge started" in line for line in log_lines)

        await eventually(started, 90)
        yield proc, log_lines
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
            await asyncio.wait_for(reader, 10)
    print("".join(line for line in log_lines if "ALERT" in line or "reload" in line)[:2000])
