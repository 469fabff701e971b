"""Open311 GeoReport v2 ticket systems, with the mySociety extensions (FixMyStreet backends).

What the standard gives and what this adapter does about it (``shared/reference/open311.md``):

- No idempotency key on create. The bridge's reference travels as
  ``attribute[<reference_attribute>]`` so the backend keeps it, and ``find_by_reference`` looks
  it up again (``GET requests`` filtered by that attribute) where the backend can search
  (``searchable = true``); the runtime uses that to reconcile a create that was attempted but
  not recorded. ``capabilities.idempotent_create`` is therefore false.
- Creates may answer a ``token`` instead of an id: it is resolved with ``GET tokens/{token}``
  (polled ``token_poll_attempts`` times, ``token_poll_interval`` apart, as FixMyStreet does).
- Status changes come from ``GET servicerequestupdates`` (mySociety) when the backend offers it,
  deduplicated on ``update_id``; otherwise from ``GET requests`` over the last
  ``requests_lookback`` days, comparing ``updated_datetime``. Both re-read an overlapping window
  (``poll_overlap``) and remember what they have seen in the cursor, so a late-written update is
  not missed and nothing is reported twice — even by a freshly started process.
- Native statuses (extended, often upper-case) map to the canonical ``TicketStatus`` through a
  configurable, case-insensitive ``status_map``; ``IGNORE`` drops an update, an unknown code is
  logged and becomes ``unknown_status`` with the native code kept in ``native_status``.
- Errors come as ``[{"code": 400, "description": "..."}]`` (or ``<errors>`` in XML): 401/403 →
  ``AuthError``, other 4xx → ``PermanentError`` with the descriptions as reason, 429 →
  ``RateLimited``, 5xx/timeouts/refused connections → ``TransientError``. Every HTTP call goes
  through a per-department ``CircuitBreaker`` so an outage costs a bounded number of requests.

Responses are read with the stdlib ``xml.etree`` parser: it does not fetch external entities and
the expat it ships with limits entity expansion, which is enough for a server the operator
configured; ``defusedxml`` would be the choice if the base URL could come from untrusted input.
"""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final, Literal
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.base import (
    AuthError,
    ChangesResult,
    CreatedTicket,
    PermanentError,
    RateLimited,
    TicketCapabilities,
    TransientError,
    retry_after_seconds,
)
from adapters.circuit import CircuitBreaker
from schemas.config import DepartmentConfig, Duration, TicketingConfig
from schemas.messages import TicketCommand, TicketEvent, stable_id, utcnow
from schemas.vocab import Category, TicketStatus

log = structlog.get_logger(__name__)

IGNORE: Final = "IGNORE"
MAX_DESCRIPTION = 4000
MAX_WINDOW = timedelta(days=89)  # the spec allows 90; keep a day of margin for clock skew

DEFAULT_STATUS_MAP: dict[str, TicketStatus | Literal["IGNORE"]] = {
    "open": TicketStatus.RECEIVED,
    "for_triage": TicketStatus.RECEIVED,
    "internal_referral": TicketStatus.REFERRED,
    "in_progress": TicketStatus.IN_PROGRESS,
    "investigating": TicketStatus.IN_PROGRESS,
    "action_scheduled": TicketStatus.IN_PROGRESS,
    "planned": TicketStatus.IN_PROGRESS,
    "fixed": TicketStatus.RESOLVED,
    "closed": TicketStatus.CLOSED,
    "no_further_action": TicketStatus.REJECTED,
    "not_councils_responsibility": TicketStatus.RETURNED,
    "reopen": TicketStatus.REOPENED,
    "duplicate": TicketStatus.CLOSED,
    "cancelled": TicketStatus.CLOSED,
    "unchanged": IGNORE,
}

DEFAULT_OUTGOING_STATUS_MAP: dict[TicketStatus, str] = {
    TicketStatus.RECEIVED: "open",
    TicketStatus.REFERRED: "internal_referral",
    TicketStatus.IN_PROGRESS: "in_progress",
    TicketStatus.RESOLVED: "fixed",
    TicketStatus.REJECTED: "no_further_action",
    TicketStatus.RETURNED: "not_councils_responsibility",
    TicketStatus.REOPENED: "reopen",
    TicketStatus.CLOSED: "closed",
}


