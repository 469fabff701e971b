"""Generic JSON ticket system: one adapter for every department whose backend speaks REST.

Nothing here is specific to a department. The ``ticketing`` block of the department's config says
where the endpoints are, how a ``TicketCommand`` becomes a request body, where the ticket id and
status sit in the responses, and how native statuses map onto the canonical lifecycle::

    [departments.ticketing]
    adapter = "rest"
    base_url = "https://tickets.example.gov/api"
    auth = { bearer = "${TICKETS_TOKEN}" }        # or { api_key = "…", api_key_header = "X-Key" }
    status_map = { NEW = "received", ASSIGNED = "referred", DONE = "resolved", DRAFT = "IGNORE" }

    [departments.ticketing.create]
    path = "/tickets"
    id_path = "ticket.id"
    status_path = "ticket.status"
    body = { title = "{category_label}", body = "{description}", external_ref = "{reference}" }

    [departments.ticketing.lookup]                 # optional: enables search by reference
    path = "/tickets?external_ref={reference}"
    results_path = "tickets"

    [departments.ticketing.append]                 # path = "": no append endpoint
    path = "/tickets/{ticket_id}/comments"
    body = { body = "{description}" }

    [departments.ticketing.changes]                # also the item mapping of callbacks
    path = "/changes"
    cursor_param = "since"
    items_path = "changes"
    next_cursor_path = "next_cursor"
    item = { event_id = "id", ticket_id = "ticket_id", status = "status", time = "at" }

Templates are ``str.format`` strings over the fields in ``TEMPLATE_FIELDS`` (checked when the
config is loaded, so a typo is a config error, not a dead letter). Paths into JSON are dotted
(``data.items.0.id``; ``""`` is the document itself).

Errors: 401/403 → ``AuthError``; 409 on create (repeated ``Idempotency-Key``) → the existing
ticket; 429 → ``RateLimited``; other 4xx → ``PermanentError``; 5xx, timeouts and refused
connections → ``TransientError``. A ``CircuitBreaker`` stops hammering a backend that is down.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.base import (
    ChangesResult,
    CreatedTicket,
    PermanentError,
    TicketCapabilities,
)
from adapters.circuit import CircuitBreaker
from adapters.http import HttpClient
from adapters.statusmap import StatusMap, StatusTarget
from adapters.text import clean, has_control
from adapters.wire import Malformed, parse_json
from schemas.config import DepartmentConfig, Duration, TicketingConfig
from schemas.messages import TicketCommand, TicketEvent
from schemas.vocab import TicketStatus

log = structlog.get_logger(__name__)

TEMPLATE_FIELDS: frozenset[str] = frozenset(
    {
        "reference",
        "description",
        "public_text",
        "text",
        "category",
        "category_label",
        "department",
        "command_id",
        "inquiry_id",
        "platform",
        "account",
        "kind",
        "kind_label",
        "external_id",
        "author_id",
        "author_handle",
        "created_at",
        "url",
        "visibility",
        "ticket_id",
    }
)


# --------------------------------------------------------------------------- templates


def _placeholders(template: str) -> set[str]:
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            if not name or not name.isidentifier():
                raise ValueError(f"template {template!r}: use named fields like {{reference}}")
            names.add(name)
    return names


def _check_template(value: Any, where: str, allowed: frozenset[str] = TEMPLATE_FIELDS) -> None:
    """Reject unknown ``{fields}`` when the config is loaded."""
    if isinstance(value, str):
        try:
            unknown = _placeholders(value) - allowed
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if unknown:
            raise ValueError(
                f"{where}: unknown template field(s) {sorted(unknown)}; known: {sorted(allowed)}"
            )
        try:  # a format spec such as {reference:d} would only fail at the first create
            value.format_map({name: "x" for name in allowed})
        except (ValueError, IndexError, KeyError) as e:
            raise ValueError(f"{where}: bad template ({e})") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_template(v, f"{where}.{k}", allowed)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_template(v, f"{where}[{i}]", allowed)


def render_body(template: Any, fields: Mapping[str, str]) -> Any:
    """Fill every string leaf of a JSON template; numbers, booleans and nulls pass through."""
    if isinstance(template, str):
        return template.format_map(fields)
    if isinstance(template, dict):
        return {k: render_body(v, fields) for k, v in template.items()}
    if isinstance(template, list):
        return [render_body(v, fields) for v in template]
    return template


def render_path(template: str, fields: Mapping[str, str]) -> str:
    """Fill a path template, percent-encoding each value (a reference may hold ``/`` or ``&``)."""
    return template.format_map({k: quote(v, safe="") for k, v in fields.items()})


def command_fields(command: TicketCommand) -> dict[str, str]:
    """The values a template may use, all strings (``""`` where absent)."""
    inq = command.inquiry
    return {
        "reference": command.reference,
        "description": command.description,
        "public_text": command.public_text,
        # the inquiry's text as the department may see it: unmasked only with keep_personal_data
        "text": command.description,
        "category": command.category.value,
        "category_label": command.category.label,
        "department": command.department,
        "command_id": command.command_id,
        "inquiry_id": inq.inquiry_id,
        "platform": inq.platform,
        "account": inq.account,
        "kind": inq.kind.value,
        "kind_label": inq.kind.label,
        "external_id": inq.external_id,
        "author_id": inq.author.id,
        "author_handle": inq.author.handle,
        "created_at": inq.created_at.isoformat(),
        "url": inq.url or "",
        "visibility": inq.visibility.value,
        "ticket_id": command.ticket_id or "",
    }


_MISSING = object()


def get_path(doc: Any, path: str) -> Any:
    """Follow a dotted path (``a.b.0.c``) into parsed JSON; ``_MISSING`` if it is not there."""
    if path == "":
        return doc
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif (
            isinstance(cur, list)
            and part.lstrip("-").isdigit()
            and -len(cur) <= int(part) < len(cur)
        ):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def parse_time(value: Any) -> datetime:
    """ISO 8601 or unix seconds; naive times are taken as UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("unix seconds out of range") from None
    if isinstance(value, str) and value.strip():
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not an ISO 8601 time") from None
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise ValueError("not a time (ISO 8601 string or unix seconds)")


