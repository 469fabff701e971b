"""An Open311 GeoReport v2 server with the mySociety extensions, for the demo and the tests.

Follows ``shared/reference/open311.md``: every endpoint takes a ``.json`` or ``.xml`` suffix,
``POST requests`` is form-encoded and needs ``api_key`` (403 otherwise), validation failures
answer 400 with the spec's error list ``[{"code": 400, "description": "..."}]``, ``GET requests``
filters by ``service_request_id`` (overrides the rest), ``service_code``, ``status`` and a
``start_date``/``end_date`` window on ``requested_datetime`` (at most 90 days, first 1000).

Modes, so one adapter can be tested against the backends it will meet:
``xml_only`` (JSON answers 404), ``updates_enabled`` (mySociety ``servicerequestupdates``),
``searchable`` (``GET requests`` honours ``attribute[<reference_attribute>]=...`` and shows the
stored attributes), ``token_mode`` (create answers a ``token``, resolved by ``GET tokens/{token}``
after ``token_delay`` seconds), ``uppercase_statuses``, ``extended_in_requests`` (records show
the extended status rather than only open/closed).

``quirks`` behaves like the public open-source GeoReport server described at the end of the
reference page, instead of the spec: lists paged at 100 records, newest first (``X-Page-Count``,
``X-Next-Page-URL``, ``page=``); errors as ``{"code", "detail"}``; a wrong key answered 400
``Invalid API key``; no ``servicerequestupdates`` and no ``tokens`` (unknown endpoints answer 404
with an HTML debug page); attributes a service does not define silently dropped and never
echoed; unknown filter parameters ignored; times with microseconds and a +02:00 offset, a new
record's ``updated_datetime`` microseconds after its ``requested_datetime``; and
``admin_set_status``, an official's change that leaves ``updated_datetime`` as it was.

Operator controls (Python methods and ``/_sim/...``): move a ticket through its lifecycle with a
note, outages (``"503"`` answers or ``"refuse"``: the socket stops listening, then listens again
on the same port), a request counter, runtime mode switches, and ``create_delay`` (a slow
backend: a create stored at once and answered that much later, or with ``create_commits_late``
stored only then, even when the client gave up; ``answering`` names the clients waiting for such
an answer, so a test can kill a process in the middle of its create).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from govbridge_tools.simulators.outage import change_outage

EXTENDED_STATUSES = (
    "open",
    "investigating",
    "in_progress",
    "planned",
    "action_scheduled",
    "no_further_action",
    "not_councils_responsibility",
    "duplicate",
    "internal_referral",
    "cancelled",
    "fixed",
    "closed",
    "for_triage",
)
UPDATE_ONLY_STATUSES = ("reopen", "unchanged")
CLOSED_STATUSES = frozenset(
    {
        "no_further_action",
        "not_councils_responsibility",
        "duplicate",
        "cancelled",
        "fixed",
        "closed",
    }
)
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
MAX_DESCRIPTION = 4000
MAX_WINDOW = timedelta(days=90)
MAX_RESULTS = 1000
_ATTRIBUTE_KEY = re.compile(r"^attribute\[([^\]]+)\](\[\])?$")
_HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")


def _w3c(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


QUIRKS_ZONE = timezone(timedelta(hours=2))
QUIRKS_PAGE = 100
_DEBUG_PAGE = (
    "<!DOCTYPE html><html><head><title>Page not found at {path}</title></head><body>"
    "<h1>Page not found (404)</h1><p>Request URL: {path}</p><p>Using the URLconf defined in "
    "georeport.urls, the path did not match any of these …</p><p>You're seeing this error "
    "because you have DEBUG = True in your settings file.</p></body></html>"
)


def _parse_w3c(value: str) -> datetime:
    ts = datetime.fromisoformat(value.strip().replace(" ", "+"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- backend records


@dataclass
class SimAttribute:
    code: str
    description: str
    required: bool = False
    datatype: str = "string"
    values: list[tuple[str, str]] = field(default_factory=list)
    variable: bool = True
    order: int = 1

    def wire(self) -> dict[str, Any]:
        return {
            "variable": self.variable,
            "code": self.code,
            "datatype": self.datatype,
            "required": self.required,
            "datatype_description": None,
            "order": self.order,
            "description": self.description,
            "values": [{"key": k, "name": n} for k, n in self.values],
        }


@dataclass
class SimService:
    code: str
    name: str
    description: str = ""
    group: str = ""
    keywords: str = ""
    type: str = "realtime"
    attributes: list[SimAttribute] = field(default_factory=list)

    @property
    def metadata(self) -> bool:
        return bool(self.attributes)

    def wire(self) -> dict[str, Any]:
        return {
            "service_code": self.code,
            "service_name": self.name,
            "description": self.description,
            "metadata": self.metadata,
            "type": self.type,
            "keywords": self.keywords,
            "group": self.group,
        }


@dataclass
class SimTicket:
    id: str
    service: SimService
    status: str
    requested_at: datetime
    updated_at: datetime
    description: str
    attributes: dict[str, str | list[str]]
    lat: float | None = None
    long: float | None = None
    address_string: str | None = None
    address_id: str | None = None
    status_notes: str | None = None
    token: str | None = None


@dataclass
class SimUpdate:
    update_id: str
    ticket_id: str
    status: str
    description: str | None
    updated_at: datetime
    origin: str  # "backend" (an official) or "client" (posted through the API)
    external_status_code: str | None = None
    client_update_id: str | None = None


def default_services(reference_attribute: str = "govbridge_ref") -> list[SimService]:
    """A transport department's catalogue: one service with a required list attribute."""
    ref = SimAttribute(
        reference_attribute,
        "Reference of the submitting system",
        variable=False,
        order=99,
    )
    return [
        SimService(
            "TR-01",
            "Road and traffic complaint",
            group="transport",
            keywords="road, traffic, 投诉",
            attributes=[
                SimAttribute(
                    "urgency",
                    "How urgent is it?",
                    required=True,
                    datatype="singlevaluelist",
                    values=[("low", "Low"), ("normal", "Normal"), ("high", "High")],
                ),
                SimAttribute("vehicle_plate", "Plate of the vehicle involved", order=2),
                ref,
            ],
        ),
        SimService("TR-02", "Public transport enquiry", group="transport", attributes=[ref]),
        SimService("TR-09", "Other transport matters", group="transport"),
    ]


