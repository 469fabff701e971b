"""Configuration models: one TOML file describes the broker, store, HTTP server, departments,
the official accounts the bridge answers from, and content routes.

Adapter-specific keys of ``[[accounts]]`` and ``departments.ticketing`` are validated by the
adapter's own ``Config`` model (a subclass of the models here), so a misspelt adapter key is
reported like any other.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import string
from datetime import date, timedelta
from itertools import pairwise
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
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

_SLA = re.compile(r"^\s*(\d+)\s*(wd|d|h|m|s)\s*$")


def _check_sla(value: str) -> str:
    if not _SLA.match(value):
        raise ValueError(
            f"not a time limit: {value!r} (use e.g. '3m', '2h', '3d', '10wd' = working days;"
            " 's' seconds for scaled tests)"
        )
    return value.strip()


SlaLimit = Annotated[str, AfterValidator(_check_sla)]
Redirects = Literal["off", "same-origin"]
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
    signing_keys: list[SecretStr] = Field(
        default_factory=list,
        description="HMAC-SHA256 keys of the bus (bridge/security/bus.py): the first signs every"
        " message the bridge publishes, every one is accepted when checking, so a key is rotated"
        " by putting the new one first and removing the old one once nothing signed with it is"
        " left. Empty entries are ignored; none at all means the published development key,"
        " which `govbridge check` refuses in a production config.",
    )

    @field_validator("retry_delays")
    @classmethod
    def _increasing(cls, v: list[timedelta]) -> list[timedelta]:
        if any(b < a for a, b in pairwise(v)):
            raise ValueError("retry delays must not decrease")
        return v


class StoreConfig(Strict):
    url: str = Field(default="sqlite:///./govbridge.db", pattern=r"^(sqlite|postgres(ql)?)://")
    pool_size: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="PostgreSQL connections a process opens at most (default: one per handler"
        " in flight, 4 to 10). Processes x pool_size must stay under the server's"
        " max_connections (100 by default) with room for the console and tools.",
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=60),
        description="While a process starts, the store unreachable (or cut mid-migration) is"
        " tried again for this long before the process gives up.",
    )


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
    max_connections_per_client: int = Field(
        default=128,
        ge=1,
        description="Connections one client address may hold at once; beyond this it is"
        " answered 429 and closed, so one address cannot take every connection. Trusted"
        " proxies (trusted_proxies) are not held to it.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies in front of the bridge:"
        " only a request arriving from one of them may name the client's address in"
        " X-Forwarded-For. Empty: the connection's own address is the client's.",
    )
    warm_pages: bool = Field(
        default=True,
        description="When a process with the http role starts, count in the background what"
        " the console's dashboard (30 days), inspection and ranking (12 months) ask first, so"
        " that their first visit is served as counted; after that a page is counted again only"
        " when a visit finds it older than a minute. Off: the first visit counts (at 100,000"
        " inquiries, seconds).",
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#]+/?$",
        description="The console's address as browsers see it (scheme, host, port), e.g."
        ' "https://gov.example.cn" behind a TLS proxy: an https address makes the session'
        " cookie Secure, and a sign-in or state change must come from exactly this origin.",
    )
    signin_delay_after: int = Field(
        default=3,
        ge=0,
        description="Failed sign-ins (per name and per client address, within signin_window)"
        " before each further attempt is delayed.",
    )
    signin_delay: Duration = Field(
        default=timedelta(seconds=1),
        description="The first delay; it doubles with each further failure.",
    )
    signin_max_delay: Duration = Field(
        default=timedelta(seconds=16), description="The longest delay before a sign-in."
    )
    signin_lockout_after: int = Field(
        default=10,
        ge=1,
        description="Failed sign-ins (per name and per client address, within signin_window)"
        " after which every attempt is answered 429 until signin_window has passed since the"
        " last failure.",
    )
    signin_window: Duration = Field(
        default=timedelta(minutes=15), description="How long a failed sign-in is counted."
    )
    max_range: Duration = Field(
        default=timedelta(days=366),
        description="The longest period a report or an inquiry search may cover; a longer or"
        " unreadable range is answered 400 with the reason.",
    )
    max_inflight_pushes: int = Field(
        default=256,
        ge=1,
        description="Pushes and callbacks awaiting the broker's confirm at once; beyond this"
        " they are answered 503 with Retry-After.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an address or a network (e.g. 10.0.0.5, 10.0.0.0/8)"
                ) from None
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _signin_thresholds(self) -> HttpConfig:
        if self.signin_delay_after >= self.signin_lockout_after:
            raise ValueError("signin_delay_after must be below signin_lockout_after")
        if self.max_range <= timedelta(0) or self.signin_window <= timedelta(0):
            raise ValueError("max_range and signin_window must be positive")
        return self


class TicketingConfig(BaseModel):
    """Which ticket system a department uses; the adapter's own model checks the rest."""

    model_config = ConfigDict(extra="allow")

    adapter: str
    callback_secret: SecretStr | None = None
    poll: Duration = timedelta(seconds=60)
    create_lease: Duration = Field(
        default=timedelta(minutes=2),
        description="Upper bound only: a create whose process lived but got no answer (a"
        " timeout, a 502/504: the backend may still commit it) is looked up by reference (or"
        " the inquiry flagged for reconciliation) after this long. A create whose process died"
        " is taken over as soon as its lease (tied to the process's database session or"
        " flock) is free, not after this.",
    )
    create_settle: Duration = Field(
        default=timedelta(seconds=20),
        description="After a create's process died, a ticket not found by reference is"
        " looked up again and only then created once the attempt is this old (a request the"
        " dead process sent may still be committing; keep it above the adapter's timeout)."
        " Capped by create_lease.",
    )
    follow_redirects: Redirects = Field(
        default="off",
        description='HTTP redirects from the ticket system: "off" (never followed: the'
        ' request fails naming where it pointed) or "same-origin" (followed within the same'
        " scheme, host and port). A redirect to another origin is never followed, so the"
        " API key never leaves for a host it was not configured for.",
    )
    auth_recheck: Duration = Field(
        default=timedelta(minutes=5),
        description="While commands are held because the ticket system refused the"
        " credentials, the oldest is tried again this often (the key may have been fixed on"
        " the ticket system's side). A replaced key, a config reload or 'retry now' releases"
        " them at once.",
    )


