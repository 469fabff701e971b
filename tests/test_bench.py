"""``govbridge bench`` runs small here so it can never silently break again: the whole
pipeline from outside (every key of its JSON object present, every inquiry answered), and the
triage stage alone (which once waited forever on inquiries no department owned)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AMQP_URL

ROOT = Path(__file__).resolve().parent.parent


async def bench(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "bench", "--json", *args,
        cwd=ROOT, env={**os.environ, "GOVBRIDGE_AMQP_URL": AMQP_URL},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


async def test_pipeline_bench_reports_every_key_and_answers_every_inquiry() -> None:
    report = await bench("--messages", "60", "--rate", "40")
    assert report["stage"] == "pipeline" and report["messages"] == 60
    assert report["raw_relay_msgs_per_s"] > 0 and report["e2e_inquiries_per_s"] > 0
    # the ratio is of the unrounded rates; the printed rates are rounded to 0.1
    assert report["ratio"] == pytest.approx(
        report["e2e_inquiries_per_s"] / report["raw_relay_msgs_per_s"], abs=2e-4
    )
    latency = report["latency_ms"]
    assert latency["offered_rate"] == 40
    for key in ("ingest_to_ticket", "ingest_to_first_reply"):
        assert set(latency[key]) == {"p50", "p95", "p99"}
        assert 0 < latency[key]["p50"] <= latency[key]["p95"] <= latency[key]["p99"]
    assert latency["ingest_to_ticket"]["p50"] <= latency["ingest_to_first_reply"]["p50"]
    assert report["rss_mb_peak"] > 0
    # every inquiry costs at least: received, routed, ticket created, reply requested
    assert report["publishes_per_inquiry"] >= 4
    for key in ("broker_cpu_ms_per_inquiry", "raw_relay_broker_cpu_ms_per_msg"):
        assert report[key] is None or report[key] > 0, key  # None: no local broker to read
    over_run = report["rss_mb_over_run"]
    assert set(over_run) == {"25%", "50%", "75%", "100%"}
    assert all(0 < mb <= report["rss_mb_peak"] for mb in over_run.values())
    stages = report["stages"]
    for stage in ("triage", "ticketing", "reply", "outbox"):
        assert stages[stage]["messages"] == 60, stage
        assert stages[stage]["handler_s"] > 0
    assert stages["triage"]["classify_s"] > 0 and stages["ticketing"]["http_s"] > 0
    assert stages["ticketing"]["store_s"] > 0 and stages["ingest"]["broker_s"] > 0


async def test_triage_stage_bench_finishes() -> None:
    report = await bench("--stage", "triage", "--messages", "200")
    assert report["stage"] == "triage" and report["bridge_msgs_per_s"] > 0


async def test_first_response_bench_acknowledges_every_inquiry_on_every_channel() -> None:
    report = await bench(
        "--scenario", "first-response", "--duration", "20", "--per-hour", "720",
        "--burst", "3", "--burst-every", "20", "--poll", "2s", "--calls-per-hour", "100000",
        "--timeout", "120",
    )  # fmt: skip
    assert report["scenario"] == "first-response"
    rows = {r["channel"]: r for r in report["channels"]}
    assert set(rows) == {"poll", "push", "stream"}
    for row in rows.values():
        assert row["inquiries"] > 0 and row["acknowledged"] == row["inquiries"], row
        assert row["p50_s"] is not None and row["within_3_min"] is not None