def _status_target(value: object) -> object:
    if isinstance(value, str) and value.strip().upper() == IGNORE:
        return IGNORE
    if isinstance(value, str):
        return value.strip().lower()
    return value


StatusTarget = Annotated[TicketStatus | Literal["IGNORE"], BeforeValidator(_status_target)]
AttributeValue = str | list[str]


class Open311Config(TicketingConfig):
    """``departments.ticketing`` for ``adapter = "open311"``."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="Endpoint root, e.g. https://council.example/open311/v2/")
    api_key: SecretStr
    jurisdiction_id: str | None = None
    format: Literal["json", "xml"] = "json"
    service_codes: dict[Category, str] = Field(
        min_length=1, description="category → service_code; 'other' is the fallback."
    )
    lat: float | None = Field(default=None, ge=-90, le=90)
    long: float | None = Field(default=None, ge=-180, le=180)
    address_string: str | None = None
    address_id: str | None = None
    reference_attribute: str = Field(default="govbridge_ref", pattern=r"^[A-Za-z0-9_.:-]+$")
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="Values for attributes any service requires (sent where the service has them).",
    )
    service_attributes: dict[str, dict[str, AttributeValue]] = Field(
        default_factory=dict, description="service_code → attribute values (always sent)."
    )
    extra_fields: dict[str, str] = Field(
        default_factory=dict, description="Fixed form fields for every POST (e.g. email)."
    )
    status_map: dict[str, StatusTarget] = Field(
        default_factory=dict,
        description="native status (or external_status_code) → canonical status or IGNORE; "
        "merged over the defaults, case-insensitive.",
    )
    outgoing_status_map: dict[TicketStatus, str] = Field(default_factory=dict)
    unknown_status: TicketStatus = TicketStatus.RECEIVED
    append_status: str = Field(
        default="unchanged", description="Status sent with an appended follow-up."
    )
    searchable: bool = Field(
        default=False,
        description="The backend filters GET requests by attribute[<reference_attribute>].",
    )
    servicerequestupdates: bool = Field(
        default=True, description="The backend offers the mySociety servicerequestupdates API."
    )
    timeout: Duration = timedelta(seconds=15)
    token_poll_interval: Duration = timedelta(seconds=2)
    token_poll_attempts: int = Field(default=5, ge=1, le=60)
    service_cache_ttl: Duration = timedelta(hours=1)
    poll_overlap: Duration = timedelta(hours=1)
    initial_lookback: Duration = timedelta(days=1)
    requests_lookback: Duration = MAX_WINDOW
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown: Duration = timedelta(seconds=30)
    max_description_chars: int = Field(default=MAX_DESCRIPTION, ge=100, le=MAX_DESCRIPTION)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/]+", v):
            raise ValueError("base_url must be an http(s) URL")
        return v if v.endswith("/") else v + "/"

    @field_validator("extra_fields")
    @classmethod
    def _not_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = {
            "api_key",
            "service_code",
            "description",
            "lat",
            "long",
            "address_string",
            "address_id",
            "jurisdiction_id",
            "service_request_id",
            "update_id",
            "status",
            "updated_datetime",
        }
        clash = sorted(k for k in v if k in reserved or k.startswith("attribute["))
        if clash:
            raise ValueError(f"extra_fields may not set {clash}; these have their own settings")
        return v

    @field_validator("status_map")
    @classmethod
    def _lower_keys(
        cls, v: dict[str, TicketStatus | Literal["IGNORE"]]
    ) -> dict[str, TicketStatus | Literal["IGNORE"]]:
        return {k.strip().lower(): target for k, target in v.items()}

    @field_validator("requests_lookback")
    @classmethod
    def _window(cls, v: timedelta) -> timedelta:
        if v > timedelta(days=90):
            raise ValueError("requests_lookback may be at most 90 days (the GeoReport limit)")
        return v

    @model_validator(mode="after")
    def _location(self) -> Open311Config:
        if (self.lat is None) != (self.long is None):
            raise ValueError("lat and long go together")
        if self.lat is None and not self.address_string and not self.address_id:
            raise ValueError(
                "a default location is required: lat and long, address_string or address_id"
            )
        return self


# --------------------------------------------------------------------------- wire helpers

_ITEM_TAGS = frozenset({"service", "request", "request_update", "attribute", "value", "error"})
_BREAK = re.compile(r"<\s*(br|/p|p)\s*/?\s*>", re.IGNORECASE)
_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def xml_to_python(elem: ET.Element) -> Any:
    """GeoReport XML → the shape of its JSON twin (lists for repeated item elements)."""
    children = list(elem)
    if not children:
        text = (elem.text or "").strip()
        return text or None
    tags = {c.tag for c in children}
    if len(tags) == 1 and next(iter(tags)) in _ITEM_TAGS:
        return [xml_to_python(c) for c in children]
    return {c.tag: xml_to_python(c) for c in children}


def parse_body(body: bytes, fmt: str) -> Any:
    if fmt == "json":
        return json.loads(body.decode("utf-8"))
    root = ET.fromstring(body)
    value = xml_to_python(root)
    if value is None and root.tag in ("services", "service_requests", "service_request_updates"):
        return []
    return value


def as_list(value: Any) -> list[dict[str, Any]]:
    """Records as a list of dicts whatever the server's whim (one dict, one-element list)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def error_reason(body: bytes) -> str:
    """The spec's error list (JSON or XML) as one line; the raw text when it is not one."""
    parsed: Any = None
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        try:
            parsed = xml_to_python(ET.fromstring(body))
        except ET.ParseError:
            parsed = None
    descriptions = [
        str(e.get("description") or "").strip() for e in as_list(parsed) if e.get("description")
    ]
    if descriptions:
        text = "; ".join(descriptions)
    else:
        text = re.sub(r"\s+", " ", body.decode("utf-8", "replace")).strip() or "(empty body)"
    return text[:500]


