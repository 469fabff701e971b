"""``govbridge`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge import __version__
from bridge.config import ConfigError, load_config, redacted_url, weak_credentials
from bridge.logging import configure_logging
from bridge.redaction import register_config, scrub
from schemas.config import GovbridgeConfig

if TYPE_CHECKING:
    from adapters.base import Source, TicketSystem

DEFAULT_CONFIG = "govbridge.toml"


def _load(path: str) -> GovbridgeConfig:
    try:
        cfg = load_config(path)
        register_config(cfg)  # scrubbed from every later log line and message
        return cfg
    except ConfigError as exc:
        print(f"config error in {exc.path}:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {exc.path}: {p}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.daemon import ALL_ROLES, Daemon

    cfg = _load(args.config)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()] if args.roles else ALL_ROLES
    if "http" in roles and _refuse_weak_credentials(args.config, cfg, "govbridge run"):
        return 2
    try:
        daemon = Daemon(cfg, roles)
    except ValueError as exc:
        print(f"govbridge run: {exc}", file=sys.stderr)
        return 2
    # A long-running daemon configures logging once: loggers may cache their processors.
    configure_logging(args.log_level, json=args.log_json, cache=True)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(daemon.run())


def _refuse_weak_credentials(path: str, cfg: GovbridgeConfig, who: str) -> bool:
    """Print why the credentials are unfit for a reachable server; True when they are."""
    problems = weak_credentials(cfg)
    if problems:
        print(f"{who}: refusing default, empty or short credentials:", file=sys.stderr)
        for p in problems:
            print(f"  {path}: {p}", file=sys.stderr)
    return bool(problems)


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


async def _check(args: argparse.Namespace) -> int:
    from adapters.base import make_source, make_ticket_system
    from bridge.runtime import Broker, BrokerUnavailable
    from bridge.store import open_store

    cfg = _load(args.config)
    print(
        f"config   ok: {args.config} ({len(cfg.departments)} departments, "
        f"{len(cfg.accounts)} accounts, {len(cfg.routes)} routes)"
    )
    failures = 0
    if _refuse_weak_credentials(args.config, cfg, "secrets  FAILED"):
        failures += 1
    broker_cfg = cfg.broker.model_copy(
        update={"connect_timeout": min(cfg.broker.connect_timeout, timedelta(seconds=5))}
    )
    broker = Broker(broker_cfg)
    shown_broker, shown_store = redacted_url(cfg.broker.url), redacted_url(cfg.store.url)
    try:
        await broker.connect(declare=not args.no_declare)
        print(f"broker   ok: {shown_broker} (topology declared)")
    except BrokerUnavailable as exc:
        print(f"broker   FAILED: {shown_broker}: {scrub(str(exc))}", file=sys.stderr)
        failures += 1
    except Exception as exc:
        print(f"broker   FAILED: {shown_broker}: {scrub(repr(exc))}", file=sys.stderr)
        failures += 1
    finally:
        await broker.close()
    try:
        store = await asyncio.wait_for(open_store(cfg.store.url), 10)
        await store.ping()
        await store.close()
        print(f"store    ok: {shown_store}")
    except Exception as exc:
        print(f"store    FAILED: {shown_store}: {scrub(repr(exc))}", file=sys.stderr)
        failures += 1
    if not args.adapters:
        print("adapters not contacted (add --adapters to check tokens and reachability)")
    else:
        for acc in cfg.accounts:
            ok = await _probe(f"account  {acc.adapter}:{acc.handle}", make_source(acc))
            failures += not ok
        for dept in cfg.departments:
            label = f"tickets  {dept.id} ({dept.ticketing.adapter})"
            failures += not await _probe(label, make_ticket_system(dept))
    if failures:
        print(f"check failed: {failures} problem(s)", file=sys.stderr)
        return 1
    print("check passed")
    return 0


async def _probe(label: str, adapter: Source | TicketSystem) -> bool:
    """Contact one adapter (a source or a ticket system), print the outcome and close it;
    True when it answered. What it detected is printed where it says (``Describes``)."""
    from adapters.base import AdapterError, Describes

    try:
        await asyncio.wait_for(adapter.check(), 10)
        detected = f" ({adapter.describe()})" if isinstance(adapter, Describes) else ""
        print(f"{label} ok{detected}")
        return True
    except (AdapterError, TimeoutError, OSError) as exc:
        print(f"{label} FAILED: {_reason(exc)}", file=sys.stderr)
        return False
    finally:
        await adapter.close()


def _reason(exc: BaseException) -> str:
    """An adapter's own reason, else the exception itself: the backend's words, short, one
    line, without secrets or personal data."""
    from adapters.base import AdapterError
    from bridge.redaction import sanitise_reason

    return sanitise_reason(exc.reason if isinstance(exc, AdapterError) else repr(exc))


def cmd_check(args: argparse.Namespace) -> int:
    return asyncio.run(_check(args))


def cmd_topology(args: argparse.Namespace) -> int:
    from bridge.topology import Topology, declare_topology

    cfg = _load(args.config)
    topo = Topology(cfg.broker)
    for line in topo.describe():
        print(line)
    if not args.dry_run:
        asyncio.run(declare_topology(cfg.broker.url.get_secret_value(), topo))
        print(f"declared on {redacted_url(cfg.broker.url)}")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from pydantic import BaseModel

    from schemas.config import GovbridgeConfig
    from schemas.messages import MESSAGE_MODELS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, type[BaseModel]] = {**MESSAGE_MODELS, "GovbridgeConfig": GovbridgeConfig}
    for name, model in models.items():
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), ensure_ascii=False, indent=2))
        print(path)
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from bridge.asyncapi import render

    text = render(_load(args.config).broker if args.config else None)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != text:
            print(f"{out} is not current: run `govbridge asyncapi --out {out}`", file=sys.stderr)
            return 1
        print(f"{out} is current")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="govbridge",
        description="Connects citizens' microblog inquiries to government ticket systems.",
    )
    p.add_argument("--version", action="version", version=f"govbridge {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-json",
        action="store_true",
        default=None,
        help="JSON log lines (default: JSON unless stderr is a terminal)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    run.add_argument("--roles", help="comma list of: ingest,triage,ticketing,sync,reply,sla,http")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate config; check broker, store and adapters")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    check.add_argument(
        "--adapters",
        action="store_true",
        help="also contact every platform account and ticket system (token, reachability)",
    )
    check.add_argument("--no-declare", action="store_true", help="connect without declaring")
    check.set_defaults(func=cmd_check)

    topo = sub.add_parser("topology", help="print and declare exchanges, queues and bindings")
    topo.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    topo.add_argument("--dry-run", action="store_true", help="print only")
    topo.set_defaults(func=cmd_topology)

    schemas = sub.add_parser("schemas", help="export the JSON Schema of every message")
    schemas.add_argument("--out", required=True)
    schemas.set_defaults(func=cmd_schemas)

    asyncapi = sub.add_parser(
        "asyncapi", help="write the AsyncAPI 3 document of the public routing keys and messages"
    )
    asyncapi.add_argument(
        "-c", "--config", help="take the exchange name from this config (default: govbridge)"
    )
    asyncapi.add_argument("--out", default="docs/asyncapi.json", help="file, or - for stdout")
    asyncapi.add_argument(
        "--check", action="store_true", help="exit 1 when the file differs from the code"
    )
    asyncapi.set_defaults(func=cmd_asyncapi)

    for extra in _extra_commands():
        extra(sub)
    return p


def _extra_commands() -> list[Any]:
    """Commands that live in their own modules (demo, simulate, dlq, report, bench, triage,
    audit and trace, operator), registered by name: a module that fails to import fails the
    CLI loudly instead of its command quietly disappearing."""
    from bridge import (
        cmd_audit,
        cmd_bench,
        cmd_demo,
        cmd_dlq,
        cmd_operator,
        cmd_report,
        cmd_simulate,
        cmd_triage,
    )

    return [
        cmd_demo.register,
        cmd_simulate.register,
        cmd_dlq.register,
        cmd_report.register,
        cmd_bench.register,
        cmd_triage.register,
        cmd_audit.register,
        cmd_operator.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json=args.log_json)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
