"""``govbridge``: the command line. Every command is a module of this package with a
``register(sub)``; the tools distribution (``govbridge-tools``: demo, simulate, bench) adds its
commands through the ``govbridge.commands`` entry point group."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.metadata import entry_points

from bridge import __version__
from bridge.cli import (
    asyncapi,
    audit,
    check,
    credentials,
    dlq,
    incidents,
    inspect,
    operator,
    report,
    run,
    schemas,
    survey,
    topology,
    triage,
)
from bridge.telemetry.logging import configure_logging

COMMANDS = (
    run,
    check,
    topology,
    schemas,
    asyncapi,
    dlq,
    report,
    inspect,
    triage,
    survey,
    incidents,
    audit,
    operator,
    credentials,
)


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
    for command in COMMANDS:
        command.register(sub)
    # A tool that fails to import fails the CLI loudly instead of its command quietly
    # disappearing.
    for tool in entry_points(group="govbridge.commands"):
        tool.load()(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json=args.log_json)
    code: int = args.func(args)
    return code
