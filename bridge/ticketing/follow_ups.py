"""Follow-ups that reach the officials even where the ticket system takes no update.

A citizen's follow-up is appended to their conversation's ticket where the ticket system has
an API for it. Where it has none (a plain Open311 server without ``servicerequestupdates``, a
REST system configured without an ``append`` endpoint), the department chooses another way
(``[departments.follow_ups]``, ``schemas.config.FollowUpConfig``):

- ``new_request``: a new request in the same ticket system whose description names the
  original ticket ("原工单 X"), linked to it in the store. Exactly once, like a ticket's
  create: the request is made under the lease ``create:<reference>`` (tied to the process's
  life, ``bridge.ticketing.create_lease``) and "attempted" is recorded before it. A redelivery
  that finds an attempt while the lease is held waits a second; with the lease free its holder
  is gone, so it looks the request up by its own reference (``find_by_reference``) at once,
  and again once the attempt is ``create_settle`` old before creating. A live holder that got
  no answer marks the attempt, which is then looked up only after ``create_lease``. Where the
  backend cannot be searched the outcome is recorded as unknown rather than risking a second
  request.
- ``webhook``: a signed HTTP POST (``X-Govbridge-Timestamp`` / ``X-Govbridge-Signature``,
  ``adapters.signing``) of the follow-up to the handling unit's URL, with ``Idempotency-Key``
  (the command id) so a receiver drops a repeat after a timeout. A 2xx answer is delivery.
- ``record`` (nothing configured): kept on the bridge's record (the ticket's trace) only.

Every outcome is a row of ``follow_up_deliveries`` (channel, state, linked request) and in the
audit trail; the reply stage words the citizen's acknowledgement from it, and promises
handling only where the follow-up reached someone who handles it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from adapters import signing
from adapters.base import (
    AuthError,
    CreatedTicket,
    PermanentError,
    TicketSystem,
    TransientError,
)
from adapters.http import HttpClient
from bridge.runtime.worker import Retry
from bridge.ticketing.create_lease import HELD_ELSEWHERE, UNCERTAIN, create_lease_name
from schemas.config import DepartmentConfig
from schemas.messages import TicketCommand, reference_for
from schemas.vocab import FollowUpChannel, InquiryState

if TYPE_CHECKING:
    from bridge.runtime.context import BridgeContext

log = structlog.get_logger("govbridge.follow_ups")

ATTEMPTED, DELIVERED, NOT_SENT, UNKNOWN, RECORDED = (
    "attempted",
    "delivered",
    "not_sent",
    "unknown",
    "recorded",
)


def linked_description(command: TicketCommand, ticket_id: str) -> str:
    """A linked request's description: it names the original ticket first, so whoever opens
    it in the ticket system finds the case it belongs to."""
    return (
        f"【市民补充·关联原工单{ticket_id}】{command.description}\n\n"
        f"原工单 {ticket_id}（govbridge 会话 {command.reference}）：市民对该工单的补充，"
        "请与原工单一并办理。"
    )


class FollowUps:
    """Delivers follow-ups the ticket system cannot take, as each department configures."""

    def __init__(self, ctx: BridgeContext) -> None:
        self.ctx = ctx
        self._clients: dict[str, HttpClient] = {}

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def deliver(
        self, system: TicketSystem, command: TicketCommand, ticket_id: str
    ) -> InquiryState:
        """Deliver one follow-up the ticket system cannot take; the inquiry's new state.
        Raises adapter errors (the ticketing stage retries or dead-letters) or ``Retry``."""
        dept = self.ctx.cfg.department(command.department)
        settled = await self.ctx.store.get_follow_up_delivery(command.inquiry.inquiry_id)
        if settled is not None and settled.state == DELIVERED:  # a redelivery: done already
            return InquiryState.FORWARDED
        if settled is not None and settled.state in (RECORDED, UNKNOWN):
            return InquiryState.KEPT_ON_RECORD
        via = dept.follow_ups.via
        if via == "webhook":
            await self._post(dept, command, ticket_id)
            await self._settle(command, ticket_id, FollowUpChannel.WEBHOOK, DELIVERED)
            return InquiryState.FORWARDED
        if via == "new_request":
            linked = await self._file_linked(system, dept, command, ticket_id)
            if linked is not None:
                return InquiryState.FORWARDED
            return InquiryState.KEPT_ON_RECORD  # delivery unknown: the citizen is told so
        await self._settle(command, ticket_id, FollowUpChannel.RECORD, RECORDED)
        log.warning(
            "follow-up kept on record only: the ticket system takes no update and"
            " departments.follow_ups names no other channel",
            department=dept.id,
            ticket_id=ticket_id,
        )
        return InquiryState.KEPT_ON_RECORD

    async def file_linked(
        self, system: TicketSystem, command: TicketCommand, ticket_id: str
    ) -> str | None:
        """A new request naming ticket ``ticket_id``, linked to it in the store, made once
        (the reopen of a ticket its system cannot reopen); its id, or None when unknown."""
        dept = self.ctx.cfg.department(command.department)
        return await self._file_linked(system, dept, command, ticket_id)

    async def _settle(
        self,
        command: TicketCommand,
        ticket_id: str,
        channel: FollowUpChannel,
        state: str,
        linked_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        await self.ctx.store.settle_follow_up_delivery(
            command.inquiry.inquiry_id,
            state=state,
            department=command.department,
            ticket_id=ticket_id,
            channel=channel,
            linked_id=linked_id,
            detail=detail,
        )
        self.ctx.metrics.tickets.labels(command.department, f"follow_up_{channel}_{state}").inc()

    # ------------------------------------------------------------------ a linked request
    async def _file_linked(
        self,
        system: TicketSystem,
        dept: DepartmentConfig,
        command: TicketCommand,
        ticket_id: str,
    ) -> str | None:
        """A new request naming the original ticket, made once; its id (``None`` when whether
        it was made cannot be known)."""
        inquiry_id = command.inquiry.inquiry_id
        row = await self.ctx.store.get_follow_up_delivery(inquiry_id)
        if row is not None and row.state == DELIVERED:
            return row.linked_id
        if row is not None and row.state == UNKNOWN:
            return None
        lease = create_lease_name(reference_for(inquiry_id))
        if not await self.ctx.leases.try_acquire(lease):
            raise Retry(
                f"linked request for {inquiry_id} in progress elsewhere",
                HELD_ELSEWHERE,
                counts=False,
            )
        try:
            return await self._file_linked_leased(system, dept, command, ticket_id)
        finally:
            await self.ctx.leases.release(lease)

    async def _file_linked_leased(
        self,
        system: TicketSystem,
        dept: DepartmentConfig,
        command: TicketCommand,
        ticket_id: str,
    ) -> str | None:
        store = self.ctx.store
        inquiry_id = command.inquiry.inquiry_id
        reference = reference_for(inquiry_id)
        channel = FollowUpChannel.NEW_REQUEST
        row = await store.get_follow_up_delivery(inquiry_id)  # again, under the lease
        if row is not None and row.state == DELIVERED:
            return row.linked_id
        if row is not None and row.state == UNKNOWN:
            return None
        expected = None if row is None else row.updated_at
        if row is not None and row.state == ATTEMPTED:
            # Started and never finished, and nobody holds its lease: its holder is gone, or
            # (``UNCERTAIN``) lived without an answer, so the backend may still commit that
            # request: only then is ``create_lease`` waited out.
            cfg = dept.ticketing
            age = datetime.now(UTC) - datetime.fromisoformat(row.updated_at)
            if (row.detail or "").startswith(UNCERTAIN) and age < cfg.create_lease:
                raise Retry(
                    f"linked request for {inquiry_id} had no answer; looked up after create_lease",
                    cfg.create_lease - age,
                    counts=False,
                )
            if not system.capabilities.search_by_reference:
                detail = (
                    "a linked request may have been made; this ticket system cannot be searched"
                )
                await self._settle(command, ticket_id, channel, UNKNOWN, detail=detail)
                log.error("linked request outcome unknown", reference=reference)
                return None
            found = await system.find_by_reference(reference)
            if found is not None:
                return await self._linked(command, ticket_id, found)
            settle = min(cfg.create_settle, cfg.create_lease)
            if age < settle:  # a request the gone holder sent may still be committing
                raise Retry(
                    f"linked request for {inquiry_id} not found yet", settle - age, counts=False
                )
            log.info("linked request taken over from a holder that is gone", reference=reference)
        claimed = await store.claim_follow_up_delivery(
            inquiry_id=inquiry_id,
            department=dept.id,
            ticket_id=ticket_id,
            channel=channel,
            reference=reference,
            expected_updated_at=expected,
        )
        if not claimed:
            raise Retry(f"linked request for {inquiry_id} claimed elsewhere", counts=False)
        link = command.model_copy(
            update={
                "action": "create",
                "reference": reference,
                "description": linked_description(command, ticket_id),
                "ticket_id": None,
            }
        )
        try:
            created = await system.create(link, idempotency_key=reference)
        except TransientError as exc:
            if exc.not_sent:
                await self._settle(command, ticket_id, channel, NOT_SENT, detail=exc.reason[:200])
            else:  # no answer: the backend may still commit it (looked up after create_lease)
                detail = (UNCERTAIN + exc.reason)[:200]
                await self._settle(command, ticket_id, channel, ATTEMPTED, detail=detail)
            raise
        except (AuthError, PermanentError) as exc:  # refused: nothing was made
            await self._settle(command, ticket_id, channel, NOT_SENT, detail=exc.reason[:200])
            raise
        return await self._linked(command, ticket_id, created)

    async def _linked(self, command: TicketCommand, ticket_id: str, linked: CreatedTicket) -> str:
        await self._settle(
            command,
            ticket_id,
            FollowUpChannel.NEW_REQUEST,
            DELIVERED,
            linked_id=linked.ticket_id,
        )
        log.info(
            "follow-up filed as a linked request", ticket_id=ticket_id, linked=linked.ticket_id
        )
        return linked.ticket_id

    # ------------------------------------------------------------------ the unit's webhook
    async def _post(self, dept: DepartmentConfig, command: TicketCommand, ticket_id: str) -> None:
        cfg = dept.follow_ups
        assert cfg.url is not None and cfg.secret is not None  # checked with the config
        client = self._clients.get(dept.id)
        if client is None:
            client = self._clients[dept.id] = HttpClient(
                f"follow-ups {dept.id}", timeout=cfg.timeout
            )
        inquiry = command.inquiry
        body = json.dumps(
            {
                "event": "follow_up",
                "department": dept.id,
                "ticket_id": ticket_id,
                "reference": command.reference,
                "follow_up_id": inquiry.inquiry_id,
                "category": command.category.value,
                "platform": inquiry.platform,
                "text": command.description,
                "written_at": inquiry.created_at.isoformat(),
            },
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": command.command_id,
            **signing.sign(cfg.secret.get_secret_value(), body),
        }
        try:
            await client.request(
                "POST", cfg.url, what=f"follow-up webhook of {dept.id}", data=body, headers=headers
            )
        except AuthError as exc:  # the unit's receiver, not the ticket system, refused
            raise PermanentError(f"follow-up webhook refused: {exc.reason}") from exc
        log.info("follow-up forwarded to the handling unit", ticket_id=ticket_id)
