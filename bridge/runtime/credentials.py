"""Credentials replaced while the bridge runs (an account's token, a ticket system's key): kept
in the store, encrypted, so that they survive a restart and reach every process.

Which value a process uses, per credential (an account's ``token``; a ticket system's secret
fields such as ``api_key`` or ``auth.bearer``):

- the config's value, until a replacement exists;
- a replacement (``PUT`` through the admin API) while the config still holds the value it
  replaced: the replacement wins, at every start and in every process;
- the config's value again once the config changes (an operator edited the file and reloaded
  it with SIGHUP, or restarted): the newer decision wins and the replacement is marked
  ``superseded``.

A replacement is sealed with Fernet (``cryptography``: AES-128-CBC and HMAC-SHA256) under the
first of ``credentials.keys``, together with the subject and field it belongs to (a sealed value
moved to another row is refused) and the config value it replaced (to tell when the config
changed; never stored in clear either). Every key decrypts: rotate by putting a new key first,
``govbridge credentials rotate`` (re-seals every row under it), then dropping the old key.

Every process reads the table at start and every few seconds (``refresh``), and at once when a
ticket system or platform refuses what it holds. The replacement, each process's first use of
it, and its supersession are in the audit trail, with who did it. Values are registered with
the log scrubber the moment they are known, and never printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, SecretStr, ValidationError

from bridge.privacy.secrets import register_secrets
from bridge.store.credentials import CredentialState, StoredCredential
from schemas.config import AccountConfig, DepartmentConfig, GovbridgeConfig, account_key

if TYPE_CHECKING:
    from bridge.runtime.adapters import AdapterPool
    from bridge.store import Store

log = structlog.get_logger("govbridge.credentials")

ACTIVE, SUPERSEDED = CredentialState.ACTIVE, CredentialState.SUPERSEDED
# Secrets of a ticketing block that are not the bridge's credential towards the system (the
# callback secret authenticates the system towards the bridge).
NOT_CREDENTIALS = frozenset({"callback_secret"})

Key = tuple[str, str]  # subject, field
Listener = Callable[[str, str], Awaitable[None]]  # (subject, actor)


class CredentialError(Exception):
    """A replacement that cannot be accepted, or a stored one that cannot be read."""


def account_subject(adapter: str, handle: str) -> str:
    return f"account:{account_key(adapter, handle)}"


def ticketing_subject(department: str) -> str:
    return f"ticketing:{department}"


def _secret_paths(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, SecretStr]]:
    """Every ``SecretStr`` set in ``model`` (nested models too), by dotted path."""
    values = {name: getattr(model, name, None) for name in type(model).model_fields}
    values.update(model.model_extra or {})
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, SecretStr):
            yield path, value
        elif isinstance(value, BaseModel):
            yield from _secret_paths(value, f"{path}.")


def credential_values(cfg: GovbridgeConfig) -> dict[Key, str]:
    """What the config says for every credential: accounts' ``token``, ticket systems' secret
    fields (but not ``callback_secret``)."""
    out: dict[Key, str] = {}
    for acc in cfg.accounts:  # every account may be given a token ("" when it has none)
        token = acc.token.get_secret_value() if isinstance(acc.token, SecretStr) else ""
        out[(account_subject(acc.adapter, acc.handle), "token")] = token
    for dept in cfg.departments:
        for path, value in _secret_paths(dept.ticketing):
            if path not in NOT_CREDENTIALS:
                out[(ticketing_subject(dept.id), path)] = value.get_secret_value()
    return out


def acceptable(value: object) -> str:
    """A credential travels in HTTP headers, forms and query strings: printable ASCII only."""
    if not (isinstance(value, str) and value and value.isascii() and value.isprintable()):
        raise CredentialError("a credential must be a non-empty string of printable ASCII")
    return value


# --------------------------------------------------------------------------- sealing


@dataclass(frozen=True)
class Unsealed:
    value: str
    replaced: str  # the config value it replaced


class Vault:
    """Seals and opens stored credentials with the configured keys (newest first)."""

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._fernet = (
            MultiFernet([Fernet(k.get_secret_value().encode("ascii")) for k in keys])
            if keys
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, subject: str, field: str, value: str, replaced: str) -> str:
        assert self._fernet is not None, "no credentials.keys configured"
        body = json.dumps({"s": subject, "f": field, "v": value, "c": replaced})
        return self._fernet.encrypt(body.encode("utf-8")).decode("ascii")

    def open(self, subject: str, field: str, sealed: str) -> Unsealed:
        if self._fernet is None:
            raise CredentialError("no credentials.keys configured to read it")
        try:
            body = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, ValueError, UnicodeError):
            raise CredentialError(
                "cannot be decrypted with credentials.keys (a key that was removed?)"
            ) from None
        if body.get("s") != subject or body.get("f") != field:
            raise CredentialError("sealed for another credential (the row was tampered with)")
        return Unsealed(str(body["v"]), str(body["c"]))

    def rotate(self, sealed: str) -> str:
        assert self._fernet is not None, "no credentials.keys configured"
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise CredentialError("cannot be decrypted with credentials.keys") from None


# --------------------------------------------------------------------------- the table


async def stored_credentials(store: Store) -> list[StoredCredential]:
    return await store.stored_credentials()


async def rotate_all(store: Store, vault: Vault, actor: str) -> int:
    """Re-seal every stored credential under the first key; how many were."""
    rows = await store.stored_credentials()
    await store.reseal_credentials([(row, vault.rotate(row.secret)) for row in rows], actor=actor)
    return len(rows)


# --------------------------------------------------------------------------- in a process


@dataclass(frozen=True)
class Replaced:
    subject: str
    fields: list[str]
    persisted: bool
    version: int | None


class Credentials:
    """This process's credentials: the config's, or the replacements the store holds.

    ``refresh`` takes what other processes (or an earlier run) stored; ``replace`` is the admin
    API's; ``reload`` applies a re-read config (SIGHUP). Each change swaps the adapter that uses
    the credential (``AdapterPool``) and tells the listeners (``on_change``): the ingest poller
    resumes, held ticketing commands are released.
    """

    def __init__(
        self,
        cfg: GovbridgeConfig,
        store: Store,
        adapters: AdapterPool | None,
        *,
        read_only: bool = False,
    ) -> None:
        """``adapters`` None: only the config is updated; ``read_only``: nothing is written
        (no supersession, no audit record): ``govbridge check`` looks without acting."""
        self.cfg = cfg
        self.store = store
        self.adapters = adapters
        self.read_only = read_only
        self.in_use: dict[Key, StoredCredential] = {}  # replacements used here
        self.vault = Vault(cfg.credentials.keys)
        self._config = credential_values(cfg)  # as the config file says (not replacements)
        self._applied: dict[Key, int] = {}  # stored version in use (or judged) here
        self._complained: set[tuple[Key, int]] = set()
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self.process = f"{socket.gethostname()}:{os.getpid()}"

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def fields(self, subject: str) -> list[str]:
        """The credential fields of ``subject`` the config has."""
        return sorted(f for s, f in self._config if s == subject)

    # ------------------------------------------------------------------ reading the store
    async def refresh(self) -> set[str]:
        """Take up replacements stored since the last look; the subjects that changed."""
        async with self._lock:
            changed = await self._refresh()
        await self._tell(changed, "bridge")
        return changed

    async def _refresh(self) -> set[str]:
        changed: set[str] = set()
        for row in await stored_credentials(self.store):
            key = row.key
            if row.state != ACTIVE or self._applied.get(key) == row.version:
                continue
            if key not in self._config:
                continue  # not configured in this process
            try:
                sealed = self.vault.open(row.subject, row.field, row.secret)
            except CredentialError as exc:
                if (key, row.version) not in self._complained:
                    self._complained.add((key, row.version))
                    log.error(
                        "a replaced credential cannot be used; the config's value is",
                        subject=row.subject,
                        field=row.field,
                        why=str(exc),
                    )
                continue
            register_secrets([sealed.value, sealed.replaced])
            self._applied[key] = row.version
            if sealed.replaced != self._config[key]:
                # The config changed after the replacement: the operator's newer decision.
                why = "the config holds another value"
                if not self.read_only and await self.store.supersede_credential(
                    row, actor="config", why=why
                ):
                    log.info("config value wins over an older replacement", subject=row.subject)
                continue
            self._apply(row.subject, row.field, sealed.value)
            self.in_use[key] = row
            if self.read_only:
                continue
            await self.store.record_audit(
                "credential.applied",
                subject=row.subject,
                field=row.field,
                version=row.version,
                replaced_by=row.replaced_by,
                process=self.process,
            )
            log.info("replaced credential taken into use", subject=row.subject, field=row.field)
            changed.add(row.subject)
        return changed

    # ------------------------------------------------------------------ the admin API
    async def replace(self, subject: str, values: dict[str, str], actor: str) -> Replaced:
        """Replace credentials of ``subject`` (kept encrypted when keys are configured)."""
        known = self.fields(subject)
        if not known:
            raise CredentialError(f"{subject} has no credential in the config to replace")
        if not values or set(values) - set(known):
            # Unknown names are not echoed: a key pasted into the wrong place could be one.
            raise CredentialError(f"replaceable: {', '.join(known)}")
        clean = {f: acceptable(v) for f, v in values.items()}
        register_secrets(clean.values())
        self._candidate(subject, clean)  # the adapter's own rules (before anything is kept)
        action = (
            "account.token_replaced"
            if subject.startswith("account:")
            else "ticketing.credentials_replaced"
        )
        version: int | None = None
        async with self._lock:
            if self.vault.enabled:
                async with self.store.transaction() as tx:
                    for f, v in sorted(clean.items()):
                        sealed = self.vault.seal(subject, f, v, self._config[(subject, f)])
                        version = await tx.put_credential(
                            subject, f, sealed, actor=actor, now=datetime.now(UTC)
                        )
                        self._applied[(subject, f)] = version
                    await tx.record_audit(
                        action,
                        actor=actor,
                        subject=subject,
                        fields=sorted(clean),
                        version=version,
                        persisted=True,
                    )
            else:
                await self.store.record_audit(
                    action,
                    actor=actor,
                    subject=subject,
                    fields=sorted(clean),
                    persisted=False,
                )
                log.warning(
                    "credential replaced in this process only: set credentials.keys to keep it",
                    subject=subject,
                )
            for f, v in clean.items():
                self._apply(subject, f, v)
                self.in_use.pop((subject, f), None)
        log.info("credential replaced", subject=subject, fields=sorted(clean), by=actor)
        await self._tell({subject}, actor)
        return Replaced(subject, sorted(clean), self.vault.enabled, version)

    # ------------------------------------------------------------------ config reload
    async def reload(self, cfg: GovbridgeConfig, actor: str) -> set[str]:
        """Apply the credentials of a re-read config; the subjects that changed. A changed
        value wins over a replacement made against the old one. Other changes (new accounts,
        departments, settings) wait for a restart."""
        fresh = credential_values(cfg)
        changed: set[str] = set()
        async with self._lock:
            register_secrets(fresh.values())
            stored = {r.key: r for r in await stored_credentials(self.store)}
            for key, value in sorted(fresh.items()):
                if key not in self._config or self._config[key] == value:
                    continue
                subject, field = key
                self._config[key] = value
                self._apply(subject, field, value)
                self.in_use.pop(key, None)
                row = stored.get(key)
                if row is not None and row.state == ACTIVE:
                    self._applied[key] = row.version
                    await self.store.supersede_credential(
                        row, actor=actor, why="the config was changed and reloaded"
                    )
                await self.store.record_audit(
                    "credential.reloaded", actor=actor, subject=subject, field=field
                )
                changed.add(subject)
        if changed:
            log.info("credentials reloaded from the config", subjects=sorted(changed))
        await self._tell(changed, actor)
        return changed

    # ------------------------------------------------------------------ applying
    def _candidate(self, subject: str, values: dict[str, str]) -> AccountConfig | DepartmentConfig:
        kind, _, rest = subject.partition(":")
        if kind == "account":
            adapter, _, handle = rest.partition(":")
            account = self.cfg.account(handle, adapter)
            return account.model_copy(update={k: SecretStr(v) for k, v in values.items()})
        dept = self.cfg.department(rest)
        data: dict[str, Any] = dept.ticketing.model_dump()
        for path, value in values.items():
            *parents, leaf = path.split(".")
            node = data
            for part in parents:
                node = node[part]
            node[leaf] = SecretStr(value)
        try:
            ticketing = type(dept.ticketing).model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CredentialError(
                f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            ) from None
        return dept.model_copy(update={"ticketing": ticketing})

    def _apply(self, subject: str, field: str, value: str) -> None:
        """Use ``value`` from now on: in the config and in a fresh adapter (the old one is
        closed once calls in flight on it are done)."""
        updated = self._candidate(subject, {field: value})
        if isinstance(updated, AccountConfig):
            idx = next(
                i
                for i, a in enumerate(self.cfg.accounts)
                if (a.adapter, a.handle) == (updated.adapter, updated.handle)
            )
            self.cfg.accounts[idx] = updated
            if self.adapters is not None:
                _, old = self.adapters.replace_source(updated)
                if old is not None:
                    self.adapters.retire(old)
        else:
            dept = self.cfg.department(updated.id)
            dept.ticketing = updated.ticketing
            if self.adapters is not None:
                self.adapters.replace_ticket_system(dept)

    async def _tell(self, subjects: set[str], actor: str) -> None:
        for subject in sorted(subjects):
            for listener in self._listeners:
                try:
                    await listener(subject, actor)
                except Exception as exc:  # one listener's failure must not stop the others
                    log.error("credential listener failed", subject=subject, error=repr(exc))
