"""``govbridge operator add|list|role|password|disable|enable``: named console operators (see
``bridge.web.operators``). Passwords are read from the terminal (twice), or one line from stdin
with ``--password-stdin``; they never appear on the command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import Any

from bridge.cli.load import load
from bridge.security.keyring import Keyring
from bridge.store import open_store
from bridge.web.operators import ROLES, OperatorError, add_operator, change_operator, list_operators


def register(sub: Any) -> None:
    p = sub.add_parser("operator", help="console operators and their roles")
    p.add_argument("-c", "--config", default="govbridge.toml")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="a new operator with a role and a password")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true")
    verbs.add_parser("list", help="operators, roles and whether disabled")
    role = verbs.add_parser("role", help="give an operator another role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    pw = verbs.add_parser("password", help="set a new password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    for verb in ("disable", "enable"):
        v = verbs.add_parser(verb, help=f"{verb} an operator (their sessions end)")
        v.add_argument("name")
    p.set_defaults(func=lambda args: asyncio.run(run_operator(args)))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise OperatorError("the two passwords differ")
    return first


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return f"cli:uid{os.getuid()}"


async def run_operator(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    store = await open_store(cfg.store.url, Keyring("audit", cfg.audit.keys))
    try:
        if args.verb == "list":
            for row in await list_operators(store):
                state = "disabled" if row.disabled else "active"
                print(f"{row.name:<20} {row.role:<9} {state:<9} since {row.created_at}")
            return 0
        if args.verb == "add":
            await add_operator(store, args.name, args.role, _password(args), _actor())
            print(f"operator {args.name} added ({args.role})")
        elif args.verb == "role":
            await change_operator(store, args.name, _actor(), role=args.role)
            print(f"operator {args.name} is now {args.role}")
        elif args.verb == "password":
            await change_operator(store, args.name, _actor(), password=_password(args))
            print(f"password of {args.name} changed")
        else:
            disabled = args.verb == "disable"
            await change_operator(store, args.name, _actor(), disabled=disabled)
            print(f"operator {args.name} {args.verb}d")
        return 0
    except OperatorError as exc:
        print(f"govbridge operator {args.verb}: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
