"""``govbridge run -c FILE [--roles …]``: the daemon. Refuses weak credentials and keys on a
config that reaches beyond this machine."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from bridge.cli.load import DEFAULT_CONFIG, load, refuse_weak_credentials, refuse_weak_keys
from bridge.daemon import ALL_ROLES, Daemon
from bridge.telemetry.logging import configure_logging


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    run.add_argument("--roles", help="comma list of: ingest,triage,ticketing,sync,reply,sla,http")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()] if args.roles else ALL_ROLES
    if "http" in roles and refuse_weak_credentials(args.config, cfg, "govbridge run"):
        return 2
    if refuse_weak_keys(args.config, cfg, "govbridge run"):  # every role signs or checks
        return 2
    try:
        daemon = Daemon(cfg, roles, config_path=args.config)  # SIGHUP re-reads it
    except ValueError as exc:
        print(f"govbridge run: {exc}", file=sys.stderr)
        return 2
    # A long-running daemon configures logging once: loggers may cache their processors.
    configure_logging(args.log_level, json=args.log_json, cache=True)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(daemon.run())


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``GOVBRIDGE_EVENT_LOOP=uvloop`` runs the daemon on uvloop (``pip install
    govbridge[fast]``); the default is asyncio's own loop."""
    choice = os.environ.get("GOVBRIDGE_EVENT_LOOP", "asyncio").strip().lower()
    if choice in ("", "asyncio"):
        return None
    if choice != "uvloop":
        raise SystemExit(f"GOVBRIDGE_EVENT_LOOP: unknown event loop {choice!r} (asyncio|uvloop)")
    try:
        import uvloop
    except ImportError:
        raise SystemExit(
            "GOVBRIDGE_EVENT_LOOP=uvloop: install it with pip install govbridge[fast]"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
