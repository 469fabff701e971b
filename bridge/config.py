"""Loading the TOML config: ``${ENV}`` substitution, overrides, and errors that name the file,
the key path and what is wrong (with the nearest valid key for a misspelling)."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr, ValidationError

from adapters.base import sources, ticket_systems
from bridge.privacy.secrets import redacted_url
from bridge.security.keyring import DEVELOPMENT_KEYS
from schemas.config import GovbridgeConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
AMQP_URL_ENV = "GOVBRIDGE_AMQP_URL"
CREDENTIALS_KEY_ENV = "GOVBRIDGE_CREDENTIALS_KEY"
__all__ = [
    "ConfigError",
    "beyond_this_machine",
    "load_config",
    "parse_config",
    "redacted_url",
    "weak_credentials",
    "weak_keys",
]
# Keys whose values are never echoed in an error (secrets, and URLs that may carry them).
_NEVER_ECHO = re.compile(r"url|secret|token|key|pass|pwd|auth|bearer|credential|dsn", re.IGNORECASE)


class ConfigError(Exception):
    """Invalid configuration. ``problems`` are lines like ``file: key.path: what is wrong``."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


def _loc(parts: tuple[int | str, ...] | list[int | str]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _substitute(value: Any, path: list[int | str], env: Mapping[str, str], errs: list[str]) -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string; an unset VAR is an error."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errs.append(f"{_loc(path)}: environment variable ${{{name}}} is not set")
            return ""

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, [*path, k], env, errs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, [*path, i], env, errs) for i, v in enumerate(value)]
    return value


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(err: Mapping[str, Any], root: type[BaseModel], prefix: tuple[int | str, ...]) -> str:
    loc = tuple(err["loc"])
    where = _loc([*prefix, *loc])
    if err["type"] == "extra_forbidden":
        owner = _model_at(root, loc)
        hint = ""
        if owner is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1)
            if close:
                hint = f"; did you mean {close[0]!r}?"
            else:
                hint = f"; valid keys: {', '.join(owner.model_fields)}"
        return f"{where}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    value = err.get("input")
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}{_shown(value, loc)}"


def _shown(value: Any, loc: tuple[int | str, ...]) -> str:
    """`` (got …)`` for a harmless value; nothing for secrets, URLs, anything that looks like
    one, and containers (which may hold either)."""
    if isinstance(value, dict | list | SecretStr) or value is None:
        return ""
    if any(isinstance(p, str) and _NEVER_ECHO.search(p) for p in loc):
        return ""
    text = str(value)
    if "://" in text or "@" in text or len(text) > 60:
        return ""
    return f" (got {value!r})"


def parse_config(
    data: dict[str, Any], path: str = "<config>", env: Mapping[str, str] | None = None
) -> GovbridgeConfig:
    """Validate raw TOML data into a config, including each adapter's own keys."""
    env = os.environ if env is None else env
    errs: list[str] = []
    data = _substitute(data, [], env, errs)
    if errs:
        raise ConfigError(path, errs)
    if env.get(AMQP_URL_ENV):
        data.setdefault("broker", {})["url"] = env[AMQP_URL_ENV]
    if env.get(CREDENTIALS_KEY_ENV):  # newest first, comma-separated
        keys = [k.strip() for k in env[CREDENTIALS_KEY_ENV].split(",") if k.strip()]
        data.setdefault("credentials", {})["keys"] = keys
    try:
        cfg = GovbridgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [_describe(e, GovbridgeConfig, ()) for e in exc.errors()]) from None

    problems: list[str] = []
    for i, acc in enumerate(cfg.accounts):
        prefix: tuple[int | str, ...] = ("accounts", i)
        try:
            cls = sources.get(acc.adapter)
        except KeyError as exc:
            problems.append(f"{_loc([*prefix, 'adapter'])}: {exc.args[0]}")
            continue
        try:
            cfg.accounts[i] = cls.Config.model_validate(data["accounts"][i])
        except ValidationError as exc:
            problems += [_describe(e, cls.Config, prefix) for e in exc.errors()]
    for i, dept in enumerate(cfg.departments):
        prefix = ("departments", i, "ticketing")
        try:
            tcls = ticket_systems.get(dept.ticketing.adapter)
        except KeyError as exc:
            problems.append(f"{_loc([*prefix, 'adapter'])}: {exc.args[0]}")
            continue
        try:
            dept.ticketing = tcls.Config.model_validate(data["departments"][i]["ticketing"])
        except ValidationError as exc:
            problems += [_describe(e, tcls.Config, prefix) for e in exc.errors()]
    if problems:
        raise ConfigError(path, problems)
    return cfg


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GovbridgeConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read config: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"not valid TOML: {exc}"]) from None
    return parse_config(data, str(p), env)


