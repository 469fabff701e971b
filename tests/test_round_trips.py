"""Statements and transactions per inquiry, on SQLite and PostgreSQL (issue 26): inquiries pushed
to a webhook account go the whole way on the in-memory broker (ingest, triage, a ticket in an
Open311 simulator, the first reply posted back), with the store wrapped in a counter
(``tests/sql_count.py``). Counts, not times.

What is held (per inquiry; a transaction is a committed block or a write on its own; on
PostgreSQL an advisory lock counts as a statement; transactions that wrote nothing, the outbox's
scans that found no reply, are left out, as their number depends on timing):

- before issue 26 (d7c97a7): SQLite 52.0 statements in 13 transactions, PostgreSQL 61.1 in 13
  (14 of the statements the audit trail's: a head read and an INSERT per record);
- now: SQLite 38.1 statements in 10, PostgreSQL 45.2 in 10. The issue's target
  (20 statements, 4 transactions) is not reached: see docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from govbridge_tools.simulators.webhook import WebhookPlatformState
from govbridge_tools.testing import Simulators

from bridge import daemon as daemon_module
from bridge.store import SqlStore, open_store
from tests.conftest import bridge_config, eventually, running_bridge
from tests.sql_count import SqlCount, counted_store

SECRET = "round-trips-secret"
INQUIRIES = 12
TEXTS = (
    "{n}号楼北门的路灯坏了好几天，晚上很黑，请尽快修理",
    "投诉{n}路公交车经常不按时到站，早上等了四十分钟",
    "请问在{n}号窗口办理居住证需要带什么材料？",
)


async def test_statements_and_transactions_per_inquiry(
    tmp_path: Path, store_url: str, sims: Simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    open311 = await sims.open311()
    platform = WebhookPlatformState(secret=SECRET, account_handle="hotline")
    server = await sims.webhook(platform)
    cfg = bridge_config(
        tmp_path,
        store={"url": store_url},
        departments=[
            {
                "id": "bench",
                "name": "测试局",
                "approval": "none",
                "ticketing": {
                    "adapter": "open311",
                    "base_url": open311.base_url,
                    "api_key": "sim-open311-key",
                    "service_codes": {
                        "complaint": "TR-01",
                        "consultation": "TR-02",
                        "help": "TR-03",
                        "other": "TR-09",
                    },
                    "attributes": {"urgency": "normal"},
                    "lat": 39.9,
                    "long": 116.4,
                    "poll": "0s",
                },
            }
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": "hotline",
                "department": "bench",
                "secret": SECRET,
                "reply_url": server.url + "/replies",
                "platform": "hotline",
            }
        ],
    )
    count = SqlCount(paused=True)

    async def opened(url: str, *args: object, **kw: object) -> SqlStore:
        return counted_store(await open_store(url, *args, **kw), count)  # type: ignore[arg-type]

    monkeypatch.setattr(daemon_module, "open_store", opened)
    async with running_bridge(cfg, in_memory=True) as daemon:
        assert daemon.ctx is not None
        platform.push_url = f"http://127.0.0.1:{daemon.http_port}/hooks/sources/hotline"
        count.paused = False
        for n in range(INQUIRIES):
            item = {
                "external_id": f"rt-{n}",
                "kind": "mention",
                "author": {"id": f"uid-{n}", "handle": f"citizen{n}"},
                "text": TEXTS[n % len(TEXTS)].format(n=n + 3),
                "created_at": "2026-12-01T09:30:00+08:00",
                "thread": {"root_id": f"rt-{n}"},
            }
            assert await platform.push([item]) == 202

        async def answered() -> bool:
            return len(platform.reply_list()) >= INQUIRIES

        await eventually(answered)
        count.paused = True
    print(count.report())  # shown when it fails: which statements, from which stage
    postgres = store_url.startswith("postgresql")
    assert count.transactions <= 10 * INQUIRIES
    assert count.working_statements <= (46 if postgres else 39) * INQUIRIES
    # no audit chain-head read once the process knows the head
    assert count.by_sql["SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"] <= 1
