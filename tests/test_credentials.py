"""No default credentials in production (issue 10, must-show 6): beyond loopback the daemon and
``govbridge check`` refuse an empty, short or published admin token or webhook secret, naming
the key and never the value; docker compose makes the operator set them."""

from __future__ import annotations

import asyncio
import subprocess
import tomllib
from pathlib import Path

import pytest
from govbridge_tools.simulate import (
    CALLBACK_SECRET_ENV,
    REST_CALLBACK_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_ENV,
    _secret,
)
from pydantic import SecretStr

from bridge.config import is_loopback, parse_config, weak_credentials
from schemas.config import GovbridgeConfig
from tests.conftest import config_toml, delete_topology
from tests.edge import edge_config
from tests.test_cli_ops import (
    COMPOSE_TOML,
    COMPOSE_YML,
    cli_env,
    free_port,
    govbridge,
    parse_compose,
)

STRONG = "k7Qp2vXz9LmN4rT8wY1u"


def reachable(tmp_path: Path, **http: str) -> GovbridgeConfig:
    """The edge config (webhook account, REST department with callbacks) on all interfaces."""
    return edge_config(tmp_path, listen="0.0.0.0:8080", **http)


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:8080", True),
        ("127.8.9.1:80", True),
        ("localhost:8080", True),
        ("0.0.0.0:8080", False),
        (":8080", False),
        ("10.0.0.5:8080", False),
        ("bridge.example.gov:8080", False),
    ],
)
def test_loopback_is_told_apart(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_the_test_config_is_fine_on_loopback_and_strong_secrets_anywhere(tmp_path: Path) -> None:
    cfg = edge_config(tmp_path)  # loopback, admin token "test-admin-token"
    assert weak_credentials(cfg) == []
    assert weak_credentials(reachable(tmp_path, admin_token=STRONG)) == []


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("change-me", "published default"),
        ("CHANGE-ME", "published default"),
        ("sim-webhook-secret", "published default"),
        ("", "empty"),
        ("   ", "empty"),
        ("Zq8#short", "shorter than 16"),
    ],
)
def test_a_weak_admin_token_beyond_loopback_is_named_not_shown(
    tmp_path: Path, token: str, why: str
) -> None:
    problems = weak_credentials(reachable(tmp_path, admin_token=token))
    assert len(problems) == 1
    assert problems[0].startswith("http.admin_token: ")
    assert why in problems[0] and "0.0.0.0:8080 is not loopback" in problems[0]
    if token.strip():
        assert token not in problems[0] and token.lower() not in problems[0]


def test_a_missing_admin_token_beyond_loopback_is_refused(tmp_path: Path) -> None:
    cfg = reachable(tmp_path, admin_token=STRONG)
    cfg.http.admin_token = None
    assert [p.split(":")[0] for p in weak_credentials(cfg)] == ["http.admin_token"]


def test_weak_webhook_and_callback_secrets_are_named(tmp_path: Path) -> None:
    raw = tomllib.loads(config_toml(reachable(tmp_path, admin_token=STRONG)))
    raw["accounts"][0]["secret"] = "sim-webhook-secret"
    raw["accounts"][0]["reply_secret"] = "tiny"
    raw["departments"][0]["ticketing"]["callback_secret"] = "sim-callback-secret"
    problems = weak_credentials(parse_config(raw, "<test>", env={}))
    assert [p.split(":")[0] for p in problems] == [
        "accounts[0].secret",
        "accounts[0].reply_secret",
        "departments[0].ticketing.callback_secret",
    ]
    text = "\n".join(problems)
    for value in ("sim-webhook-secret", "tiny", "sim-callback-secret"):
        assert value not in text


def write_config(tmp_path: Path, cfg: GovbridgeConfig) -> Path:
    path = tmp_path / "prod.toml"
    path.write_text(config_toml(cfg))
    return path


