"""Must-show 4 (issue 10): with a config full of distinctive secrets and citizens' personal data
in the traffic, nothing the bridge says carries any of them: ``govbridge check`` (config
errors, failures with the backend's words), the daemon's every log line (at debug level),
``/readyz``, ``/metrics``, and the bodies of the error answers.

The backend the bridge talks to is hostile: it answers every call 401 and echoes what it was
sent (the bearer token, the query string) plus a URL with a password and a citizen's phone
number, so its words reach the alert reasons and the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import tomli_w
from aiohttp import web
from govbridge_tools.simulators.rest import demo_ticketing_config
from govbridge_tools.testing import free_port

from adapters.signing import sign
from bridge.config import parse_config
from bridge.privacy.pii import id_check_char
from tests.conftest import AMQP_URL, broker_config, delete_topology, eventually
from tests.pg import PG_ADMIN
from tests.pg import pg_available as _pg_available
from tests.test_cli_ops import cli_env

TAG = uuid.uuid4().hex[:8]
SECRETS = {
    "admin_token": f"AdminTok-{TAG}-Qx81",
    "push_secret": f"PushSec-{TAG}-Wv27",
    "reply_secret": f"ReplySec-{TAG}-Lm55",
    "callback_secret": f"CallbackSec-{TAG}-Hd90",
    "rest_bearer": f"RestBearer-{TAG}-Tz43",
    "mastodon_token": f"MastoTok-{TAG}-Kp12",
    "store_password": f"StorePw@{TAG}:Jq/6",  # '@', ':' and '/' in a URL password
    "reply_url_password": f"ReplyUrlPw-{TAG}-Ns38",
    "reply_url_token": f"ReplyQueryTok-{TAG}-Fb64",
    "backend_password": f"BackendPw-{TAG}-Cc07",  # a password the backend's error body shows
}
PHONE = "13912345678"
ID_NUMBER = "11010519820314" + "123" + id_check_char("11010519820314123")
EMAIL = f"citizen.{TAG}@example.org"
PERSONAL = {"phone": PHONE, "id": ID_NUMBER, "email": EMAIL}
HANDLE = "hotline12345"


def needles() -> dict[str, str]:
    """Everything that must not appear, in the forms it could take."""
    found = {**SECRETS, **PERSONAL}
    found["store_password (encoded)"] = quote(SECRETS["store_password"], safe="")
    found["phone grouped"] = f"{PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}"
    return found


def leaks(text: str) -> list[str]:
    return [name for name, value in needles().items() if value in text]


@contextlib.asynccontextmanager
async def hostile_backend() -> AsyncIterator[int]:
    """401 for everything, echoing what it was sent."""

    async def answer(request: web.Request) -> web.Response:
        echoed = (
            f"invalid credentials {request.headers.get('Authorization', '')}"
            f" query {request.query_string} for citizen {PHONE};"
            f" see http://root:{SECRETS['backend_password']}@db.internal/admin"
        )
        return web.json_response({"error": echoed}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    """A PostgreSQL database reached with a password in the URL (trust auth ignores it), or
    SQLite where PostgreSQL is missing."""
    if not await _pg_available():
        yield f"sqlite:///{tmp_path}/store.db"
        return
    import asyncpg

    name = f"gbtest_leak_{TAG}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        password = quote(SECRETS["store_password"], safe="")
        yield f"postgresql://postgres:{password}@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def build_config(backend: int, store: str, http_port: int, exchange: str) -> dict[str, Any]:
    base = f"http://127.0.0.1:{backend}"
    ticketing = {
        **demo_ticketing_config(base, token=SECRETS["rest_bearer"]),
        "callback_secret": SECRETS["callback_secret"],
        "poll": "1s",
        "timeout": "2s",
    }
    broker = broker_config(exchange=exchange).model_dump(mode="json")
    broker["url"] = AMQP_URL
    for key in ("confirm_timeout", "connect_timeout", "drain_timeout"):
        broker[key] = "10s"
    broker["retry_delays"] = ["1s", "2s"]
    for key in ("unroutable_ttl", "dead_letter_ttl"):
        broker[key] = "1h"
    return {
        "broker": broker,
        "store": {"url": store},
        "http": {"listen": f"127.0.0.1:{http_port}", "admin_token": SECRETS["admin_token"]},
        "departments": [
            {"id": "urban", "name": "市城管委", "approval": "none", "ticketing": ticketing}
        ],
        "accounts": [
            {
                "adapter": "webhook",
                "handle": HANDLE,
                "department": "urban",
                "platform": "hotline12345",
                "secret": SECRETS["push_secret"],
                "reply_secret": SECRETS["reply_secret"],
                "reply_url": (
                    f"http://bridge:{SECRETS['reply_url_password']}@127.0.0.1:{backend}"
                    f"/replies?token={SECRETS['reply_url_token']}"
                ),
            },
            {
                "adapter": "mastodon",
                "handle": "shengtai",
                "department": "urban",
                "base_url": base,
                "token": SECRETS["mastodon_token"],
                "poll": "1s",
            },
        ],
    }


async def run_cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "--log-level",
        "debug",
        *args,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return out.decode(errors="replace")


def push_body(external_id: str) -> bytes:
    doc = {
        "external_id": external_id,
        "kind": "mention",
        "author": {"id": "880001", "handle": "市民小李"},
        "text": (
            f"小区北门路灯坏了一个星期，晚上很黑。我的电话{PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}，"
            f"身份证{ID_NUMBER}，邮箱{EMAIL}"
        ),
        "created_at": datetime.now(UTC).isoformat(),
        "visibility": "public",
    }
    return json.dumps(doc, ensure_ascii=False).encode()


async def http_answers(port: int) -> list[str]:
    """Every kind of answer the edge gives, bodies and headers, good and bad."""
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {SECRETS['admin_token']}"}
    seen: list[str] = []
    body = push_body(f"leak-bad-{TAG}")
    wrong = sign("not-the-secret-at-all", body)
    requests: list[tuple[str, str, dict[str, str], bytes]] = [
        ("GET", "/readyz", admin, b""),  # the details (alerts) are for the admin only
        ("GET", "/readyz", {}, b""),
        ("GET", "/metrics", {}, b""),
        ("GET", "/healthz", {}, b""),
        ("POST", f"/hooks/sources/{HANDLE}", {"Content-Type": "application/json", **wrong}, body),
        ("POST", "/hooks/sources/nobody", {"Content-Type": "application/json", **wrong}, body),
        ("POST", "/hooks/tickets/urban", {"Content-Type": "application/json", **wrong}, body),
        ("POST", f"/hooks/sources/{HANDLE}", {"Content-Type": "application/json"}, body * 2000),
        ("GET", "/api/report", {"Authorization": f"Bearer {SECRETS['admin_token']}x"}, b""),
        ("GET", "/api/report", {"Authorization": "Bearer 13912345678"}, b""),
        ("GET", "/api/report", admin, b""),
        ("GET", "/api/approvals", admin, b""),
        ("GET", "/api/outbox", admin, b""),
        ("GET", "/api/reconciliation", admin, b""),
        ("POST", "/api/approvals/x", admin, f'{{"decision": "edit", "text": "{PHONE}"}}'.encode()),
        ("GET", "/no/such/page", {}, b""),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, headers, data in requests:
            async with http.request(method, base + path, headers=headers, data=data) as resp:
                text = await resp.text(errors="replace")
                seen.append(f"{method} {path} -> {resp.status} {dict(resp.headers)}\n{text}")
    return seen


@pytest.mark.timeout(300)
async def test_no_secret_or_personal_data_in_anything_the_bridge_says(tmp_path: Path) -> None:
    exchange = f"gbtest-leak-{TAG}"
    outputs: dict[str, str] = {}
    async with hostile_backend() as backend, store_url(tmp_path) as store:
        port = free_port()
        config = build_config(backend, store, port, exchange)
        path = tmp_path / "secret.toml"
        path.write_text(tomli_w.dumps(config))

        # 1. govbridge check, plain and contacting the hostile adapters
        outputs["check"] = await run_cli("check", "-c", str(path))
        outputs["check --adapters"] = await run_cli("check", "-c", str(path), "--adapters")
        assert "check passed" in outputs["check"], outputs["check"]
        assert "FAILED" in outputs["check --adapters"]  # the backend refused: its words shown

        # 2. govbridge check on configs with the secrets in invalid places
        bad = tomllib.loads(path.read_text())
        bad["store"]["url"] = "mysql://gb:" + SECRETS["store_password"] + "@db/gb"
        bad["accounts"][0]["reply_url"] = "ftp://u:" + SECRETS["reply_url_password"] + "@x"
        bad["accounts"][1]["base_url"] = "gopher://" + SECRETS["mastodon_token"]
        bad["departments"][0]["ticketing"]["base_url"] = SECRETS["rest_bearer"]
        bad["http"]["admin_token"] = [SECRETS["admin_token"]]
        bad_path = tmp_path / "bad.toml"
        bad_path.write_text(tomli_w.dumps(bad))
        outputs["check (bad config)"] = await run_cli("check", "-c", str(bad_path))
        assert "config error" in outputs["check (bad config)"]
        # and with the top level valid, so the adapters' own keys are checked too
        bad_adapters = tomllib.loads(path.read_text())
        bad_adapters["accounts"][0]["reply_url"] = "ftp://u:" + SECRETS["reply_url_password"] + "@x"
        bad_adapters["accounts"][0]["secret"] = [SECRETS["push_secret"]]
        bad_adapters["accounts"][1]["base_url"] = "gopher://" + SECRETS["mastodon_token"]
        bad_adapters["departments"][0]["ticketing"]["base_url"] = SECRETS["rest_bearer"]
        adapters_path = tmp_path / "bad-adapters.toml"
        adapters_path.write_text(tomli_w.dumps(bad_adapters))
        outputs["check (bad adapter keys)"] = await run_cli("check", "-c", str(adapters_path))
        for key in (
            "accounts[0].reply_url",
            "accounts[0].secret",
            "accounts[1].base_url",
            "ticketing.base_url",
        ):
            assert key in outputs["check (bad adapter keys)"], outputs["check (bad adapter keys)"]
        broker_down = tomllib.loads(path.read_text())
        password = quote(SECRETS["store_password"], safe="")
        broker_down["broker"]["url"] = f"amqp://gb:{password}@127.0.0.1:1/"
        down_path = tmp_path / "down.toml"
        down_path.write_text(tomli_w.dumps(broker_down))
        env = cli_env()
        env.pop("GOVBRIDGE_AMQP_URL")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "check", "-c", str(down_path),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        outputs["check (broker down)"] = out.decode(errors="replace")
        assert "broker   FAILED" in outputs["check (broker down)"]

        # 3. the daemon, at debug level, with traffic
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "--log-level", "debug", "--log-json",
            "run", "-c", str(path),
            env=cli_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log_lines: list[str] = []

        async def read_log() -> None:
            assert daemon.stdout is not None
            async for line in daemon.stdout:
                log_lines.append(line.decode(errors="replace"))

        reader = asyncio.create_task(read_log())
        try:

            async def started() -> bool:
                assert daemon.returncode is None, "".join(log_lines)
                return any("govbridge started" in line for line in log_lines)

            await eventually(started, 90)
            async with aiohttp.ClientSession() as http:
                body = push_body(f"leak-good-{TAG}")
                headers = {"Content-Type": "application/json", **sign(SECRETS["push_secret"], body)}
                url = f"http://127.0.0.1:{port}/hooks/sources/{HANDLE}"
                async with http.post(url, data=body, headers=headers) as resp:
                    assert resp.status == 202, await resp.text()

                async def both_alerts() -> bool:
                    async with http.get(
                        f"http://127.0.0.1:{port}/readyz",
                        headers={"Authorization": f"Bearer {SECRETS['admin_token']}"},
                    ) as resp:
                        kinds = {a["kind"] for a in (await resp.json())["alerts"]}
                    return {"account_auth", "ticketing_auth"} <= kinds

                await eventually(both_alerts, 90)
            answers = await http_answers(port)
            outputs["http"] = "\n".join(answers)
            readyz = answers[0]
            # the backend's words are there, short and cleaned
            assert "invalid credentials" in readyz and "***" in readyz
        finally:
            if daemon.returncode is None:
                daemon.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.wait(), 60)
            await asyncio.wait_for(reader, 10)
            # the config's own delay tiers (1 s, 2 s), or their queues stay behind
            await delete_topology(parse_config(config, str(path), env={}).broker)
        outputs["daemon log"] = "".join(log_lines)
        assert daemon.returncode == 0, outputs["daemon log"][-3000:]

    # the pushed inquiry went through triage with its personal data (and was logged about)
    assert '"personal_data": ["email", "id_number", "mobile"]' in outputs["daemon log"]
    found = {where: leaks(text) for where, text in outputs.items()}
    sizes = {where: len(text.splitlines()) for where, text in outputs.items()}
    print(f"\nscanned lines per output: {sizes}; hits: {found}")
    assert found == {where: [] for where in outputs}, {
        where: [line for line in text.splitlines() if leaks(line)][:5]
        for where, text in outputs.items()
    }


def test_the_needles_are_distinctive() -> None:
    """The scan is only as good as its needles: each is long and unlike anything else."""
    values = list(needles().values())
    assert len(set(values)) == len(values)
    assert all(len(v) >= 11 for v in values)
    assert date(1982, 3, 14).strftime("%Y%m%d") in ID_NUMBER
