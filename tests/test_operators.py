"""Operators and roles over HTTP, against a running bridge (in-memory broker, simulators): a viewer
reads but cannot approve, an approver decides replies under their own name but cannot reach
admin actions, state changes need the session's CSRF token, sessions expire and end, and the
bearer admin token keeps working for automation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.cli.operator import run_operator
from bridge.store import SqlStore, audit
from bridge.web.operators import (
    POLICY,
    add_operator,
    change_operator,
    list_operators,
    required_role,
    session_for,
    sign_in,
)
from tests.conftest import config_toml, eventually, running_bridge
from tests.test_approval import AUTH, World, config, count_state, push, start, world

__all__ = ["world"]  # the fixture, used by name

PASSWORD = "correct horse battery"


class Operator:
    """One browser: its own cookie jar and CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def sign_in(self, name: str, password: str = PASSWORD) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.base}/api/session", json={"name": name, "password": password}
        ) as resp:
            body = await resp.json()
            self.csrf = body.get("csrf_token", "")
            return resp.status, body

    async def call(
        self, method: str, path: str, body: Any = None, csrf: bool = True
    ) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        async with self.http.request(
            method, f"{self.base}{path}", json=body, headers=headers
        ) as resp:
            return resp.status, await resp.json()


async def test_roles_csrf_and_sessions_over_http(tmp_path: Path, world: World) -> None:
    async with running_bridge(config(tmp_path, world), in_memory=True) as daemon:
        api = await start(daemon, world)
        assert daemon.ctx is not None
        db = daemon.ctx.store.db
        for name, role in (("viewer-li", "viewer"), ("approver-wang", "approver")):
            await add_operator(daemon.ctx.store, name, role, PASSWORD, actor="test")
        await add_operator(daemon.ctx.store, "admin-zhao", "admin", PASSWORD, actor="test")
        await push(world, "env12345", "小区旁边的河道有一股臭味，请来检查一下", 0)
        await push(world, "env12345", "工厂烟囱每天晚上冒黑烟，投诉好几次了", 1)
        await eventually(lambda: count_state(daemon, "awaiting_approval", 2), timeout=20)
        waiting = await daemon.ctx.store.list_replies(state="awaiting_approval")
        first, second = waiting[0].reply_id, waiting[1].reply_id
        viewer, approver, admin = (Operator(api.base) for _ in range(3))
        async with api.http, viewer.http, approver.http, admin.http:
            # sign-in: wrong password and unknown names are refused alike
            assert (await viewer.sign_in("viewer-li", "wrong password!"))[0] == 401
            assert (await viewer.sign_in("nobody-here"))[0] == 401
            async with viewer.http.post(
                f"{api.base}/api/session",
                json={"name": "viewer-li", "password": PASSWORD},
                headers={"Origin": "https://elsewhere.example"},
            ) as resp:
                assert resp.status == 403  # not signed in from another site's page
            status, me = await viewer.sign_in("viewer-li")
            assert status == 200 and me["role"] == "viewer" and me["may"]["approve"] is False
            assert (await approver.sign_in("approver-wang"))[0] == 200
            assert (await admin.sign_in("admin-zhao"))[0] == 200

            # a viewer reads, and cannot approve
            status, listed = await viewer.call("GET", "/api/approvals")
            assert status == 200 and len(listed["approvals"]) == 2
            status, err = await viewer.call(
                "POST", f"/api/approvals/{first}", {"decision": "approve"}
            )
            assert status == 403 and "needs the approver role" in err["error"]
            assert (await daemon.ctx.store.get_reply(first)).state == "awaiting_approval"  # type: ignore[union-attr]

            # an approver needs the CSRF token for a state change
            decide = {"decision": "approve", "actor": "someone else"}
            status, err = await approver.call("POST", f"/api/approvals/{first}", decide, csrf=False)
            assert status == 403 and "X-CSRF-Token" in err["error"]
            # ... and decides under their own name, whatever the body says
            status, done = await approver.call("POST", f"/api/approvals/{first}", decide)
            assert status == 200 and done["decided_by"] == "approver-wang"
            status, done = await approver.call(
                "POST", f"/api/approvals/{second}", {"decision": "reject", "reason": "重复"}
            )
            assert status == 200 and done["state"] == "rejected"

            # an approver cannot reach admin actions
            for method, path, body in (
                ("POST", "/api/reconciliation/inq_x", {"action": "not_created"}),
                ("PUT", "/api/accounts/webhook/env12345/token", {"token": "t"}),
                ("POST", "/api/dead-letters/reply/replay", {}),
            ):
                status, err = await approver.call(method, path, body)
                assert status == 403 and "needs the admin role" in err["error"], (path, err)
                status, err = await viewer.call(method, path, body)
                assert status == 403, path
            # an admin gets past the check to the action itself (nothing to reconcile here)
            status, err = await admin.call(
                "POST", "/api/reconciliation/inq_x", {"action": "not_created"}
            )
            assert status == 409 and "does not await reconciliation" in err["error"]
            status, done = await admin.call(
                "PUT", "/api/accounts/webhook/env12345/token", {"token": "fresh-token-1"}
            )
            assert status == 200, done

            # a session that expired, or was signed out, no longer works
            await db.execute(
                "UPDATE operator_sessions SET expires_at = ? WHERE operator = ?",
                ("2000-01-01T00:00:00.000000+00:00", "viewer-li"),
            )
            status, err = await viewer.call("GET", "/api/approvals")
            assert status == 401 and "sign in again" in err["error"]
            assert (await approver.call("DELETE", "/api/session"))[0] == 200
            assert (await approver.call("GET", "/api/approvals"))[0] == 401
            # a disabled operator cannot sign in
            args = type("A", (), {"verb": "disable", "name": "admin-zhao", "config": None})
            path = tmp_path / "govbridge.toml"
            path.write_text(config_toml(daemon.cfg))
            args.config = str(path)
            assert await run_operator(args) == 0  # type: ignore[arg-type]
            assert (await admin.call("GET", "/api/approvals"))[0] == 401
            assert (await admin.sign_in("admin-zhao"))[0] == 401

            # the bearer admin token keeps working for automation, as an admin
            async with api.http.get(f"{api.base}/api/approvals", headers=AUTH) as resp:
                assert resp.status == 200
            async with api.http.get(f"{api.base}/api/approvals") as resp:
                assert resp.status == 401

        records = await audit.recent(db, limit=100)
        actions = [(r["action"], r["actor"]) for r in records]
        assert ("reply.approved", "approver-wang") in actions
        assert ("reply.rejected", "approver-wang") in actions
        assert ("operator.signed_in", "viewer-li") in actions
        assert ("account.token_replaced", "admin-zhao") in actions
        assert any(a == "operator.changed" and r.startswith("cli:") for a, r in actions)
        assert (await audit.verify(db)).ok