TEMPLATE_FIELDS = frozenset(
    {"ticket_id", "deadline", "department", "status", "note", "category", "linked_ticket_id"}
)
# The citizen's acknowledgement of a follow-up, by how it reached the officials: appended to
# the ticket, filed as a new request linked to it, forwarded to the handling unit, or only
# kept on the bridge's record.
FOLLOW_UP_TEMPLATES = frozenset(
    {"follow_up", "follow_up_new_request", "follow_up_forwarded", "follow_up_recorded"}
)

# The 回访 question after a final status, and its one re-ask when the answer was unclear.
SURVEY_TEMPLATES = frozenset({"survey", "survey_again"})
# A later case of an incident appended to the first case's ticket (``incidents = "merge"``).
INCIDENT_TEMPLATES = frozenset({"incident_merged"})
IncidentMode = Literal["off", "suggest", "merge"]

ApprovalMode = Literal["none", "templated-auto", "all-manual"]


class FollowUpConfig(Strict):
    """``[departments.follow_ups]``: how a citizen's follow-up reaches the officials where the
    department's ticket system takes no update (an Open311 server without
    ``servicerequestupdates``, a REST system without an ``append`` endpoint). Where it does,
    follow-ups are appended to the ticket and this block is not used.

    ``via``: ``new_request`` files the follow-up as a new request in the same ticket system,
    its description naming the original ticket (linked to it in the bridge); ``webhook``
    POSTs it, signed (``X-Govbridge-Signature``, HMAC-SHA256 with ``secret``), to the handling
    unit's ``url``; ``record`` (the default) keeps it on the bridge's record only, and the
    citizen is told so (and that they may call), never that it will be handled.
    """

    via: Literal["record", "new_request", "webhook"] = "record"
    url: str | None = Field(
        default=None, pattern=r"^https?://\S+$", description="webhook: where to POST it."
    )
    secret: SecretStr | None = Field(
        default=None, description="webhook: the key its HMAC-SHA256 signature is made with."
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="webhook: how long a POST may take."
    )

    @model_validator(mode="after")
    def _channel(self) -> FollowUpConfig:
        if self.via == "webhook":
            if self.url is None or self.secret is None:
                raise ValueError("via = 'webhook' needs url and secret (the POST is signed)")
            if len(self.secret.get_secret_value()) < 16:
                raise ValueError("secret: at least 16 characters")
        elif self.url is not None or self.secret is not None:
            raise ValueError(f"url and secret are used only with via = 'webhook', not {self.via!r}")
        return self


