"""Reading a config file for a command: the config, or every problem named with the file and
the key and the command exits 2. Its secrets are registered to be scrubbed from every later log
line and message."""

from __future__ import annotations

import sys

from bridge.config import ConfigError, load_config, weak_credentials, weak_keys
from bridge.privacy.secrets import register_config
from schemas.config import GovbridgeConfig

DEFAULT_CONFIG = "govbridge.toml"


def load(path: str) -> GovbridgeConfig:
    """The config in ``path``; exits 2 naming the file, key and problem when it is invalid."""
    try:
        cfg = load_config(path)
        register_config(cfg)  # scrubbed from every later log line and message
        return cfg
    except ConfigError as exc:
        print(f"config error in {exc.path}:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {exc.path}: {p}", file=sys.stderr)
        raise SystemExit(2) from None


def refuse_weak_credentials(path: str, cfg: GovbridgeConfig, who: str) -> bool:
    """Print why the credentials are unfit for a reachable server; True when they are."""
    problems = weak_credentials(cfg)
    if problems:
        print(f"{who}: refusing default, empty or short credentials:", file=sys.stderr)
        for p in problems:
            print(f"  {path}: {p}", file=sys.stderr)
    return bool(problems)


def refuse_weak_keys(path: str, cfg: GovbridgeConfig, who: str) -> bool:
    """Print why the bus or audit keys are unfit for a production config; True when they are."""
    problems = weak_keys(cfg)
    if problems:
        print(f"{who}: refusing missing, published or short keys:", file=sys.stderr)
        for p in problems:
            print(f"  {path}: {p}", file=sys.stderr)
    return bool(problems)
