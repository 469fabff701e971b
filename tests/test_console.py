"""The operator console page and the report API behind it."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.conftest import bridge_config, running_bridge

DEPT = {
    "id": "urban",
    "name": "市城管委",
    "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}},
}


async def test_console_served_and_report_needs_the_admin_token(tmp_path: Path) -> None:
    cfg = bridge_config(tmp_path, departments=[DEPT])
    async with running_bridge(cfg, ["http"]) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with http.get(base + "/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
            assert "/api/approvals" in page and "/api/report" in page
        async with http.get(base + "/api/report") as resp:
            assert resp.status == 401
        headers = {"Authorization": "Bearer wrong"}
        async with http.get(base + "/api/report", headers=headers) as resp:
            assert resp.status == 401
        headers = {"Authorization": "Bearer test-admin-token"}
        async with http.get(base + "/api/report", headers=headers) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert [d["department"] for d in body["departments"]] == ["urban"]
        assert body["departments"][0]["tickets"] == 0
