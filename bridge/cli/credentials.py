"""``govbridge credentials new-key|list|rotate``: the keys that encrypt credentials replaced
through the admin API (``bridge/runtime/credentials.py``). Values are never printed.

Rotating a key: ``new-key`` prints a fresh one; put it first in ``credentials.keys`` (or
``GOVBRIDGE_CREDENTIALS_KEY``, comma-separated) and keep the old one after it; ``rotate``
re-encrypts every stored credential under the new key; then drop the old key and restart
every process (the keys are read at start; a SIGHUP does not re-read them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from cryptography.fernet import Fernet

from bridge.cli.load import load
from bridge.cli.operator import _actor
from bridge.runtime.credentials import CredentialError, Vault, rotate_all, stored_credentials
from bridge.store import open_store


def register(sub: Any) -> None:
    p = sub.add_parser("credentials", help="keys of the credentials replaced through the API")
    p.add_argument("-c", "--config", default="govbridge.toml")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("new-key", help="print a new key for credentials.keys")
    verbs.add_parser("list", help="replaced credentials: who, when, in use or superseded")
    verbs.add_parser("rotate", help="re-encrypt every stored credential under the first key")
    p.set_defaults(func=lambda args: asyncio.run(run_credentials(args)))


async def run_credentials(args: argparse.Namespace) -> int:
    if args.verb == "new-key":
        print(Fernet.generate_key().decode("ascii"))
        return 0
    cfg = load(args.config)
    vault = Vault(cfg.credentials.keys)
    store = await open_store(cfg.store.url)
    try:
        rows = await stored_credentials(store)
        if args.verb == "list":
            for row in rows:
                try:
                    vault.open(row.subject, row.field, row.secret)
                    readable = "readable"
                except CredentialError as exc:
                    readable = f"UNREADABLE: {exc}"
                print(
                    f"{row.subject:<32} {row.field:<12} v{row.version:<3} {row.state:<10}"
                    f" by {row.replaced_by} at {row.replaced_at} ({readable})"
                )
            if not rows:
                print("no credential was replaced through the API")
            return 0
        if not vault.enabled:
            print("govbridge credentials rotate: set credentials.keys first", file=sys.stderr)
            return 2
        count = await rotate_all(store, vault, _actor())
        print(f"{count} credential(s) re-encrypted under the first key of credentials.keys")
        return 0
    except CredentialError as exc:
        print(f"govbridge credentials {args.verb}: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
