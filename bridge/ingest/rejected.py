"""Items a source could not read: kept where an operator sees them, and replayable.

One bad item (a lone UTF-16 surrogate, a missing field, a number out of range, a body nested
too deeply) must never block a stream. The adapter skips it and reports a ``RejectedItem``; the
ingest loop hands it here before it stores the cursor, so the cursor moves on and nothing is
lost:

- it is published with confirms to the dead-letter queue ``<exchange>.ingest.dead`` (through the
  existing dead-letter exchange, routing key ``ingest``), with the reason in
  ``x-govbridge-reason`` like every other dead letter. A queue, not a table: it is where
  operators already look (``govbridge dlq list``), it needs no migration, and every process
  of a cluster writes to the same place;
- ``govbridge_messages_dead_lettered{stage="ingest"}`` and
  ``govbridge_inquiries{outcome="rejected"}`` count it, and an ``ingest_rejected`` alert for the
  account says how many and where to look;
- ``govbridge dlq replay --stage ingest`` gives the raw item back to the account's adapter
  (``parse_item``, after a fix) and publishes the inquiry it now yields.

The body is ``{"account", "adapter", "handle", "platform", "external_id", "raw"}``: the item as
the platform sent it, which may hold a citizen's words, so ``dlq list`` shows only the ids.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import structlog

from adapters.base import RejectedItem
from bridge.runtime.broker import UnencodableMessage, encode_message
from bridge.runtime.deadletters import dead_letter
from schemas import routing, stages
from schemas.config import AccountConfig
from schemas.messages import Inquiry

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.ingest")

STAGE = stages.INGEST.name
ACCOUNT_HEADER = "x-govbridge-account"


def encodable(items: list[Inquiry]) -> tuple[list[Inquiry], list[RejectedItem]]:
    """The inquiries that can be published, and the others as rejected items."""
    good: list[Inquiry] = []
    bad: list[RejectedItem] = []
    for item in items:
        try:
            encode_message(item)
        except UnencodableMessage as exc:
            raw = json.dumps(item.model_dump(mode="json"), ensure_ascii=True).encode()
            bad.append(RejectedItem(reason=exc.args[0], raw=raw, external_id=item.external_id))
            continue
        good.append(item)
    return good, bad


def body_of(account: AccountConfig, item: RejectedItem) -> bytes:
    doc: dict[str, Any] = {
        "account": account.key,
        "adapter": account.adapter,
        "handle": account.handle,
        "platform": account.platform_name,
        "external_id": item.external_id,
        "raw": item.raw.decode("utf-8", "replace"),
    }
    return json.dumps(doc, ensure_ascii=True).encode()


async def keep(ctx: BridgeContext, account: AccountConfig, items: list[RejectedItem]) -> None:
    """Dead-letter every rejected item (confirmed), count it and raise the account's alert."""
    if not items:
        return
    key = account.key
    platform = account.platform_name
    for item in items:
        await dead_letter(
            ctx.broker,
            STAGE,
            body_of(account, item),
            reason=item.reason,
            reason_limit=500,
            routing_key=routing.inquiry_received(platform),
            type_="RejectedItem",
            headers={ACCOUNT_HEADER: key},
        )
        ctx.metrics.dead_lettered.labels(STAGE, "unreadable").inc()
        ctx.metrics.inquiries.labels(platform, "rejected").inc()
        log.error(
            "unreadable item skipped and kept for the operator",
            account=key,
            external_id=item.external_id,
            reason=item.reason,
        )
    counts = ctx.rejected_counts
    counts[key] = counts.get(key, 0) + len(items)
    ctx.alerts.raise_(
        "ingest_rejected",
        key,
        f"{counts[key]} unreadable item(s) skipped; see govbridge dlq list --stage ingest",
    )
