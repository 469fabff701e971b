"""Configuration models: one TOML file describes the broker, store, HTTP server, departments,
the official accounts the bridge answers from, and content routes.

Adapter-specific keys of ``[[accounts]]`` and ``departments.ticketing`` are validated by the
adapter's own ``Config`` model (a subclass of the models here), so a misspelt adapter key is
reported like any other.
"""

from __future__ import annotations

import re
import string
from datetime import timedelta
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from schemas.vocab import Category, TicketStatus

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """``"60s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"not a duration: {value!r} (use e.g. '500ms', '30s', '5m', '2h', '1d')")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_SLA = re.compile(r"^\s*(\d+)\s*(wd|d|h|m)\s*$")


def _check_sla(value: str) -> str:
    if not _SLA.match(value):
        raise ValueError(
            f"not a time limit: {value!r} (use e.g. '2h', '3d', '10wd' = working days)"
        )
    return value.strip()


SlaLimit = Annotated[str, AfterValidator(_check_sla)]
Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerConfig(Strict):
    url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    exchange: Identifier = Field(
        default="govbridge", description="Name of the topic exchange; prefixes every queue too."
    )
    prefetch: int = Field(default=32, ge=1, le=10_000)
    confirm_timeout: Duration = timedelta(seconds=10)
    connect_timeout: Duration = timedelta(seconds=30)
    retry_delays: list[Duration] = Field(
        default_factory=lambda: [timedelta(seconds=s) for s in (5, 30, 300, 3600)],
        min_length=1,
        description="Delay tiers for transient failures; the last attempt past them dead-letters.",
    )
    delivery_limit: int = Field(
        default=5, ge=1, description="Crashes per message before the broker dead-letters it."
    )
    drain_timeout: Duration = timedelta(seconds=30)
    unroutable_max_length: int = Field(
        default=1000,
        ge=1,
        description="Messages no queue is bound for (e.g. reply.posted.*, sla.* when no other"
        " system listens) are kept in <exchange>.unroutable for inspection: at most this many,"
        " the oldest dropped first.",
    )
    unroutable_ttl: Duration = Field(
        default=timedelta(days=1), description="How long an unroutable message is kept."
    )
    dead_letter_ttl: Duration = Field(
        default=timedelta(days=14),
        description="How long a dead letter is kept for inspection and replay (`govbridge dlq`)."
        " Dead letters carry the citizen's text as it arrived, personal data included, so they"
        " do not stay forever.",
    )

    @field_validator("retry_delays")
    @classmethod
    def _increasing(cls, v: list[timedelta]) -> list[timedelta]:
        if any(b < a for a, b in pairwise(v)):
            raise ValueError("retry delays must not decrease")
        return v


class StoreConfig(Strict):
    url: str = Field(default="sqlite:///./govbridge.db", pattern=r"^(sqlite|postgres(ql)?)://")


class HttpConfig(Strict):
    listen: str = Field(default="127.0.0.1:8080", pattern=r"^[^:]*:\d{1,5}$")
    admin_token: SecretStr | None = None
    session_ttl: Duration = Field(
        default=timedelta(hours=8),
        description="An operator's console session ends this long after signing in.",
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    replay_window: Duration = timedelta(minutes=5)
    header_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="A connection must send a complete request head within this time; an"
        " idle keep-alive connection is closed after it.",
    )
    body_timeout: Duration = Field(
        default=timedelta(seconds=30), description="A request body must arrive within this time."
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Connections beyond this are answered 503 and closed."
    )
    max_inflight_pushes: int = Field(
        default=256,
        ge=1,
        description="Pushes and callbacks awaiting the broker's confirm at once; beyond this"
        " they are answered 503 with Retry-After.",
    )


class TicketingConfig(BaseModel):
    """Which ticket system a department uses; the adapter's own model checks the rest."""

    model_config = ConfigDict(extra="allow")

    adapter: str
    callback_secret: SecretStr | None = None
    poll: Duration = timedelta(seconds=60)
    create_lease: Duration = Field(
        default=timedelta(minutes=2),
        description="How long a create in flight elsewhere is awaited before it is presumed"
        " crashed and the ticket is looked up (or the inquiry flagged for reconciliation).",
    )


TEMPLATE_FIELDS = frozenset({"ticket_id", "deadline", "department", "status", "note", "category"})

ApprovalMode = Literal["none", "templated-auto", "all-manual"]


class DepartmentConfig(Strict):
    id: Identifier
    name: str = Field(min_length=1)
    sla: dict[str, SlaLimit] = Field(default_factory=dict)
    approval: ApprovalMode = "templated-auto"
    ticketing: TicketingConfig
    replies: dict[str, str] = Field(
        default_factory=dict, description="Reply templates by ticket status (overrides defaults)."
    )
    keep_personal_data: bool = Field(
        default=False,
        description="Pass phone/ID numbers and e-mail addresses to the ticket system unmasked"
        " (never published). Off by default: a department turns it on when its case workers"
        " must call citizens back.",
    )

    @field_validator("sla")
    @classmethod
    def _sla_keys(cls, v: dict[str, str]) -> dict[str, str]:
        allowed = {c.value for c in Category} | {"first_response"}
        for key in v:
            if key not in allowed:
                raise ValueError(f"unknown SLA key {key!r}; expected one of {sorted(allowed)}")
        return v

    @field_validator("replies")
    @classmethod
    def _reply_keys(cls, v: dict[str, str]) -> dict[str, str]:
        allowed = {s.value for s in TicketStatus} | {"holding", "note", "follow_up"}
        for key, text in v.items():
            if key not in allowed:
                raise ValueError(
                    f"unknown reply template {key!r}; expected one of {sorted(allowed)}"
                )
            try:
                names = {n for _, n, _, _ in string.Formatter().parse(text) if n is not None}
            except ValueError as exc:
                raise ValueError(f"template {key!r}: {exc}") from None
            unknown = names - TEMPLATE_FIELDS
            if unknown:
                raise ValueError(
                    f"template {key!r}: unknown placeholder {{{sorted(unknown)[0]}}};"
                    f" use {', '.join(sorted(TEMPLATE_FIELDS))}"
                )
        return v


