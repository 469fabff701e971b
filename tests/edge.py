"""A bridge with both hook endpoints and the admin API on a real RabbitMQ, and a tap that sees
everything they publish: shared by the HTTP edge tests and the fuzz test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from adapters.simulators.rest import demo_ticketing_config
from bridge.daemon import Daemon
from bridge.signing import sign
from bridge.topology import Topology
from schemas.config import BrokerConfig, GovbridgeConfig
from tests.conftest import AMQP_URL, bridge_config, running_bridge

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
class Tap:
    """Our own exclusive queue bound to everything the hooks publish."""

    broker: BrokerConfig
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _conn: Any = None

    async def __aenter__(self) -> Tap:
        self._conn = await aio_pika.connect_robust(AMQP_URL)
        ch = await self._conn.channel()
        await Topology(self.broker).declare(ch)
        queue = await ch.declare_queue("", exclusive=True, auto_delete=True)
        for key in ("inquiry.received.#", "ticket.updated.#"):
            await queue.bind(self.broker.exchange, routing_key=key)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.seen.append((message.routing_key or "", json.loads(message.body)))

    def ids(self) -> list[str]:
        """External ids of published inquiries and event ids of published ticket events."""
        return [doc.get("external_id") or doc["event_id"] for _, doc in self.seen]


@dataclass
class Edge:
    daemon: Daemon
    tap: Tap

    @property
    def port(self) -> int:
        assert self.daemon.http_port is not None
        return self.daemon.http_port


@asynccontextmanager
async def edge_bridge(tmp_path: Path, **http: Any) -> AsyncIterator[Edge]:
    cfg = edge_config(tmp_path, **http)
    async with Tap(cfg.broker) as tap, running_bridge(cfg, ROLES) as daemon:
        yield Edge(daemon, tap)
