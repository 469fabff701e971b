"""A bridge with both hook endpoints and the admin API on a real RabbitMQ, and a tap that sees
everything they publish: shared by the HTTP edge tests and the fuzz test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govbridge_tools.simulators.rest import demo_ticketing_config
from govbridge_tools.testing import BusTap

from adapters.signing import sign
from bridge.daemon import Daemon
from schemas.config import GovbridgeConfig
from tests.conftest import bridge_config, running_bridge

PUSH_SECRET = "edge-webhook-secret-0123456789"
CALLBACK_SECRET = "edge-callback-secret-0123456789"
ADMIN_TOKEN = "test-admin-token"
HANDLE = "hotline12345"
DEPT = "urban"
LIMIT = 64 * 1024
# Every role with an HTTP route except triage (so pushed inquiries stay queued, untouched).
ROLES = ["ingest", "sync", "ticketing", "reply", "http"]


def edge_config(tmp_path: Path, **http: Any) -> GovbridgeConfig:
    ticketing = {
        **demo_ticketing_config("http://127.0.0.1:9"),
        "poll": "0s",
        "callback_secret": CALLBACK_SECRET,
    }
    return bridge_config(
        tmp_path,
        departments=[
            {"id": DEPT, "name": "市城管委", "approval": "all-manual", "ticketing": ticketing}
        ],
        accounts=[
            {
                "adapter": "webhook",
                "handle": HANDLE,
                "department": DEPT,
                "secret": PUSH_SECRET,
                "reply_url": "http://127.0.0.1:9/replies",
                "platform": "hotline12345",
            }
        ],
        http={"admin_token": ADMIN_TOKEN, **http},
    )


def push_item(external_id: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "external_id": external_id,
        "kind": "mention",
        "author": {"id": "880001", "handle": "市民小李"},
        "text": "小区北门路灯坏了一个星期，晚上很黑，求助尽快维修",
        "created_at": datetime.now(UTC).isoformat(),
        "visibility": "public",
    }
    doc.update(overrides)
    return doc


def callback_item(event_id: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": event_id,
        "ticket_id": "T-000001",
        "status": "ASSIGNED",
        "time": datetime.now(UTC).isoformat(),
    }
    doc.update(overrides)
    return doc


def encode(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def signed(secret: str, body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), *sign(secret, body).items()]


@dataclass
class Edge:
    daemon: Daemon
    tap: BusTap  # inquiry.received.# and ticket.updated.#

    @property
    def port(self) -> int:
        assert self.daemon.http_port is not None
        return self.daemon.http_port

    def ids(self) -> list[str]:
        """External ids of published inquiries and event ids of published ticket events."""
        return [doc.get("external_id") or doc["event_id"] for doc in self.tap.bodies()]


@asynccontextmanager
async def edge_bridge(tmp_path: Path, **http: Any) -> AsyncIterator[Edge]:
    cfg = edge_config(tmp_path, **http)
    tap = BusTap(cfg.broker, ("inquiry.received.#", "ticket.updated.#"), declare=True)
    async with tap, running_bridge(cfg, ROLES) as daemon:
        yield Edge(daemon, tap)
