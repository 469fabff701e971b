"""A pytest plugin that stops the run at once, saying why, when the broker cannot serve it.

Every work queue is a quorum queue with at-least-once dead-lettering. On RabbitMQ 3.10 the node's
supervisor of the dead-letter workers allows one crash in five seconds; deleting several such
queues at once can cost two, and from then on every at-least-once queue fails to start
(``INTERNAL_ERROR``; rabbitmq-server#16652) until the node restarts. Tests then fail slowly, one
timeout after another, and a CI run ends at its time limit instead of with a reason. Before the
first test, and after any test fails, this plugin declares such a queue; if the broker cannot,
the run stops with the remedy (restart the node: ``GOVBRIDGE_CI=1 scripts/ensure-rabbitmq.sh``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Generator

import aio_pika
import pytest

AMQP_URL = os.environ.get("GOVBRIDGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REMEDY = (
    "restart the broker (GOVBRIDGE_CI=1 scripts/ensure-rabbitmq.sh restarts a local node) and"
    " run the tests again"
)


async def broker_problem(url: str = AMQP_URL, timeout: float = 20.0) -> str | None:
    """None if the broker starts a quorum queue with at-least-once dead-lettering, else why not."""
    name = f"gbtest-health-{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncio.wait_for(aio_pika.connect(url), timeout)
    except Exception as exc:  # any failure is the answer
        return f"cannot connect to {url.rsplit('@', 1)[-1]}: {exc!r}"
    try:
        channel = await conn.channel()
        arguments = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "amq.direct",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        try:
            await asyncio.wait_for(
                channel.declare_queue(name, durable=True, arguments=arguments), timeout
            )
        except Exception as exc:
            return f"cannot start an at-least-once quorum queue: {exc!r}"
        await channel.queue_delete(name)
        return None
    except Exception as exc:
        return f"broker failed while checked: {exc!r}"
    finally:
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            await asyncio.wait_for(conn.close(), timeout)


def check_now() -> str | None:
    """``broker_problem`` from synchronous hook code, whatever loop the caller has."""
    result: list[str | None] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(broker_problem())))
    thread.start()
    thread.join(60)
    return result[0] if result else "the broker check itself did not finish within 60 s"


def pytest_sessionstart(session: pytest.Session) -> None:
    if problem := check_now():
        pytest.exit(f"RabbitMQ cannot serve the tests: {problem}; {REMEDY}", returncode=3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call") and (problem := check_now()):
        item.session.shouldstop = (
            f"RabbitMQ stopped serving the tests during {item.nodeid}: {problem}; {REMEDY}"
        )