class SimError(Exception):
    """Answer with the spec's error list."""

    def __init__(self, status: int, *descriptions: str) -> None:
        super().__init__("; ".join(descriptions))
        self.status = status
        self.descriptions = list(descriptions)


# --------------------------------------------------------------------------- state


class Open311State:
    """The backend's data, its modes and the operator controls."""

    def __init__(
        self,
        *,
        api_key: str = "sim-open311-key",
        jurisdiction_id: str | None = None,
        services: list[SimService] | None = None,
        reference_attribute: str = "govbridge_ref",
        xml_only: bool = False,
        updates_enabled: bool = True,
        searchable: bool = True,
        token_mode: bool = False,
        token_delay: float = 0.0,
        uppercase_statuses: bool = False,
        extended_in_requests: bool = True,
        agency: str = "市交通委",
        clock: Callable[[], datetime] | None = None,
        quirks: bool = False,
    ) -> None:
        self.quirks = quirks
        if quirks:  # a plain server: no extensions, nothing searchable, no tokens
            updates_enabled = searchable = token_mode = False
            extended_in_requests = False
        self.api_key = api_key
        self.jurisdiction_id = jurisdiction_id
        self.reference_attribute = reference_attribute
        self.services = services if services is not None else default_services(reference_attribute)
        self.xml_only = xml_only
        self.updates_enabled = updates_enabled
        self.searchable = searchable
        self.token_mode = token_mode
        self.token_delay = token_delay
        self.uppercase_statuses = uppercase_statuses
        self.extended_in_requests = extended_in_requests
        self.agency = agency
        self._clock = clock or (lambda: datetime.now(UTC))
        self.tickets: dict[str, SimTicket] = {}
        self.updates: list[SimUpdate] = []
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self._ticket_ids = itertools.count(1001)
        self._update_ids = itertools.count(5001)
        self.outage: str | None = None
        # A slow backend: a create is stored at once and answered this many seconds later
        # (a client that dies meanwhile never learns the id); ``answering`` holds the
        # User-Agent of every create being answered now (which process is mid-create).
        self.create_delay = 0.0
        self.create_commits_late = False  # stored only after create_delay (a slow commit)
        self.answering: list[str] = []
        self.request_count = 0
        self.requests_by_route: Counter[str] = Counter()
        # (unix time, method, route, User-Agent): who asked what, when (which process)
        self.request_log: list[tuple[float, str, str, str]] = []
        self._listener: Open311Server | None = None

    # ---- time

    def now(self) -> datetime:
        """Backend time, to the second (as most Open311 servers report it); with microseconds
        in ``quirks`` mode."""
        now = self._clock().astimezone(UTC)
        return now if self.quirks else now.replace(microsecond=0)

    def time(self, ts: datetime) -> str:
        """A time on the wire: W3C in UTC, or (quirks) microseconds and a +02:00 offset."""
        if self.quirks:
            return ts.astimezone(QUIRKS_ZONE).isoformat(timespec="microseconds")
        return _w3c(ts)

    # ---- operator controls

    def service(self, code: str) -> SimService | None:
        return next((s for s in self.services if s.code == code), None)

    def set_status(
        self,
        ticket_id: str,
        status: str,
        note: str | None = None,
        *,
        external_status_code: str | None = None,
    ) -> SimUpdate:
        """An official moves the ticket (``unchanged`` only adds a note); publishes an update."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise KeyError(ticket_id)
        native = status.lower()
        if native not in EXTENDED_STATUSES + UPDATE_ONLY_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = self.now()
        if native != "unchanged":
            ticket.status = native
        ticket.status_notes = note
        ticket.updated_at = now
        update = SimUpdate(
            update_id=str(next(self._update_ids)),
            ticket_id=ticket_id,
            status=native,
            description=note,
            updated_at=now,
            origin="backend",
            external_status_code=external_status_code,
        )
        self.updates.append(update)
        return update

    def admin_set_status(self, ticket_id: str, status: str, note: str | None = None) -> None:
        """An official changes the status in an admin tool: ``updated_datetime`` stays as it
        was and no update is published (a real server's behaviour, see the reference)."""
        ticket = self.tickets[ticket_id]
        if status.lower() not in EXTENDED_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        ticket.status = status.lower()
        ticket.status_notes = note

    def backdate(self, ticket_id: str, age: timedelta) -> None:
        """Make a ticket ``age`` old (requested and last updated then)."""
        ticket = self.tickets[ticket_id]
        ticket.requested_at = self.now() - age
        ticket.updated_at = ticket.requested_at + (
            timedelta(microseconds=37) if self.quirks else timedelta(0)
        )

    def add_foreign_requests(self, n: int, service_code: str) -> list[str]:
        """``n`` requests made by other clients (citizens on the council's own site)."""
        service = self.service(service_code)
        if service is None:
            raise KeyError(service_code)
        ids = []
        for i in range(n):
            now = self.now()
            ticket = SimTicket(
                id=str(next(self._ticket_ids)),
                service=service,
                status="open",
                requested_at=now,
                updated_at=now,
                description=f"foreign request {i}",
                attributes={},
                address_string="somewhere",
            )
            self.tickets[ticket.id] = ticket
            ids.append(ticket.id)
        return ids

    def inject_raw_update(self, ticket_id: str, status: str, note: str | None = None) -> SimUpdate:
        """A backend update with a status code outside the mySociety list (tests of mapping)."""
        ticket = self.tickets[ticket_id]
        now = self.now()
        ticket.updated_at = now
        update = SimUpdate(str(next(self._update_ids)), ticket_id, status, note, now, "backend")
        self.updates.append(update)
        return update

    def client_updates(self, ticket_id: str) -> list[SimUpdate]:
        """Updates posted through the API (the bridge's appended follow-ups)."""
        return [u for u in self.updates if u.ticket_id == ticket_id and u.origin == "client"]

    def reference_of(self, ticket: SimTicket) -> str | None:
        value = ticket.attributes.get(self.reference_attribute)
        return value if isinstance(value, str) else None

    def reset_counter(self) -> None:
        self.request_count = 0
        self.requests_by_route.clear()

    async def set_outage(self, mode: str | None) -> None:
        """``"503"``: API calls answer 503; ``"refuse"``: stop listening; ``None``: recover."""
        if mode not in (None, "503", "refuse"):
            raise ValueError(f"unknown outage mode {mode!r}")
        await change_outage(self, self._listener, mode)

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "id": t.id,
                "reference": self.reference_of(t) or "",
                "service_code": t.service.code,
                "status": t.status,
                "status_notes": t.status_notes,
                "description": t.description,
                "attributes": dict(t.attributes),
                "token": t.token,
                "appended": [u.description for u in self.client_updates(t.id)],
            }
            for t in self.tickets.values()
        ]

    # ---- wire helpers

    def wire_status(self, status: str) -> str:
        return status.upper() if self.uppercase_statuses else status

    def record(self, ticket: SimTicket) -> dict[str, Any]:
        status = ticket.status
        if not self.extended_in_requests:
            status = "closed" if status in CLOSED_STATUSES else "open"
        rec: dict[str, Any] = {
            "service_request_id": ticket.id,
            "status": self.wire_status(status),
            "status_notes": ticket.status_notes,
            "service_name": ticket.service.name,
            "service_code": ticket.service.code,
            "description": ticket.description,
            "agency_responsible": self.agency,
            "service_notice": None,
            "requested_datetime": self.time(ticket.requested_at),
            "updated_datetime": self.time(ticket.updated_at),
            "expected_datetime": None,
            "address": ticket.address_string,
            "address_id": ticket.address_id,
            "zipcode": None,
            "lat": ticket.lat,
            "long": ticket.long,
            "media_url": None,
        }
        if self.searchable and not self.quirks:
            rec["attributes"] = dict(ticket.attributes)
        return rec

    def update_record(self, update: SimUpdate) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "update_id": update.update_id,
            "service_request_id": update.ticket_id,
            "status": self.wire_status(update.status),
            "updated_datetime": self.time(update.updated_at),
            "description": update.description,
            "media_url": None,
        }
        if update.external_status_code is not None:
            rec["external_status_code"] = update.external_status_code
        return rec

    # ---- API operations (raise SimError)

    def check_jurisdiction(self, params: Any) -> None:
        if self.jurisdiction_id is None:
            return
        given = params.get("jurisdiction_id")
        if not given:
            raise SimError(400, "jurisdiction_id is required")
        if given != self.jurisdiction_id:
            raise SimError(404, f"jurisdiction_id {given} not found")

    def check_key(self, form: Any) -> None:
        if form.get("api_key") != self.api_key:
            if self.quirks:
                raise SimError(400, "Invalid API key")
            raise SimError(403, "Invalid or missing api_key")

    def create_request(self, form: Any) -> dict[str, Any]:
        self.check_key(form)
        self.check_jurisdiction(form)
        errors: list[str] = []
        code = form.get("service_code")
        service = self.service(code) if code else None
        if not code:
            errors.append("service_code is required")
        elif service is None:
            errors.append(f"service_code {code} not found")
        attrs: dict[str, str | list[str]] = {}
        for key in form:
            m = _ATTRIBUTE_KEY.match(key)
            if m is None:
                continue
            if m.group(2):
                attrs[m.group(1)] = list(form.getall(key))
            else:
                attrs[m.group(1)] = form.get(key)
        lat, long_ = form.get("lat"), form.get("long")
        address, address_id = form.get("address_string"), form.get("address_id")
        lat_f = long_f = None
        if (lat is None) != (long_ is None):
            errors.append("lat and long must be given together")
        elif lat is not None:
            try:
                lat_f, long_f = float(lat), float(long_)
            except ValueError:
                errors.append("lat and long must be numbers")
        if lat is None and not address and not address_id:
            errors.append("a location is required: lat and long, address_string or address_id")
        description = form.get("description") or ""
        if len(description) > MAX_DESCRIPTION:
            errors.append(f"description longer than {MAX_DESCRIPTION} characters")
        if _HTML_TAG.search(description):
            errors.append("description must not contain HTML")
        if service is not None:
            errors.extend(self._check_attributes(service, attrs))
        if errors:
            raise SimError(400, *errors)
        assert service is not None
        now = self.now()
        if self.quirks:  # attributes the service does not define are silently dropped
            defined = {a.code for a in service.attributes}
            attrs = {
                k: v for k, v in attrs.items() if k in defined and k != self.reference_attribute
            }
        ticket = SimTicket(
            id=str(next(self._ticket_ids)),
            service=service,
            status="open",
            requested_at=now,
            updated_at=now + timedelta(microseconds=37) if self.quirks else now,
            description=description,
            attributes=attrs,
            lat=lat_f,
            long=long_f,
            address_string=address,
            address_id=address_id,
        )
        self.tickets[ticket.id] = ticket
        if self.token_mode:
            token = uuid.uuid4().hex
            ticket.token = token
            self._tokens[token] = (ticket.id, now + timedelta(seconds=self.token_delay))
            return {"token": token, "service_notice": "Your request is being processed"}
        return {"service_request_id": ticket.id, "service_notice": None, "account_id": None}

    def _check_attributes(
        self, service: SimService, given: dict[str, str | list[str]]
    ) -> list[str]:
        errors = []
        for attr in service.attributes:
            value = given.get(attr.code)
            if value in (None, "", []):
                if attr.required:
                    errors.append(f"attribute[{attr.code}] is required")
                continue
            values = value if isinstance(value, list) else [value]
            if attr.datatype in ("singlevaluelist", "multivaluelist"):
                allowed = [k for k, _ in attr.values]
                bad = [v for v in values if v not in allowed]
                if bad or (attr.datatype == "singlevaluelist" and len(values) > 1):
                    errors.append(
                        f"attribute[{attr.code}]: {', '.join(map(str, values))!s} is not one of "
                        f"{', '.join(allowed)}"
                    )
            elif attr.datatype == "number":
                try:
                    [float(v) for v in values]
                except ValueError:
                    errors.append(f"attribute[{attr.code}] must be a number")
        return errors

    def resolve_token(self, token: str) -> dict[str, Any]:
        entry = self._tokens.get(token)
        if entry is None:
            raise SimError(404, f"token {token} not found")
        ticket_id, ready_at = entry
        if self._clock() < ready_at:
            return {"token": token}
        return {"service_request_id": ticket_id, "token": token}

    def search_requests(self, query: Any) -> list[dict[str, Any]]:
        self.check_jurisdiction(query)
        ids = query.get("service_request_id")
        if ids:
            wanted = [i.strip() for i in ids.split(",") if i.strip()]
            return [self.record(self.tickets[i]) for i in wanted if i in self.tickets]
        end = self._date(query, "end_date") or self.now()
        start = self._date(query, "start_date") or end - MAX_WINDOW
        if end - start > MAX_WINDOW:
            raise SimError(400, "start_date and end_date may span at most 90 days")
        codes = {c.strip() for c in (query.get("service_code") or "").split(",") if c.strip()}
        statuses = {s.strip().lower() for s in (query.get("status") or "").split(",") if s.strip()}
        ref_value = query.get(f"attribute[{self.reference_attribute}]")
        out = []
        tickets = list(self.tickets.values())
        if self.quirks:  # newest first; paged by the handler instead of capped
            tickets.sort(key=lambda t: t.requested_at, reverse=True)
        for t in tickets:
            if not start <= t.requested_at <= end:
                continue
            if codes and t.service.code not in codes:
                continue
            simple = "closed" if t.status in CLOSED_STATUSES else "open"
            if statuses and t.status not in statuses and simple not in statuses:
                continue
            if self.searchable and ref_value is not None and self.reference_of(t) != ref_value:
                continue
            out.append(self.record(t))
            if len(out) >= MAX_RESULTS and not self.quirks:
                break
        return out

    def get_request(self, ticket_id: str, query: Any) -> list[dict[str, Any]]:
        self.check_jurisdiction(query)
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise SimError(404, f"service_request_id {ticket_id} not found")
        return [self.record(ticket)]

    def list_updates(self, query: Any) -> list[dict[str, Any]]:
        self.check_jurisdiction(query)
        end = self._date(query, "end_date") or self.now()
        start = self._date(query, "start_date") or end - timedelta(days=1)
        # A client's reopen (重办) is reported as the request's own status change (without
        # the citizen's words it carried: the public record holds none); other client
        # updates (appended follow-ups) are not status changes.
        return [
            self.update_record(
                u if u.origin == "backend" else dataclasses.replace(u, description=None)
            )
            for u in self.updates
            if (u.origin == "backend" or u.status == "reopen") and start <= u.updated_at <= end
        ]

    def reopens(self, ticket_id: str | None = None) -> list[SimUpdate]:
        """The reopen updates (``status=reopen``) clients posted, for one ticket or all."""
        return [
            u
            for u in self.updates
            if u.origin == "client"
            and u.status == "reopen"
            and (ticket_id is None or u.ticket_id == ticket_id)
        ]

    def post_update(self, form: Any) -> dict[str, Any]:
        self.check_key(form)
        self.check_jurisdiction(form)
        missing = [
            f"{k} is required"
            for k in ("service_request_id", "update_id", "status", "updated_datetime")
            if not form.get(k)
        ]
        if missing:
            raise SimError(400, *missing)
        ticket = self.tickets.get(form["service_request_id"])
        if ticket is None:
            raise SimError(400, f"service_request_id {form['service_request_id']} not found")
        status = form["status"].lower()
        if status not in EXTENDED_STATUSES + UPDATE_ONLY_STATUSES:
            raise SimError(400, f"status {form['status']} is not valid")
        description = form.get("description") or ""
        if len(description) > MAX_DESCRIPTION:
            raise SimError(400, f"description longer than {MAX_DESCRIPTION} characters")
        for prior in self.updates:  # the same client update_id twice is one update
            if prior.origin == "client" and prior.client_update_id == form["update_id"]:
                return {"update_id": prior.update_id}
        update = SimUpdate(
            update_id=str(next(self._update_ids)),
            ticket_id=ticket.id,
            status=status,
            description=description,
            updated_at=self.now(),
            origin="client",
            client_update_id=form["update_id"],
        )
        self.updates.append(update)
        if status not in ("unchanged",):
            ticket.status = "open" if status == "reopen" else status
            ticket.updated_at = update.updated_at
        return {"update_id": update.update_id}

    @staticmethod
    def _date(query: Any, key: str) -> datetime | None:
        value = query.get(key)
        if not value:
            return None
        try:
            return _parse_w3c(value)
        except ValueError:
            raise SimError(400, f"{key} is not a W3C datetime: {value}") from None