# --------------------------------------------------------------------------- config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RestAuth(_Strict):
    """Exactly one of ``bearer`` (``Authorization: Bearer …``) or ``api_key`` (in a header)."""

    bearer: SecretStr | None = None
    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"

    @model_validator(mode="after")
    def _one(self) -> RestAuth:
        if (self.bearer is None) == (self.api_key is None):
            raise ValueError("auth: set exactly one of 'bearer' or 'api_key'")
        return self

    def headers(self) -> dict[str, str]:
        if self.bearer is not None:
            return {"Authorization": f"Bearer {self.bearer.get_secret_value()}"}
        assert self.api_key is not None
        return {self.api_key_header: self.api_key.get_secret_value()}


Method = Literal["GET", "POST", "PUT", "PATCH"]


class CreateEndpoint(_Strict):
    method: Method = "POST"
    path: str = "/tickets"
    body: dict[str, Any] = Field(
        default_factory=lambda: {
            "title": "{category_label}",
            "body": "{description}",
            "external_ref": "{reference}",
        }
    )
    id_path: str = "id"
    status_path: str | None = "status"
    created_at_path: str | None = None
    idempotency_header: str = "Idempotency-Key"

    @model_validator(mode="after")
    def _templates(self) -> CreateEndpoint:
        _check_template(self.path, "create.path")
        _check_template(self.body, "create.body")
        return self


class LookupEndpoint(_Strict):
    """Search by the bridge's reference; ``results_path`` points at a list or one object."""

    method: Method = "GET"
    path: str = "/tickets?external_ref={reference}"
    results_path: str = "tickets"
    id_path: str = "id"
    status_path: str | None = "status"
    reference_path: str | None = Field(
        default=None,
        description="If set, only a result whose value here equals the reference counts "
        "(guards against a backend that ignores the filter).",
    )

    @model_validator(mode="after")
    def _templates(self) -> LookupEndpoint:
        _check_template(self.path, "lookup.path", frozenset({"reference"}))
        return self


class AppendEndpoint(_Strict):
    """Where a follow-up is appended; ``path = ""``: the system has no such endpoint (the
    department's ``follow_ups`` says where follow-ups go instead)."""

    method: Method = "POST"
    path: str = "/tickets/{ticket_id}/comments"
    body: dict[str, Any] = Field(default_factory=lambda: {"body": "{description}"})

    @model_validator(mode="after")
    def _templates(self) -> AppendEndpoint:
        _check_template(self.path, "append.path")
        _check_template(self.body, "append.body")
        return self


class ReopenEndpoint(_Strict):
    """Where a final ticket is reopened (重办) after a 回访 answer of 未解决 or 不满意;
    ``path = ""`` (the default): the system has no reopen call (the bridge files a new ticket
    linked to the old one instead). E.g. ``path = "/tickets/{ticket_id}/reopen"``."""

    method: Method = "POST"
    path: str = ""
    body: dict[str, Any] = Field(default_factory=lambda: {"reason": "{description}"})

    @model_validator(mode="after")
    def _templates(self) -> ReopenEndpoint:
        _check_template(self.path, "reopen.path")
        _check_template(self.body, "reopen.body")
        return self


