"""``Store``: what stages may ask of the durable state. ``SqlStore`` (``bridge.store.sql``) is
the implementation; a test double or another repository can stand in for it by satisfying
this protocol. What each call guarantees (idempotence, transactions, order) is documented on
``SqlStore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from bridge.store.drivers import Database, Executor
from bridge.store.rows import (
    AppliedEvent,
    CreateAttempt,
    ReplyClaim,
    StoredInquiry,
    StoredReply,
    StoredTicket,
)


class Store(Protocol):
    db: Executor

    def transaction(self) -> AbstractAsyncContextManager[Store]:
        """A store whose statements commit together, or not at all."""
        ...

    def fault(self, point: str) -> None: ...

    @property
    def database(self) -> Database: ...

    async def migrate(self) -> int: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def record_audit(self, action: str, **fields: Any) -> None: ...

    async def get_cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, cursor: str | None, *, expected: object = ...) -> bool:
        """Compare-and-set when ``expected`` (the cursor read) is given; True if written."""
        ...

    async def record_once(self, kind: str, key: str) -> bool: ...

    async def record_inquiry(self, **row: Any) -> bool: ...

    async def update_inquiry(self, inquiry_id: str, **fields: Any) -> None: ...

    async def advance_inquiry(self, inquiry_id: str, from_state: str, state: str) -> bool: ...

    async def get_inquiry(self, inquiry_id: str) -> StoredInquiry | None: ...

    async def list_inquiries(self) -> list[StoredInquiry]: ...

    async def claim_thread(self, thread_key: str, inquiry_id: str, reference: str) -> str: ...

    async def thread_owner(self, thread_key: str) -> str | None: ...

    async def get_ticket(self, department: str, ticket_id: str) -> StoredTicket | None: ...

    async def ticket_by_reference(self, reference: str) -> StoredTicket | None: ...

    async def record_ticket(
        self,
        *,
        department: str,
        ticket_id: str,
        reference: str,
        inquiry_id: str,
        thread_key: str,
        status: str,
        status_rank: int,
        native_status: str,
        status_at: str,
    ) -> bool: ...

    async def list_tickets(self, department: str | None = None) -> list[StoredTicket]: ...

    async def apply_status(
        self,
        *,
        department: str,
        ticket_id: str,
        event_id: str,
        status: str,
        status_rank: int,
        native_status: str,
        occurred_at: str,
    ) -> AppliedEvent: ...

    async def get_create_attempt(self, reference: str) -> CreateAttempt | None: ...

    async def claim_create(
        self,
        reference: str,
        department: str,
        inquiry_id: str,
        *,
        expected_updated_at: str | None = None,
        command_json: str | None = None,
    ) -> bool: ...

    async def decide_reconciliation(
        self, reference: str, *, decision: str, actor: str, ticket_id: str | None = None
    ) -> bool: ...

    async def create_attempt_for_inquiry(self, inquiry_id: str) -> CreateAttempt | None: ...

    async def creates_in_flight(self, department: str) -> bool: ...

    async def set_create_state(
        self, reference: str, state: str, ticket_id: str | None = None, detail: str | None = None
    ) -> None: ...

    async def list_create_attempts(self, state: str | None = None) -> list[CreateAttempt]: ...

    async def add_reply(
        self,
        *,
        reply_id: str,
        inquiry_id: str,
        platform: str,
        account: str,
        department: str,
        status: str | None,
        templated: bool,
        state: str,
        request_json: str,
        cycle: int = 0,
    ) -> bool: ...

    async def get_reply(self, reply_id: str) -> StoredReply | None: ...

    async def list_replies(
        self, state: str | None = None, inquiry_id: str | None = None
    ) -> list[StoredReply]: ...

    async def decide_reply(
        self,
        reply_id: str,
        *,
        decision: str,
        actor: str,
        text: str | None = None,
        reason: str | None = None,
    ) -> bool: ...

    async def mark_reply(
        self,
        reply_id: str,
        state: str,
        *,
        external_ids: list[str] | None = None,
        outcome: str | None = None,
        only_from: Sequence[str] | None = None,
    ) -> bool: ...

    async def inquiry_by_post(
        self, platform: str, account: str, external_id: str
    ) -> StoredInquiry | None: ...

    async def inquiry_answered_by_post(
        self, platform: str, account: str, external_id: str
    ) -> StoredInquiry | None: ...

    async def conversation_inquiries(self, owner: str) -> list[StoredInquiry]: ...

    async def claim_reply(
        self,
        platform: str,
        account: str,
        *,
        owner: str,
        lease: timedelta,
        quota: tuple[int, timedelta] | None = None,
        now: datetime | None = None,
    ) -> ReplyClaim: ...

    async def finish_post(
        self,
        claim: ReplyClaim,
        *,
        state: str,
        external_ids: list[str],
        outcome: str,
        now: datetime | None = None,
    ) -> bool: ...

    async def release_post(
        self,
        claim: ReplyClaim,
        *,
        uncertain: bool,
        not_before: datetime | None = None,
        failure: str | None = None,
        counts: bool = True,
        calls_used: int = 1,
        now: datetime | None = None,
    ) -> None: ...

    async def fail_post(
        self, claim: ReplyClaim, failure: str, now: datetime | None = None
    ) -> None: ...

    async def retry_reply(self, reply_id: str, actor: str = "bridge") -> bool: ...

    async def prune_post_calls(self, older_than: datetime) -> None: ...

    async def outbox_backlog(self) -> list[dict[str, Any]]: ...

    async def unannounced_posts(self, limit: int = 100) -> list[StoredReply]: ...

    async def mark_announced(self, reply_id: str) -> None: ...
