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


def test_follow_up_channel_checked() -> None:
    """A webhook needs where to go and a key to sign with; the secret is never echoed."""
    cases = {
        "no_url": {"via": "webhook", "secret": "s" * 20},
        "short": {"via": "webhook", "url": "https://unit.example.gov/f", "secret": "tiny-key"},
        "unused": {"via": "new_request", "url": "https://unit.example.gov/f"},
        "unknown": {"via": "email"},
    }
    out = {k: problems({"departments": [rest_department(follow_ups=v)]}) for k, v in cases.items()}
    assert all(len(p) == 1 and p[0].startswith("departments[0].follow_ups") for p in out.values())
    assert "needs url and secret" in out["no_url"][0]
    assert "at least 16 characters" in out["short"][0] and "tiny-key" not in out["short"][0]
    assert "used only with via = 'webhook'" in out["unused"][0]
    assert "departments[0].follow_ups.via" in out["unknown"][0]
    assert "'record'" in out["unknown"][0] and "'webhook'" in out["unknown"][0]


def test_outbox_settle_steps_checked() -> None:
    (p,) = problems({"outbox": {"settle": ["15s", "5s"]}})
    assert p.startswith("outbox") and "must not decrease" in p


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


def test_incident_keys_checked_and_the_defaults() -> None:
    """Each department chooses off/suggest/merge (default off); [incidents] holds the
    window, the surge's threshold and window and the 舆情 clock, each checked by name."""
    cfg = parse_config({"departments": [rest_department()]}, "dept.toml", {})
    assert cfg.department("urban").incidents == "off"
    assert (cfg.incidents.window.total_seconds(), cfg.incidents.surge_threshold) == (72 * 3600, 3)
    assert cfg.incidents.surge_window.total_seconds() == 24 * 3600
    assert cfg.incidents.public_answer_within.total_seconds() == 48 * 3600
    (p,) = problems({"departments": [rest_department(incidents="join")]})
    assert p.startswith("departments[0].incidents: ") and "'merge'" in p
    (p,) = problems({"incidents": {"surge_threshold": 1}})
    assert p.startswith("incidents.surge_threshold: ")
    assert problems({"incidents": {"surge_windw": "1h"}}) == [
        "incidents.surge_windw: unknown key; did you mean 'surge_window'?"
    ]
    (p,) = problems({"departments": [rest_department(replies={"incident_merged": "并入{ticket}"})]})
    assert "unknown placeholder {ticket}" in p


def test_the_example_config_sets_the_incident_keys() -> None:
    example = load_config(Path(__file__).parent.parent / "examples" / "govbridge.toml")
    assert example.department("urban").incidents == "merge"
    assert example.department("transport").incidents == "suggest"
    assert example.incidents.surge_threshold == 3
