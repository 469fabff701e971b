"""Native ticket statuses → the canonical lifecycle, the same way for every ticket system.

A backend's codes come in any case (``FIXED``, ``fixed``); a department's config maps them onto
``TicketStatus`` or ``IGNORE`` (drop such changes) over the adapter's defaults. An unknown code
is logged (with the ticket) and mapped to a configured fallback, the native code being kept
beside the canonical one in every event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal

import structlog
from pydantic import BeforeValidator

from schemas.vocab import TicketStatus

log = structlog.get_logger(__name__)

IGNORE: Final = "IGNORE"
Target = TicketStatus | Literal["IGNORE"]


def _target(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        return IGNORE if text.upper() == IGNORE else text.lower()
    return value


# A config value: a canonical status (any case) or IGNORE.
StatusTarget = Annotated[Target, BeforeValidator(_target)]


class StatusMap:
    """Case-insensitive native → canonical mapping with a logged fallback."""

    def __init__(
        self,
        system: str,
        department: str,
        overrides: Mapping[str, Target],
        defaults: Mapping[str, Target] | None = None,
        unknown: TicketStatus = TicketStatus.RECEIVED,
    ) -> None:
        self.system = system
        self.department = department
        self.unknown = unknown
        merged = {**(defaults or {}), **overrides}
        self._map: dict[str, Target] = {k.strip().casefold(): v for k, v in merged.items()}

    def map(self, *natives: str | None, ticket_id: str | None = None) -> TicketStatus | None:
        """The canonical status of the first of ``natives`` that is mapped (e.g. an
        ``external_status_code`` before the status); ``None`` when it is IGNOREd."""
        for native in natives:
            if native is not None and native.strip().casefold() in self._map:
                target = self._map[native.strip().casefold()]
                return None if target == IGNORE else TicketStatus(target)
        log.warning(
            f"{self.system}_unknown_status",
            department=self.department,
            ticket_id=ticket_id,
            native_status=next((n for n in natives if n), None),
            mapped_to=self.unknown.value,
        )
        return self.unknown
