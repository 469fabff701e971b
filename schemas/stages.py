"""Stage declarations: each stage's name, the message it consumes, the routing keys its queue
binds and the ones it publishes, declared once. The topology declares queues and bindings from
them, the runtime decodes what a stage's declaration names, and the contract's documentation
(``govbridge asyncapi``, docs/architecture.md) reads the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from schemas.messages import (
    Inquiry,
    Message,
    ReplyRequest,
    SlaEvent,
    TicketCommand,
    TicketEvent,
)
from schemas.routing import SLA, Route, sla_events

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class StageDecl(Generic[M]):
    """One stage. ``consumes`` is None for a stage that only publishes (it has no queue)."""

    name: str
    consumes: type[M] | None
    binds: tuple[Route | str, ...] = ()  # a kind of key (every part), or one pattern
    publishes: tuple[str, ...] = ()  # routing-key kinds: a ``Route`` or ``SLA``

    @property
    def bindings(self) -> tuple[str, ...]:
        """The binding patterns of its work queue."""
        return tuple(b.pattern if isinstance(b, Route) else b for b in self.binds)

    @property
    def model(self) -> type[M]:
        """The message its handler receives (only a consuming stage has one)."""
        if self.consumes is None:
            raise ValueError(f"stage {self.name} consumes nothing")
        return self.consumes


INGEST: StageDecl[Any] = StageDecl("ingest", None, publishes=(Route.INQUIRY_RECEIVED,))
TRIAGE = StageDecl(
    "triage",
    Inquiry,
    binds=(Route.INQUIRY_RECEIVED,),
    # a surge of one incident (bridge/triage/incident_links.py): for other systems to bind
    publishes=(Route.INQUIRY_ROUTED, Route.INCIDENT_SURGE),
)
TICKETING = StageDecl(
    "ticketing",
    TicketCommand,
    binds=(Route.INQUIRY_ROUTED,),
    # a settled reconciliation ("not created") routes the command again
    publishes=(Route.TICKET_CREATED, Route.TICKET_UPDATED, Route.INQUIRY_ROUTED),
)
SYNC: StageDecl[Any] = StageDecl("sync", None, publishes=(Route.TICKET_UPDATED,))
REPLY = StageDecl(
    "reply",
    TicketEvent,
    binds=(Route.TICKET_CREATED, Route.TICKET_UPDATED),
    publishes=(Route.REPLY_REQUESTED,),
)
# The reply role's holding replies: the SLA clock publishes, the reply role composes (a role
# never calls another role's code).
HOLDING = StageDecl(
    "holding",
    SlaEvent,
    # and an approved 延期: the citizen is told the new deadline
    binds=(sla_events("holding_reply"), sla_events("extended")),
    publishes=(Route.REPLY_REQUESTED,),
)
OUTBOX = StageDecl(
    "outbox", ReplyRequest, binds=(Route.REPLY_REQUESTED,), publishes=(Route.REPLY_POSTED,)
)
SLA_STAGE: StageDecl[Any] = StageDecl("sla", None, publishes=(SLA,))
# The account inspection (巡检): an account that crosses a line (dormant, zombie, no activity).
INSPECT: StageDecl[Any] = StageDecl("inspect", None, publishes=(Route.ACCOUNT_FLAGGED,))

STAGES: tuple[StageDecl[Any], ...] = (
    INGEST,
    TRIAGE,
    TICKETING,
    SYNC,
    REPLY,
    HOLDING,
    OUTBOX,
    SLA_STAGE,
    INSPECT,
)
CONSUMING: tuple[StageDecl[Any], ...] = tuple(s for s in STAGES if s.consumes is not None)
