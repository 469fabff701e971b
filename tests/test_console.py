"""The operator console page and the report API behind it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

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
            assert '<script src="/console.js"' in await resp.text()
        async with http.get(base + "/console.js") as resp:
            script = await resp.text()
            assert "/api/approvals" in script and "/api/report" in script
            assert "/api/triage/review" in script
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


async def test_console_runs_no_inline_code_and_builds_no_markup_from_data(tmp_path: Path) -> None:
    """The CSP forbids inline script; the page must work within it: its script and style are
    files of this origin, no element carries an inline handler, and the script never turns
    data into markup (it builds elements and sets text, binding events with addEventListener)."""
    cfg = bridge_config(tmp_path, departments=[DEPT])
    async with running_bridge(cfg, ["http"]) as daemon, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{daemon.http_port}"
        async with http.get(base + "/") as resp:
            page = await resp.text()
            csp = resp.headers["Content-Security-Policy"]
        async with http.get(base + "/console.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
            script = await resp.text()
        async with http.get(base + "/console.css") as resp:
            assert resp.status == 200 and resp.content_type == "text/css"
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/console.js" defer>']
    assert "<style" not in page
    assert not re.search(r"\son[a-z]+\s*=", page, re.IGNORECASE), "inline event handler"
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert forbidden not in script, forbidden
    assert not re.search(r"\.on[a-z]+\s*=", script), "handler assigned instead of bound"
    assert "addEventListener" in script and "dataset" in script


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_console_script_is_valid_javascript() -> None:
    script = Path(__file__).parent.parent / "bridge" / "static" / "console.js"
    subprocess.run(["node", "--check", str(script)], check=True)
