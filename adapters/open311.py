"""Open311 GeoReport v2 ticket systems, with the mySociety extensions (FixMyStreet backends).

What the standard gives, what real servers do (``shared/reference/open311.md``, last section),
and what this adapter does about it:

- No idempotency key on create. The bridge's reference travels as
  ``attribute[<reference_attribute>]`` and, because real servers silently drop attributes
  they do not define, also at the end of the description (``[govbridge-ref: …]``).
  ``find_by_reference`` reads the recent ``requests`` (paged) and accepts only a record that
  proves it is ours: the reference echoed in its attributes or in its description. Never a
  guess: a server that ignores the attribute filter returns everything, and nothing unproven
  is taken.
- Creates may answer a ``token``: resolved with ``GET tokens/{token}`` (polled
  ``token_poll_attempts`` times, ``token_poll_interval`` apart, as FixMyStreet does).
- Lists are paged on real servers (100 a page, newest first, ``X-Next-Page-URL`` /
  ``X-Page-Count`` / ``page=``): every list is read to its end. A server that silently caps a
  list (``max_records``) has its time window split in halves until each answer is complete.
- Status changes come from ``GET servicerequestupdates`` (mySociety) where the server has it
  (``servicerequestupdates = "auto"`` detects it), deduplicated on ``update_id``; otherwise from
  ``GET requests`` over a window, comparing ``updated_datetime``, and — because an official's
  change does not always move ``updated_datetime`` — by asking for the bridge's own open
  tickets by id (``service_request_id=a,b,c``, batched; the runtime says which through
  ``watch``). A new record's ``updated_datetime`` differs from ``requested_datetime`` by
  microseconds: that is still its creation, not a change. Window ends are rounded up, never
  into the past of "now".
- Without ``servicerequestupdates`` there is no API for a citizen's follow-up:
  ``capabilities.appends`` is false (the bridge keeps the follow-up on the ticket's record) and
  ``append`` raises a clear ``PermanentError``.
- Native statuses map through a case-insensitive ``status_map`` (``adapters.statusmap``).
- Errors (``[{code, description}]``, ``{"code", "detail"}``, XML, an HTML debug page) are read by
  the shared client (``adapters.http``): a wrong key, answered 400 "Invalid API key" by real
  servers, is an ``AuthError`` like 401/403, so ticketing pauses with an alert. ``check`` tests
  the key with a harmless call (a create without service code or location).
- XML is parsed with ``defusedxml`` and a depth limit (``adapters.wire``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urljoin, urlsplit

import structlog
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.base import (
    AdapterError,
    AuthError,
    ChangesResult,
    CreatedTicket,
    PermanentError,
    TicketCapabilities,
    TransientError,
)
from adapters.circuit import CircuitBreaker
from adapters.http import HttpClient, Response
from adapters.statusmap import IGNORE, StatusMap, StatusTarget
from adapters.text import clean
from adapters.wire import Malformed, error_detail, parse_json, parse_xml, xml_to_python
from schemas.config import DepartmentConfig, Duration, TicketingConfig
from schemas.messages import TicketCommand, TicketEvent, stable_id, utcnow
from schemas.vocab import Category, TicketStatus

log = structlog.get_logger(__name__)

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
    reference_in_description: bool = Field(
        default=True,
        description="End the description with [govbridge-ref: <reference>] so a create can be "
        "found again on servers that drop unknown attributes.",
    )
    reference_lookback: Duration = Field(
        default=timedelta(days=7), description="How far back find_by_reference reads."
    )
    servicerequestupdates: bool | Literal["auto"] = Field(
        default="auto",
        description="The backend offers the mySociety servicerequestupdates API; auto: detect.",
    )
    max_records: int = Field(
        default=1000,
        ge=1,
        description="Records a server returns at most for one unpaged query (split the window "
        "when an answer reaches it).",
    )
    max_pages: int = Field(default=200, ge=1, description="Pages read at most for one list.")
    id_batch: int = Field(
        default=50, ge=1, le=500, description="Ticket ids asked for in one GET requests."
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
_LISTS = ("services", "service_requests", "service_request_updates")
CREATION_SLACK = timedelta(seconds=2)  # requested vs updated of an untouched new record
_NO_UPDATES_HINT = ' (set servicerequestupdates = false, or "auto", for a backend without it)'


def parse_body(body: bytes, fmt: str) -> Any:
    """A GeoReport answer (JSON, or XML in the shape of its JSON twin); ``Malformed`` if
    unreadable."""
    if fmt == "json":
        return parse_json(body)
    root = parse_xml(body)
    value = xml_to_python(root, _ITEM_TAGS)
    if value is None and root.tag in _LISTS:
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
    """An error body (the spec's list, ``{"code", "detail"}``, XML, HTML …) as one line."""
    return error_detail(body) or "(empty body)"


def reference_marker(reference: str) -> str:
    return f"[govbridge-ref: {reference}]"


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


def w3c_end(ts: datetime) -> str:
    """The end of a window to the second, rounded up: never in the past of ``ts``."""
    if ts.microsecond:
        ts = ts.replace(microsecond=0) + timedelta(seconds=1)
    return w3c(ts)


def parse_datetime(value: Any) -> datetime | None:
    """W3C/ISO 8601 with any precision and UTC offset; naive is UTC; ``None`` if unreadable."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = clean(str(value)).strip()
    return text or None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


class _Cursor:
    """``changes_since`` state: the end of the last window read, what it already reported, and
    the last status reported per watched ticket (``watched``)."""

    def __init__(
        self, until: datetime | None, seen: dict[str, str], watched: dict[str, str] | None = None
    ) -> None:
        self.until = until
        self.seen = seen
        self.watched = watched or {}

    @classmethod
    def load(cls, raw: str | None, department: str) -> _Cursor:
        if not raw:
            return cls(None, {})
        try:
            data = json.loads(raw)
            until = parse_datetime(data["t"])
            seen = {str(k): str(v) for k, v in dict(data.get("seen", {})).items()}
            watched = {str(k): str(v) for k, v in dict(data.get("w", {})).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("open311_cursor_unreadable", department=department)
            return cls(None, {})
        return cls(until, seen, watched)

    def dump(self) -> str:
        assert self.until is not None
        body: dict[str, Any] = {"v": 1, "t": w3c(self.until), "seen": self.seen}
        if self.watched:
            body["w"] = self.watched
        return json.dumps(body, sort_keys=True)

    def prune(self, keep_from: datetime) -> None:
        self.seen = {
            k: v for k, v in self.seen.items() if (parse_datetime(v) or keep_from) >= keep_from
        }


# --------------------------------------------------------------------------- adapter


class Open311TicketSystem:
    """A department's Open311 (GeoReport v2, optionally mySociety) backend."""

    name: ClassVar[str] = "open311"
    Config: ClassVar[type[TicketingConfig]] = Open311Config

    def __init__(self, cfg: Open311Config, department: DepartmentConfig) -> None:
        self.cfg = cfg
        self.department = department
        self._updates: bool | None = (
            None if cfg.servicerequestupdates == "auto" else bool(cfg.servicerequestupdates)
        )
        self._tokens: bool | None = None
        self.capabilities = TicketCapabilities(
            idempotent_create=False,
            search_by_reference=cfg.searchable or cfg.reference_in_description,
            callbacks=False,
            extended_statuses=True,
            appends=self._updates is not False,
        )
        self.breaker = CircuitBreaker(
            f"open311:{department.id}",
            failure_threshold=cfg.breaker_failures,
            cooldown=cfg.breaker_cooldown,
        )
        self.http = HttpClient(
            f"open311 {department.id}",
            timeout=cfg.timeout,
            breaker=self.breaker,
            follow_redirects=cfg.follow_redirects,
        )
        self.statuses = StatusMap(
            "open311", department.id, cfg.status_map, DEFAULT_STATUS_MAP, cfg.unknown_status
        )
        self._outgoing = {**DEFAULT_OUTGOING_STATUS_MAP, **cfg.outgoing_status_map}
        self._services: dict[str, dict[str, Any]] | None = None
        self._services_at: datetime | None = None
        self._definitions: dict[str, tuple[datetime, list[dict[str, Any]]]] = {}
        self._watch: dict[str, str] | None = None

    # ---- HTTP

    def _url(self, endpoint: str) -> str:
        return f"{self.cfg.base_url}{endpoint}.{self.cfg.format}"

    async def _get(
        self, endpoint: str, params: Mapping[str, str] | None = None, **kw: Any
    ) -> Response:
        query = dict(params or {})
        if self.cfg.jurisdiction_id:
            query["jurisdiction_id"] = self.cfg.jurisdiction_id
        return await self.http.request(
            "GET", self._url(endpoint), what=f"open311 GET {endpoint}", params=query or None, **kw
        )

    async def _post(self, endpoint: str, form: list[tuple[str, str]]) -> Any:
        if self.cfg.jurisdiction_id:
            form = [*form, ("jurisdiction_id", self.cfg.jurisdiction_id)]
        resp = await self.http.request(
            "POST", self._url(endpoint), what=f"open311 POST {endpoint}", data=form
        )
        # For a create the ticket may well exist: an unreadable answer is transient, so the
        # runtime reconciles by reference.
        return self._parsed(resp)

    def _parsed(self, resp: Response) -> Any:
        try:
            return parse_body(resp.body, self.cfg.format)
        except Malformed as exc:
            raise TransientError(
                f"{resp.what}: unreadable {self.cfg.format} answer ({exc})"
            ) from None

    async def _call(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        form: list[tuple[str, str]] | None = None,
        not_found_ok: bool = False,
    ) -> Any:
        """One API call; the parsed body, or None for an allowed 404."""
        if method == "POST":
            return await self._post(endpoint, form or [])
        resp = await self._get(endpoint, params, accept=(404,) if not_found_ok else ())
        return None if resp.status == 404 else self._parsed(resp)

    async def _list(
        self, endpoint: str, params: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], bool]:
        """Every record of a list, page after page (``X-Next-Page-URL``, else ``X-Page-Count``
        with ``page=``). The flag says whether the server paged (else it may have capped)."""
        resp = await self._get(endpoint, params)
        records = as_list(self._parsed(resp))
        paged = False
        seen_urls: set[str] = set()
        page = 1
        while page < self.cfg.max_pages:
            next_url = resp.headers.get("X-Next-Page-URL")
            pages = _int_header(resp.headers.get("X-Page-Count"))
            if next_url:
                url = urljoin(self._url(endpoint), next_url.strip())
                if urlsplit(url).netloc != urlsplit(self.cfg.base_url).netloc or url in seen_urls:
                    break  # never follow a link off the configured server, nor in circles
                seen_urls.add(url)
                resp = await self.http.request("GET", url, what=f"open311 GET {endpoint} page")
            elif pages is not None and page < pages:
                resp = await self._get(endpoint, {**params, "page": str(page + 1)})
            else:
                break
            paged = True
            page += 1
            more = as_list(self._parsed(resp))
            if not more:
                break
            records.extend(more)
        return records, paged

    async def _window(
        self, params: Mapping[str, str], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """``GET requests`` over [start, end]: paged, and split in halves where an unpaged
        answer reaches ``max_records`` (the server may have cut it)."""
        query = {**params, "start_date": w3c(start), "end_date": w3c_end(end)}
        records, paged = await self._list("requests", query)
        if paged or len(records) < self.cfg.max_records or end - start <= timedelta(minutes=1):
            return records
        middle = start + (end - start) / 2
        first = await self._window(params, start, middle)
        second = await self._window(params, middle, end)
        merged = {str(r.get("service_request_id")): r for r in first + second}
        return list(merged.values())

    # ---- capabilities

    async def detect(self) -> TicketCapabilities:
        """What the server offers beyond plain GeoReport (``servicerequestupdates``) when the
        config says ``auto``; updates ``capabilities``."""
        if self._updates is None:
            now = utcnow()
            window = {"start_date": w3c(now - timedelta(minutes=1)), "end_date": w3c_end(now)}
            try:
                await self._call("GET", "servicerequestupdates", params=window)
                self._updates = True
            except PermanentError:
                self._updates = False
                log.info(
                    "open311_no_servicerequestupdates",
                    department=self.department.id,
                    effect="status from requests; follow-ups kept in the bridge",
                )
            self.capabilities = self.capabilities.model_copy(update={"appends": self._updates})
        return self.capabilities

    async def _has_updates(self) -> bool:
        if self._updates is None:
            await self.detect()
        return bool(self._updates)

    def watch(self, tickets: Mapping[str, str]) -> None:
        """The bridge's open tickets (id → native status it knows): asked for by id at every
        ``changes_since``, so a change that does not move ``updated_datetime`` is seen."""
        self._watch = dict(tickets)

    # ---- services

    async def _catalogue(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        now = utcnow()
        fresh = (
            self._services_at is not None and now - self._services_at < self.cfg.service_cache_ttl
        )
        if self._services is None or refresh or not fresh:
            records, _ = await self._list("services", {})
            self._services = {
                str(_text(s["service_code"])): s for s in records if _text(s.get("service_code"))
            }
            self._services_at = now
        return self._services

    async def _service(self, code: str) -> dict[str, Any]:
        catalogue = await self._catalogue()
        if code not in catalogue:  # a new service since the cache was filled?
            catalogue = await self._catalogue(refresh=True)
        if code not in catalogue:
            offered = sorted(catalogue)
            listed = ", ".join(offered[:20]) + (" …" if len(offered) > 20 else "")
            raise PermanentError(
                f"open311: service_code {code!r} is not offered by {self.cfg.base_url} "
                f"(offered: {listed or 'none'})"
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

    def _description(self, text: str, reference: str | None) -> str:
        if reference is None or not self.cfg.reference_in_description:
            return clean_description(text, self.cfg.max_description_chars)
        marker = reference_marker(reference)
        body = clean_description(text, self.cfg.max_description_chars - len(marker) - 2)
        return f"{body}\n\n{marker}"

    # ---- statuses

    def map_status(
        self,
        native: str | None,
        external_code: str | None = None,
        *,
        ticket_id: str | None = None,
    ) -> TicketStatus | None:
        """Canonical status for a native code; None when configured to IGNORE it."""
        return self.statuses.map(external_code, native, ticket_id=ticket_id)

    def native_status_for(self, status: TicketStatus) -> str:
        return self._outgoing[status]

    def _ticket_from_record(self, record: dict[str, Any]) -> CreatedTicket:
        native = _text(record.get("status")) or "open"
        status = self.map_status(native, ticket_id=_text(record.get("service_request_id")))
        return CreatedTicket(
            ticket_id=str(_text(record.get("service_request_id"))),
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
            ("description", self._description(command.description, command.reference)),
            *self._location(),
            *self.cfg.extra_fields.items(),
            *attributes,
        ]
        items = as_list(await self._post("requests", form))
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

    def _proves(self, record: dict[str, Any], reference: str) -> bool:
        """The record carries our reference (echoed attribute, or the description marker)."""
        attrs = record.get("attributes")
        if isinstance(attrs, dict) and _text(attrs.get(self.cfg.reference_attribute)) == reference:
            return True
        description = record.get("description")
        return isinstance(description, str) and reference_marker(reference) in description

    async def find_by_reference(self, reference: str) -> CreatedTicket | None:
        """The ticket carrying ``reference``, read from the recent requests (paged). Only a
        record that proves it is ours is accepted; ``None`` when none does."""
        if not self.capabilities.search_by_reference:
            raise PermanentError(
                "open311: this backend cannot search by reference (searchable = false and "
                "reference_in_description = false); reconcile by hand"
            )
        now = utcnow()
        params = {"service_code": ",".join(sorted(set(self.cfg.service_codes.values())))}
        if self.cfg.searchable:
            params[f"attribute[{self.cfg.reference_attribute}]"] = reference
        records = await self._window(params, now - self.cfg.reference_lookback, now)
        matches = [r for r in records if self._proves(r, reference)]
        if not matches:
            if self.cfg.searchable and not self.cfg.reference_in_description and records:
                raise PermanentError(
                    f"open311: GET requests ignored attribute[{self.cfg.reference_attribute}] "
                    f"({len(records)} records came back, none provably ours); set searchable = "
                    f"false for this backend"
                )
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
        if not await self._has_updates():
            raise PermanentError(
                "open311: this backend offers no servicerequestupdates; cannot append "
                "follow-ups (capabilities.appends is false: keep them in the bridge)"
            )
        native = self.native_status_for(status) if status is not None else self.cfg.append_status
        form: list[tuple[str, str]] = [
            ("api_key", self.cfg.api_key.get_secret_value()),
            ("service_request_id", ticket_id),
            ("update_id", stable_id("gbu", command.command_id)),
            ("status", native),
            ("updated_datetime", w3c(utcnow())),
            ("description", self._description(command.description, None)),
            *self.cfg.extra_fields.items(),
        ]
        await self._post("servicerequestupdates", form)

    @property
    def can_reopen(self) -> bool:
        """A reopen is a ``servicerequestupdates`` POST: only where the server offers it."""
        return self._updates is not False

    async def reopen(self, ticket_id: str, command: TicketCommand) -> None:
        """重办: POST servicerequestupdates with the open status ``outgoing_status_map`` gives
        ``reopened`` (mySociety's ``reopen`` by default; the server reports the request open
        again), the 回访 reading and the citizen's masked answer as its description."""
        await self.append(ticket_id, command, status=TicketStatus.REOPENED)

    async def changes_since(self, cursor: str | None) -> ChangesResult:
        cur = _Cursor.load(cursor, self.department.id)
        now = utcnow()
        since = cur.until or now - self.cfg.initial_lookback
        start = since - self.cfg.poll_overlap
        if await self._has_updates():
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
        try:
            body = await self._call(
                "GET",
                "servicerequestupdates",
                params={"start_date": w3c(start), "end_date": w3c_end(end)},
            )
        except PermanentError as exc:
            raise PermanentError(exc.reason + _NO_UPDATES_HINT) from None
        return self.events_from_updates(cur, body, end)

    def events_from_updates(self, cur: _Cursor, body: Any, end: datetime) -> list[TicketEvent]:
        """``servicerequestupdates`` records (parsed) → events not reported before."""
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

    async def _watched_records(self, ids: list[str]) -> list[dict[str, Any]]:
        """The records of these tickets, asked for by id in batches (``service_request_id=a,b``)."""
        found: list[dict[str, Any]] = []
        wanted = set(ids)
        for i in range(0, len(ids), self.cfg.id_batch):
            batch = ids[i : i + self.cfg.id_batch]
            records, _ = await self._list("requests", {"service_request_id": ",".join(batch)})
            found.extend(r for r in records if _text(r.get("service_request_id")) in wanted)
        return found

    async def _from_requests(
        self, cur: _Cursor, start: datetime, now: datetime
    ) -> list[TicketEvent]:
        """Without servicerequestupdates: requests whose ``updated_datetime`` moved in the
        window, and the watched tickets whose status differs from the last one known."""
        codes = ",".join(sorted(set(self.cfg.service_codes.values())))
        records = await self._window({"service_code": codes}, now - self.cfg.requests_lookback, now)
        watch = self._watch if self._watch is not None else {}
        known = {_text(r.get("service_request_id")) for r in as_list(records)}
        missing = sorted(t for t in watch if t not in known)
        if missing:
            records = [*as_list(records), *await self._watched_records(missing)]
        return self.events_from_records(cur, records, start, now)

    def events_from_records(
        self, cur: _Cursor, records: Any, start: datetime, now: datetime
    ) -> list[TicketEvent]:
        """Request records (parsed) → the changes among them: watched tickets whose status
        differs from the last one known, others whose ``updated_datetime`` moved in the window.
        Records that cannot be read are skipped (one bad record never stops the others)."""
        watch = self._watch if self._watch is not None else {}
        by_id: dict[str, dict[str, Any]] = {}
        for rec in as_list(records):
            ticket_id = _text(rec.get("service_request_id"))
            if ticket_id is not None:
                by_id[ticket_id] = rec
        cur.watched = {t: v for t, v in cur.watched.items() if t in watch}
        events = []
        for ticket_id, rec in by_id.items():
            updated = parse_datetime(rec.get("updated_datetime"))
            native = _text(rec.get("status")) or ""
            if updated is None or not native:
                continue
            event_id = stable_id(
                "tev", "open311", self.department.id, "request", ticket_id, w3c(updated), native
            )
            if ticket_id in watch:
                known = cur.watched.get(ticket_id, watch[ticket_id])
                if native.casefold() == known.casefold():
                    continue
                cur.watched[ticket_id] = native
                cur.seen[event_id] = w3c(updated)  # a restart without the watch list too
                occurred = updated if updated >= start else now  # stale: seen now
            else:
                if updated < start or event_id in cur.seen:
                    continue
                cur.seen[event_id] = w3c(updated)
                occurred = updated
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
                occurred,
                _text(rec.get("status_notes")),
                reference,
            )
            # A record untouched since creation is the create itself, already reported (its
            # two times may differ by microseconds).
            untouched = requested is not None and abs(updated - requested) <= CREATION_SLACK
            if event is None or (untouched and event.status == TicketStatus.RECEIVED):
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
        """Reachable; the key accepted; every configured service offered with its required
        attributes configured; what the server offers beyond GeoReport detected (``describe``)."""
        problems = []
        key_refused = False
        try:
            await self._check_key()
        except AuthError as exc:
            key_refused = True
            problems.append(
                f"departments.ticketing.api_key of {self.department.id!r} is refused: {exc.reason}"
            )
        catalogue = await self._catalogue(refresh=True)
        for category, code in self.cfg.service_codes.items():
            if code not in catalogue:
                problems.append(f"service_code {code!r} ({category.value}) not offered")
                continue
            try:
                await self._attributes_for(code, "check")
            except PermanentError as exc:
                problems.append(exc.reason.removeprefix("open311: "))
        if self.cfg.servicerequestupdates is True:
            now = utcnow()
            window = {"start_date": w3c(now - timedelta(minutes=1)), "end_date": w3c_end(now)}
            try:
                await self._call("GET", "servicerequestupdates", params=window)
            except PermanentError as exc:
                problems.append(f"{exc.reason}{_NO_UPDATES_HINT}")
        else:
            await self.detect()
        self._tokens = await self._offers("tokens/govbridge-check")
        if problems:
            reason = f"open311 {self.department.id}: " + "; ".join(problems)
            raise AuthError(reason) if key_refused else PermanentError(reason)

    async def _check_key(self) -> None:
        """A harmless call with the key: a create without service code or location, which no
        server can accept. A refused key answers 401/403 or 400 naming the key; a server that
        checks the key first then complains about the missing fields."""
        try:
            await self._post("requests", [("api_key", self.cfg.api_key.get_secret_value())])
        except AuthError:
            raise
        except PermanentError:
            return
        log.warning("open311_key_check_inconclusive", department=self.department.id)

    async def _offers(self, endpoint: str) -> bool:
        """Does the server route ``endpoint``? A 404 in the spec's error shape says it does (the
        thing asked for is unknown); an HTML page or an unreadable 404 says it does not."""
        try:
            resp = await self._get(endpoint, accept=(404,))
        except AdapterError:
            return False
        if resp.status != 404:
            return True
        try:
            return bool(as_list(parse_body(resp.body, self.cfg.format)))
        except Malformed:
            return False

    def describe(self) -> str:
        """What was detected, for ``govbridge check --adapters``."""
        updates = {True: "yes", False: "no (follow-ups kept in the bridge)", None: "unknown"}
        tokens = {True: "yes", False: "no", None: "unknown"}
        return (
            f"servicerequestupdates: {updates[self._updates]}; tokens: {tokens[self._tokens]}; "
            f"find by reference: {'yes' if self.capabilities.search_by_reference else 'no'}"
        )

    async def close(self) -> None:
        await self.http.close()


def _int_header(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value.strip()) > 6:
        return None
    return int(value.strip())
