"""Prometheus metrics. One registry per process (tests may pass their own).

Label values come from a fixed vocabulary (stages, outcomes, dead-letter kinds, alert kinds)
or from the config (platforms, departments, accounts), never from a message: an id, a reason
text or a name a message carries would add a time series per message (``platform`` turns a
name that is not configured into ``other``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridge.telemetry.timing import TimeSpentCollector


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "govbridge_messages_consumed", "Messages delivered to a stage", ["stage"], registry=r
        )
        self.acked = Counter(
            "govbridge_messages_acked", "Messages handled and acked", ["stage"], registry=r
        )
        self.retried = Counter(
            "govbridge_messages_retried",
            "Messages sent to a delay tier after a transient failure",
            ["stage", "tier"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "govbridge_messages_dead_lettered",
            "Messages dead-lettered by the runtime",
            ["stage", "reason"],
            registry=r,
        )
        self.crashed = Counter(
            "govbridge_handler_crashes",
            "Unexpected handler exceptions (requeued; the delivery limit dead-letters)",
            ["stage"],
            registry=r,
        )
        self.latency = Histogram(
            "govbridge_handler_seconds",
            "Handler latency",
            ["stage"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.published = Counter(
            "govbridge_messages_published",
            "Publishes confirmed by the broker",
            ["routing"],
            registry=r,
        )
        self.publish_failures = Counter(
            "govbridge_publish_failures", "Publishes not confirmed", ["reason"], registry=r
        )
        self.unroutable = Counter(
            "govbridge_unroutable_returned",
            "Publishes returned as unroutable (alternate exchange missing)",
            registry=r,
        )
        self.consumers = Gauge(
            "govbridge_consumers_active", "Active consumers per stage", ["stage"], registry=r
        )
        self.broker_connected = Gauge(
            "govbridge_broker_connected", "1 when connected to RabbitMQ", registry=r
        )
        self.alerts = Gauge(
            "govbridge_alert",
            "1 while an account or department is paused awaiting an operator (per operation:"
            " create, append, poll, post; the reason is in /readyz and the log)",
            ["kind", "name", "operation"],
            registry=r,
        )
        self.inquiries = Counter(
            "govbridge_inquiries",
            "Inquiries by outcome",
            ["platform", "outcome"],
            registry=r,
        )
        self.tickets = Counter(
            "govbridge_tickets", "Ticket operations", ["department", "outcome"], registry=r
        )
        self.replies = Counter(
            "govbridge_replies", "Replies by outcome", ["platform", "outcome"], registry=r
        )
        self.replies_waiting = Gauge(
            "govbridge_replies_waiting",
            "Approved replies not yet posted, per account (a binding quota shows here)",
            ["account"],
            registry=r,
        )
        self.replies_oldest_waiting = Gauge(
            "govbridge_replies_oldest_waiting_seconds",
            "Age of the oldest approved reply not yet posted, per account",
            ["account"],
            registry=r,
        )
        self.sla_events = Counter(
            "govbridge_sla_events",
            "Deadline events: holding replies, warnings, breaches",
            ["department", "event"],
            registry=r,
        )
        self.reconciliation = Gauge(
            "govbridge_needs_reconciliation",
            "Inquiries whose ticket create is uncertain and needs a human",
            ["department"],
            registry=r,
        )
        r.register(TimeSpentCollector())
        self.platforms: frozenset[str] | None = None

    def known_platforms(self, names: set[str]) -> None:
        """The configured platforms: the only ``platform`` label values a message may set."""
        self.platforms = frozenset(names)

    def platform(self, name: str) -> str:
        """``name`` as a label: itself when configured (or nothing is configured), else
        ``other``."""
        return name if self.platforms is None or name in self.platforms else "other"
