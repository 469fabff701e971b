"""The operators' API is the daemon's, not a role's: a process without the reply or ticketing
role still serves the approval queue, the trace, the outbox backlog (from the store) and the
creates awaiting reconciliation."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.conftest import bridge_config, running_bridge

TOKEN = {"Authorization": "Bearer test-admin-token"}


async def test_approvals_are_served_by_a_process_without_the_reply_role(tmp_path: Path) -> None:
    cfg = bridge_config(tmp_path)
    async with running_bridge(cfg, ["triage", "http"], in_memory=True) as daemon:
        assert "reply" not in daemon.role_names and "ticketing" not in daemon.role_names
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/approvals", headers=TOKEN) as resp:
                assert resp.status == 200
                page = await resp.json()
                assert (page["approvals"], page["total"], page["offset"]) == ([], 0, 0)
            async with http.get(f"{base}/api/approvals?limit=0", headers=TOKEN) as resp:
                assert resp.status == 400  # a page holds 1 to 200
            async with http.get(f"{base}/api/approvals?older_than=soon", headers=TOKEN) as resp:
                assert resp.status == 400 and "30m" in (await resp.json())["error"]
            async with http.get(f"{base}/api/approvals?department=nope", headers=TOKEN) as resp:
                assert resp.status == 400
            async with http.post(
                f"{base}/api/approvals/bulk", headers=TOKEN, json={"items": []}
            ) as resp:
                assert resp.status == 400  # one to 100 drafts
            async with http.get(f"{base}/api/approvals") as resp:
                assert resp.status == 401  # still the admin's
            async with http.get(f"{base}/api/outbox", headers=TOKEN) as resp:
                assert resp.status == 200
                assert await resp.json() == {"accounts": {}}
            async with http.get(f"{base}/api/inquiries/nope", headers=TOKEN) as resp:
                assert resp.status == 404
            async with http.get(f"{base}/api/reconciliation", headers=TOKEN) as resp:
                assert resp.status == 200
                assert await resp.json() == {"needs_reconciliation": []}
            async with http.post(
                f"{base}/api/reconciliation/nope",
                headers=TOKEN,
                json={"action": "not_created"},
            ) as resp:
                assert resp.status == 409  # nothing awaits reconciliation
            async with http.post(
                f"{base}/api/reconciliation/nope",
                headers=TOKEN,
                json={"action": "not_created", "actor": "王科长"},
            ) as resp:
                assert resp.status == 403  # the token acts as admin-token, never as a name
                assert "admin-token" in (await resp.json())["error"]
            async with http.post(
                f"{base}/api/approvals/nope", headers=TOKEN, json={"decision": "approve"}
            ) as resp:
                assert resp.status == 404  # decided as admin-token: there is no such reply
