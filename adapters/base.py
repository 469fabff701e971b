"""What adapters are to the bridge: the two protocols every adapter implements (``Source``,
``TicketSystem``), the optional ones a stage looks for with ``isinstance`` (``PushSource``,
``ParsesItems``, ``StreamsItems``, ``FindsOwnReplies``, ``ListsOwnReplies``, ``DeletesReplies``,
``WatchesTickets``, ``DetectsCapabilities``, ``Describes``; ``ReportsHealth`` in
``adapters.circuit``), the errors
they raise, and plugin discovery.

An adapter knows its platform and nothing of RabbitMQ or the store. The runtime drives it:
it persists cursors, publishes results with confirms, and maps the errors below onto
retry, pause-with-alert, or dead-letter.

Third parties register adapters under the entry point groups ``govbridge.sources`` and
``govbridge.ticket_systems`` (value: ``package.module:AdapterClass``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, SecretStr

from schemas.config import AccountConfig, DepartmentConfig, TicketingConfig
from schemas.messages import Inquiry, ReplyRequest, TicketCommand, TicketEvent
from schemas.states import PostOutcome
from schemas.vocab import TicketStatus

SOURCE_GROUP = "govbridge.sources"
TICKET_SYSTEM_GROUP = "govbridge.ticket_systems"


# --------------------------------------------------------------------------- errors


class AdapterError(Exception):
    """Base of every error an adapter raises on purpose. ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(AdapterError):
    """Try again later (timeout, 5xx, refused connection). ``retry_after`` if the platform said.

    ``not_sent`` is True only when the request certainly had no effect on the backend (the
    connection was refused, the circuit is open, the backend answered 503, or the failure came
    before the write was sent). A timeout or a 502/504 may hide a success: ``not_sent`` False.
    """

    def __init__(
        self, reason: str, retry_after: timedelta | None = None, *, not_sent: bool = False
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.not_sent = not_sent


class RateLimited(TransientError):
    """The platform's limit is reached; wait until ``retry_after`` has passed. Nothing is lost."""


class AuthError(AdapterError):
    """Credentials are invalid/expired/revoked: pause this account or department and alert.

    Not retried automatically: a human must replace the token.
    """


class PermanentError(AdapterError):
    """This request can never succeed as it is (validation, permission): dead-letter it."""


class MalformedId(PermanentError):
    """An id in what a platform sent holds characters no id has (control characters, NUL):
    refused at the edge, a push with 400."""


class StreamUnavailable(PermanentError):
    """The server has no streaming (404, 501, streaming switched off): poll instead."""


class DuplicateContent(AdapterError):
    """The platform says this exact reply was already posted: count it as done."""


class TargetGone(AdapterError):
    """The post or comment to answer was deleted."""


# --------------------------------------------------------------------------- sources


class RateLimit(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_calls: int
    period: timedelta


class SourceCapabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_reply_chars: int
    supports_direct_messages: bool
    supports_idempotency_key: bool
    reply_rate_limit: RateLimit | None = None
    pushes: bool = False  # items arrive by webhook instead of fetch()
    splits_long_replies: bool = False  # post_reply itself splits text over max_reply_chars


@dataclass(frozen=True)
class RejectedItem:
    """An item read from the platform that cannot become an inquiry (a missing field, a number
    out of range, …). It is skipped so that it never blocks the stream, and handed to the
    runtime, which keeps it where an operator can see it and replay it (``raw`` is what the
    adapter's ``parse_item`` takes back)."""

    reason: str
    raw: bytes
    external_id: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """One step of reading: ``items`` to publish, then persist ``cursor``.

    ``more`` says a backlog is still being drained: call ``fetch(cursor)`` again at once.
    ``rejected`` are items of this step that could not be read; the cursor moves past them.
    The runtime stores ``cursor`` only after every item (and every rejected one) is kept.
    """

    items: list[Inquiry]
    cursor: str | None
    more: bool = False
    rejected: list[RejectedItem] = field(default_factory=list)
    calls: int = 1  # platform calls the step took (what an account's call budget is spent on)


@dataclass(frozen=True)
class PostedReply:
    external_ids: list[str]
    outcome: PostOutcome = PostOutcome.POSTED


@runtime_checkable
class Source(Protocol):
    """A microblog platform account: read inquiries, post replies."""

    name: ClassVar[str]
    Config: ClassVar[type[AccountConfig]]
    capabilities: SourceCapabilities

    async def fetch(self, cursor: str | None) -> FetchResult: ...

    async def post_reply(self, reply: ReplyRequest) -> PostedReply: ...

    async def check(self) -> None:
        """Raise an ``AdapterError`` if the platform is unreachable or the token is bad."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ParsesItems(Protocol):
    """Optional for sources: read one item again from a ``RejectedItem.raw`` (operator replay
    after a fix). Raise ``PermanentError`` if it still cannot be read; ``None`` for an item
    that is not an inquiry (the account's own post, say)."""

    async def parse_item(self, raw: bytes) -> Inquiry | None: ...


@runtime_checkable
class PushSource(Protocol):
    """Optional for sources whose items arrive by signed webhook push
    (``capabilities.pushes``): the key its pushes are signed with, and how a verified body
    becomes inquiries (``PermanentError`` names what is wrong with it)."""

    @property
    def push_secret(self) -> SecretStr: ...

    def parse_push(self, body: bytes) -> list[Inquiry]: ...


@runtime_checkable
class QuerySignedPush(Protocol):
    """Optional for sources that take pushes signed in the URL's query, the Weibo fan-service
    way (``adapters/fanservice.py``): a verification GET echoes ``echostr`` when
    ``push_signature_ok``; every push is checked the same way, answered within
    ``push_answer_within`` seconds, and parsed by ``parse_push``. The account is still polled."""

    @property
    def fan_service_push(self) -> bool: ...

    @property
    def push_answer_within(self) -> float: ...

    def push_signature_ok(self, query: Mapping[str, str]) -> bool: ...

    def parse_push(self, body: bytes) -> list[Inquiry]: ...


@dataclass(frozen=True)
class StreamEvent:
    """One thing read from a source's stream. ``connected``: the stream is open and
    subscribed (what happens from now on will arrive on it); ``heartbeat``: the server is
    alive, nothing new; otherwise one platform item: ``items`` to publish (none for an item
    that is not an inquiry, or one that cannot be read: the REST read rejects it) and
    ``cursor``, the platform's id of the item."""

    kind: str  # "connected" | "heartbeat" | "item"
    items: list[Inquiry] = field(default_factory=list)
    cursor: str | None = None


@dataclass(frozen=True)
class StreamSettings:
    """``heartbeat_timeout``: a stream silent (not even a heartbeat) for longer is dead;
    ``catch_up``: how often the REST read runs while streaming; reconnects back off up to
    ``max_backoff``."""

    heartbeat_timeout: timedelta
    catch_up: timedelta
    max_backoff: timedelta


@runtime_checkable
class StreamsItems(Protocol):
    """Optional for sources: items also arrive over a long-lived connection (Mastodon's
    streaming API). ``streams`` says whether the account is configured to use it.
    ``stream()`` opens one connection and yields its events until it ends (a normal end or a
    ``TransientError`` both mean: reconnect); ``StreamUnavailable`` when the server has no
    streaming. A stream never replays what was missed while disconnected: the runtime reads
    ``fetch`` from its cursor after every (re)connect and every ``settings.catch_up``."""

    @property
    def streams(self) -> bool: ...

    @property
    def stream_settings(self) -> StreamSettings: ...

    def stream(self) -> AsyncIterator[StreamEvent]: ...


@runtime_checkable
class FindsOwnReplies(Protocol):
    """Optional for sources: look for the bridge's own earlier reply in the thread.

    The outbox calls this before posting again when an earlier attempt's outcome is unknown
    (the client timed out, or the process died during the call) and the platform may have
    committed the reply anyway, e.g. a server that ignores ``Idempotency-Key``. Return the
    reply found (``outcome="already_posted"``) or ``None`` when it is certainly not there.
    """

    async def find_reply(self, reply: ReplyRequest) -> PostedReply | None: ...


@dataclass(frozen=True)
class FoundCopy:
    """One copy of a reply found in its thread: its posts' platform ids, first part first.
    ``complete`` is False when only its first parts are there (a long reply cut short)."""

    external_ids: list[str]
    complete: bool = True


@runtime_checkable
class ListsOwnReplies(Protocol):
    """Optional for sources that implement ``FindsOwnReplies``: every copy of the reply in
    its thread, in the server's order. A server that ignores ``Idempotency-Key`` and commits
    a status after the client timed out can hold two copies of one reply; the outbox keeps
    one and removes (``DeletesReplies``) or records the others."""

    async def find_copies(self, reply: ReplyRequest) -> list[FoundCopy]: ...


@runtime_checkable
class DeletesReplies(Protocol):
    """Optional for sources: delete one copy of the bridge's own reply (every part). A copy
    already gone counts as deleted; ``PermanentError`` when the platform refuses."""

    async def delete_copy(self, external_ids: list[str]) -> None: ...


@runtime_checkable
class ReadsOwnTimeline(Protocol):
    """Optional for sources: when the official account last published on its own timeline
    (its own posts, not its replies to citizens; ``None``: it has published nothing), for
    the account inspection (巡检: an account must post at least every two weeks). Weibo
    reads ``statuses/user_timeline``, Mastodon ``accounts/:id/statuses``."""

    async def last_own_post(self) -> datetime | None: ...


# --------------------------------------------------------------------------- ticket systems


class TicketCapabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    idempotent_create: bool
    search_by_reference: bool
    callbacks: bool
    extended_statuses: bool
    appends: bool = True  # False: no API takes a follow-up; the bridge keeps it on record


@dataclass(frozen=True)
class CreatedTicket:
    ticket_id: str
    status: TicketStatus = TicketStatus.RECEIVED
    native_status: str = "open"
    created_at: datetime | None = None


@dataclass(frozen=True)
class ChangesResult:
    events: list[TicketEvent]
    cursor: str | None


@runtime_checkable
class TicketSystem(Protocol):
    """A department's ticket system: create, append, learn status changes."""

    name: ClassVar[str]
    Config: ClassVar[type[TicketingConfig]]
    capabilities: TicketCapabilities

    async def create(self, command: TicketCommand, idempotency_key: str) -> CreatedTicket: ...

    async def find_by_reference(self, reference: str) -> CreatedTicket | None:
        """Look a ticket up by the bridge's reference; ``None`` if absent.

        Raise ``PermanentError`` when the backend cannot search (capability false).
        """
        ...

    async def append(self, ticket_id: str, command: TicketCommand) -> None: ...

    async def changes_since(self, cursor: str | None) -> ChangesResult: ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        """Turn a (signature-checked) callback body into events; ``PermanentError`` if invalid."""
        ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Reopens(Protocol):
    """Optional for ticket systems: reopen a final ticket (重办) after the citizen's 回访
    answer said 未解决 or 不满意; ``command.description`` carries the reading and the masked
    answer. Open311 posts a ``servicerequestupdates`` with an open status (where the server
    offers it), REST calls its configured ``reopen`` endpoint. ``can_reopen`` is False where
    this backend cannot: the bridge then files a new ticket linked to the old one."""

    @property
    def can_reopen(self) -> bool: ...

    async def reopen(self, ticket_id: str, command: TicketCommand) -> None: ...


@runtime_checkable
class WatchesTickets(Protocol):
    """Optional for ticket systems whose change feed can miss changes (a plain Open311 server
    where an official's change does not move ``updated_datetime``): before each
    ``changes_since`` the runtime names the bridge's open tickets (id → the native status it
    knows), and the adapter asks for them by id."""

    def watch(self, tickets: Mapping[str, str]) -> None: ...


@runtime_checkable
class DetectsCapabilities(Protocol):
    """Optional for ticket systems: learn what the backend offers (e.g. whether any API takes
    a follow-up) and update ``capabilities``. The runtime calls it at start; adapters also
    call it themselves on first need."""

    async def detect(self) -> TicketCapabilities: ...


@runtime_checkable
class Describes(Protocol):
    """Optional: a line saying what the adapter detected (``govbridge check --adapters``)."""

    def describe(self) -> str: ...


# --------------------------------------------------------------------------- discovery


@dataclass
class Registry:
    """Adapters by name, from entry points (loaded on first use) or registered directly."""

    group: str
    _classes: dict[str, type[Any]] = field(default_factory=dict)

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def register(self, name: str, cls: type[Any]) -> None:
        self._classes[name] = cls

    def names(self) -> list[str]:
        return sorted(set(self._classes) | set(self._entry_points()))

    def get(self, name: str) -> type[Any]:
        if name not in self._classes:
            ep = self._entry_points().get(name)
            if ep is None:
                raise KeyError(
                    f"unknown adapter {name!r}; installed {self.group}: {', '.join(self.names())}"
                )
            self._classes[name] = ep.load()
        return self._classes[name]


sources = Registry(SOURCE_GROUP)
ticket_systems = Registry(TICKET_SYSTEM_GROUP)


def make_source(account: AccountConfig) -> Source:
    """Instantiate the source adapter for an account block (already validated by its Config)."""
    cls = sources.get(account.adapter)
    cfg = cls.Config.model_validate(account.model_dump())
    source: Source = cls(cfg)
    return source


def make_ticket_system(department: DepartmentConfig) -> TicketSystem:
    cls = ticket_systems.get(department.ticketing.adapter)
    cfg = cls.Config.model_validate(department.ticketing.model_dump())
    system: TicketSystem = cls(cfg, department)
    return system
