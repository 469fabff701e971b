"""Operators of the console and the API: their accounts, their sessions and the failed
sign-ins that throttle guessing. Hashing passwords and checking them is the caller's
(``bridge.web.operators``); the store keeps what it is given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.store.base import StoreBase
from bridge.store.drivers import iso


@dataclass(frozen=True)
class OperatorRow:
    """An operator as listed (no password hash)."""

    name: str
    role: str
    disabled: int
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class OperatorCredentials:
    """What a sign-in checks: the operator's role, password hash and whether disabled."""

    name: str
    role: str
    password_hash: str
    disabled: int


@dataclass(frozen=True)
class OperatorSession:
    """A session row joined with its operator's role and disabled flag."""

    operator: str
    csrf_token: str
    expires_at: str
    role: str
    disabled: int


@dataclass(frozen=True)
class OperatorChange:
    """What ``change_operator`` sets (``None``: kept as it is)."""

    role: str | None = None
    password_hash: str | None = None
    disabled: bool | None = None


class OperatorsStore(StoreBase):
    async def add_operator(
        self, name: str, role: str, password_hash: str, *, actor: str, now: datetime
    ) -> bool:
        """A new operator, audited; False (nothing written) if the name is taken."""
        async with self.transaction() as tx:
            n = await tx.db.execute(
                "INSERT INTO operators (name, role, password_hash, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, role, password_hash, iso(now), iso(now)),
            )
            if n > 0:
                await tx.record_audit("operator.added", actor=actor, subject=name, role=role)
        return n > 0

    async def change_operator(
        self,
        name: str,
        change: OperatorChange,
        *,
        actor: str,
        now: datetime,
    ) -> bool:
        """Change a role, a password hash or the disabled flag and end the operator's
        sessions, audited (never the hash); False if there is no such operator."""
        sets: list[str] = []
        params: list[object] = []
        audited: dict[str, object] = {}
        if change.role is not None:
            sets.append("role = ?")
            params.append(change.role)
            audited["role"] = change.role
        if change.password_hash is not None:
            sets.append("password_hash = ?")
            params.append(change.password_hash)
        if change.disabled is not None:
            sets.append("disabled = ?")
            params.append(int(change.disabled))
            audited["disabled"] = int(change.disabled)
        async with self.transaction() as tx:
            n = await tx.db.execute(
                f"UPDATE operators SET {', '.join([*sets, 'updated_at = ?'])} WHERE name = ?",
                (*params, iso(now), name),
            )
            if n == 0:
                return False
            await tx.db.execute("DELETE FROM operator_sessions WHERE operator = ?", (name,))
            await tx.record_audit(
                "operator.changed",
                actor=actor,
                subject=name,
                password_changed=change.password_hash is not None or None,
                **audited,
            )
        return True

    async def list_operators(self) -> list[OperatorRow]:
        rows = await self.db.fetchall(
            "SELECT name, role, disabled, created_at, updated_at FROM operators ORDER BY name"
        )
        return [OperatorRow(**r) for r in rows]

    async def operator_credentials(self, name: str) -> OperatorCredentials | None:
        rows = await self.db.fetchall(
            "SELECT name, role, password_hash, disabled FROM operators WHERE name = ?", (name,)
        )
        return OperatorCredentials(**rows[0]) if rows else None

    async def open_session(
        self,
        session_hash: str,
        operator: str,
        csrf_token: str,
        *,
        now: datetime,
        expires: datetime,
        client: str | None,
    ) -> None:
        """A new session (expired ones are dropped), audited as a sign-in."""
        async with self.transaction() as tx:
            await tx.db.execute("DELETE FROM operator_sessions WHERE expires_at < ?", (iso(now),))
            await tx.db.execute(
                "INSERT INTO operator_sessions (session_hash, operator, csrf_token, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?)",
                (session_hash, operator, csrf_token, iso(now), iso(expires)),
            )
            await tx.record_audit(
                "operator.signed_in", actor=operator, subject=operator, client=client
            )

    async def session(self, session_hash: str) -> OperatorSession | None:
        rows = await self.db.fetchall(
            "SELECT s.operator, s.csrf_token, s.expires_at, o.role, o.disabled"
            " FROM operator_sessions s JOIN operators o ON o.name = s.operator"
            " WHERE s.session_hash = ?",
            (session_hash,),
        )
        return OperatorSession(**rows[0]) if rows else None

    async def close_session(self, session_hash: str) -> None:
        await self.db.execute(
            "DELETE FROM operator_sessions WHERE session_hash = ?", (session_hash,)
        )

    # ------------------------------------------------------------------ failed sign-ins
    async def signin_failures(
        self, keys: tuple[str, ...], since: datetime
    ) -> dict[str, tuple[int, str | None]]:
        """Per key: failures after ``since`` and the time of the last."""
        marks = ", ".join("?" for _ in keys)
        rows = await self.db.fetchall(
            "SELECT key, COUNT(*) AS n, MAX(at) AS last FROM signin_failures"
            f" WHERE key IN ({marks}) AND at > ? GROUP BY key",
            (*keys, iso(since)),
        )
        return {r["key"]: (int(r["n"]), r["last"]) for r in rows}

    async def record_signin_failure(
        self,
        keys: tuple[str, ...],
        *,
        now: datetime,
        forget_before: datetime,
        name: str,
        client: str,
        failures: int,
        locked: bool,
    ) -> None:
        """A failed sign-in under each key (older ones dropped), audited (never the
        password)."""
        async with self.transaction() as tx:
            for key in keys:
                await tx.db.execute(
                    "INSERT INTO signin_failures (key, at) VALUES (?, ?)", (key, iso(now))
                )
            await tx.db.execute("DELETE FROM signin_failures WHERE at < ?", (iso(forget_before),))
            await tx.record_audit(
                "operator.sign_in_failed",
                actor="anonymous",
                subject=name,
                client=client,
                failures=failures,
                locked=locked or None,
            )

    async def forget_signin_failures(self, key: str) -> None:
        await self.db.execute("DELETE FROM signin_failures WHERE key = ?", (key,))