# Credentials anyone can read in this repository (examples, simulators, demo, tests): fine on a
# developer's loopback, never on an address the world can reach.
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "secret",
        "password",
        "admin",
        "sim-callback-secret",
        "sim-webhook-secret",
        "demo-admin-token",
        "demo-callback-secret",
        "demo-webhook-secret",
        "test-admin-token",
        *(key.lower() for key in DEVELOPMENT_KEYS.values()),
    }
)
MIN_SECRET_LENGTH = 16
# HMAC keys (the bus's, the audit trail's): 32 random characters or more (openssl rand -base64 48)
MIN_KEY_LENGTH = 32
# Fields of accounts / ticketing that authenticate what others push to the bridge (or what it
# pushes to them): the ones a guessable value would open to anyone.
_HOOK_SECRET_FIELDS = ("secret", "callback_secret", "reply_secret")


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` only accepts connections from this machine."""
    host = listen.rpartition(":")[0].strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" or 0.0.0.0 or a name: reachable from elsewhere


def _weakness(secret: SecretStr | None, min_length: int = MIN_SECRET_LENGTH) -> str | None:
    value = "" if secret is None else secret.get_secret_value()
    if not value.strip():
        return "is empty or not set"
    if value.strip().lower() in KNOWN_DEFAULT_SECRETS:
        return "is a published default (from the examples, simulators or demo)"
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    return None


def _host_is_local(host: str | None) -> bool:
    return host is None or host == "" or is_loopback(f"{host}:0")  # None: a unix socket


def beyond_this_machine(cfg: GovbridgeConfig) -> list[str]:
    """What makes this a production config: a listener, broker or database reachable from
    other machines (so others may publish to the bus or write to the store). Empty for a
    developer's machine, the demo and the tests."""
    reasons = []
    if not is_loopback(cfg.http.listen):
        reasons.append(f"http.listen {cfg.http.listen} is not loopback")
    broker_host = urlsplit(redacted_url(cfg.broker.url)).hostname
    if not _host_is_local(broker_host):
        reasons.append(f"the broker at {broker_host} is not on this machine")
    if cfg.store.url.startswith("postgres"):
        store_host = urlsplit(redacted_url(cfg.store.url)).hostname
        if not _host_is_local(store_host):
            reasons.append(f"the store at {store_host} is not on this machine")
    return reasons


def weak_keys(cfg: GovbridgeConfig) -> list[str]:
    """Problems (``key.path: what is wrong``, never the value) with the bus's signing keys and
    the audit key in a production config (``beyond_this_machine``); none on one machine, where
    the published development keys keep the demo and the examples working."""
    reasons = beyond_this_machine(cfg)
    if not reasons:
        return []
    where = "; ".join(reasons)
    fix = f"set a random value of at least {MIN_KEY_LENGTH} characters"
    problems = []
    for name, keys, unset in (
        ("broker.signing_keys", cfg.broker.signing_keys, "anyone can sign bus messages"),
        ("audit.keys", cfg.audit.keys, "anyone with database access can sign audit records"),
    ):
        present = [(i, k) for i, k in enumerate(keys) if k.get_secret_value().strip()]
        if not present:
            problems.append(
                f"{name}: not set, so the published development key is used and {unset};"
                f" {fix} ({where})"
            )
        for i, key in present:
            weak = _weakness(key, MIN_KEY_LENGTH)
            if weak:
                problems.append(f"{name}[{i}]: {weak}; {fix} ({where})")
    return problems


def weak_credentials(cfg: GovbridgeConfig) -> list[str]:
    """Problems (``key.path: what is wrong``, never the value) with the admin token and the
    webhook secrets when ``http.listen`` is reachable from other machines; none on loopback,
    where the examples' defaults are what a developer runs."""
    if is_loopback(cfg.http.listen):
        return []
    where = f"http.listen {cfg.http.listen} is not loopback"
    fix = f"set a random value of at least {MIN_SECRET_LENGTH} characters"
    problems = []
    weak = _weakness(cfg.http.admin_token)
    if weak:
        problems.append(f"http.admin_token: {weak}; {fix} ({where})")
    blocks: list[tuple[str, BaseModel]] = [
        (f"accounts[{i}]", acc) for i, acc in enumerate(cfg.accounts)
    ] + [(f"departments[{i}].ticketing", d.ticketing) for i, d in enumerate(cfg.departments)]
    for prefix, block in blocks:
        for name in _HOOK_SECRET_FIELDS:
            value = getattr(block, name, None)
            if isinstance(value, SecretStr):
                weak = _weakness(value)
                if weak:
                    problems.append(f"{prefix}.{name}: {weak}; {fix} ({where})")
    return problems
