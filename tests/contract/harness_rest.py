"""Contract harness: ``RestTicketSystem`` against the REST ticket simulator, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from govbridge_tools.simulators.rest import RestSimServer, RestTicketState, demo_ticketing_config

from adapters.base import TicketSystem
from adapters.rest import RestConfig, RestTicketSystem
from schemas.config import DepartmentConfig, TicketingConfig
from schemas.messages import Inquiry, TicketCommand, stable_id
from schemas.vocab import Category, InquiryKind

DEPARTMENT = "contract"
TOKEN = "contract-rest-token"


def rest_config(base_url: str, **overrides: Any) -> dict[str, Any]:
    """A full ``ticketing`` block for the simulator (also used by tests/test_rest.py): the
    simulator's own description, plus a nested body field, paging and a quick breaker."""
    cfg = demo_ticketing_config(base_url, TOKEN)
    cfg["timeout"] = "5s"
    cfg["create"]["body"].update({"citizen": {"handle": "{author_handle}"}, "priority": 3})
    cfg["changes"].update({"cursor_param": "since", "limit_param": "limit", "limit": 50})
    cfg.update({"circuit_failures": 3, "circuit_cooldown": "60s"})
    cfg.update(overrides)
    return cfg


def department(ticketing: dict[str, Any]) -> DepartmentConfig:
    return DepartmentConfig(
        id=DEPARTMENT,
        name="合同测试局",
        ticketing=TicketingConfig.model_validate(ticketing),
    )


def command(
    n: int, *, action: Literal["create", "append"] = "create", ticket_id: str | None = None
) -> TicketCommand:
    """The n-th distinct create (or append) command routed to the harness's department."""
    external_id = f"c-{n}"
    inquiry = Inquiry.create(
        platform="weibo",
        account="gov_contract",
        kind=InquiryKind.COMMENT,
        external_id=external_id,
        author={"id": f"{5_000_000_000_000_000 + n}", "handle": f"citizen{n}"},
        text=f"第{n}号诉求：小区路灯不亮，请处理。",
        created_at=datetime(2024, 5, 1, tzinfo=UTC) + timedelta(minutes=n),
        thread={"root_id": f"p-{n}"},
    )
    return TicketCommand(
        command_id=stable_id("cmd", inquiry.inquiry_id, action, str(n)),
        action=action,
        inquiry=inquiry,
        department=DEPARTMENT,
        category=Category.COMPLAINT,
        reference=f"GB-{n:05d}",
        description=f"第{n}号诉求：小区路灯不亮，请处理。（联系人已保密）",
        public_text=f"第{n}号诉求：小区路灯不亮，请处理。",
        ticket_id=ticket_id,
    )


class RestHarness:
    """The REST simulator on 127.0.0.1:<free port> plus adapters pointed at it."""

    name: ClassVar[str] = "rest"
    kind: ClassVar[str] = "ticket_system"
    department_id: ClassVar[str] = DEPARTMENT
    # What the contract's status test moves a ticket to, and what it must come back as.
    native_in_progress: ClassVar[str] = "IN_PROGRESS"

    quirks: ClassVar[bool] = False

    def __init__(self) -> None:
        self._server: RestSimServer | None = None
        self._adapters: list[RestTicketSystem] = []

    @property
    def state(self) -> RestTicketState:
        if self._server is None:
            raise RuntimeError("harness not running")
        return self._server.state

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("harness not running")
        return self._server.url

    def running(self) -> AbstractAsyncContextManager[RestHarness]:
        return self._running()

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[RestHarness]:
        self._server = RestSimServer(RestTicketState(token=TOKEN, quirks=self.quirks))
        await self._server.start()
        try:
            yield self
        finally:
            for adapter in self._adapters:
                await adapter.close()
            self._adapters.clear()
            await self._server.close()
            self._server = None

    def adapter(self) -> TicketSystem:
        ticketing = rest_config(self.base_url)
        system = RestTicketSystem(RestConfig.model_validate(ticketing), department(ticketing))
        self._adapters.append(system)
        return system

    def command(self, n: int) -> TicketCommand:
        return command(n)

    async def tickets(self) -> list[dict[str, str]]:
        return [
            {
                "id": str(t["id"]),
                "reference": str(t.get("external_ref")),
                "status": str(t["status"]),
                "title": str(t.get("title")),
            }
            for t in self.state.ticket_list()
        ]

    async def set_status(self, ticket_id: str, native_status: str, note: str | None) -> None:
        await self.state.move(ticket_id, native_status, note, callback=False)

    async def set_outage(self, mode: str | None) -> None:
        await self.state.set_outage(mode)

    async def request_count(self) -> int:
        """API requests that reached the backend (``/_sim`` controls excluded)."""
        return self.state.request_count

    async def appended(self, ticket_id: str) -> list[str]:
        """Follow-up texts appended to a ticket."""
        ticket = self.state.tickets.get(ticket_id)
        return [str(c["body"]) for c in ticket["comments"]] if ticket else []


HARNESS = RestHarness
