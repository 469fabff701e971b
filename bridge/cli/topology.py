"""``govbridge topology``: print and declare the exchanges, queues and bindings; with
``--permissions``, the rabbitmqctl commands for a least-privilege bridge user and a read-only
consumer user."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bridge.cli.load import DEFAULT_CONFIG, load
from bridge.config import redacted_url


def register(sub: Any) -> None:
    topo = sub.add_parser("topology", help="print and declare exchanges, queues and bindings")
    topo.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    topo.add_argument("--dry-run", action="store_true", help="print only")
    topo.add_argument(
        "--permissions",
        action="store_true",
        help="print the rabbitmqctl commands for a least-privilege bridge user and a read-only"
        " consumer user (declares nothing)",
    )
    topo.add_argument("--bridge-user", default="govbridge", help="with --permissions")
    topo.add_argument("--consumer-user", default="govbridge-reader", help="with --permissions")
    topo.add_argument("--vhost", default="/", help="with --permissions")
    topo.set_defaults(func=cmd_topology)


def cmd_topology(args: argparse.Namespace) -> int:
    from bridge.runtime.topology import Topology, declare_topology

    cfg = load(args.config)
    topo = Topology(cfg.broker)
    if args.permissions:  # commands for the broker's administrator; nothing is declared
        for line in topo.permissions(args.bridge_user, args.consumer_user, args.vhost):
            print(line)
        return 0
    for line in topo.describe():
        print(line)
    if not args.dry_run:
        asyncio.run(declare_topology(cfg.broker.url.get_secret_value(), topo))
        print(f"declared on {redacted_url(cfg.broker.url)}")
    return 0
