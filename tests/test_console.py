"""The operator console page and the report API behind it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from bridge.store import NewInquiry
from tests.conftest import bridge_config, running_bridge

DEPT = {
    "id": "urban",
    "name": "市城管委",
    "ticketing": {"adapter": "rest", "base_url": "http://127.0.0.1:9", "auth": {"bearer": "t"}},
}


async def test_console_served_and_report_needs_the_admin_token(tmp_path: Path) -> None:
    cfg = bridge_config(tmp_path, departments=[DEPT])
    async with (
        running_bridge(cfg, ["http"], in_memory=True) as daemon,
        aiohttp.ClientSession() as http,
    ):
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
    async with (
        running_bridge(cfg, ["http"], in_memory=True) as daemon,
        aiohttp.ClientSession() as http,
    ):
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
    script = Path(__file__).parent.parent / "bridge" / "web" / "static" / "console.js"
    subprocess.run(["node", "--check", str(script)], check=True)


async def test_inquiry_search_filters(tmp_path: Path) -> None:
    """``GET /api/inquiries``: by text, citizen handle, ticket, department, status and dates."""
    cfg = bridge_config(tmp_path, departments=[DEPT])
    async with (
        running_bridge(cfg, ["http"], in_memory=True) as daemon,
        aiohttp.ClientSession() as http,
    ):
        assert daemon.ctx is not None
        store = daemon.ctx.store
        rows = [
            ("a", "路灯坏了三天", "li", "T-1", "ticketed", "2026-11-20T02:00:00+00:00"),
            ("b", "垃圾没人清运", "wang", "T-2", "ticketed", "2026-11-25T02:00:00+00:00"),
            ("c", "路灯又坏了", "wang", None, "ignored", "2026-11-28T02:00:00+00:00"),
        ]
        for inquiry_id, text, handle, ticket, state, created in rows:
            await store.record_inquiry(
                NewInquiry(
                    inquiry_id=inquiry_id,
                    platform="weibo",
                    account="acc",
                    kind="comment",
                    thread_key=inquiry_id,
                    state=state,
                    department="urban" if ticket else None,
                    ticket_id=ticket,
                    public_text=text,
                    citizen_handle=handle,
                )
            )
            await store.db.execute(
                "UPDATE inquiries SET created_at = ? WHERE inquiry_id = ?", (created, inquiry_id)
            )
        base = f"http://127.0.0.1:{daemon.http_port}/api/inquiries"
        auth = {"Authorization": "Bearer test-admin-token"}

        async def found(query: str) -> list[str]:
            async with http.get(f"{base}?{query}", headers=auth) as resp:
                assert resp.status == 200, await resp.text()
                return [i["inquiry_id"] for i in (await resp.json())["inquiries"]]

        assert await found("q=路灯") == ["c", "a"]  # newest first
        assert await found("handle=@wang") == ["c", "b"]
        assert await found("ticket=T-2") == ["b"]
        assert await found("department=urban") == ["b", "a"]
        assert await found("status=ignored") == ["c"]
        assert await found("from=2026-11-21&to=2026-11-27") == ["b"]
        assert await found("q=路灯&handle=li") == ["a"]
        async with http.get(f"{base}?from=yesterday", headers=auth) as resp:
            assert resp.status == 400 and "YYYY-MM-DD" in (await resp.json())["error"]
        async with http.get(base) as resp:
            assert resp.status == 401