# --------------------------------------------------------------------------- rendering


_ITEM_TAG = {
    "services": "service",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "attributes": "attribute",
    "values": "value",
    "errors": "error",
}


def _xml_fill(parent: ET.Element, key: str, value: Any) -> None:
    el = ET.SubElement(parent, key)
    if value is None:
        return
    if isinstance(value, bool):
        el.text = "true" if value else "false"
    elif isinstance(value, dict):
        for k, v in value.items():
            _xml_fill(el, k, v)
    elif isinstance(value, list):
        item_tag = _ITEM_TAG.get(key, "value")
        for item in value:
            if isinstance(item, dict):
                child = ET.SubElement(el, item_tag)
                for k, v in item.items():
                    _xml_fill(child, k, v)
            else:
                _xml_fill(el, item_tag, item)
    else:
        el.text = str(value)


def render(
    fmt: str, root: str, body: list[dict[str, Any]] | dict[str, Any], status: int = 200
) -> web.Response:
    """JSON as is; XML with the GeoReport element names (``<services><service>…``)."""
    if fmt == "json":
        return web.Response(
            status=status,
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/json",
        )
    el = ET.Element(root)
    if isinstance(body, list):
        item_tag = _ITEM_TAG[root]
        for item in body:
            child = ET.SubElement(el, item_tag)
            for k, v in item.items():
                _xml_fill(child, k, v)
    else:
        for k, v in body.items():
            _xml_fill(el, k, v)
    text = '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(el, encoding="unicode")
    return web.Response(status=status, text=text, content_type="text/xml")


