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

from bridge.security.keyring import Keyring
from bridge.store.audit import Checkpoint, Verdict
from bridge.store.credentials import StoredCredential
from bridge.store.drivers import Database
from bridge.store.flood import ConversationStart
from bridge.store.held import HeldCommand, HeldRow
from bridge.store.inquiries import KEEP, Keep
from bridge.store.operations import OperationRow
from bridge.store.operators import (
    OperatorChange,
    OperatorCredentials,
    OperatorRow,
    OperatorSession,
)
from bridge.store.pushes import KeptPush
from bridge.store.reports import (
    InquirySearch,
    OpenTicket,
    RateInquiry,
    RateTicket,
    StartSpan,
    TicketEventRow,
)
from bridge.store.reviews import HeldReview, ReviewHold
from bridge.store.rows import (
    AccountBacklog,
    AppliedEvent,
    CaseExtension,
    CaseNote,
    CreateAttempt,
    FollowUpDelivery,
    IncidentCase,
    IncidentRow,
    KnownCase,
    NewInquiry,
    QueuePage,
    ReplyClaim,
    ReplyCopy,
    StoredInquiry,
    StoredReply,
    StoredTicket,
)
from bridge.store.surveys import ParsedAnswer, SurveyAsk, SurveyResult
from schemas.states import ReviewState
from schemas.vocab import IncidentRole


