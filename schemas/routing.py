"""Routing keys on the bridge's topic exchange: a public contract, built only here.

Every key is ``<kind>.<part>`` where the part is a platform or a department; consumers bind
``<kind>.*``. Other systems bind their own queues to these keys, so they never change silently.
"""

from __future__ import annotations

from enum import StrEnum


class Route(StrEnum):
    """The kinds of message on the exchange, and what the last part of their key names."""

    INQUIRY_RECEIVED = "inquiry.received"
    INQUIRY_ROUTED = "inquiry.routed"
    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    REPLY_REQUESTED = "reply.requested"
    REPLY_POSTED = "reply.posted"
    ACCOUNT_FLAGGED = "account.flagged"
    INCIDENT_SURGE = "incident.surge"

    def key(self, part: str) -> str:
        """The routing key for one platform or department."""
        return f"{self.value}.{part}"

    @property
    def pattern(self) -> str:
        """The binding pattern matching every platform or department."""
        return f"{self.value}.*"

    @property
    def part(self) -> str:
        """What the key's last part names."""
        by_platform = (Route.INQUIRY_RECEIVED, Route.REPLY_REQUESTED, Route.REPLY_POSTED)
        return "platform" if self in by_platform else "department"


# SLA events have a key of three parts: ``sla.<event>.<department>`` (warning, breached).
SLA = "sla"


def sla_event(event: str, department: str) -> str:
    return f"{SLA}.{event}.{department}"


def sla_events(event: str) -> str:
    """The binding pattern of one SLA event in every department (``sla.holding_reply.*``)."""
    return f"{SLA}.{event}.*"


# One builder per kind: ``inquiry_received("weibo") == "inquiry.received.weibo"``.
inquiry_received = Route.INQUIRY_RECEIVED.key  # <platform>
inquiry_routed = Route.INQUIRY_ROUTED.key  # <department>
ticket_created = Route.TICKET_CREATED.key  # <department>
ticket_updated = Route.TICKET_UPDATED.key  # <department>
reply_requested = Route.REPLY_REQUESTED.key  # <platform>
reply_posted = Route.REPLY_POSTED.key  # <platform>
account_flagged = Route.ACCOUNT_FLAGGED.key  # <department>
incident_surge = Route.INCIDENT_SURGE.key  # <department>
