"""Operator commands and deployment files: ``govbridge simulate``, ``govbridge dlq``, the example
configs, and docker-compose.yml (checked for structure, and its commands run directly since
Docker cannot run here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from govbridge_tools.simulate import SIMS, cmd_simulate
from govbridge_tools.testing import free_port, free_port_range

from bridge.cli.main import build_parser
from bridge.cli.run import cmd_run
from bridge.config import parse_config
from bridge.runtime.broker import Broker
from bridge.runtime.worker import DeadLetter, Delivery, Stage, Worker
from bridge.store import audit, open_store
from schemas.config import BrokerConfig
from schemas.messages import TicketEvent
from tests.conftest import AMQP_URL, delete_topology, eventually
from tests.test_runtime import event

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "govbridge.toml"
COMPOSE_TOML = ROOT / "examples" / "compose.toml"
COMPOSE_YML = ROOT / "docker-compose.yml"
PHONE = "13812345678"


# --------------------------------------------------------------------------- helpers


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["GOVBRIDGE_AMQP_URL"] = AMQP_URL
    return env


def govbridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge.cli", *args]


@dataclass
class Result:
    code: int
    out: str
    err: str


async def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *govbridge(*args),
        cwd=cwd or ROOT,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def localize(text: str, base: int, exchange: str, store: str, listen: str) -> str:
    """A config file's text pointed at simulators from ``base``, a unique exchange, a store in
    the test's directory and a free HTTP port."""
    text = re.sub(
        r"http://(?:127\.0\.0\.1|simulators):81(0[1-6])",
        lambda m: f"http://127.0.0.1:{base + int(m.group(1)) - 1}",
        text,
    )
    text = re.sub(r'(?m)^exchange = "govbridge"', f'exchange = "{exchange}"', text)
    text = re.sub(r'(?m)^url = "(sqlite|postgresql)://[^"]*"', f'url = "{store}"', text)
    return re.sub(r'(?m)^listen = "[^"]*"', f'listen = "{listen}"', text)


def broker_cfg_of(path: Path) -> BrokerConfig:
    return parse_config(tomllib.loads(path.read_text()), str(path), env={}).broker


# --------------------------------------------------------------------------- simulate


async def test_simulate_answers_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *govbridge("simulate", "weibo", "--port", str(port)),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/2/account/get_uid.json?access_token=sim-weibo-token"
        answers: list[dict[str, Any]] = []

        async def answered() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with aiohttp.ClientSession() as http, http.get(url) as resp:
                    if resp.status == 200:
                        answers.append(await resp.json())
                        return True
            return proc.returncode is not None

        await eventually(answered, timeout=30)
        assert answers, "simulator exited before answering"
        assert isinstance(answers[0]["uid"], int)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}/" in out.decode()
    assert not listening(port)


def test_simulate_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = build_parser().parse_args(["simulate", "rest", "--port", str(port)])
        assert args.func is cmd_simulate
        assert cmd_simulate(args) == 1
    assert "rest on port" in capsys.readouterr().err


@dataclass
class Sims:
    base: int
    bridge_port: int


