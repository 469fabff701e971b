"""Secrets never echoed (issue 10): config errors name the file and key but never the value,
URLs are redacted with a parser, alert reasons are short and sanitised, and no configured
secret reaches a log line (ours or a library's)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import structlog

from bridge.config import ConfigError, parse_config
from bridge.privacy.pii import redact_processor
from bridge.privacy.secrets import (
    ScrubFilter,
    redacted_url,
    register_secrets,
    sanitise_reason,
    scrub,
    secret_values,
    secrets_processor,
)
from bridge.runtime.alerts import Alerts
from bridge.telemetry.metrics import Metrics
from tests.conftest import config_toml
from tests.edge import edge_config

MARK = "Zq7LEAKv9"  # in every bad value: found in an error message = echoed


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:guest@localhost:5672/", "amqp://guest:***@localhost:5672/"),
        ("amqp://u:p@ss:w@rd@rabbit:5672/vh", "amqp://u:***@rabbit:5672/vh"),
        ("amqp://u:p%40ss%3Aw@rabbit/", "amqp://u:***@rabbit/"),
        ("postgresql://gb:s3cr/et@db/gb", "postgresql://gb:***@db/gb"),
        (
            "postgresql://gb@db/gb?password=hunter2&application_name=bridge",
            "postgresql://gb@db/gb?password=***&application_name=bridge",
        ),
        (
            "https://api.example/x?access_token=abc&page=2",
            "https://api.example/x?access_token=***&page=2",
        ),
        ("sqlite:///./govbridge.db", "sqlite:///./govbridge.db"),
        ("amqp://user@rabbit/", "amqp://user@rabbit/"),
        ("http://[::1", "<unparsable URL>"),
    ],
)
def test_urls_are_redacted_with_a_parser(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def valid_raw(tmp_path: Path) -> dict[str, Any]:
    """A config as parsed TOML: webhook account, REST department with callbacks."""
    import tomllib

    return tomllib.loads(config_toml(edge_config(tmp_path)))


def set_at(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target = raw
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value


BAD_VALUES: list[tuple[tuple[Any, ...], Any, str]] = [
    (("store", "url"), f"mysql://gb:{MARK}@db/gb", "store.url"),
    (("store", "url"), f"{MARK}", "store.url"),
    (("broker", "url"), {"password": MARK}, "broker.url"),
    (("http", "admin_token"), 12345678901234, "http.admin_token"),
    (("http", "admin_token"), [MARK], "http.admin_token"),
    (("accounts", 0, "secret"), {"v": MARK}, "accounts[0].secret"),
    (("accounts", 0, "reply_url"), f"ftp://user:{MARK}@replies.example", "accounts[0].reply_url"),
    (("accounts", 0, "reply_url"), f"{MARK}.example/replies", "accounts[0].reply_url"),
    (("accounts", 0, "reply_secret"), [MARK], "accounts[0].reply_secret"),
    (("departments", 0, "ticketing", "base_url"), f"gopher://x:{MARK}@t", "ticketing.base_url"),
    (("departments", 0, "ticketing", "callback_secret"), [MARK], "ticketing.callback_secret"),
    (("departments", 0, "ticketing", "auth", "bearer"), {"x": MARK}, "ticketing.auth.bearer"),
]


@pytest.mark.parametrize(("path", "value", "key"), BAD_VALUES)
def test_config_errors_name_the_key_never_the_value(
    tmp_path: Path, path: tuple[Any, ...], value: Any, key: str
) -> None:
    raw = valid_raw(tmp_path)
    set_at(raw, path, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "/etc/govbridge/prod.toml", env={})
    text = str(caught.value)
    assert key in text and text.startswith("/etc/govbridge/prod.toml: "), text
    assert MARK not in text and "12345678901234" not in text, text


def test_harmless_values_are_still_shown(tmp_path: Path) -> None:
    raw = valid_raw(tmp_path)
    raw["departments"][0]["approval"] = "sometimes"
    raw["broker"]["prefetch"] = "many"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "<t>", env={})
    assert "(got 'many')" in str(caught.value)


def test_every_secret_of_a_config_is_found(tmp_path: Path) -> None:
    raw = valid_raw(tmp_path)
    raw["broker"]["url"] = "amqp://gb:brokerpass%40x@127.0.0.1:5672/"
    raw["store"]["url"] = "postgresql://gb:storepass@db/gb?sslpassword=sslpass"
    cfg = parse_config(raw, "<t>", env={})
    found = set(secret_values(cfg))
    assert {
        "test-admin-token",
        "edge-webhook-secret-0123456789",
        "edge-callback-secret-0123456789",
        "sim-rest-token",
        "brokerpass%40x",
        "brokerpass@x",
        "storepass",
        "sslpass",
    } <= found


def test_alert_reasons_are_short_and_sanitised() -> None:
    register_secrets(["alert-secret-Zq7"])
    backend_body = (
        "<html><body>401 Unauthorized\r\n\x00token alert-secret-Zq7 rejected for 13812345678;"
        " retry at http://admin:dbpass@backend/login?token=abc" + " lorem" * 400 + "</body></html>"
    )
    metrics = Metrics()
    alerts = Alerts(metrics)
    alerts.raise_("ticketing_auth", "urban", f"ticket system refused: {backend_body}")
    (shown,) = alerts.describe()
    reason = shown["reason"]
    assert len(reason) <= 200
    for leaked in ("alert-secret-Zq7", "13812345678", "dbpass", "abc", "\x00", "\r", "\n"):
        assert leaked not in reason
    assert reason.startswith("ticket system refused: <html><body>401 Unauthorized token ***")
    assert sanitise_reason("plain words") == "plain words"


def test_no_configured_secret_in_structlog_or_library_log_lines() -> None:
    register_secrets(["log-secret-Zq7x"])
    buf = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(file=buf),
        processors=[
            secrets_processor,
            redact_processor,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )
    log.info("connect", url="amqp://u:pw-Zq7@h/", detail={"echo": "token log-secret-Zq7x"})
    try:
        raise RuntimeError("backend said: log-secret-Zq7x")
    except RuntimeError:
        log.exception("failed")
    out = buf.getvalue()
    assert "log-secret-Zq7x" not in out and "pw-Zq7" not in out
    first = json.loads(out.splitlines()[0])
    assert first["url"] == "amqp://u:***@h/" and first["detail"] == {"echo": "token ***"}

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubFilter())
    lib = logging.getLogger("test.library")
    lib.addHandler(handler)
    try:
        lib.warning("auth failed with %s for %s", "log-secret-Zq7x", "13812345678")
        try:
            raise ValueError("amqp://u:pw-Zq7@h/ refused log-secret-Zq7x")
        except ValueError:
            lib.exception("oops")
    finally:
        lib.removeHandler(handler)
    text = stream.getvalue()
    assert "auth failed with *** for [手机号]" in text
    assert "log-secret-Zq7x" not in text and "pw-Zq7" not in text and "13812345678" not in text
    assert "ValueError" in text  # the exception is still there, scrubbed


def test_scrub_leaves_ordinary_text_alone() -> None:
    assert scrub("路灯坏了 http://example.gov/page?id=3") == "路灯坏了 http://example.gov/page?id=3"
