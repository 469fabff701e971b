"""Alerts: conditions that need an operator (a refused key, an expired token, unreadable items),
each about one operation of one thing, and cleared only by evidence about that same operation.

An alert is keyed by ``(kind, name, operation)``: ``("ticketing_auth", "transport", "create")``
is the department's ticket system refusing creates, ``(…, "poll")`` the same system refusing
the status poll. A success of one operation says nothing about another (a server that answers
``GET requests`` without a key proves nothing about the key), so it clears only its own.

Alerts about credentials (``SHARED_KINDS``) are shared by every process through the store's
``operation_status`` table, which keeps per operation the time of the last success, the last
failure (with its reason) and the last time an operator cleared it. An alert is active while
its last failure is newer than both, so the writes of several processes never race: each only
moves its own time forward. Every process reads the table every few seconds (``sync``), so
``/readyz``, the ``govbridge_alert`` metric and the console say the same in every process, and
a success in one process clears an alert raised in another. Other kinds (``ingest_rejected``,
counted per process) stay in the process.

Writes happen on changes only: a failure, a clear, and a success while an alert is active
(or at most every ``OK_WRITE_EVERY`` seconds, to keep the last success shown current).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from bridge.privacy.secrets import sanitise_reason
from bridge.store.operations import OperationRow
from bridge.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from bridge.store import Store

log = structlog.get_logger("govbridge.daemon")

# ``incident_surge``: many citizens about one matter (bridge/triage/incident_links.py), raised
# by the triage process and shown by every process until an operator clears it.
# ``case_reopened``: a 回访 answer of 未解决 or 不满意 reopened a ticket (ticketing raises it,
# the reply role clears it when the reopened cycle reaches a final status again).
SHARED_KINDS = frozenset({"ticketing_auth", "account_auth", "incident_surge", "case_reopened"})
OK_WRITE_EVERY = 10.0  # seconds between writes of "last success" while nothing is wrong

AlertKey = tuple[str, str, str]  # kind, name, operation


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass
class OperationStatus:
    """What one operation last did: its times compare as text (fixed-width UTC)."""

    last_ok_at: str | None = None
    last_failed_at: str | None = None
    failure: str | None = None
    cleared_at: str | None = None
    cleared_by: str | None = None

    @property
    def alerting(self) -> bool:
        after = _later(self.last_ok_at, self.cleared_at)
        return self.last_failed_at is not None and (after is None or self.last_failed_at > after)

    def merge(self, other: OperationStatus) -> None:
        """Take what is newer of ``other``: every time only moves forward."""
        if other.last_failed_at is not None and (
            self.last_failed_at is None or other.last_failed_at >= self.last_failed_at
        ):
            self.last_failed_at, self.failure = other.last_failed_at, other.failure
        self.last_ok_at = _later(self.last_ok_at, other.last_ok_at)
        if other.cleared_at is not None and (
            self.cleared_at is None or other.cleared_at >= self.cleared_at
        ):
            self.cleared_at, self.cleared_by = other.cleared_at, other.cleared_by


@dataclass
class Alerts:
    """The alerts this process knows: its own and (for ``SHARED_KINDS``) every process's."""

    metrics: Metrics
    # local kinds: (kind, name, operation) -> reason
    _local: dict[AlertKey, str] = field(default_factory=dict)
    # shared kinds: what the store said at the last sync, with this process's events since
    _status: dict[AlertKey, OperationStatus] = field(default_factory=dict)
    # this process's events not yet written to the store
    _pending: dict[AlertKey, OperationStatus] = field(default_factory=dict)
    _ok_written: dict[AlertKey, float] = field(default_factory=dict)
    _shown: dict[AlertKey, str] = field(default_factory=dict)  # alerts the gauge shows as 1

    # ------------------------------------------------------------------ events
    def raise_(self, kind: str, name: str, reason: str, operation: str = "") -> None:
        """The operation failed in a way an operator must fix."""
        reason = sanitise_reason(reason)  # shown in /readyz and the log
        key = (kind, name, operation)
        if self.reasons().get(key) != reason:
            log.error(
                "ALERT: operator action needed",
                alert=kind,
                name=name,
                operation=operation or None,
                reason=reason,
            )
        if kind in SHARED_KINDS:
            self._note(key, OperationStatus(last_failed_at=_now(), failure=reason))
        else:
            self._local[key] = reason
        self._show()

    def succeeded(self, kind: str, name: str, operation: str) -> None:
        """The operation worked: its alert (raised here or elsewhere) is over."""
        key = (kind, name, operation)
        if kind not in SHARED_KINDS:
            self._clear_local(key)
            return
        status = self._status.get(key)
        alerting = status is not None and status.alerting
        recent = time.monotonic() - self._ok_written.get(key, float("-inf")) < OK_WRITE_EVERY
        if alerting or not recent:
            self._ok_written[key] = time.monotonic()
            self._note(key, OperationStatus(last_ok_at=_now()))
            if alerting:
                log.info("alert cleared", alert=kind, name=name, operation=operation)
                self._show()

    def clear(self, kind: str, name: str, operation: str | None = None, by: str = "") -> None:
        """An operator's action ends the alert (every operation of ``(kind, name)`` unless
        one is named). Not for successes: use ``succeeded``, which is evidence."""
        for key in [k for k in self.reasons() if k[:2] == (kind, name)]:
            if operation is not None and key[2] != operation:
                continue
            if kind in SHARED_KINDS:
                self._note(key, OperationStatus(cleared_at=_now(), cleared_by=by or "operator"))
            else:
                self._clear_local(key)
            log.info("alert cleared", alert=kind, name=name, operation=key[2] or None, by=by)
        self._show()

    def _clear_local(self, key: AlertKey) -> None:
        if self._local.pop(key, None) is not None:
            log.info("alert cleared", alert=key[0], name=key[1])
            self._show()

    def _note(self, key: AlertKey, event: OperationStatus) -> None:
        self._status.setdefault(key, OperationStatus()).merge(event)
        self._pending.setdefault(key, OperationStatus()).merge(event)

    # ------------------------------------------------------------------ views
    def reasons(self) -> dict[AlertKey, str]:
        """Every active alert: ``(kind, name, operation)`` -> reason."""
        out = dict(self._local)
        for key, status in self._status.items():
            if status.alerting:
                out[key] = status.failure or "failed"
        return out

    @property
    def active(self) -> dict[tuple[str, str], str]:
        """Active alerts by ``(kind, name)``, whatever the operation (the reasons joined)."""
        out: dict[tuple[str, str], str] = {}
        for (kind, name, _), reason in sorted(self.reasons().items()):
            out[(kind, name)] = f"{out[(kind, name)]}; {reason}" if (kind, name) in out else reason
        return out

    def status(self, kind: str, name: str) -> dict[str, OperationStatus]:
        """Per operation, what this process knows of ``(kind, name)`` (for the console)."""
        return {k[2]: s for k, s in self._status.items() if k[:2] == (kind, name)}

    def describe(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (kind, name, operation), reason in sorted(self.reasons().items()):
            item: dict[str, Any] = {"kind": kind, "name": name, "reason": reason}
            if operation:
                item["operation"] = operation
            status = self._status.get((kind, name, operation))
            if status is not None:
                item["since"] = status.last_failed_at
            out.append(item)
        return out

    def _show(self) -> None:
        """The ``govbridge_alert`` gauge: 1 per active alert, 0 for one that ended. Labelled
        by kind, name and operation only: the reason (a server's words, a count) is no label,
        or every new wording would be a time series of its own."""
        now = self.reasons()
        for key in now:
            self._shown[key] = "1"
            self.metrics.alerts.labels(*key).set(1)
        for key in [k for k in self._shown if k not in now]:
            del self._shown[key]
            self.metrics.alerts.labels(*key).set(0)

    # ------------------------------------------------------------------ sharing
    async def sync(self, store: Store) -> None:
        """Write this process's events, then read every process's: the shared view."""
        pending, self._pending = self._pending, {}
        try:
            for (kind, name, operation), ev in pending.items():
                await store.write_operation_status(
                    OperationRow(
                        kind,
                        name,
                        operation,
                        ev.last_ok_at,
                        ev.last_failed_at,
                        ev.failure,
                        ev.cleared_at,
                        ev.cleared_by,
                    )
                )
        except BaseException:
            for key, ev in pending.items():  # kept for the next sync
                self._pending.setdefault(key, OperationStatus()).merge(ev)
            raise
        status: dict[AlertKey, OperationStatus] = {}
        for r in await store.operation_statuses():
            status[(r.kind, r.name, r.operation)] = OperationStatus(
                last_ok_at=r.last_ok_at,
                last_failed_at=r.last_failed_at,
                failure=r.failure,
                cleared_at=r.cleared_at,
                cleared_by=r.cleared_by,
            )
        for key, ev in self._pending.items():  # events during the read
            status.setdefault(key, OperationStatus()).merge(ev)
        self._status = status
        self._show()