async def run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *govbridge(*args),
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_run_with_change_me_on_a_public_address_exits_non_zero(tmp_path: Path) -> None:
    """Must-show 6: the daemon refuses before it binds anything, and says why."""
    port = free_port()
    cfg = edge_config(tmp_path, listen=f"0.0.0.0:{port}", admin_token="change-me")
    path = write_config(tmp_path, cfg)
    code, output = await run("run", "-c", str(path))
    assert code == 2, output
    assert "refusing default, empty or short credentials" in output
    assert f"{path}: http.admin_token: is a published default" in output
    assert f"http.listen 0.0.0.0:{port} is not loopback" in output
    assert "change-me" not in output
    # `check` reports the same problem (and fails) before it contacts anything else.
    code, output = await run("check", "-c", str(path), "--no-declare")
    assert code == 1, output
    assert "http.admin_token: is a published default" in output and "change-me" not in output


async def test_roles_without_http_do_not_need_the_admin_token(tmp_path: Path) -> None:
    """The refusal concerns the process that listens; a worker-only process is not refused
    for it (it starts, and stops at once on SIGTERM)."""
    cfg = edge_config(tmp_path, listen=f"0.0.0.0:{free_port()}", admin_token="change-me")
    # every role signs and checks the bus, so its keys must be fit (tests/test_bus_auth.py)
    cfg.broker.signing_keys = [SecretStr(STRONG + "-bus-key-0123456789")]
    cfg.audit.keys = [SecretStr(STRONG + "-audit-key-0123456789")]
    path = write_config(tmp_path, cfg)
    proc = await asyncio.create_subprocess_exec(
        *govbridge("run", "-c", str(path), "--roles", "sla"),
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        started = False
        async with asyncio.timeout(60):
            async for line in proc.stderr:
                assert b"refusing" not in line
                if b"govbridge started" in line:
                    started = True
                    break
        assert started
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 60)
        await delete_topology(cfg.broker)


def test_docker_compose_makes_the_operator_set_the_secrets() -> None:
    services = parse_compose(COMPOSE_YML.read_text())["services"]
    bridge_env = services["bridge"]["environment"]
    sims_env = services["simulators"]["environment"]
    for name in ("GOVBRIDGE_ADMIN_TOKEN", "HOTLINE_SECRET", "URBAN_CALLBACK_SECRET"):
        assert bridge_env[name].startswith(f"${{{name}:?"), name  # compose stops if unset
    # The simulated platforms sign with what the bridge checks.
    for name in ("HOTLINE_SECRET", "URBAN_CALLBACK_SECRET"):
        assert sims_env[name] == bridge_env[name]
    # With the operator's values the compose config (listening on 0.0.0.0) passes; with the
    # examples' fallbacks it would be refused.
    compose = tomllib.loads(COMPOSE_TOML.read_text())
    chosen = {n: STRONG + n for n in bridge_env if n.endswith(("TOKEN", "SECRET"))}
    assert weak_credentials(parse_config(compose, str(COMPOSE_TOML), env=chosen)) == []
    fallback = weak_credentials(parse_config(compose, str(COMPOSE_TOML), env={}))
    assert [p.split(":")[0] for p in fallback] == [
        "http.admin_token",
        "accounts[2].secret",
        "departments[1].ticketing.callback_secret",
    ]


def test_simulators_take_the_operators_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(WEBHOOK_SECRET_ENV, raising=False)
    monkeypatch.delenv(CALLBACK_SECRET_ENV, raising=False)
    assert _secret(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET) == "sim-webhook-secret"
    assert _secret(CALLBACK_SECRET_ENV, REST_CALLBACK_SECRET) == "sim-callback-secret"
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, STRONG)
    monkeypatch.setenv(CALLBACK_SECRET_ENV, STRONG + "x")
    assert _secret(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET) == STRONG
    assert _secret(CALLBACK_SECRET_ENV, REST_CALLBACK_SECRET) == STRONG + "x"