class RateLimitConfig(Strict):
    max_calls: int = Field(ge=1)
    period: Duration


class AccountConfig(BaseModel):
    """An official account the bridge watches and answers from."""

    model_config = ConfigDict(extra="allow")

    adapter: str
    handle: str = Field(min_length=1)
    department: Identifier
    token: SecretStr | None = None
    poll: Duration = timedelta(seconds=60)
    reply_limit: RateLimitConfig | None = Field(
        default=None, description="Override the adapter's reply rate limit (posts per period)."
    )

    @property
    def platform_name(self) -> str:
        """The platform its inquiries name: the adapter's ``platform`` setting (a generic
        webhook serves many platforms), else the adapter's name."""
        declared = self.__dict__.get("platform")  # an adapter's Config may declare it
        return str(declared or (self.model_extra or {}).get("platform") or self.adapter)


class ClassifierConfig(Strict):
    """``[triage]``: how inquiries are classified.

    A learned model (shipped in the package, or ``model``) decides; ``categories.<id>`` are the
    operator's keyword rules and override it (a plain list means weight 1; when rules of several
    categories hit, the heaviest total wins). Below ``review_below`` confidence an inquiry waits
    for an official's check, at most ``review_timeout``, then goes out with the model's guess.
    """

    categories: dict[Category, dict[str, float] | list[str]] = Field(default_factory=dict)
    review_below: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Hold inquiries whose model confidence is below this for an official's "
        "check (0 = never hold).",
    )
    review_timeout: Duration = Field(
        default=timedelta(minutes=30),
        description="How long a held inquiry waits for the check before it is filed with the "
        "model's guess (so no citizen waits for an answer longer than this).",
    )
    model: str | None = Field(
        default=None, description="A model file from `govbridge triage train` (default: shipped)."
    )
    explain_top: int = Field(
        default=5, ge=1, le=20, description="Features kept as the explanation of a decision."
    )

    @field_validator("categories")
    @classmethod
    def _positive_weights(
        cls, value: dict[Category, dict[str, float] | list[str]]
    ) -> dict[Category, dict[str, float] | list[str]]:
        for cat, words in value.items():
            if isinstance(words, dict):
                for word, weight in words.items():
                    if weight <= 0:
                        raise ValueError(
                            f"{cat.value}.{word}: weight must be > 0 (rules only add "
                            "overrides; there are no default words to remove)"
                        )
            if not words:
                raise ValueError(f"{cat.value}: give at least one keyword")
        return value

    @field_validator("review_timeout")
    @classmethod
    def _bounded_wait(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(hours=1):
            raise ValueError(
                "must be between 1m and 1h: a held inquiry's citizen gets no answer meanwhile"
            )
        return value


class RouteConfig(Strict):
    keywords: list[str] = Field(min_length=1)
    department: Identifier


class SlaConfig(Strict):
    """``[sla]``: how the deadline watcher runs."""

    check_every: Duration = timedelta(minutes=5)
    warn_before: Duration = Field(
        default=timedelta(days=1), description="Publish sla.warning this long before a deadline."
    )


class OutboxConfig(Strict):
    """``[outbox]``: how approved replies are posted (see ``bridge/outbox.py``)."""

    lease: Duration = Field(
        default=timedelta(minutes=2),
        description="How long a reply being posted is held by one process; a platform call is"
        " cut off at half of it. After a crash the reply is taken again (and looked for first).",
    )
    concurrency: int = Field(
        default=4, ge=1, le=256, description="Posts in flight per account per process."
    )
    scan_every: Duration = Field(
        default=timedelta(seconds=2),
        description="How often the store is checked for waiting replies without a wake-up.",
    )

    @model_validator(mode="after")
    def _positive(self) -> OutboxConfig:
        if self.lease <= timedelta(0) or self.scan_every <= timedelta(0):
            raise ValueError("lease and scan_every must be positive")
        return self


class GovbridgeConfig(Strict):
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    departments: list[DepartmentConfig] = Field(default_factory=list)
    accounts: list[AccountConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    triage: ClassifierConfig = Field(default_factory=ClassifierConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)

    @model_validator(mode="after")
    def _references(self) -> GovbridgeConfig:
        ids = [d.id for d in self.departments]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"department ids must be unique; repeated: {sorted(dupes)}")
        known = set(ids)
        for i, acc in enumerate(self.accounts):
            if acc.department not in known:
                raise ValueError(
                    f"accounts[{i}].department: unknown department {acc.department!r}; "
                    f"known: {sorted(known)}"
                )
        for i, route in enumerate(self.routes):
            if route.department not in known:
                raise ValueError(
                    f"routes[{i}].department: unknown department {route.department!r}; "
                    f"known: {sorted(known)}"
                )
        handles = [(a.adapter, a.handle) for a in self.accounts]
        if len(set(handles)) != len(handles):
            raise ValueError("each (adapter, handle) account may appear only once")
        return self

    def department(self, dept_id: str) -> DepartmentConfig:
        for d in self.departments:
            if d.id == dept_id:
                return d
        raise KeyError(dept_id)

    def account(self, handle: str, adapter: str | None = None) -> AccountConfig:
        for a in self.accounts:
            if a.handle == handle and (adapter is None or a.adapter == adapter):
                return a
        raise KeyError(handle)