class ItemMapping(_Strict):
    """Where each field of one status change sits in a changes item (or a callback item)."""

    event_id: str = "id"
    ticket_id: str = "ticket_id"
    status: str = "status"
    time: str = "time"
    note: str | None = "note"
    reference: str | None = None


class ChangesEndpoint(_Strict):
    """Polling for status changes; ``path = ""`` disables polling (callbacks only)."""

    method: Method = "GET"
    path: str = "/changes"
    cursor_param: str = "since"
    limit_param: str | None = None
    limit: int = Field(default=100, ge=1)
    items_path: str = "items"
    next_cursor_path: str | None = "next_cursor"
    cursor_item_path: str | None = Field(
        default=None,
        description="Without a next cursor in the response, take the last item's value here.",
    )
    item: ItemMapping = Field(default_factory=ItemMapping)


class RestConfig(TicketingConfig):
    """``departments.ticketing`` for ``adapter = "rest"``."""

    model_config = ConfigDict(extra="forbid")

    adapter: Literal["rest"] = "rest"
    base_url: str = Field(pattern=r"^https?://")
    auth: RestAuth
    timeout: Duration = timedelta(seconds=10)
    create: CreateEndpoint = Field(default_factory=CreateEndpoint)
    lookup: LookupEndpoint | None = None
    append: AppendEndpoint = Field(default_factory=AppendEndpoint)
    reopen: ReopenEndpoint = Field(default_factory=ReopenEndpoint)
    changes: ChangesEndpoint = Field(default_factory=ChangesEndpoint)
    status_map: dict[str, StatusTarget] = Field(
        default_factory=dict,
        description="Native status → canonical status, or IGNORE to drop such changes.",
    )
    circuit_failures: int = Field(default=5, ge=1)
    circuit_cooldown: Duration = timedelta(seconds=30)

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")


# --------------------------------------------------------------------------- adapter