def clean_description(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """Plain text within ``limit`` characters: tags dropped, stray angle brackets made harmless."""
    text = _BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    text = text.replace("<", "＜").replace(">", "＞")
    text = _CONTROL.sub("", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def w3c(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


class _Cursor:
    """``changes_since`` state: the end of the last window read and what it already reported."""

    def __init__(self, until: datetime | None, seen: dict[str, str]) -> None:
        self.until = until
        self.seen = seen

    @classmethod
    def load(cls, raw: str | None, department: str) -> _Cursor:
        if not raw:
            return cls(None, {})
        try:
            data = json.loads(raw)
            until = parse_datetime(data["t"])
            seen = {str(k): str(v) for k, v in dict(data.get("seen", {})).items()}
        except (ValueError, KeyError, TypeError):
            log.warning("open311_cursor_unreadable", department=department)
            return cls(None, {})
        return cls(until, seen)

    def dump(self) -> str:
        assert self.until is not None
        return json.dumps({"v": 1, "t": w3c(self.until), "seen": self.seen}, sort_keys=True)

    def prune(self, keep_from: datetime) -> None:
        self.seen = {
            k: v for k, v in self.seen.items() if (parse_datetime(v) or keep_from) >= keep_from
        }


# --------------------------------------------------------------------------- adapter


class Open311TicketSystem:
    """A department's Open311 (GeoReport v2 + mySociety) backend."""

    name: ClassVar[str] = "open311"
    Config: ClassVar[type[TicketingConfig]] = Open311Config

    def __init__(self, cfg: Open311Config, department: DepartmentConfig) -> None:
        self.cfg = cfg
        self.department = department
        self.capabilities = TicketCapabilities(
            idempotent_create=False,
            search_by_reference=cfg.searchable,
            callbacks=False,
            extended_statuses=True,
        )
        self.breaker = CircuitBreaker(
            f"open311:{department.id}",
            failure_threshold=cfg.breaker_failures,
            cooldown=cfg.breaker_cooldown,
        )
        self._status_map: dict[str, TicketStatus | Literal["IGNORE"]] = {
            **DEFAULT_STATUS_MAP,
            **cfg.status_map,
        }
        self._outgoing = {**DEFAULT_OUTGOING_STATUS_MAP, **cfg.outgoing_status_map}
        self._session: aiohttp.ClientSession | None = None
        self._services: dict[str, dict[str, Any]] | None = None
        self._services_at: datetime | None = None
        self._definitions: dict[str, tuple[datetime, list[dict[str, Any]]]] = {}

    # ---- HTTP

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout.total_seconds()),
                headers={"User-Agent": "govbridge-open311"},
            )
        return self._session

    async def _call(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
        not_found_ok: bool = False,
    ) -> Any:
        """One API call through the breaker; the parsed body, or None for an allowed 404."""
        async with self.breaker.guard():
            return await self._request(method, endpoint, params, form, not_found_ok)

    async def _request(
        self,
        method: str,
        endpoint: str,
        params: Mapping[str, str] | None,
        form: list[tuple[str, str]] | None,
        not_found_ok: bool,
    ) -> Any:
        what = f"open311 {method} {endpoint}"
        url = f"{self.cfg.base_url}{endpoint}.{self.cfg.format}"
        query = dict(params or {})
        if self.cfg.jurisdiction_id:
            if form is not None:
                form = [*form, ("jurisdiction_id", self.cfg.jurisdiction_id)]
            else:
                query["jurisdiction_id"] = self.cfg.jurisdiction_id
        try:
            async with self._http().request(method, url, params=query or None, data=form) as resp:
                status = resp.status
                body = await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            raise TransientError(f"{what}: no answer within {self.cfg.timeout}") from None
        except aiohttp.ClientError as exc:
            refused = isinstance(exc, aiohttp.ClientConnectorError)
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}", not_sent=refused) from None

        if 200 <= status < 300:
            try:
                return parse_body(body, self.cfg.format)
            except (ValueError, ET.ParseError):
                # For a create the ticket may well exist: transient, so the runtime reconciles.
                raise TransientError(f"{what}: unreadable {self.cfg.format} answer") from None
        if status == 404 and not_found_ok:
            return None
        reason = f"{what} answered {status}: {error_reason(body)}"
        if status == 404 and endpoint == "servicerequestupdates":
            reason += " (set servicerequestupdates = false for a backend without it)"
        delay = retry_after_seconds(retry_after)
        if status in (401, 403):
            raise AuthError(reason)
        if status == 429:
            raise RateLimited(reason, retry_after=delay)
        if status == 408 or status >= 500:
            raise TransientError(reason, retry_after=delay, not_sent=status == 503)
        raise PermanentError(reason)

    # ---- services

    async def _catalogue(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        now = utcnow()
        fresh = (
            self._services_at is not None and now - self._services_at < self.cfg.service_cache_ttl
        )
        if self._services is None or refresh or not fresh:
            body = await self._call("GET", "services")
            self._services = {
                str(s["service_code"]): s for s in as_list(body) if _text(s.get("service_code"))
            }
            self._services_at = now
        return self._services

    async def _service(self, code: str) -> dict[str, Any]:
        catalogue = await self._catalogue()
        if code not in catalogue:  # a new service since the cache was filled?
            catalogue = await self._catalogue(refresh=True)
        if code not in catalogue:
            raise PermanentError(
                f"open311: service_code {code!r} is not offered by {self.cfg.base_url} "
                f"(offered: {', '.join(sorted(catalogue)) or 'none'})"
            )
        return catalogue[code]

    async def _definition(self, code: str) -> list[dict[str, Any]]:
        cached = self._definitions.get(code)
        now = utcnow()
        if cached is not None and now - cached[0] < self.cfg.service_cache_ttl:
            return cached[1]
        body = await self._call("GET", f"services/{quote(code, safe='')}")
        attrs = as_list(body.get("attributes")) if isinstance(body, dict) else []
        self._definitions[code] = (now, attrs)
        return attrs

    def service_code_for(self, category: Category) -> str:
        code = self.cfg.service_codes.get(category) or self.cfg.service_codes.get(Category.OTHER)
        if code is None:
            raise PermanentError(
                f"open311: no service_code for category {category.value!r} in department "
                f"{self.department.id!r} (and no 'other' fallback)"
            )
        return code

    async def _attributes_for(self, code: str, reference: str) -> list[tuple[str, str]]:
        """The required attributes filled from config, plus the bridge's reference."""
        service = await self._service(code)
        per_service = self.cfg.service_attributes.get(code, {})
        values: dict[str, AttributeValue] = dict(per_service)
        if _truthy(service.get("metadata")):
            missing = []
            for attr in await self._definition(code):
                attr_code = _text(attr.get("code"))
                if attr_code is None or attr_code == self.cfg.reference_attribute:
                    continue
                if attr_code in values:
                    continue
                if attr_code in self.cfg.attributes:
                    values[attr_code] = self.cfg.attributes[attr_code]
                elif _truthy(attr.get("required")):
                    missing.append(attr_code)
            if missing:
                raise PermanentError(
                    f"open311: service {code!r} requires attribute(s) {', '.join(missing)}; "
                    f"give them in departments.ticketing.attributes"
                )
        pairs: list[tuple[str, str]] = []
        for attr_code, value in values.items():
            if isinstance(value, list):
                pairs.extend((f"attribute[{attr_code}][]", v) for v in value)
            else:
                pairs.append((f"attribute[{attr_code}]", value))
        pairs.append((f"attribute[{self.cfg.reference_attribute}]", reference))
        return pairs

    def _location(self) -> list[tuple[str, str]]:
        if self.cfg.lat is not None and self.cfg.long is not None:
            return [("lat", repr(self.cfg.lat)), ("long", repr(self.cfg.long))]
        if self.cfg.address_string:
            return [("address_string", self.cfg.address_string)]
        assert self.cfg.address_id is not None
        return [("address_id", self.cfg.address_id)]

    # ---- statuses

    def map_status(
        self,
        native: str | None,
        external_code: str | None = None,
        *,
        ticket_id: str | None = None,
    ) -> TicketStatus | None:
        """Canonical status for a native code; None when configured to IGNORE it."""
        for key in (external_code, native):
            if key and key.strip().lower() in self._status_map:
                target = self._status_map[key.strip().lower()]
                return None if target == IGNORE else TicketStatus(target)
        log.warning(
            "open311_unknown_status",
            department=self.department.id,
            ticket_id=ticket_id,
            native_status=native,
            external_status_code=external_code,
            mapped_to=self.cfg.unknown_status.value,
        )
        return self.cfg.unknown_status

    def native_status_for(self, status: TicketStatus) -> str:
        return self._outgoing[status]

    def _ticket_from_record(self, record: dict[str, Any]) -> CreatedTicket:
        native = _text(record.get("status")) or "open"
        status = self.map_status(native, ticket_id=_text(record.get("service_request_id")))
        return CreatedTicket(
            ticket_id=str(record["service_request_id"]),
            status=status or TicketStatus.RECEIVED,
            native_status=native,
            created_at=parse_datetime(record.get("requested_datetime")),
        )

    # ---- protocol

    async def create(self, command: TicketCommand, idempotency_key: str) -> CreatedTicket:
        """POST requests; GeoReport has no idempotency key, so ``reference`` is the handle."""
        code = self.service_code_for(command.category)
        try:
            attributes = await self._attributes_for(code, command.reference)
        except TransientError as exc:  # service discovery failed: nothing was written
            raise TransientError(exc.reason, exc.retry_after, not_sent=True) from exc
        form: list[tuple[str, str]] = [
            ("api_key", self.cfg.api_key.get_secret_value()),
            ("service_code", code),
            ("description", clean_description(command.description, self.cfg.max_description_chars)),
            *self._location(),
            *self.cfg.extra_fields.items(),
            *attributes,
        ]
        body = await self._call("POST", "requests", form=form)
        items = as_list(body)
        if not items:
            raise TransientError("open311 POST requests: empty answer; reconcile by reference")
        ticket_id = _text(items[0].get("service_request_id"))
        if ticket_id is None:
            token = _text(items[0].get("token"))
            if token is None:
                raise TransientError(
                    "open311 POST requests: neither service_request_id nor token in the answer"
                )
            ticket_id = await self._resolve_token(token)
        initial = self.map_status("open") or TicketStatus.RECEIVED
        log.info(
            "open311_ticket_created",
            department=self.department.id,
            ticket_id=ticket_id,
            service_code=code,
            reference=command.reference,
        )
        return CreatedTicket(
            ticket_id=ticket_id, status=initial, native_status="open", created_at=utcnow()
        )

    async def _resolve_token(self, token: str) -> str:
        attempts = self.cfg.token_poll_attempts
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.cfg.token_poll_interval.total_seconds())
            body = await self._call("GET", f"tokens/{quote(token, safe='')}", not_found_ok=True)
            items = as_list(body)
            ticket_id = _text(items[0].get("service_request_id")) if items else None
            if ticket_id is not None:
                return ticket_id
        raise TransientError(
            f"open311: token {token} not resolved after {attempts} polls; the ticket exists "
            f"— reconcile by reference before creating again"
        )

    async def find_by_reference(self, reference: str) -> CreatedTicket | None:
        if not self.cfg.searchable:
            raise PermanentError(
                "open311: this backend cannot search by reference (searchable = false); "
                "reconcile by hand"
            )
        now = utcnow()
        attr = self.cfg.reference_attribute
        body = await self._call(
            "GET",
            "requests",
            params={
                f"attribute[{attr}]": reference,
                "start_date": w3c(now - self.cfg.requests_lookback),
                "end_date": w3c(now),
            },
        )
        records = as_list(body)
        matches = []
        unverifiable = []
        for rec in records:
            attrs = rec.get("attributes")
            if isinstance(attrs, dict):
                if _text(attrs.get(attr)) == reference:
                    matches.append(rec)
            else:
                unverifiable.append(rec)
        if not matches and len(unverifiable) == 1:
            matches = unverifiable  # the server filtered; it just does not echo attributes
        elif not matches and len(unverifiable) > 1:
            raise PermanentError(
                f"open311: GET requests ignored attribute[{attr}] ({len(unverifiable)} records "
                f"came back); set searchable = false for this backend"
            )
        if not matches:
            return None
        first = min(
            matches,
            key=lambda r: (
                parse_datetime(r.get("requested_datetime")) or now,
                str(r.get("service_request_id")),
            ),
        )
        return self._ticket_from_record(first)

    async def append(
        self, ticket_id: str, command: TicketCommand, status: TicketStatus | None = None
    ) -> None:
        """POST servicerequestupdates; ``update_id`` derives from the command, so a redelivered
        append carries the same id and a backend that dedupes on it records it once."""
        if not self.cfg.servicerequestupdates:
            raise PermanentError(
                "open311: this backend offers no servicerequestupdates; cannot append follow-ups"
            )
        native = self.native_status_for(status) if status is not None else self.cfg.append_status
        form: list[tuple[str, str]] = [
            ("api_key", self.cfg.api_key.get_secret_value()),
            ("service_request_id", ticket_id),
            ("update_id", stable_id("gbu", command.command_id)),
            ("status", native),
            ("updated_datetime", w3c(utcnow())),
            ("description", clean_description(command.description, self.cfg.max_description_chars)),
            *self.cfg.extra_fields.items(),
        ]
        await self._call("POST", "servicerequestupdates", form=form)

    async def changes_since(self, cursor: str | None) -> ChangesResult:
        cur = _Cursor.load(cursor, self.department.id)
        now = utcnow()
        since = cur.until or now - self.cfg.initial_lookback
        start = since - self.cfg.poll_overlap
        if self.cfg.servicerequestupdates:
            end = min(now, start + MAX_WINDOW)  # a long outage is read back in chunks
            events = await self._from_updates(cur, start, end)
        else:
            end = now
            events = await self._from_requests(cur, start, now)
        cur.until = end
        cur.prune(end - self.cfg.poll_overlap)
        events.sort(key=lambda e: e.occurred_at)  # stable: server order within a second
        return ChangesResult(events=events, cursor=cur.dump())

    async def _from_updates(
        self, cur: _Cursor, start: datetime, end: datetime
    ) -> list[TicketEvent]:
        body = await self._call(
            "GET", "servicerequestupdates", params={"start_date": w3c(start), "end_date": w3c(end)}
        )
        events = []
        for upd in as_list(body):
            update_id = _text(upd.get("update_id"))
            ticket_id = _text(upd.get("service_request_id"))
            if update_id is None or ticket_id is None:
                continue
            event_id = stable_id("tev", "open311", self.department.id, "update", update_id)
            if event_id in cur.seen:
                continue
            occurred = parse_datetime(upd.get("updated_datetime")) or end
            cur.seen[event_id] = w3c(occurred)
            event = self._event(
                event_id,
                ticket_id,
                _text(upd.get("status")) or "",
                _text(upd.get("external_status_code")),
                occurred,
                _text(upd.get("description")),
                None,
            )
            if event is not None:
                events.append(event)
        return events

    async def _from_requests(
        self, cur: _Cursor, start: datetime, now: datetime
    ) -> list[TicketEvent]:
        """Without servicerequestupdates: recent requests whose ``updated_datetime`` moved."""
        body = await self._call(
            "GET",
            "requests",
            params={
                # Only the bridge's services: keeps the answer under the servers' 1000 cap.
                "service_code": ",".join(sorted(set(self.cfg.service_codes.values()))),
                "start_date": w3c(now - self.cfg.requests_lookback),
                "end_date": w3c(now),
            },
        )
        events = []
        for rec in as_list(body):
            ticket_id = _text(rec.get("service_request_id"))
            updated = parse_datetime(rec.get("updated_datetime"))
            if ticket_id is None or updated is None or updated < start:
                continue
            native = _text(rec.get("status")) or ""
            event_id = stable_id(
                "tev", "open311", self.department.id, "request", ticket_id, w3c(updated), native
            )
            if event_id in cur.seen:
                continue
            cur.seen[event_id] = w3c(updated)
            requested = parse_datetime(rec.get("requested_datetime"))
            attrs = rec.get("attributes")
            reference = (
                _text(attrs.get(self.cfg.reference_attribute)) if isinstance(attrs, dict) else None
            )
            event = self._event(
                event_id,
                ticket_id,
                native,
                None,
                updated,
                _text(rec.get("status_notes")),
                reference,
            )
            # A record untouched since creation is the create itself, already reported.
            if event is None or (requested == updated and event.status == TicketStatus.RECEIVED):
                continue
            events.append(event)
        return events

    def _event(
        self,
        event_id: str,
        ticket_id: str,
        native: str,
        external_code: str | None,
        occurred: datetime,
        note: str | None,
        reference: str | None,
    ) -> TicketEvent | None:
        status = self.map_status(native, external_code, ticket_id=ticket_id)
        if status is None:
            return None
        return TicketEvent(
            event_id=event_id,
            department=self.department.id,
            ticket_id=ticket_id,
            reference=reference,
            status=status,
            native_status=native,
            occurred_at=occurred,
            note=note,
            source="poll",
        )

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        raise PermanentError("open311 has no callbacks; status changes are polled")

    async def check(self) -> None:
        """Reachable, every configured service offered with its required attributes configured,
        servicerequestupdates there when relied on."""
        catalogue = await self._catalogue(refresh=True)
        problems = []
        for category, code in self.cfg.service_codes.items():
            if code not in catalogue:
                problems.append(f"service_code {code!r} ({category.value}) not offered")
                continue
            try:
                await self._attributes_for(code, "check")
            except PermanentError as exc:
                problems.append(exc.reason.removeprefix("open311: "))
        if self.cfg.servicerequestupdates:
            now = utcnow()
            window = {"start_date": w3c(now - timedelta(minutes=1)), "end_date": w3c(now)}
            try:
                await self._call("GET", "servicerequestupdates", params=window)
            except PermanentError as exc:
                problems.append(exc.reason)
        if problems:
            raise PermanentError(f"open311 {self.department.id}: " + "; ".join(problems))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