def render_error(fmt: str, err: SimError, quirks: bool = False) -> web.Response:
    if quirks:  # a Django REST server's shapes, not the spec's list
        detail: Any = err.descriptions
        if err.status == 400 and err.descriptions != ["Invalid API key"]:
            detail = {"non_field_errors": err.descriptions}
        return web.json_response({"code": err.status, "detail": detail}, status=err.status)
    body = [{"code": err.status, "description": d} for d in err.descriptions]
    return render(fmt, "errors", body, status=err.status)


def debug_page(path: str) -> web.Response:
    return web.Response(status=404, text=_DEBUG_PAGE.format(path=path), content_type="text/html")


def paged(
    request: web.Request, state: Open311State, root: str, records: list[dict[str, Any]]
) -> web.Response:
    """The whole list, or (quirks) one page of ``QUIRKS_PAGE`` with the paging headers."""
    fmt = request.match_info["fmt"]
    if not state.quirks:
        return render(fmt, root, records)
    try:
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        page = 1
    count = max(1, -(-len(records) // QUIRKS_PAGE))
    resp = render(fmt, root, records[(page - 1) * QUIRKS_PAGE : page * QUIRKS_PAGE])
    resp.headers["X-Page-Count"] = str(count)
    if page < count:
        resp.headers["X-Next-Page-URL"] = str(request.url.update_query(page=str(page + 1)))
    return resp


# --------------------------------------------------------------------------- app

STATE_KEY = web.AppKey("open311_state", Open311State)
_FMT = "{fmt:json|xml}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(state: Open311State) -> web.Application:
    """The GeoReport API at the root (``/services.json`` …) plus ``/_sim/…`` controls."""

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        state.request_count += 1
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        state.requests_by_route[f"{request.method} {path}"] += 1
        state.request_log.append(
            (time.time(), request.method, path, request.headers.get("User-Agent", ""))
        )
        fmt = request.match_info.get("fmt", "xml")
        if state.outage == "refuse" and request.transport is not None:
            # A keep-alive connection opened before the outage: drop it like a dead host would.
            request.transport.abort()
            raise web.HTTPServiceUnavailable()
        if state.outage == "503":
            return render_error(
                "xml" if state.xml_only else fmt, SimError(503, "Service unavailable")
            )
        if fmt == "json" and state.xml_only:
            return render_error("xml", SimError(404, "this server only speaks XML"))
        try:
            return await handler(request)
        except SimError as err:
            if state.quirks and err.status == 404 and err.descriptions == ["no such endpoint"]:
                return debug_page(request.path)
            return render_error(fmt, err, state.quirks)
        except web.HTTPNotFound:
            if state.quirks:
                return debug_page(request.path)
            raise

    async def services(request: web.Request) -> web.Response:
        state.check_jurisdiction(request.query)
        return paged(request, state, "services", [s.wire() for s in state.services])

    async def service_definition(request: web.Request) -> web.Response:
        state.check_jurisdiction(request.query)
        service = state.service(request.match_info["code"])
        if service is None or not service.metadata:
            raise SimError(404, f"service_code {request.match_info['code']} has no definition")
        body = {
            "service_code": service.code,
            "attributes": [a.wire() for a in service.attributes],
        }
        return render(request.match_info["fmt"], "service_definition", body)

    async def post_requests(request: web.Request) -> web.Response:
        form = await request.post()
        late = state.create_commits_late and state.create_delay > 0
        result = {} if late else state.create_request(form)
        if state.create_delay > 0:
            stored = result

            async def answer() -> dict[str, Any]:
                await asyncio.sleep(state.create_delay)
                return state.create_request(form) if late else stored

            agent = request.headers.get("User-Agent", "")
            state.answering.append(agent)
            try:
                # a task of its own: a client that gives up does not stop a late commit
                result = await asyncio.shield(asyncio.ensure_future(answer()))
            finally:
                state.answering.remove(agent)
        return render(request.match_info["fmt"], "service_requests", [result])

    async def get_requests(request: web.Request) -> web.Response:
        return paged(request, state, "service_requests", state.search_requests(request.query))

    async def get_request(request: web.Request) -> web.Response:
        records = state.get_request(request.match_info["id"], request.query)
        return render(request.match_info["fmt"], "service_requests", records)

    async def get_token(request: web.Request) -> web.Response:
        if state.quirks:
            raise SimError(404, "no such endpoint")
        state.check_jurisdiction(request.query)
        result = state.resolve_token(request.match_info["token"])
        return render(request.match_info["fmt"], "service_requests", [result])

    async def get_updates(request: web.Request) -> web.Response:
        if state.quirks:
            raise SimError(404, "no such endpoint")
        if not state.updates_enabled:
            raise SimError(404, "servicerequestupdates is not offered")
        fmt = request.match_info["fmt"]
        return render(fmt, "service_request_updates", state.list_updates(request.query))

    async def post_updates(request: web.Request) -> web.Response:
        if state.quirks:
            raise SimError(404, "no such endpoint")
        if not state.updates_enabled:
            raise SimError(404, "servicerequestupdates is not offered")
        form = await request.post()
        result = state.post_update(form)
        return render(request.match_info["fmt"], "service_request_updates", [result])

    # ---- operator controls

    async def sim_tickets(request: web.Request) -> web.Response:
        return web.json_response(state.snapshot())

    async def sim_status(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            update = state.set_status(
                request.match_info["id"],
                body["status"],
                body.get("note"),
                external_status_code=body.get("external_status_code"),
            )
        except KeyError:
            return web.json_response({"error": "no such ticket"}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(state.update_record(update))

    async def sim_outage(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        mode = body.get("mode")
        if mode not in (None, "503", "refuse"):
            return web.json_response({"error": f"unknown mode {mode!r}"}, status=400)
        seconds = float(body.get("seconds") or 0)
        if mode == "refuse" and seconds <= 0:
            # Nobody could reach /_sim to end it: an HTTP-driven refusal must be timed.
            return web.json_response({"error": "refuse needs seconds > 0"}, status=400)
        resp = web.json_response({"mode": mode, "seconds": seconds})
        await resp.prepare(request)
        await resp.write_eof()
        await state.set_outage(mode)
        if mode == "refuse":
            asyncio.get_running_loop().call_later(
                seconds, lambda: asyncio.ensure_future(state.set_outage(None))
            )
        return resp

    async def sim_stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": state.request_count, "by_route": dict(state.requests_by_route)}
        )

    async def sim_reset(request: web.Request) -> web.Response:
        state.reset_counter()
        return web.json_response({"requests": 0})

    async def sim_options(request: web.Request) -> web.Response:
        body = await request.json()
        allowed = {
            "xml_only",
            "updates_enabled",
            "searchable",
            "token_mode",
            "token_delay",
            "create_delay",
            "create_commits_late",
            "uppercase_statuses",
            "extended_in_requests",
        }
        unknown = set(body) - allowed
        if unknown:
            return web.json_response({"error": f"unknown options {sorted(unknown)}"}, status=400)
        for k, v in body.items():
            setattr(state, k, v)
        return web.json_response({k: getattr(state, k) for k in sorted(allowed)})

    app = web.Application(middlewares=[gate])
    app[STATE_KEY] = state
    app.router.add_get(f"/services.{_FMT}", services)
    app.router.add_get(f"/services/{{code}}.{_FMT}", service_definition)
    app.router.add_post(f"/requests.{_FMT}", post_requests)
    app.router.add_get(f"/requests.{_FMT}", get_requests)
    app.router.add_get(f"/requests/{{id}}.{_FMT}", get_request)
    app.router.add_get(f"/tokens/{{token}}.{_FMT}", get_token)
    app.router.add_get(f"/servicerequestupdates.{_FMT}", get_updates)
    app.router.add_post(f"/servicerequestupdates.{_FMT}", post_updates)
    app.router.add_get("/_sim/tickets", sim_tickets)
    app.router.add_post("/_sim/tickets/{id}/status", sim_status)
    app.router.add_post("/_sim/outage", sim_outage)
    app.router.add_get("/_sim/stats", sim_stats)
    app.router.add_post("/_sim/stats/reset", sim_reset)
    app.router.add_post("/_sim/options", sim_options)
    return app


# --------------------------------------------------------------------------- listener


class Open311Server:
    """Runs the app on a TCP port and can stop and resume listening on that same port."""

    def __init__(self, state: Open311State, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._runner = web.AppRunner(create_app(state), access_log=None)
        self._site: web.TCPSite | None = None
        state._listener = self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> Open311Server:
        await self._runner.setup()
        await self.listen()
        return self

    async def listen(self) -> None:
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._site = site

    async def stop_listening(self) -> None:
        """Close the socket (new connections are refused) and drop the open ones."""
        site, self._site = self._site, None
        if site is None:
            return
        await site.stop()
        server = self._runner.server
        if server is not None:
            for conn in server.connections:
                conn.force_close()
                if conn.transport is not None:
                    conn.transport.abort()

    async def close(self) -> None:
        self.state._listener = None
        self._site = None
        await self._runner.cleanup()

    async def __aenter__(self) -> Open311Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(host: str, port: int, **opts: Any) -> None:
    """``govbridge simulate open311 --port N``: run until cancelled. ``opts`` go to the state."""
    state = Open311State(**opts)
    async with Open311Server(state, host, port) as server:
        print(f"open311 simulator listening on {server.base_url}", flush=True)
        await asyncio.Event().wait()


def demo_ticketing_config(base_url: str, api_key: str = "sim-open311-key") -> dict[str, Any]:
    """A ``ticketing`` block for this simulator's default catalogue: what a department's
    operator writes for their Open311 endpoint (service codes, the required attribute, a
    default location since microblog inquiries rarely carry one)."""
    return {
        "adapter": "open311",
        "base_url": base_url,
        "api_key": api_key,
        "service_codes": {
            "complaint": "TR-01",
            "report": "TR-01",
            "consultation": "TR-02",
            "other": "TR-09",
        },
        "attributes": {"urgency": "normal"},
        "lat": 39.9,
        "long": 116.4,
        "searchable": True,
    }