def _distinct_days(holidays: list[date], workdays: list[date]) -> None:
    both = sorted(set(holidays) & set(workdays))
    if both:
        raise ValueError(
            f"{both[0].isoformat()} is in both holidays and workdays; a day is one or the other"
        )


class DepartmentCalendarConfig(Strict):
    """``[departments.calendar]``: a department's local days on top of ``[calendar]`` (a local
    holiday, or a day it works although the national calendar rests)."""

    holidays: list[date] = Field(
        default_factory=list, description="Local days off (not counted as working days)."
    )
    workdays: list[date] = Field(
        default_factory=list,
        description="Days this department works although [calendar] or the national calendar"
        " rests (counted as working days).",
    )

    @model_validator(mode="after")
    def _one_or_other(self) -> DepartmentCalendarConfig:
        _distinct_days(self.holidays, self.workdays)
        return self


class CalendarConfig(Strict):
    """``[calendar]``: the working days every clock counts (deadlines in ``wd``, the SLA
    watcher, reports). Weekends, official holidays and make-up working days (调休) come from
    the ``chinese-calendar`` package for the years it carries; ``holidays`` and ``workdays``
    add or override days; ``years`` names the years beyond the package whose whole arrangement
    ``holidays`` and ``workdays`` give. A deadline that reaches a year neither covers is
    refused with an error naming the year, and ``govbridge check`` warns 60 days ahead."""

    timezone: str = Field(
        default="Asia/Shanghai",
        description="The zone deadlines are counted in (a day starts at midnight here).",
    )
    holidays: list[date] = Field(
        default_factory=list,
        description="Days off: the official holidays of a year in `years`, or local holidays.",
    )
    workdays: list[date] = Field(
        default_factory=list,
        description="Make-up working days (调休) of a year in `years`, or other days worked.",
    )
    years: list[int] = Field(
        default_factory=list,
        description="Years whose whole arrangement `holidays` and `workdays` give (beyond"
        " chinese-calendar's): their other days are working days Monday to Friday.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as 'Asia/Shanghai')"
            ) from None
        return value

    @field_validator("years")
    @classmethod
    def _plausible_years(cls, value: list[int]) -> list[int]:
        for year in value:
            if not 2000 <= year <= 2100:
                raise ValueError(f"{year} is not a year this calendar can mean (2000–2100)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _one_or_other(self) -> CalendarConfig:
        _distinct_days(self.holidays, self.workdays)
        return self

    def with_local(self, local: DepartmentCalendarConfig) -> CalendarConfig:
        """This calendar with a department's local days on top (they win)."""
        if not local.holidays and not local.workdays:
            return self
        off, on = set(local.holidays), set(local.workdays)
        return self.model_copy(
            update={
                "holidays": sorted((set(self.holidays) - on) | off),
                "workdays": sorted((set(self.workdays) - off) | on),
            }
        )


class DepartmentConfig(Strict):
    id: Identifier
    name: str = Field(min_length=1)
    sla: dict[str, SlaLimit] = Field(default_factory=dict)
    approval: ApprovalMode = "templated-auto"
    ticketing: TicketingConfig
    replies: dict[str, str] = Field(
        default_factory=dict, description="Reply templates by ticket status (overrides defaults)."
    )
    follow_ups: FollowUpConfig = Field(
        default_factory=FollowUpConfig,
        description="Where a follow-up goes when the ticket system takes no update.",
    )
    keep_personal_data: bool = Field(
        default=False,
        description="Pass phone/ID numbers and e-mail addresses to the ticket system unmasked"
        " (never published). Off by default: a department turns it on when its case workers"
        " must call citizens back.",
    )
    max_new_conversations_per_hour: int | None = Field(
        default=None,
        ge=0,
        description="New conversations one citizen may start in this department per hour"
        " (beside [triage].max_new_conversations_per_hour, which counts every department);"
        " the excess is held for an official's check with reason 'flood'. 0 = no limit.",
    )
    calendar: DepartmentCalendarConfig = Field(
        default_factory=DepartmentCalendarConfig,
        description="Local holidays and working days on top of [calendar].",
    )
    incidents: IncidentMode = Field(
        default="off",
        description="Near-duplicate inquiries (one burst main, fifty citizens): 'off' (the"
        " default: not looked for), 'suggest' (each case keeps its own ticket; the cases are"
        " linked as one incident, surges raised), 'merge' (later cases are appended to the"
        " first case's ticket, each citizen told so and answered on every status change of it).",
    )
    # [calendar] of the file this department was loaded from (set by GovbridgeConfig), so a
    # clock that holds only the department counts the same days as every other.
    _shared_calendar: CalendarConfig = PrivateAttr(default_factory=CalendarConfig)

    @property
    def working_calendar(self) -> CalendarConfig:
        """The days this department's clocks count: [calendar] with its local days on top."""
        return self._shared_calendar.with_local(self.calendar)

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
        allowed = (
            {s.value for s in TicketStatus}
            | {"holding", "note", "acknowledged"}
            | FOLLOW_UP_TEMPLATES
            | SURVEY_TEMPLATES
            | INCIDENT_TEMPLATES
        )
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


def account_key(adapter: str, handle: str) -> str:
    """An account's name wherever the bridge keys by account: its adapters, alerts, metrics,
    the outbox backlog, the console, credentials, rejected items. Adapter and handle, not the
    platform: one generic adapter serves platforms its config names (``webhook`` for
    ``hotline12345``), and a key built from the platform found nothing under the adapter's."""
    return f"{adapter}:{handle}"


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
    call_budget: RateLimitConfig | None = Field(
        default=None,
        description="The platform's call budget for this account (Weibo test tier: 150 calls"
        ' per "1h", posts included), counted in windows aligned on the period. Set, polling'
        " adapts to activity (bridge/runtime/pacing.py): faster while citizens write, slower"
        " when quiet, never over the budget less what posting may take (reply_limit). Unset:"
        " polled every `poll`.",
    )
    poll_fastest: Duration = Field(
        default=timedelta(seconds=10),
        description="With call_budget: the shortest wait between polls while items arrive.",
    )
    poll_slowest: Duration = Field(
        default=timedelta(minutes=10),
        description="With call_budget: the longest wait between polls of a quiet account.",
    )
    follow_redirects: Redirects = Field(
        default="off",
        description='HTTP redirects from the platform: "off" (never followed) or'
        ' "same-origin" (within the same scheme, host and port); never to another origin.',
    )

    @property
    def platform_name(self) -> str:
        """The platform its inquiries name: the adapter's ``platform`` setting (a generic
        webhook serves many platforms), else the adapter's name."""
        declared = self.__dict__.get("platform")  # an adapter's Config may declare it
        return str(declared or (self.model_extra or {}).get("platform") or self.adapter)

    @property
    def key(self) -> str:
        """``account_key``: how this account is named everywhere."""
        return account_key(self.adapter, self.handle)


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
    max_new_conversations_per_hour: int = Field(
        default=30,
        ge=0,
        description="New conversations (inquiries that would open a ticket) one citizen may"
        " start per hour, counted per platform and author id; the excess is held for an"
        " official's check with reason 'flood', never dropped (0 = no limit). A department's"
        " own max_new_conversations_per_hour is applied as well, within that department.",
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
    """``[sla]``: how the deadline watcher runs, and the holding acknowledgement of inquiries
    still without a ticket (``bridge/sla/acknowledge.py``)."""

    check_every: Duration = timedelta(minutes=5)
    warn_before: Duration = Field(
        default=timedelta(days=1), description="Publish sla.warning this long before a deadline."
    )
    acknowledge: bool = Field(
        default=True,
        description="A citizen whose inquiry has no ticket and no reply acknowledge_at into"
        " the first-response limit (the ticket system is down, a create is in doubt,"
        " ticketing is held for a refused key) gets the holding acknowledgement without a"
        " ticket number (template acknowledged), once; the number follows with 已受理.",
    )
    acknowledge_at: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="When the holding acknowledgement is due: this share of the first-response"
        " limit (sla.first_response, else [ranking].first_response) after the citizen's post.",
    )
    acknowledge_every: Duration = Field(
        default=timedelta(seconds=10),
        description="How often inquiries still without a ticket are looked for (keep it well"
        " under the first-response limit's remaining share).",
    )

    @model_validator(mode="after")
    def _positive_acknowledge_every(self) -> SlaConfig:
        if self.acknowledge_every <= timedelta(0):
            raise ValueError("acknowledge_every must be positive")
        return self


class SurveyConfig(Strict):
    """``[survey]``: the 回访 loop (the reply role asks, triage reads the answers,
    ``bridge/triage/survey.py``). How an answer, an unclear one or silence counts in 解决率 and
    满意率 is ``[ranking]``'s (``no_response``)."""

    enabled: bool = Field(
        default=True,
        description="Ask the citizen, once a ticket reaches a final status, whether the matter"
        " was solved and whether they are satisfied (templates survey and survey_again).",
    )
    delay: Literal["next_working_day"] | Duration = Field(
        default="next_working_day",
        description="When to ask after the final status: next_working_day (09:00 of the next"
        ' working day in the [calendar], 调休 included) or a duration (e.g. "24h").',
    )
    answer_within: Duration = Field(
        default=timedelta(days=7),
        description="Silence this long after the question (or the re-ask) ends the 回访:"
        " no_response after the question, unrated after the re-ask of an unclear answer.",
    )
    check_every: Duration = Field(
        default=timedelta(minutes=1),
        description="How often the reply role looks for questions due and silences ended.",
    )
    reopen_when: Literal["unsolved_or_dissatisfied", "unsolved", "never"] = Field(
        default="unsolved_or_dissatisfied",
        description="Which answers reopen the case (重办): 未解决 or 不满意 (the default),"
        " only 未解决, or none.",
    )


class IncidentsConfig(Strict):
    """``[incidents]``: how near-duplicate inquiries are grouped into incidents and when an
    incident is a surge (``bridge/triage/incident_links.py``; the engine is
    ``bridge/triage/incidents.py``). Each department chooses its mode (``incidents``)."""

    window: Duration = Field(
        default=timedelta(hours=72),
        description="Inquiries further apart than this are never one incident.",
    )
    surge_threshold: int = Field(
        default=3,
        ge=2,
        description="This many inquiries of one incident, department and category within"
        " surge_window make a surge (incident.surge.<department>, an alert, a 舆情 clock).",
    )
    surge_window: Duration = Field(default=timedelta(hours=24))
    public_answer_within: Duration = Field(
        default=timedelta(hours=48),
        description="The 舆情 clock: a surge's public answer is due this long after it was"
        " raised (国办发〔2016〕61号: 48 hours).",
    )


class AuditConfig(Strict):
    """``[audit]``: the key that authenticates each audit record (bridge/store/audit.py)."""

    keys: list[SecretStr] = Field(
        default_factory=list,
        description="HMAC-SHA256 keys of the audit trail, kept outside the store: the first"
        " signs each new record, every one is accepted by `govbridge audit verify` (keep a"
        " retired key here for as long as records signed with it exist). Empty entries are"
        " ignored; none at all means the published development key, which `govbridge check`"
        " refuses in a production config. Must differ from broker.signing_keys.",
    )


class OutboxConfig(Strict):
    """``[outbox]``: how approved replies are posted (see ``bridge/reply/outbox.py``)."""

    lease: Duration = Field(
        default=timedelta(minutes=2),
        description="How long a reply being posted is held by one process; a platform call is"
        " cut off at half of it. A claim of a process that died (its liveness lease free) is"
        " taken over at once; this lease bounds only a live process that got no answer. A"
        " reply taken over is looked for first.",
    )
    concurrency: int = Field(
        default=4, ge=1, le=256, description="Posts in flight per account per process."
    )
    scan_every: Duration = Field(
        default=timedelta(seconds=2),
        description="How often the store is checked for waiting replies without a wake-up.",
    )
    settle: list[Duration] = Field(
        default_factory=lambda: [timedelta(seconds=s) for s in (5, 15, 45, 135)],
        min_length=1,
        max_length=20,
        description="After a post whose outcome is unknown (the call timed out: a slow server"
        " may still commit it), the bridge looks for its reply in the thread after each of"
        " these waits before posting again; after a later post succeeds it looks again on the"
        " same steps and removes any late copy. Their sum (200 s by default) is the longest a"
        " late copy is looked for.",
    )

    @model_validator(mode="after")
    def _positive(self) -> OutboxConfig:
        if self.lease <= timedelta(0) or self.scan_every <= timedelta(0):
            raise ValueError("lease and scan_every must be positive")
        if any(s <= timedelta(0) for s in self.settle):
            raise ValueError("settle: every wait must be positive")
        if any(b < a for a, b in pairwise(self.settle)):
            raise ValueError("settle: waits must not decrease")
        return self


def _fernet_key(value: SecretStr) -> SecretStr:
    """A Fernet key: 32 bytes, URL-safe base64 (``govbridge credentials new-key``)."""
    try:
        raw = base64.urlsafe_b64decode(value.get_secret_value().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            "not a Fernet key (32 bytes, URL-safe base64): make one with"
            " `govbridge credentials new-key`"
        )
    return value


class CredentialsConfig(Strict):
    """``[credentials]``: how credentials replaced through the admin API are kept in the store.

    They are encrypted (Fernet: AES-128-CBC with HMAC-SHA256) with the first of ``keys``; every
    key decrypts, so a key is rotated by putting a new one first, running
    ``govbridge credentials rotate`` and then removing the old one. Without a key a replaced
    credential works until the process stops (and the API says it was not kept).
    """

    keys: list[Annotated[SecretStr, AfterValidator(_fernet_key)]] = Field(
        default_factory=list,
        description="Fernet keys, newest first (or GOVBRIDGE_CREDENTIALS_KEY, comma-separated).",
    )


SatisfactionLevel = Literal["满意", "基本满意", "不满意"]


def _satisfaction_shares() -> dict[SatisfactionLevel, float]:
    """满意 and 基本满意 count as satisfied, 不满意 not."""
    return {"满意": 1.0, "基本满意": 1.0, "不满意": 0.0}


class RankWeights(Strict):
    """The composite score's weights (normalised: the score is their weighted mean × 100)."""

    response: float = Field(default=30, ge=0, description="响应率")
    resolution: float = Field(default=35, ge=0, description="解决率")
    satisfaction: float = Field(default=35, ge=0, description="满意率")
    on_time: float = Field(default=0, ge=0, description="按时办结率 (not weighted by default)")

    @model_validator(mode="after")
    def _some(self) -> RankWeights:
        if self.response + self.resolution + self.satisfaction + self.on_time <= 0:
            raise ValueError("at least one weight must be above 0")
        return self


class RankingConfig(Strict):
    """``[ranking]``: the three rates (响应率, 解决率, 满意率), the on-time rate and the monthly
    ranking (``govbridge report --period 2026-11 --rank``, bridge/reports/performance.py).
    The default weights are an example (one county's 30/35/35), not an official formula."""

    first_response: SlaLimit = Field(
        default="3m",
        description="The first-response limit 响应率 counts against where a department sets no"
        " sla.first_response (GB/T 33358: other media answered within 3 minutes).",
    )
    weights: RankWeights = Field(default_factory=RankWeights)
    satisfaction: dict[SatisfactionLevel, float] = Field(
        default_factory=_satisfaction_shares,
        description="How much each 回访 satisfaction answer counts towards 满意率 (0–1); a"
        " level not listed counts 0.",
    )
    no_response: Literal["exclude", "dissatisfied", "satisfied"] = Field(
        default="exclude",
        description="A 回访 the citizen never answered: left out of 解决率 and 满意率"
        " (exclude), or counted as not solved and not satisfied (dissatisfied), or as solved"
        " and satisfied (satisfied).",
    )

    @field_validator("satisfaction")
    @classmethod
    def _shares(cls, v: dict[SatisfactionLevel, float]) -> dict[SatisfactionLevel, float]:
        for level, weight in v.items():
            if not 0 <= weight <= 1:
                raise ValueError(f"satisfaction weight of {level} must be between 0 and 1")
        return v


class InspectionConfig(Strict):
    """``[inspection]``: the account inspection (巡检) the ``inspect`` role runs, and
    ``govbridge inspect``'s defaults."""

    check_every: Duration = Field(
        default=timedelta(hours=1),
        description="How often the inspect role inspects every account (its first pass one"
        " interval after start); an account crossing a line raises an alert and publishes"
        " account.flagged.<department>.",
    )
    dormant_after: Duration = Field(
        default=timedelta(days=14),
        description="No own post for this long is dormant (an update every two weeks).",
    )
    period: Duration = Field(
        default=timedelta(days=30), description="The inquiries counted: this long back."
    )
    unanswered_after: Duration = Field(
        default=timedelta(days=1),
        description="An inquiry without any reply (none posted, none waiting for an approver"
        " or a posting slot) for longer than this is one without interaction: its account is"
        " a zombie.",
    )

    @model_validator(mode="after")
    def _positive(self) -> InspectionConfig:
        if min(self.check_every, self.dormant_after, self.period, self.unanswered_after) <= (
            timedelta(0)
        ):
            raise ValueError(
                "check_every, dormant_after, period and unanswered_after must be positive"
            )
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
    audit: AuditConfig = Field(default_factory=AuditConfig)
    credentials: CredentialsConfig = Field(default_factory=CredentialsConfig)
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    inspection: InspectionConfig = Field(default_factory=InspectionConfig)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    survey: SurveyConfig = Field(default_factory=SurveyConfig)

    @model_validator(mode="after")
    def _share_calendar(self) -> GovbridgeConfig:
        for dept in self.departments:
            dept._shared_calendar = self.calendar
        return self

    @model_validator(mode="after")
    def _separate_keys(self) -> GovbridgeConfig:
        """One secret for both would let whoever holds the bus key forge audit records."""
        bus = {k.get_secret_value() for k in self.broker.signing_keys}
        audit = {k.get_secret_value() for k in self.audit.keys}
        if any(value.strip() for value in bus & audit):
            raise ValueError(
                "audit.keys: a key is also in broker.signing_keys; give the audit trail a"
                " secret of its own"
            )
        return self

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

    def account_on(self, platform: str, handle: str) -> AccountConfig | None:
        """The configured account ``handle`` on ``platform`` (an inquiry's or reply's
        platform, or the adapter's name), if any."""
        for a in self.accounts:
            if a.handle == handle and platform in (a.adapter, a.platform_name):
                return a
        return None

    def key_on(self, platform: str, handle: str) -> str:
        """``account_key`` of the account a stored row names by platform and handle (an
        account no longer configured: by its platform)."""
        account = self.account_on(platform, handle)
        return account.key if account is not None else account_key(platform, handle)
