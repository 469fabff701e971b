"""Putting messages on the bus the way tests need to: signed exactly as the bridge signs them
(``Broker.publish_raw(sign_as=…)``, the code path ``Broker.publish`` uses), or forged the way
someone with publish rights on the exchange would (their own connection, no bridge code). The
tap that sees what the bridge publishes is ``govbridge_tools.testing.BusTap``."""

from __future__ import annotations

from typing import Any

import aio_pika

from bridge.runtime.broker import Broker
from bridge.security.bus import SIGNATURE_HEADER, BusAuth
from bridge.security.keyring import Keyring
from schemas.config import BrokerConfig
from tests.conftest import AMQP_URL


async def publish_signed(
    broker: Broker, routing_key: str, body: bytes, type_: str | None = None
) -> None:
    """Raw bytes on the topic exchange, signed by ``broker`` for ``routing_key``."""
    await broker.publish_raw(
        broker.cfg.exchange, routing_key, body, type_=type_, sign_as=routing_key
    )


def signed_with(
    key: str, routing_key: str, body: bytes, type_: str | None, claim_key_id: str | None = None
) -> dict[str, Any]:
    """Signature headers made with ``key`` (not the bridge's); ``claim_key_id`` puts the
    bridge's key id in them instead of the key's own (it is visible on every message)."""
    headers = BusAuth(Keyring("bus", [key])).headers(routing_key, body, type_)
    if claim_key_id is not None:
        version, _, signed_at, mac = headers[SIGNATURE_HEADER].split(":")
        headers[SIGNATURE_HEADER] = f"{version}:{claim_key_id}:{signed_at}:{mac}"
    return headers


async def publish_forged(
    cfg: BrokerConfig,
    routing_key: str,
    body: bytes,
    type_: str | None,
    headers: dict[str, Any] | None = None,
) -> None:
    """What anyone with publish rights on the exchange can send: any key, body and headers
    (confirmed by the broker, so it is queued when this returns)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(cfg.exchange, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                type=type_,
                headers=headers or {},
            ),
            routing_key=routing_key,
        )