class Store(Protocol):
    """Everything a role may ask of the durable state. No SQL and no driver here: callers
    pass and get typed rows, and states as their enums."""

    def transaction(self) -> AbstractAsyncContextManager[Store]:
        """A store whose statements commit together, or not at all."""
        ...

    @property
    def database(self) -> Database: ...

    async def migrate(self) -> int: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def record_audit(self, action: str, **fields: Any) -> None: ...

    async def verify_audit(
        self, expect: str | Checkpoint | None = None, keys: Keyring | None = None
    ) -> Verdict: ...

    async def audit_checkpoint(self) -> Checkpoint: ...

    async def audit_records_for(self, inquiry_id: str) -> list[dict[str, Any]]: ...

    async def recent_audit(
        self, limit: int = 100, actions: Sequence[str] | None = None
    ) -> list[dict[str, Any]]: ...

    async def get_cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, cursor: str | None, *, expected: object = ...) -> bool:
        """Compare-and-set when ``expected`` (the cursor read) is given; True if written."""
        ...

    async def record_once(self, kind: str, key: str) -> bool: ...

    async def record_inquiry(self, inquiry: NewInquiry) -> bool: ...

    async def update_inquiry(
        self,
        inquiry_id: str,
        *,
        state: str | Keep | None = KEEP,
        reason: str | Keep | None = KEEP,
        department: str | Keep | None = KEEP,
        category: str | Keep | None = KEEP,
        ticket_id: str | Keep | None = KEEP,
        confidence: float | Keep | None = KEEP,
        explanation: str | Keep | None = KEEP,
        conversation: str | Keep | None = KEEP,
    ) -> None:
        """Set the named fields (``None`` writes NULL; a field not named is kept)."""
        ...

    async def advance_inquiry(self, inquiry_id: str, from_state: str, state: str) -> bool: ...

    async def get_inquiry(self, inquiry_id: str) -> StoredInquiry | None: ...

    async def inquiries_awaiting_acknowledgement(
        self, since: str, *, mark: str
    ) -> list[StoredInquiry]: ...

    async def inquiry_and_open_surveys(
        self, inquiry_id: str, platform: str, account: str
    ) -> tuple[StoredInquiry | None, int]:
        """``get_inquiry`` and ``open_surveys_of`` in one statement."""
        ...

    async def ticket_and_inquiry(
        self, department: str, ticket_id: str
    ) -> tuple[StoredTicket | None, StoredInquiry | None]:
        """A ticket and its inquiry in one statement."""
        ...

    async def create_records(
        self, reference: str
    ) -> tuple[StoredTicket | None, CreateAttempt | None]:
        """``ticket_by_reference`` and ``get_create_attempt`` in one statement."""
        ...

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

    async def open_native_statuses(
        self, department: str, final: Sequence[str]
    ) -> dict[str, str]: ...

    async def open_tickets_after(
        self, after: tuple[str, str] | None, limit: int, final: Sequence[str]
    ) -> list[tuple[StoredTicket, str | None]]: ...

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
        read: StoredTicket | None = None,
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
        before_any_status: bool = False,
    ) -> bool: ...

    async def get_reply(self, reply_id: str) -> StoredReply | None: ...

    async def list_replies(
        self, state: str | None = None, inquiry_id: str | None = None
    ) -> list[StoredReply]: ...

    async def approval_queue_mark(self) -> tuple[int, str | None]: ...

    async def mark_editing(self, reply_id: str, operator: str, until: str, now: str) -> None: ...

    async def stop_editing(self, reply_id: str, operator: str) -> None: ...

    async def editing_now(self, now: str) -> list[tuple[str, str]]: ...

    async def supersede_obsolete_drafts(self) -> int: ...

    async def approval_queue(
        self,
        *,
        department: str | None = None,
        platform: str | None = None,
        account: str | None = None,
        status: str | None = None,
        category: str | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> QueuePage: ...

    async def decide_reply(
        self,
        reply_id: str,
        *,
        decision: str,
        actor: str,
        text: str | None = None,
        reason: str | None = None,
        version: int | None = None,
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
        dead_owners: Sequence[str] = (),
    ) -> ReplyClaim: ...

    async def live_claim_owners(
        self, platform: str, account: str, now: datetime | None = None
    ) -> list[str]: ...

    async def finish_post(
        self,
        claim: ReplyClaim,
        *,
        state: str,
        external_ids: list[str],
        outcome: str,
        now: datetime | None = None,
        sweep_at: datetime | None = None,
        calls_used: int | None = None,
        kept_copy: int | None = None,
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
        looks: int | None = None,
    ) -> None: ...

    async def fail_post(
        self, claim: ReplyClaim, failure: str, now: datetime | None = None
    ) -> None: ...

    async def retry_reply(self, reply_id: str, actor: str = "bridge") -> bool: ...

    async def start_copy(self, reply_id: str, now: datetime | None = None) -> int: ...

    async def end_copy(
        self,
        reply_id: str,
        attempt: int,
        *,
        answer: str,
        fate: str,
        external_ids: Sequence[str] = (),
        detail: str | None = None,
    ) -> None: ...

    async def list_copies(self, reply_id: str) -> list[ReplyCopy]: ...

    async def record_copies(self, reply: StoredReply, copies: Sequence[ReplyCopy]) -> None: ...

    async def replies_of_posts(
        self, platform: str, account: str, external_ids: Sequence[str]
    ) -> dict[str, str]: ...

    async def due_sweeps(
        self, now: datetime, accounts: Sequence[tuple[str, str]], limit: int = 50
    ) -> list[StoredReply]: ...

    async def claim_sweep(self, reply_id: str, expected: str, until: datetime) -> bool: ...

    async def set_sweep(self, reply_id: str, sweep_at: datetime | None, looks: int) -> None: ...

    async def get_follow_up_delivery(self, inquiry_id: str) -> FollowUpDelivery | None: ...

    async def follow_up_deliveries(self, inquiry_ids: Sequence[str]) -> list[FollowUpDelivery]: ...

    async def claim_follow_up_delivery(
        self,
        *,
        inquiry_id: str,
        department: str,
        ticket_id: str,
        channel: str,
        reference: str | None,
        expected_updated_at: str | None,
    ) -> bool: ...

    async def settle_follow_up_delivery(
        self,
        inquiry_id: str,
        *,
        state: str,
        department: str,
        ticket_id: str,
        channel: str,
        linked_id: str | None = None,
        detail: str | None = None,
    ) -> None: ...

    async def prune_post_calls(self, older_than: datetime) -> None: ...

    async def outbox_backlog(self) -> list[AccountBacklog]: ...

    async def unannounced_posts(self, limit: int = 100) -> list[StoredReply]: ...

    async def mark_announced(self, reply_id: str) -> None: ...

    # ---------------------------------------------------------------- triage holds
    async def hold_review(self, hold: ReviewHold) -> None: ...

    async def add_note(self, note_id: str, inquiry_id: str, author: str, text: str) -> CaseNote: ...

    async def notes_for(self, inquiry_id: str) -> list[CaseNote]: ...

    # kept answers of the console's costly pages (``bridge.store.kept``)
    async def kept_answer(self, key: str) -> tuple[str, str] | None: ...

    async def keep_answer(self, key: str, counted_at: datetime, body: str) -> None: ...

    async def request_extension(self, ext: CaseExtension) -> CaseExtension: ...

    async def get_extension(self, extension_id: str) -> CaseExtension | None: ...

    async def extensions_for(self, inquiry_id: str) -> list[CaseExtension]: ...

    async def decide_extension(self, extension_id: str, state: str, actor: str) -> bool: ...

    async def approved_deadlines(self) -> dict[tuple[str, str, int], str]: ...

    async def return_to_review(self, hold: ReviewHold) -> bool: ...

    async def settle_returned(self, inquiry_id: str, actor: str) -> bool: ...

    async def get_review(self, inquiry_id: str) -> HeldReview | None: ...

    async def reviews_in(
        self,
        states: Sequence[ReviewState],
        *,
        limit: int | None = None,
        unreleased: bool = False,
        decided_before: str | None = None,
        order: str = "held",
    ) -> list[HeldReview]: ...

    async def check_review(
        self,
        inquiry_id: str,
        category: str,
        *,
        actor: str,
        from_state: ReviewState,
        to_state: ReviewState | None,
    ) -> bool: ...

    async def expire_reviews(self) -> int: ...

    async def dismiss_review(self, inquiry_id: str, actor: str) -> bool: ...

    async def mark_review_released(self, inquiry_id: str) -> None: ...

    # ---------------------------------------------------------------- flood limit
    async def admit_start(
        self,
        start: ConversationStart,
        *,
        now: datetime,
        window_start: datetime,
        overall: int,
        own: int,
    ) -> bool: ...

    # ---------------------------------------------------------------- kept pushes
    async def keep_push(self, push: KeptPush, *, owner: str, until: datetime) -> bool: ...

    async def push_published(self, push_key: str, *, now: datetime) -> None: ...

    async def is_push_published(self, push_key: str) -> bool | None: ...

    async def claim_unpublished_pushes(
        self, *, owner: str, now: datetime, until: datetime, limit: int = 100
    ) -> list[KeptPush]: ...

    async def release_push_claims(self, owner: str, push_key: str | None = None) -> int: ...

    async def unpublished_pushes(self) -> int: ...

    async def forget_published_pushes(self, *, before: datetime) -> int: ...

    # ---------------------------------------------------------------- held commands
    async def hold_command(self, command: HeldCommand, *, now: datetime) -> None: ...

    async def held_counts(self) -> dict[str, dict[str, int]]: ...

    async def releasable_commands(
        self,
        department: str,
        *,
        now: datetime,
        operation: str | None = None,
        limit: int | None = None,
    ) -> list[HeldRow]: ...

    async def claim_held(
        self,
        row: HeldRow,
        *,
        owner: str,
        now: datetime,
        until: datetime,
        department: str,
        actor: str,
        why: str,
    ) -> bool: ...

    async def unclaim_held(
        self, row: HeldRow, *, owner: str, department: str, actor: str, error: str
    ) -> None: ...

    async def drop_held(self, command_id: str, owner: str) -> None: ...

    # ---------------------------------------------------------------- credentials
    async def stored_credentials(self) -> list[StoredCredential]: ...

    async def put_credential(
        self, subject: str, field: str, sealed: str, *, actor: str, now: datetime
    ) -> int: ...

    async def supersede_credential(
        self, row: StoredCredential, *, actor: str, why: str
    ) -> bool: ...

    async def reseal_credentials(
        self, resealed: Sequence[tuple[StoredCredential, str]], *, actor: str
    ) -> None: ...

    # ---------------------------------------------------------------- operators
    async def add_operator(
        self, name: str, role: str, password_hash: str, *, actor: str, now: datetime
    ) -> bool: ...

    async def change_operator(
        self, name: str, change: OperatorChange, *, actor: str, now: datetime
    ) -> bool: ...

    async def list_operators(self) -> list[OperatorRow]: ...

    async def operator_credentials(self, name: str) -> OperatorCredentials | None: ...

    async def open_session(
        self,
        session_hash: str,
        operator: str,
        csrf_token: str,
        *,
        now: datetime,
        expires: datetime,
        client: str | None,
    ) -> None: ...

    async def session(self, session_hash: str) -> OperatorSession | None: ...

    async def close_session(self, session_hash: str) -> None: ...

    async def signin_failures(
        self, keys: tuple[str, ...], since: datetime
    ) -> dict[str, tuple[int, str | None]]: ...

    async def record_signin_failure(
        self,
        keys: tuple[str, ...],
        *,
        now: datetime,
        forget_before: datetime,
        name: str,
        client: str,
        failures: int,
        locked: bool,
    ) -> None: ...

    async def forget_signin_failures(self, key: str) -> None: ...

    # ---------------------------------------------------------------- operation status
    async def write_operation_status(self, row: OperationRow) -> None: ...

    async def operation_statuses(self) -> list[OperationRow]: ...

    # ---------------------------------------------------------------- reports, console
    async def search_inquiries(self, search: InquirySearch) -> list[dict[str, Any]]: ...

    async def count_started(self, spans: Sequence[StartSpan]) -> int: ...

    async def tickets_started(
        self, spans: Sequence[StartSpan], *, limit: int | None = None
    ) -> list[OpenTicket]: ...

    async def extended_open_tickets(self, department: str | None = None) -> list[OpenTicket]: ...

    async def tickets_of_inquiry(self, inquiry_id: str) -> list[StoredTicket]: ...

    async def ticket_events(self, department: str, ticket_id: str) -> list[TicketEventRow]: ...

    async def first_applied(self, statuses: Sequence[str]) -> dict[tuple[str, str], str]: ...

    async def applied_statuses(self) -> dict[tuple[str, str], list[str]]: ...

    async def post_calls_used(self, platform: str, account: str, since: datetime) -> int: ...

    async def rate_inquiries(
        self, since: str, until: str, posted: str, awaiting: Sequence[str], queued: Sequence[str]
    ) -> list[RateInquiry]: ...

    async def rate_tickets(
        self, since: str, until: str, final: Sequence[str]
    ) -> list[RateTicket]: ...

    async def ranked_inquiries(
        self, since: str, until: str, left_out: Sequence[str], posted: str
    ) -> list[tuple[str, str, str, str, str | None, int]]: ...

    async def unanswered_asked(
        self,
        since: str,
        until: str,
        left_out: Sequence[str],
        posted: str,
        group: tuple[str, str, str],
        hour: str,
        next_hour: str,
    ) -> list[str]: ...

    async def ranked_tickets(
        self, since: str, until: str, final: Sequence[str]
    ) -> list[tuple[str, str, str, str, str, str | None, bool, int]]: ...

    async def open_created(
        self, final: Sequence[str], group: tuple[str, str, str, str], hour: str, next_hour: str
    ) -> list[str]: ...

    async def survey_counts(
        self, since: datetime, until: datetime
    ) -> list[tuple[str, str, str, str, bool | None, str | None, int]]: ...

    async def month_marks(
        self, bounds: Sequence[str], departments: Sequence[str]
    ) -> dict[int, tuple[int, ...]]: ...

    async def last_replies(self, posted: str) -> dict[tuple[str, str], str]: ...

    async def inspection_counts(
        self,
        since: str,
        until: str,
        late_before: str,
        left_out: Sequence[str],
        posted: str,
        awaiting: Sequence[str],
        queued: Sequence[str],
    ) -> list[tuple[str, str, str, int]]: ...

    async def inspection_answers(
        self, since: str, until: str, left_out: Sequence[str], posted: str
    ) -> list[tuple[str, str, str, str]]: ...

    async def period_inquiry_hours(
        self, since: str, until: str, through: bool, left_out: Sequence[str], appended: str
    ) -> list[tuple[str, str, bool, int]]: ...

    async def period_first_replies(
        self, since: str, until: str, through: bool, left_out: Sequence[str], posted: str
    ) -> list[tuple[str, str, str]]: ...

    async def ignored_reasons(
        self, since: str, until: str, through: bool, ignored: str
    ) -> dict[str | None, int]: ...

    async def first_inquiry_at(self) -> str | None: ...

    async def unanswered_hours(
        self,
        left_out: Sequence[str],
        posted: str,
        backlog: Sequence[str],
        limited: Sequence[str],
    ) -> list[dict[str, Any]]: ...

    async def unanswered_in_hour(
        self,
        left_out: Sequence[str],
        posted: str,
        backlog: Sequence[str],
        group: dict[str, Any],
        next_hour: str,
    ) -> list[tuple[str, str]]: ...

    async def open_ticket_hours(
        self, final: Sequence[str], limited: Sequence[str]
    ) -> list[tuple[str, str, str, int]]: ...

    async def open_ticket_times(
        self, final: Sequence[str], department: str, category: str, hour: str, next_hour: str
    ) -> list[str]: ...

    async def period_tickets(
        self, since: str, until: str, through: bool, final: Sequence[str]
    ) -> tuple[dict[str, int], list[RateTicket]]: ...

    async def final_hours(
        self, since: str, until: str, through: bool, final: Sequence[str]
    ) -> list[tuple[str, str, int]]: ...

    async def reply_counts(
        self, since: str, until: str, through: bool, posted: str, awaiting: str
    ) -> dict[str, tuple[int, int]]: ...

    async def record_survey_result(
        self,
        *,
        department: str,
        ticket_id: str,
        cycle: int,
        inquiry_id: str,
        platform: str,
        account: str,
        answer: ParsedAnswer | None,
        asks: int,
        asked_at: datetime,
        concluded_at: datetime,
    ) -> SurveyResult: ...

    async def survey_results(
        self, since: datetime, until: datetime, department: str | None = None
    ) -> list[SurveyResult]: ...

    async def schedule_survey(
        self,
        *,
        department: str,
        ticket_id: str,
        cycle: int,
        inquiry_id: str,
        platform: str,
        account: str,
        due_at: datetime,
    ) -> bool: ...

    async def survey_asks_due(self, now: datetime) -> list[SurveyAsk]: ...

    async def survey_asks_silent(self, asked_before: datetime) -> list[SurveyAsk]: ...

    async def open_survey_for(self, inquiry_id: str) -> SurveyAsk | None: ...

    async def open_surveys_of(self, platform: str, account: str) -> int: ...

    async def get_survey_ask(
        self, department: str, ticket_id: str, cycle: int
    ) -> SurveyAsk | None: ...

    async def move_survey_ask(
        self,
        ask: SurveyAsk,
        *,
        from_state: str,
        to_state: str,
        asked_at: datetime | None = None,
        unclear: str | None = None,
        outcome: str | None = None,
    ) -> bool: ...
    # ---------------------------------------------------------------- incidents
    async def lock_incidents(self, department: str) -> None:
        """Inside a transaction: decide this department's cases one at a time."""
        ...

    async def known_cases(
        self, department: str, *, after_seq: int, written_since: datetime, limit: int = 5000
    ) -> list[KnownCase]: ...

    async def last_case_seq(self, department: str) -> int: ...

    async def get_incident_case(self, inquiry_id: str) -> IncidentCase | None: ...

    async def get_incident(self, incident_id: str) -> IncidentRow | None: ...

    async def incident_cases(self, incident_id: str) -> list[IncidentCase]: ...

    async def merged_cases(self, lead_inquiry: str) -> list[IncidentCase]: ...

    async def record_incident_case(
        self,
        *,
        inquiry_id: str,
        incident_id: str,
        department: str,
        category: str,
        role: IncidentRole,
        lead_inquiry: str | None,
        similarity: float,
        matched: str | None,
        text: str,
        written_at: datetime,
        becomes_lead: bool,
    ) -> IncidentCase: ...

    async def merge_incidents(self, into: str, others: Sequence[str]) -> None: ...

    async def surge_count(
        self, incident_id: str, category: str, since: datetime, until: datetime
    ) -> tuple[int, str | None, int]: ...

    async def mark_surge(
        self,
        incident_id: str,
        *,
        category: str,
        size: int,
        at: datetime,
        public_answer_due: datetime,
        places: str,
        by: str,
    ) -> bool: ...

    async def surge_announced(self, incident_id: str) -> None: ...

    async def record_public_answer(
        self, incident_id: str, *, actor: str, link: str | None
    ) -> bool: ...

    async def split_case(self, inquiry_id: str, *, actor: str) -> IncidentCase | None: ...

    async def join_incidents(self, into: str, other: str, *, actor: str) -> bool: ...

    async def surged_incidents(self, department: str | None = None) -> list[IncidentRow]: ...

    async def incident_sizes(self, incident_ids: Sequence[str]) -> dict[str, int]: ...