class RestTicketSystem:
    """A JSON ticket API described entirely by config."""

    name: ClassVar[str] = "rest"
    Config: ClassVar[type[TicketingConfig]] = RestConfig

    def __init__(self, cfg: TicketingConfig, department: DepartmentConfig) -> None:
        if not isinstance(cfg, RestConfig):
            cfg = RestConfig.model_validate(cfg.model_dump())
        self.cfg: RestConfig = cfg
        self.department = department
        self.capabilities = TicketCapabilities(
            idempotent_create=True,
            search_by_reference=cfg.lookup is not None,
            callbacks=True,
            extended_statuses=True,
            appends=bool(cfg.append.path),
        )
        self.breaker = CircuitBreaker(
            f"rest:{department.id}",
            failure_threshold=cfg.circuit_failures,
            cooldown=cfg.circuit_cooldown,
        )
        self.http = HttpClient(
            f"rest {department.id}",
            timeout=cfg.timeout,
            headers={"Accept": "application/json"},
            breaker=self.breaker,
            follow_redirects=cfg.follow_redirects,
        )
        self.statuses = StatusMap("rest", department.id, cfg.status_map)

    # ------------------------------------------------------------------ http

    async def _request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        """One call; returns (status, parsed JSON or None) for 2xx and ``accept`` statuses."""
        all_headers = {**self.cfg.auth.headers(), **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            all_headers["Content-Type"] = "application/json"
        resp = await self.http.request(
            method,
            self.cfg.base_url + path,
            what=f"rest {self.department.id} {op}",
            data=data,
            params=params,
            headers=all_headers,
            accept=accept,
        )
        if not resp.ok:
            return resp.status, _json_or_none(resp.body)
        return resp.status, resp.json()

    # ------------------------------------------------------------------ statuses

    def map_status(self, native: str) -> TicketStatus | None:
        """Canonical status of a native one; ``None`` for IGNORE; unknown → warn, ``received``."""
        return self.statuses.map(native)

    def _ticket_from(
        self, doc: Any, id_path: str, status_path: str | None, created_at_path: str | None = None
    ) -> CreatedTicket | None:
        ticket_id = get_path(doc, id_path)
        if ticket_id is _MISSING or ticket_id is None or isinstance(ticket_id, dict | list):
            return None
        native = get_path(doc, status_path) if status_path else _MISSING
        created_at = None
        if created_at_path:
            raw_time = get_path(doc, created_at_path)
            if raw_time is not _MISSING:
                try:
                    created_at = parse_time(raw_time)
                except ValueError:
                    created_at = None
        if native is _MISSING or native is None:
            return CreatedTicket(ticket_id=str(ticket_id), created_at=created_at)
        status = self.map_status(str(native)) or TicketStatus.RECEIVED
        return CreatedTicket(
            ticket_id=str(ticket_id),
            status=status,
            native_status=str(native),
            created_at=created_at,
        )

    # ------------------------------------------------------------------ protocol

    async def create(self, command: TicketCommand, idempotency_key: str) -> CreatedTicket:
        """Create with ``Idempotency-Key``; a 409 (key seen before) yields the existing ticket."""
        ep = self.cfg.create
        fields = command_fields(command)
        status, doc = await self._request(
            "create",
            ep.method,
            render_path(ep.path, fields),
            body=render_body(ep.body, fields),
            headers={ep.idempotency_header: idempotency_key},
            accept=(409,),
        )
        ticket = self._ticket_from(doc, ep.id_path, ep.status_path, ep.created_at_path)
        if ticket is not None:
            if status == 409:
                log.info("rest.create_replayed", department=self.department.id)
            return ticket
        if status == 409 and self.cfg.lookup is not None:
            found = await self.find_by_reference(command.reference)
            if found is not None:
                return found
        raise PermanentError(
            f"create: HTTP {status} response has no ticket id at {ep.id_path!r}"
            + (" (idempotency conflict)" if status == 409 else "")
        )

    async def find_by_reference(self, reference: str) -> CreatedTicket | None:
        ep = self.cfg.lookup
        if ep is None:
            raise PermanentError("lookup: this REST backend has no search endpoint configured")
        status, doc = await self._request(
            "lookup",
            ep.method,
            render_path(ep.path, {"reference": reference}),
            accept=(404,),
        )
        if status == 404:
            return None
        results = get_path(doc, ep.results_path)
        if results is _MISSING or results is None:
            return None
        candidates = results if isinstance(results, list) else [results]
        for cand in candidates:
            if ep.reference_path is not None:
                ref = get_path(cand, ep.reference_path)
                if ref is _MISSING or str(ref) != reference:
                    continue
            ticket = self._ticket_from(cand, ep.id_path, ep.status_path)
            if ticket is not None:
                return ticket
        return None

    async def append(self, ticket_id: str, command: TicketCommand) -> None:
        ep = self.cfg.append
        if not ep.path:
            raise PermanentError(
                f"rest {self.department.id}: no append endpoint (append.path is empty);"
                " follow-ups go where departments.follow_ups says"
            )
        fields = {**command_fields(command), "ticket_id": ticket_id}
        await self._request(
            "append",
            ep.method,
            render_path(ep.path, fields),
            body=render_body(ep.body, fields),
            headers={"Idempotency-Key": command.command_id},
        )

    @property
    def can_reopen(self) -> bool:
        return bool(self.cfg.reopen.path)

    async def reopen(self, ticket_id: str, command: TicketCommand) -> None:
        """The configured reopen call (``Idempotency-Key``: the command id)."""
        ep = self.cfg.reopen
        if not ep.path:
            raise PermanentError(f"rest {self.department.id}: no reopen endpoint (reopen.path)")
        fields = {**command_fields(command), "ticket_id": ticket_id}
        await self._request(
            "reopen",
            ep.method,
            render_path(ep.path, fields),
            body=render_body(ep.body, fields),
            headers={"Idempotency-Key": command.command_id},
        )

    async def changes_since(self, cursor: str | None) -> ChangesResult:
        """One page of the changes feed; malformed items are skipped with a warning."""
        ep = self.cfg.changes
        if not ep.path:
            return ChangesResult(events=[], cursor=cursor)
        params: dict[str, str] = {}
        if cursor is not None:
            params[ep.cursor_param] = cursor
        if ep.limit_param:
            params[ep.limit_param] = str(ep.limit)
        _, doc = await self._request("changes", ep.method, ep.path, params=params)
        return self.changes_from(doc, cursor)

    def changes_from(self, doc: Any, cursor: str | None) -> ChangesResult:
        """A changes page (parsed JSON) → its events and the next cursor; malformed items are
        skipped with a warning, a page without its list is a ``PermanentError``."""
        ep = self.cfg.changes
        items = get_path(doc, ep.items_path)
        if not isinstance(items, list):
            raise PermanentError(f"changes: response has no list at {ep.items_path!r}")
        events: list[TicketEvent] = []
        for i, item in enumerate(items):
            try:
                event = self._event(item, "poll")
            except ValueError as e:
                log.warning(
                    "rest.bad_change_item", department=self.department.id, reason=f"[{i}]{e}"
                )
                continue
            if event is not None:
                events.append(event)
        next_cursor = cursor
        found = get_path(doc, ep.next_cursor_path) if ep.next_cursor_path else _MISSING
        if isinstance(found, str | int) and not isinstance(found, bool) and found != "":
            next_cursor = clean(str(found))
        elif ep.cursor_item_path and items:
            last = get_path(items[-1], ep.cursor_item_path)
            if isinstance(last, str | int) and not isinstance(last, bool):
                next_cursor = clean(str(last))
        return ChangesResult(events=events, cursor=next_cursor)

    def _event(self, item: Any, source: Literal["poll", "callback"]) -> TicketEvent | None:
        """A ``TicketEvent`` from one item (``None`` for an IGNOREd status).

        Raises ``ValueError`` as ``".field: what is wrong"`` for a malformed item.
        """
        m = self.cfg.changes.item
        if not isinstance(item, dict):
            raise ValueError(": must be a JSON object")

        def required(name: str, path: str) -> Any:
            value = get_path(item, path)
            if value is _MISSING or value is None or value == "":
                raise ValueError(f".{path}: required {name} is missing")
            if isinstance(value, dict | list):
                raise ValueError(f".{path}: {name} must be a string or number")
            return value

        def identifier(name: str, path: str, value: Any) -> str:
            """An id is taken as it is or refused: one with a control character removed could
            name another ticket."""
            text = str(value)
            if has_control(text):
                raise ValueError(f".{path}: {name} must not contain control characters")
            return text

        ticket_id = identifier("ticket id", m.ticket_id, required("ticket id", m.ticket_id))
        native = clean(str(required("status", m.status)))
        try:
            occurred_at = parse_time(required("time", m.time))
        except ValueError as e:
            if str(e).startswith("."):
                raise
            raise ValueError(f".{m.time}: {e}") from None
        event_id = identifier("event id", m.event_id, required("event id", m.event_id))
        status = self.map_status(native)
        if status is None:
            log.debug("rest.ignored_status", department=self.department.id, native_status=native)
            return None
        note = get_path(item, m.note) if m.note else None
        reference = get_path(item, m.reference) if m.reference else None
        return TicketEvent(
            event_id=event_id,
            department=self.department.id,
            ticket_id=ticket_id,
            reference=None
            if reference in (None, _MISSING, "")
            else identifier("reference", m.reference or "", reference),
            status=status,
            native_status=native,
            occurred_at=occurred_at,
            note=None if note in (None, _MISSING, "") else clean(str(note)),
            source=source,
        )

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        """Events of a pushed (signature-checked) body: a list, ``{items_path: [...]}`` or one item.

        Unlike polling, a malformed item rejects the whole callback so the sender learns why.
        """
        try:
            doc = parse_json(body)
        except Malformed as e:
            what = "not JSON" if str(e).startswith("not JSON") else str(e)
            raise PermanentError(f"callback: body is {what}") from None
        items_path = self.cfg.changes.items_path
        where = "callback"
        if isinstance(doc, list):
            items = doc
        elif isinstance(doc, dict) and get_path(doc, items_path) is not _MISSING:
            items = get_path(doc, items_path)
            where = f"callback.{items_path}" if items_path else "callback"
            if not isinstance(items, list):
                raise PermanentError(f"{where}: must be a list of changes")
        elif isinstance(doc, dict):
            items = [doc]
        else:
            raise PermanentError("callback: body must be a JSON object or list")
        events: list[TicketEvent] = []
        for i, item in enumerate(items):
            try:
                event = self._event(item, "callback")
            except ValueError as e:
                label = f"{where}[{i}]" if len(items) > 1 or where != "callback" else where
                raise PermanentError(f"{label}{e}") from None
            if event is not None:
                events.append(event)
        return events

    async def check(self) -> None:
        """Reachable with valid credentials: the changes feed (or lookup) answers."""
        if self.cfg.changes.path:
            await self._request(
                "check", self.cfg.changes.method, self.cfg.changes.path, accept=(404, 405)
            )
        elif self.cfg.lookup is not None:
            path = render_path(self.cfg.lookup.path, {"reference": "govbridge-check"})
            await self._request("check", self.cfg.lookup.method, path, accept=(404,))
        else:
            await self._request("check", "GET", "/", accept=(404, 405))

    async def close(self) -> None:
        await self.http.close()


def _json_or_none(raw: bytes) -> Any:
    try:
        return parse_json(raw) if raw.strip() else None
    except Malformed:
        return None
