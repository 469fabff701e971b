"""``govbridge check -c FILE [--adapters]``: the config, the broker, the store and (with
``--adapters``) every account and ticket system, each with its outcome; exit non-zero with the
reason."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from bridge.cli.load import DEFAULT_CONFIG, load, refuse_weak_credentials, refuse_weak_keys
from bridge.config import redacted_url
from bridge.deadlines import WorkCalendar, uncovered_message
from bridge.privacy.secrets import scrub
from schemas.config import DepartmentConfig, GovbridgeConfig

if TYPE_CHECKING:
    from adapters.base import Source, TicketSystem
    from bridge.store import Store


def register(sub: Any) -> None:
    check = sub.add_parser("check", help="validate config; check broker, store and adapters")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    check.add_argument(
        "--adapters",
        action="store_true",
        help="also contact every platform account and ticket system (token, reachability)",
    )
    check.add_argument("--no-declare", action="store_true", help="connect without declaring")
    check.set_defaults(func=cmd_check)


async def _check(args: argparse.Namespace) -> int:
    from adapters.base import make_ticket_system
    from bridge.runtime.broker import Broker, BrokerUnavailable
    from bridge.security.keyring import Keyring
    from bridge.store import open_store

    cfg = load(args.config)
    print(
        f"config   ok: {args.config} ({len(cfg.departments)} departments, "
        f"{len(cfg.accounts)} accounts, {len(cfg.routes)} routes)"
    )
    _warn_calendar(args.config, cfg, WorkCalendar.of(cfg.calendar).today())
    failures = 0
    if refuse_weak_credentials(args.config, cfg, "secrets  FAILED"):
        failures += 1
    if refuse_weak_keys(args.config, cfg, "keys     FAILED"):
        failures += 1
    else:
        bus, audit_keys = Keyring("bus", cfg.broker.signing_keys), Keyring("audit", cfg.audit.keys)
        print(f"keys     ok: bus {bus.describe()}; audit {audit_keys.describe()}")
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
    store: Store | None = None
    try:
        store = await asyncio.wait_for(
            open_store(cfg.store.url, Keyring("audit", cfg.audit.keys)), 10
        )
        await store.ping()
        print(f"store    ok: {shown_store}")
    except Exception as exc:
        print(f"store    FAILED: {shown_store}: {scrub(repr(exc))}", file=sys.stderr)
        failures += 1
        if store is not None:
            await store.close()
            store = None
    try:
        if not args.adapters:
            print("adapters not contacted (add --adapters to check tokens and reachability)")
            for i, dept in enumerate(cfg.departments):  # what the config alone says
                system = make_ticket_system(dept)
                _warn_follow_ups(args.config, i, dept, system)
                await system.close()
        else:
            failures += await _check_adapters(args.config, cfg, store)
    finally:
        if store is not None:
            await store.close()
    if failures:
        print(f"check failed: {failures} problem(s)", file=sys.stderr)
        return 1
    print("check passed")
    return 0


async def _check_adapters(path: str, cfg: GovbridgeConfig, store: Store | None) -> int:
    """Contact every account and ticket system with the credentials the daemon would use (a
    replacement kept in the store, where one applies); say how many commands are held for a
    refused key; warn where follow-ups would reach nobody. The number of failures."""
    from adapters.base import make_source, make_ticket_system
    from bridge.runtime.credentials import Credentials, account_subject, ticketing_subject
    from bridge.runtime.held import held_counts

    replaced: dict[str, str] = {}
    held: dict[str, dict[str, int]] = {}
    if store is not None:
        creds = Credentials(cfg, store, None, read_only=True)
        await creds.refresh()
        for (subject, field), row in creds.in_use.items():
            replaced[subject] = (
                f" [{field} replaced through the API by {row.replaced_by} at {row.replaced_at}]"
            )
        held = await held_counts(store)
    failures = 0
    for acc in cfg.accounts:
        label = f"account  {acc.adapter}:{acc.handle}"
        note = replaced.get(account_subject(acc.adapter, acc.handle), "")
        failures += not await _probe(label, make_source(acc), note)
    for i, dept in enumerate(cfg.departments):
        label = f"tickets  {dept.id} ({dept.ticketing.adapter})"
        note = replaced.get(ticketing_subject(dept.id), "")
        system = make_ticket_system(dept)
        failures += not await _probe(label, system, note, close=False)
        _warn_follow_ups(path, i, dept, system)  # as detected
        await system.close()
        waiting = held.get(dept.id, {})
        if sum(waiting.values()):
            ops = ", ".join(f"{op}: {n}" for op, n in sorted(waiting.items()))
            print(
                f"held     {dept.id}: {sum(waiting.values())} command(s) waiting for credentials"
                f" the ticket system takes ({ops}); released by PUT /api/ticket-systems/"
                f"{dept.id}/credentials, a config reload (SIGHUP) or retry now"
            )
    return failures


async def _probe(
    label: str, adapter: Source | TicketSystem, note: str = "", *, close: bool = True
) -> bool:
    """Contact one adapter (a source or a ticket system), print the outcome and close it
    (unless ``close`` is false); True when it answered. What it detected is printed where it
    says (``Describes``)."""
    from adapters.base import AdapterError, Describes

    try:
        await asyncio.wait_for(adapter.check(), 10)
        detected = f" ({adapter.describe()})" if isinstance(adapter, Describes) else ""
        print(f"{label} ok{detected}{note}")
        return True
    except (AdapterError, TimeoutError, OSError) as exc:
        print(f"{label} FAILED: {_reason(exc)}{note}", file=sys.stderr)
        return False
    finally:
        if close:
            await adapter.close()


def _warn_follow_ups(path: str, index: int, dept: DepartmentConfig, system: TicketSystem) -> None:
    """A warning (not a failure) when citizens' follow-ups would reach nobody: the ticket
    system takes no update and ``follow_ups`` names no other channel."""
    if system.capabilities.appends or dept.follow_ups.via != "record":
        return
    print(
        f"warning  {path}: departments[{index}].follow_ups ({dept.id}): its ticket system"
        f" ({dept.ticketing.adapter}) takes no update, and no other channel is configured:"
        " a citizen's follow-up is only kept on record (they are told so and asked to call)."
        ' Set via = "new_request" (a linked request) or via = "webhook" (url, secret).',
        file=sys.stderr,
    )


CALENDAR_HORIZON = timedelta(days=60)


def _warn_calendar(path: str, cfg: GovbridgeConfig, today: date) -> list[int]:
    """A warning (not a failure: today's deadlines are right) for each year of the next 60
    days whose working days neither chinese-calendar nor ``[calendar]`` gives; the years."""
    last = today + CALENDAR_HORIZON
    missing = WorkCalendar.of(cfg.calendar).uncovered_years(today, last)
    for year in missing:
        listed = sum(d.year == year for d in (*cfg.calendar.holidays, *cfg.calendar.workdays))
        hint = (
            f" ({listed} date(s) of {year} are listed: add {year} to years once they are its"
            " whole arrangement)"
            if listed
            else ""
        )
        print(
            f"warning  {path}: calendar.years: {uncovered_message(year)}. The next 60 days run"
            f" to {last.isoformat()}; a deadline that reaches {year} is counted Monday to"
            f" Friday meanwhile, so it may be off around {year}'s holidays{hint}.",
            file=sys.stderr,
        )
    return missing


def _reason(exc: BaseException) -> str:
    """An adapter's own reason, else the exception itself: the backend's words, short, one
    line, without secrets or personal data."""
    from adapters.base import AdapterError
    from bridge.privacy.secrets import sanitise_reason

    return sanitise_reason(exc.reason if isinstance(exc, AdapterError) else repr(exc))


def cmd_check(args: argparse.Namespace) -> int:
    return asyncio.run(_check(args))
