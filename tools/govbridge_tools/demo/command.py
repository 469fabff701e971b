"""``govbridge demo``: the whole product on one machine.

Starts the platform and ticket-system simulators in-process (two Weibo accounts, a Mastodon
server, a pushing 12345 app; Open311 JSON, Open311 XML-only and a REST system with signed
callbacks), runs every role against the local RabbitMQ, sends a scripted set of citizens'
inquiries, moves the tickets through their lifecycle as officials would (approving replies
where the department requires it), waits until every reply is posted, prints each inquiry's
journey and a summary, checks that no personal data reached a public reply or a log line,
and exits 0 (1 if anything fell short).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from govbridge_tools.demo.orchestration import run_demo


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run everything with simulators and print each journey")
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the bridge and simulators serving after the script",
    )
    p.add_argument("--timeout", type=float, default=55.0, help="seconds to wait for the journeys")
    p.add_argument("--log-file", default=None, help="where the bridge's log lines go")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_demo(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("demo interrupted; simulators stopped and demo queues deleted", file=sys.stderr)
        return 130