@pytest.fixture(scope="module")
def simulators() -> Iterator[Sims]:
    """``govbridge simulate all`` on free consecutive ports, callbacks to a free bridge port."""
    base, bridge_port = free_port_range(len(SIMS)), free_port()
    proc = subprocess.Popen(
        govbridge(
            "simulate",
            "all",
            "--port",
            str(base),
            "--bridge-url",
            f"http://127.0.0.1:{bridge_port}",
        ),
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 40
        while not all(listening(base + s.offset) for s in SIMS):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "simulators did not start"
            time.sleep(0.2)
        yield Sims(base, bridge_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err
    for sim in SIMS:  # it said what listens where
        assert f"http://127.0.0.1:{base + sim.offset}/" in out


async def test_example_config_passes_check_with_adapters_against_simulate_all(
    simulators: Sims, tmp_path: Path
) -> None:
    """The fixed credentials of ``simulate all`` are the ones examples/govbridge.toml names."""
    cfg = tmp_path / "govbridge.toml"
    exchange = f"gbtest-{uuid.uuid4().hex[:10]}"
    cfg.write_text(
        localize(
            EXAMPLE.read_text(),
            simulators.base,
            exchange,
            f"sqlite:///{tmp_path}/check.db",
            "127.0.0.1:0",
        )
    )
    try:
        result = await run_cli("check", "-c", str(cfg), "--adapters")
    finally:
        await delete_topology(broker_cfg_of(cfg))
    assert result.code == 0, result.out + result.err
    for line in (
        "account  weibo:北京交通 ok",
        "account  mastodon:shengtai ok",
        "account  webhook:hotline12345 ok",
        "tickets  transport (open311) ok",
        "tickets  urban (rest) ok",
        "tickets  environment (open311) ok",
        "check passed",
    ):
        assert line in result.out


async def test_compose_commands_run_directly(simulators: Sims, tmp_path: Path) -> None:
    """What docker compose runs — ``simulate all`` (fixture) and ``run -c compose.toml`` — with
    localhost instead of the service names: a pushed inquiry becomes a ticket in the REST
    system and the citizen gets the 'received' reply; SIGTERM stops the bridge with exit 0."""
    cfg = tmp_path / "compose-local.toml"
    cfg.write_text(
        localize(
            COMPOSE_TOML.read_text(),
            simulators.base,
            f"gbtest-{uuid.uuid4().hex[:10]}",
            f"sqlite:///{tmp_path}/bridge.db",
            f"127.0.0.1:{simulators.bridge_port}",
        )
    )
    args = build_parser().parse_args(["run", "-c", "/etc/govbridge/compose.toml"])
    assert args.func is cmd_run
    sim = f"http://127.0.0.1:{simulators.base}"
    webhook = f"http://127.0.0.1:{simulators.base + 5}"
    rest = f"http://127.0.0.1:{simulators.base + 4}"
    bridge = f"http://127.0.0.1:{simulators.bridge_port}"
    proc = await asyncio.create_subprocess_exec(
        *govbridge("run", "-c", str(cfg)),
        cwd=tmp_path,
        env={**cli_env(), "GOVBRIDGE_ADMIN_TOKEN": "compose-test"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def get(url: str) -> tuple[int, Any]:
                try:
                    async with http.get(url) as resp:
                        return resp.status, await resp.json(content_type=None)
                except aiohttp.ClientError:
                    return 0, None

            async def ready() -> bool:
                assert proc.returncode is None, "the bridge exited"
                return (await get(f"{bridge}/readyz"))[0] == 200

            await eventually(ready, timeout=40)
            item = {
                "external_id": f"m-{uuid.uuid4().hex[:8]}",
                "kind": "mention",
                "author": {"id": "880001", "handle": "居民A"},
                "text": "小区北门路灯坏了一个星期，晚上很黑，求助尽快维修",
                "created_at": "2026-01-05T08:00:00+00:00",
                "thread": {"root_id": "m-root"},
                "visibility": "public",
            }
            async with http.post(f"{webhook}/_sim/push", json={"items": [item]}) as resp:
                assert (await resp.json())["status"] == 202  # the bridge accepted the push

            async def replied() -> bool:
                _, doc = await get(f"{webhook}/_sim/replies")
                return any(r.get("status") == "received" for r in (doc or {}).get("replies", []))

            await eventually(replied, timeout=30)
            _, stats = await get(f"{rest}/_sim/stats")
            assert stats["tickets"] == 1
            assert (await get(f"{sim}/_sim/replies"))[0] == 200  # weibo simulator still fine
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 40) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await delete_topology(broker_cfg_of(cfg))


# --------------------------------------------------------------------------- check


async def test_check_example_config_exits_0_with_rabbitmq_up(tmp_path: Path) -> None:
    # Contacts only broker and store (adapters are opt-in); the store file lands in tmp_path.
    # check declares the topology: under an exchange of this run's own, deleted afterwards, so
    # the shared broker keeps no "govbridge.*" queues from a test.
    exchange = f"gbtest-{uuid.uuid4().hex[:10]}"
    text = re.sub(r'(?m)^exchange = "govbridge"', f'exchange = "{exchange}"', EXAMPLE.read_text())
    assert exchange in text
    config = tmp_path / "govbridge.toml"
    config.write_text(text)
    try:
        result = await run_cli("check", "-c", str(config), cwd=tmp_path)
    finally:
        parsed = parse_config(tomllib.loads(text), str(config), env={})
        await delete_topology(parsed.broker)
    assert result.code == 0, result.out + result.err
    assert "(3 departments, 3 accounts, 1 routes)" in result.out
    assert "broker   ok" in result.out and "store    ok" in result.out
    assert "check passed" in result.out
    assert (tmp_path / "govbridge.db").exists()


def test_example_configs_cover_the_brief() -> None:
    cfg = parse_config(tomllib.loads(EXAMPLE.read_text()), str(EXAMPLE), env={})
    depts = {d.id: d for d in cfg.departments}
    assert depts["transport"].ticketing.adapter == "open311"
    assert depts["urban"].ticketing.adapter == "rest"
    assert depts["urban"].ticketing.callback_secret is not None
    assert depts["environment"].ticketing.model_dump()["format"] == "xml"
    assert len({d.approval for d in cfg.departments}) == 3
    assert {a.adapter for a in cfg.accounts} == {"weibo", "mastodon", "webhook"}
    assert cfg.routes
    assert cfg.http.admin_token is not None
    assert cfg.http.admin_token.get_secret_value() == "change-me"
    env_cfg = parse_config(
        tomllib.loads(EXAMPLE.read_text()), str(EXAMPLE), env={"GOVBRIDGE_ADMIN_TOKEN": "s3cret"}
    )
    assert env_cfg.http.admin_token is not None
    assert env_cfg.http.admin_token.get_secret_value() == "s3cret"


def test_compose_config_is_the_example_with_service_hosts() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    compose = tomllib.loads(COMPOSE_TOML.read_text())
    cfg = parse_config(compose, str(COMPOSE_TOML), env={})
    assert "@rabbitmq:5672/" in cfg.broker.url.get_secret_value()
    assert cfg.store.url == "postgresql://govbridge@postgres/govbridge"
    assert cfg.http.listen == "0.0.0.0:8080"

    def hosts_to_local(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: hosts_to_local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [hosts_to_local(v) for v in value]
        if isinstance(value, str):
            return value.replace("http://simulators:", "http://127.0.0.1:")
        return value

    for section in ("departments", "accounts", "routes"):
        assert hosts_to_local(compose[section]) == example[section], section


# --------------------------------------------------------------------------- docker-compose


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _scalar(text: str) -> Any:
    if text.startswith(("[", '"')):
        return json.loads(text)
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    return text


def _block(lines: list[tuple[int, str]], pos: int, indent: int) -> tuple[Any, int]:
    if lines[pos][1].startswith("- "):
        items = []
        while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
            items.append(_scalar(lines[pos][1][2:].strip()))
            pos += 1
        return items, pos
    mapping: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][0] == indent:
        key, sep, rest = lines[pos][1].partition(":")
        assert sep, f"not a mapping entry: {lines[pos][1]!r}"
        pos += 1
        if rest.strip():
            mapping[key] = _scalar(rest.strip())
        elif pos < len(lines) and lines[pos][0] > indent:
            mapping[key], pos = _block(lines, pos, lines[pos][0])
        else:
            mapping[key] = None
    return mapping, pos


def parse_compose(text: str) -> dict[str, Any]:
    """The block-style YAML subset docker-compose.yml is written in (PyYAML is no dependency)."""
    lines = []
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if line.strip():
            assert "\t" not in line[: len(line) - len(line.lstrip())], "tabs in indentation"
            lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
    doc, pos = _block(lines, 0, 0)
    assert pos == len(lines), f"unparsed from line {lines[pos][1]!r}"
    assert isinstance(doc, dict)
    return doc


def test_docker_compose_structure() -> None:
    text = COMPOSE_YML.read_text()
    doc = parse_compose(text)
    with contextlib.suppress(ImportError):  # where PyYAML happens to be installed: agree with it
        import yaml

        def as_text(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: as_text(x) for k, x in v.items()}
            if isinstance(v, list):
                return [as_text(x) for x in v]
            return None if v is None else str(v)

        assert as_text(yaml.safe_load(text)) == as_text(doc)
    services = {k: v for k, v in doc["services"].items() if "profiles" not in v}
    assert set(services) == {"rabbitmq", "postgres", "simulators", "bridge"}
    _check_cluster_profile(doc["services"])
    rabbit, pg, sims, bridge = (
        services[n] for n in ("rabbitmq", "postgres", "simulators", "bridge")
    )
    assert rabbit["image"] == "rabbitmq:3.13-management"
    assert {"5672:5672", "15672:15672"} <= set(rabbit["ports"])
    assert rabbit["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    assert pg["image"] == "postgres:16"
    assert pg["environment"]["POSTGRES_DB"] == "govbridge"
    assert pg["environment"]["POSTGRES_USER"] == "govbridge"
    assert "pg_isready" in pg["healthcheck"]["test"]
    # Two images from one Dockerfile: the bridge runs only what a department runs; the
    # simulators come from the tools target (the runtime plus govbridge-tools).
    assert bridge["build"] == {"context": ".", "target": "runtime"}
    assert sims["build"] == {"context": ".", "target": "tools"}
    assert bridge["image"] != sims["image"]
    # The commands parse with the real CLI (the image's entry point is `govbridge`).
    sim_args = build_parser().parse_args(sims["command"])
    assert sim_args.func is cmd_simulate
    assert (sim_args.simulator, sim_args.host) == ("all", "0.0.0.0")
    assert sim_args.bridge_url == "http://bridge:8080"
    assert bridge["command"] == ["run", "-c", "/etc/govbridge/compose.toml"]
    assert build_parser().parse_args(bridge["command"]).func is cmd_run
    assert bridge["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert bridge["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "8080:8080" in bridge["ports"]
    assert "GOVBRIDGE_ADMIN_TOKEN" in bridge["environment"]
    # The broker credentials of the compose config are the ones RabbitMQ is started with.
    compose_cfg = tomllib.loads(COMPOSE_TOML.read_text())
    assert (
        f"amqp://{rabbit['environment']['RABBITMQ_DEFAULT_USER']}:" in compose_cfg["broker"]["url"]
    )
    # /etc/govbridge/compose.toml exists in the image: the Dockerfile copies examples/ there.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"(?m)^COPY examples /etc/govbridge$", dockerfile)
    assert re.search(r'(?m)^ENTRYPOINT \["govbridge"\]$', dockerfile)
    stages = re.findall(r"(?m)^FROM (\S+) AS (\w+)$", dockerfile)
    assert stages == [("python:3.11-slim", "runtime"), ("runtime", "tools")]
    runtime, tools = dockerfile.split("AS tools")
    assert "pip install '.[postgres]'" in runtime and "tools" not in runtime.split("FROM")[1]
    assert "pip install /app/tools" in tools  # simulators, demo, bench: only in this image


def _check_cluster_profile(services: dict[str, Any]) -> None:
    """``--profile cluster``: three RabbitMQ nodes in one cluster, three bridge replicas, each
    replica on its own node, every node with the same Erlang cookie."""
    cluster = {k for k, v in services.items() if v.get("profiles") == ["cluster"]}
    assert cluster == {"rabbit-2", "rabbit-3", "bridge-2", "bridge-3"}
    nodes = ["rabbitmq", "rabbit-2", "rabbit-3"]
    cookies = {services[n]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] for n in nodes}
    assert len(cookies) == 1 and next(iter(cookies)).startswith("-setcookie ")
    conf = (ROOT / "examples" / "rabbitmq-cluster.conf").read_text()
    listed = re.findall(r"(?m)^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf)
    assert listed == [services[n]["hostname"] for n in nodes]
    for n in ("rabbit-2", "rabbit-3"):
        mount = services[n]["volumes"][0]
        assert mount.startswith("./examples/rabbitmq-cluster.conf:/etc/rabbitmq/conf.d/")
        assert services[n]["image"] == services["rabbitmq"]["image"]
    hosts = set()
    for b in ("bridge", "bridge-2", "bridge-3"):
        args = build_parser().parse_args(services[b]["command"])
        assert args.func is cmd_run
        url = services[b]["environment"].get("GOVBRIDGE_AMQP_URL", "@rabbitmq:")
        hosts.add(url.split("@", 1)[1].split(":", 1)[0])
    assert hosts == set(nodes)  # one replica per node


# --------------------------------------------------------------------------- dlq


def broker_toml(tmp_path: Path, cfg: BrokerConfig) -> Path:
    delays = ", ".join(f'"{int(d.total_seconds() * 1000)}ms"' for d in cfg.retry_delays)
    path = tmp_path / "dlq.toml"
    path.write_text(
        f'[broker]\nurl = "{AMQP_URL}"\nexchange = "{cfg.exchange}"\n'
        f"retry_delays = [{delays}]\ndelivery_limit = {cfg.delivery_limit}\n"
        f'[store]\nurl = "sqlite:///{tmp_path}/dlq.db"\n'
    )
    return path


async def dead_count(broker: Broker, stage: str) -> int:
    conn = await aio_pika.connect(AMQP_URL)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(broker.topology.queues(stage).dead, passive=True)
        count = q.declaration_result.message_count
    assert count is not None
    return count


@pytest.fixture
async def dead_letters(broker: Broker) -> AsyncIterator[tuple[Worker[TicketEvent], list[Any]]]:
    """A worker that dead-letters ev-1 (permanent error while 'broken') and crashes on ev-2
    every time (delivery limit); ``processed`` records what it handled successfully."""
    processed: list[tuple[str, Any]] = []
    broken = {"ev-1"}

    async def handler(ev: TicketEvent, msg: Delivery) -> None:
        if ev.event_id == "ev-2":
            raise ZeroDivisionError("handler bug")
        if ev.event_id in broken:
            raise DeadLetter(f"ticket system refused the update (caller {PHONE})")
        processed.append((ev.event_id, msg.attempt))

    worker = Worker(broker, Stage("reply", TicketEvent, handler))
    await worker.start()
    try:
        note = {"note": f"请回电{PHONE}"}
        await broker.publish("ticket.updated.transport", event(1).model_copy(update=note))
        await broker.publish("ticket.updated.transport", event(2))

        async def both_dead() -> bool:
            return await dead_count(broker, "reply") == 2

        await eventually(both_dead, timeout=30)
        yield worker, [processed, broken]
    finally:
        await worker.stop()


async def test_dlq_list_replay_drop(
    broker: Broker,
    dead_letters: tuple[Worker[TicketEvent], list[Any]],
    tmp_path: Path,
) -> None:
    _, (processed, broken) = dead_letters
    cfg = str(broker_toml(tmp_path, broker.cfg))

    # list: reasons, attempts, routing key, type and ids — no personal data, nothing removed
    listed = await run_cli("dlq", "list", "-c", cfg, "--stage", "reply", "--json")
    assert listed.code == 0, listed.err
    rows = {r["ids"]["event_id"]: r for r in map(json.loads, listed.out.splitlines())}
    assert set(rows) == {"ev-1", "ev-2"}
    assert rows["ev-1"]["reason"].startswith("ticket system refused the update")
    assert rows["ev-1"]["attempts"] == 1
    assert rows["ev-2"]["reason"].startswith("broker: delivery_limit")
    assert rows["ev-2"]["attempts"] == broker.cfg.delivery_limit + 1
    for row in rows.values():
        assert row["routing_key"] == "ticket.updated.transport"
        assert row["type"] == "TicketEvent"
        assert row["failed_at"]
    text = await run_cli("dlq", "list", "-c", cfg)
    assert text.code == 0
    assert f"{broker.topology.queues('reply').dead}: 2 dead letter(s)" in text.out
    assert "ticket system refused the update" in text.out and "delivery_limit" in text.out
    assert PHONE not in listed.out + text.out + text.err
    assert await dead_count(broker, "reply") == 2

    # replay: back into the work queue with the attempt reset; the (fixed) handler processes it
    broken.clear()
    replayed = await run_cli("dlq", "replay", "-c", cfg, "--id", rows["ev-1"]["message_id"])
    assert replayed.code == 0, replayed.err
    assert f"replayed {rows['ev-1']['message_id']}" in replayed.out

    async def handled() -> bool:
        return bool(processed)

    await eventually(handled, timeout=15)
    assert processed == [("ev-1", 0)]
    assert await dead_count(broker, "reply") == 1

    # drop: refused without confirmation, removes with --yes
    ev2 = rows["ev-2"]["message_id"]
    refused = await run_cli("dlq", "drop", "-c", cfg, "--stage", "reply", "--id", ev2)
    assert refused.code != 0
    assert "--yes" in refused.err
    assert await dead_count(broker, "reply") == 1
    dropped = await run_cli("dlq", "drop", "-c", cfg, "--stage", "reply", "--id", ev2, "--yes")
    assert dropped.code == 0, dropped.err
    assert await dead_count(broker, "reply") == 0
    missing = await run_cli("dlq", "replay", "-c", cfg, "--id", ev2)
    assert missing.code == 1
    assert "no dead letter" in missing.err
    assert [e for e, _ in processed] == ["ev-1"]  # ev-2 was never processed
    # each replay and drop is in the audit trail, under the operating system user's name
    store = await open_store(f"sqlite:///{tmp_path}/dlq.db")
    try:
        records = await audit.recent(store.db)
        assert (await audit.verify(store.db)).ok
    finally:
        await store.close()
    done = sorted((r["action"], r["subject"]) for r in records)
    assert done == sorted(
        [("dead_letter.replayed", rows["ev-1"]["message_id"]), ("dead_letter.dropped", ev2)]
    )
    assert all(r["actor"].startswith("cli:") and r["detail"]["stage"] == "reply" for r in records)
    assert PHONE not in json.dumps(records, ensure_ascii=False)