def test_policy_is_closed_by_default() -> None:
    """Reading needs a viewer; only the listed decisions an approver; every other change an
    admin (a new route is closed until the policy opens it)."""
    assert required_role("GET", "/api/dead-letters") == "viewer"
    assert required_role("POST", "/api/approvals/rep_1") == "approver"
    assert required_role("POST", "/api/triage/review/inq_1") == "approver"
    assert required_role("POST", "/api/reconciliation/inq_1") == "admin"
    assert required_role("PUT", "/api/accounts/weibo/x/token") == "admin"
    assert required_role("POST", "/api/some-new-thing") == "admin"
    assert {role for _, _, role in POLICY} == {"approver"}


@pytest.mark.parametrize("bad", ["short", ""])
async def test_weak_passwords_and_unknown_roles_are_refused(tmp_path: Path, bad: str) -> None:
    from bridge.store import open_store
    from bridge.web.operators import OperatorError

    store = await open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        with pytest.raises(OperatorError, match="at least 10"):
            await add_operator(store, "x", "viewer", bad, actor="t")
        with pytest.raises(OperatorError, match="role must be one of"):
            await add_operator(store, "x", "root", PASSWORD, actor="t")
        await add_operator(store, "x", "viewer", PASSWORD, actor="t")
        with pytest.raises(OperatorError, match="exists already"):
            await add_operator(store, "x", "admin", PASSWORD, actor="t")
        rows = await store.db.fetchall("SELECT password_hash FROM operators")
        assert rows[0]["password_hash"].startswith("$argon2id$")
    finally:
        await store.close()


async def test_sessions_on_both_stores(store: SqlStore) -> None:
    """Sign-in, session lookup, expiry and the end of sessions on a change: SQLite and
    PostgreSQL."""
    await add_operator(store, "li", "approver", PASSWORD, actor="t")
    assert await sign_in(store, "li", "not the password", timedelta(hours=1)) is None
    session = await sign_in(store, "li", PASSWORD, timedelta(hours=1))
    assert session is not None and session.identity.role == "approver"
    found = await session_for(store, session.session_id)
    assert found is not None and found[0].name == "li" and found[1] == session.csrf_token
    stored = await store.db.fetchall("SELECT session_hash FROM operator_sessions")
    assert stored[0]["session_hash"] != session.session_id  # only its hash is kept
    await change_operator(store, "li", "t", role="viewer")
    assert await session_for(store, session.session_id) is None  # a change ends sessions
    again = await sign_in(store, "li", PASSWORD, timedelta(seconds=-1))
    assert again is not None and await session_for(store, again.session_id) is None
    assert [r.role for r in await list_operators(store)] == ["viewer"]
    assert (await audit.verify(store.db)).ok
