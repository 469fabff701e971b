"""Config errors name the file, the key path and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, load_config, parse_config, redacted_url


def rest_department(**extra: Any) -> dict[str, Any]:
    return {
        "id": "urban",
        "name": "市城管委",
        "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}},
        **extra,
    }


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "dept.toml", env or {})
    assert str(info.value).startswith("dept.toml: ")
    return info.value.problems


def test_misspelt_key_suggests_the_nearest_valid_one() -> None:
    assert problems({"broker": {"prefech": 3}}) == [
        "broker.prefech: unknown key; did you mean 'prefetch'?"
    ]


def test_wrong_type_names_the_path_and_value() -> None:
    (p,) = problems({"broker": {"prefetch": "many"}})
    assert p.startswith("broker.prefetch: ") and "'many'" in p


def test_unset_environment_variable() -> None:
    (p,) = problems({"http": {"admin_token": "${GB_TOKEN_NOT_SET}"}})
    assert p == "http.admin_token: environment variable ${GB_TOKEN_NOT_SET} is not set"


def test_environment_substitution_and_default() -> None:
    cfg = parse_config(
        {"http": {"admin_token": "${TOK}", "listen": "${LISTEN:-127.0.0.1:9000}"}},
        env={"TOK": "s3cret"},
    )
    assert cfg.http.admin_token is not None
    assert cfg.http.admin_token.get_secret_value() == "s3cret"
    assert cfg.http.listen == "127.0.0.1:9000"
    assert "s3cret" not in repr(cfg)  # secrets never printed


def test_amqp_url_environment_override() -> None:
    cfg = parse_config({}, env={"GOVBRIDGE_AMQP_URL": "amqp://u:pw@rabbit:5672/"})
    assert cfg.broker.url.get_secret_value() == "amqp://u:pw@rabbit:5672/"
    assert redacted_url(cfg.broker.url) == "amqp://u:***@rabbit:5672/"


def test_adapter_keys_are_checked_by_the_adapter_model() -> None:
    dept = rest_department()
    dept["ticketing"]["base_urll"] = "http://x"
    (p,) = problems({"departments": [dept]})
    assert p == "departments[0].ticketing.base_urll: unknown key; did you mean 'base_url'?"


def test_unknown_adapter_lists_installed_ones() -> None:
    dept = rest_department()
    dept["ticketing"]["adapter"] = "sap"
    (p,) = problems({"departments": [dept]})
    assert p.startswith("departments[0].ticketing.adapter: unknown adapter 'sap'")
    assert "open311" in p and "rest" in p


def test_account_must_name_a_known_department() -> None:
    data = {
        "departments": [rest_department()],
        "accounts": [{"adapter": "weibo", "handle": "x", "department": "nope", "token": "t"}],
    }
    (p,) = problems(data)
    assert "accounts[0].department: unknown department 'nope'" in p


def test_reply_template_placeholder_checked() -> None:
    (p,) = problems({"departments": [rest_department(replies={"received": "工单{ticket}"})]})
    assert "departments[0].replies" in p and "unknown placeholder {ticket}" in p


def test_sla_limits_checked() -> None:
    (p,) = problems({"departments": [rest_department(sla={"complaint": "15 days"})]})
    assert p.startswith("departments[0].sla.complaint: ") and "working days" in p


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[broker\nurl = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
