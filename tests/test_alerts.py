"""Alerts keyed by operation and shared through the store (``bridge/runtime/alerts.py``), on SQLite
and
PostgreSQL: two processes' views of one store. A success clears only the alert of its own
operation, wherever that alert was raised; an operator's clear ends it too; the metric follows.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bridge.runtime.alerts import Alerts
from bridge.store import SqlStore
from bridge.telemetry.metrics import Metrics

REFUSED = "ticket system refused: open311 POST requests: HTTP 400: Invalid API key"


def gauge(alerts: Alerts, operation: str) -> float:
    value = 0.0
    for family in alerts.metrics.registry.collect():
        for s in family.samples:
            if s.name == "govbridge_alert" and s.labels["operation"] == operation:
                value = max(value, s.value)
    return value


def process() -> Alerts:
    return Alerts(Metrics(CollectorRegistry()))


async def test_a_success_clears_only_its_own_operation_in_every_process(store: SqlStore) -> None:
    a, b = process(), process()
    a.raise_("ticketing_auth", "transport", REFUSED, "create")
    assert a.active == {("ticketing_auth", "transport"): REFUSED}
    assert gauge(a, "create") == 1.0
    await a.sync(store)
    await b.sync(store)
    [seen] = b.describe()  # the other process sees it, with its operation and time
    assert (seen["kind"], seen["name"], seen["operation"]) == (
        "ticketing_auth",
        "transport",
        "create",
    )
    assert seen["since"] and gauge(b, "create") == 1.0

    # Polls succeed in both processes: the create's alert stays in both.
    for _ in range(3):
        a.succeeded("ticketing_auth", "transport", "poll")
        b.succeeded("ticketing_auth", "transport", "poll")
        await a.sync(store)
        await b.sync(store)
    assert ("ticketing_auth", "transport") in a.active and ("ticketing_auth", "transport") in (
        b.active
    )
    assert a.status("ticketing_auth", "transport")["poll"].last_ok_at is not None

    # A create succeeds in the other process: over in both.
    b.succeeded("ticketing_auth", "transport", "create")
    assert not b.active and gauge(b, "create") == 0.0
    await b.sync(store)
    await a.sync(store)
    assert not a.active and gauge(a, "create") == 0.0
    assert a.describe() == []


async def test_a_later_failure_beats_an_earlier_success_written_after_it(store: SqlStore) -> None:
    """Writes carry their own times: a process that syncs late cannot clear a newer alert."""
    a, b = process(), process()
    b.succeeded("account_auth", "weibo:bjjtw", "post")  # before the failure, written late
    a.raise_("account_auth", "weibo:bjjtw", "re-authorise the account: 21327", "post")
    await a.sync(store)
    await b.sync(store)
    await a.sync(store)
    assert ("account_auth", "weibo:bjjtw") in a.active and ("account_auth", "weibo:bjjtw") in (
        b.active
    )


async def test_an_operator_clear_is_shared_and_a_new_failure_raises_it_again(
    store: SqlStore,
) -> None:
    a, b = process(), process()
    a.raise_("ticketing_auth", "parks", "refused", "create")
    a.raise_("ticketing_auth", "parks", "refused", "append")
    await a.sync(store)
    await b.sync(store)
    b.clear("ticketing_auth", "parks", "create", by="ops-li")
    assert [x["operation"] for x in b.describe()] == ["append"]
    await b.sync(store)
    await a.sync(store)
    assert [x["operation"] for x in a.describe()] == ["append"]
    a.raise_("ticketing_auth", "parks", "refused again", "create")
    await a.sync(store)
    await b.sync(store)
    assert sorted(x["operation"] for x in b.describe()) == ["append", "create"]


async def test_per_process_alerts_stay_in_their_process(store: SqlStore) -> None:
    a, b = process(), process()
    a.raise_("ingest_rejected", "weibo:bjjtw", "2 unreadable item(s) skipped")
    await a.sync(store)
    await b.sync(store)
    assert ("ingest_rejected", "weibo:bjjtw") in a.active and not b.active
