"""Contract harness: the Open311 simulator (JSON, searchable, with servicerequestupdates) and an
``Open311TicketSystem`` pointed at it. ``tests/test_open311.py`` reuses it with other modes;
``harness_open311_quirks.py`` runs the contract against the simulator's ``quirks`` mode."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from govbridge_tools.simulators.open311 import Open311Server, Open311State

from adapters.open311 import Open311Config, Open311TicketSystem
from schemas.config import DepartmentConfig, TicketingConfig
from schemas.messages import Author, Inquiry, ThreadRef, TicketCommand, stable_id
from schemas.vocab import Category, InquiryKind

API_KEY = "sim-open311-key"
_MARKER = re.compile(r"\[govbridge-ref: ([^\]]+)\]")


def reference_in(ticket: dict[str, Any]) -> str:
    """The bridge's reference a stored ticket carries (attribute, else description marker)."""
    attr = ticket.get("reference")
    if attr:
        return str(attr)
    found = _MARKER.search(str(ticket.get("description") or ""))
    return found.group(1) if found else ""


class Open311Harness:
    kind = "ticket_system"
    name = "open311"
    department_id = "transport"
    # What the contract's status test moves a ticket to, and what it must come back as.
    native_in_progress = "in_progress"

    def __init__(self, **sim_options: Any) -> None:
        sim_options.setdefault("api_key", API_KEY)
        self.state = Open311State(**sim_options)
        self.server: Open311Server | None = None
        self._adapters: list[Open311TicketSystem] = []
        self._run = uuid.uuid4().hex[:8]  # references unique per harness run

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Open311Harness]:
        self.server = await Open311Server(self.state).start()
        try:
            yield self
        finally:
            for adapter in self._adapters:
                await adapter.close()
            self._adapters.clear()
            await self.server.close()
            self.server = None

    def config(self, **overrides: Any) -> Open311Config:
        assert self.server is not None, "use `async with harness.running()` first"
        values: dict[str, Any] = {
            "adapter": "open311",
            "base_url": self.server.base_url,
            "api_key": API_KEY,
            "format": "xml" if self.state.xml_only else "json",
            "service_codes": {"complaint": "TR-01", "consultation": "TR-02", "other": "TR-09"},
            "lat": 39.9087,
            "long": 116.3975,
            "attributes": {"urgency": "normal"},
            "searchable": self.state.searchable,
            "servicerequestupdates": "auto" if self.state.quirks else self.state.updates_enabled,
            "token_poll_interval": "20ms",
            "token_poll_attempts": 50,
            "breaker_failures": 3,
            "breaker_cooldown": "200ms",
            "timeout": "5s",
        }
        values.update(overrides)
        return Open311Config.model_validate(values)

    def department(self, cfg: Open311Config) -> DepartmentConfig:
        return DepartmentConfig(
            id=self.department_id,
            name="市交通委",
            ticketing=TicketingConfig.model_validate(cfg.model_dump()),
        )

    def adapter(self, **overrides: Any) -> Open311TicketSystem:
        cfg = self.config(**overrides)
        adapter = Open311TicketSystem(cfg, self.department(cfg))
        self._adapters.append(adapter)
        return adapter

    def command(self, n: int, category: Category = Category.COMPLAINT) -> TicketCommand:
        inquiry = Inquiry.create(
            platform="weibo",
            account="bjjtw",
            kind=InquiryKind.MENTION,
            external_id=f"{self._run}-{n}",
            author=Author(id=str(9_000_000_000_000_000 + n), handle=f"citizen{n}"),
            text=f"@bjjtw 第{n}路公交车总是晚点",
            created_at=datetime.now(UTC),
            thread=ThreadRef(root_id=f"{self._run}-{n}"),
        )
        return TicketCommand(
            command_id=stable_id("cmd", self._run, str(n)),
            action="create",
            inquiry=inquiry,
            department=self.department_id,
            category=category,
            reference=f"gb-{self._run}-{n}",
            description=f"市民反映：第{n}路公交车总是晚点。",
            public_text=f"第{n}路公交车总是晚点",
        )

    async def tickets(self) -> list[dict[str, str]]:
        return [
            {"id": t["id"], "reference": reference_in(t), "status": t["status"]}
            for t in self.state.snapshot()
        ]

    async def set_status(self, ticket_id: str, native_status: str, note: str | None) -> None:
        if self.state.quirks:  # an official's admin tool: updated_datetime does not move
            self.state.admin_set_status(ticket_id, native_status, note)
        else:
            self.state.set_status(ticket_id, native_status, note)

    async def set_outage(self, mode: str | None) -> None:
        await self.state.set_outage(mode)

    async def request_count(self) -> int:
        """Requests that reached the backend (``/_sim`` controls excluded)."""
        return self.state.request_count

    async def appended(self, ticket_id: str) -> list[str]:
        """Follow-up texts appended to a ticket."""
        return [u.description or "" for u in self.state.client_updates(ticket_id)]


HARNESS = Open311Harness
