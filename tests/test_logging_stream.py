"""Log lines go to the stderr of the moment they are written: a command run while a caller
had swapped stderr (a test capturing output, a tool redirecting it) must not leave loggers
writing to that stream after it is closed. Seen in CI: `govbridge incidents eval` run under
pytest's capture, then every later test whose code logged failed with "I/O operation on
closed file"."""

from __future__ import annotations

import io
import sys

import pytest

from bridge.telemetry.logging import configure_logging, get_logger


def test_a_logger_made_while_stderr_was_swapped_writes_to_todays_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    borrowed = io.StringIO()
    monkeypatch.setattr(sys, "stderr", borrowed)
    configure_logging("info", json=True)
    made_then = get_logger(component="test")
    made_then.info("while swapped")
    assert '"event": "while swapped"' in borrowed.getvalue()

    borrowed.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    made_then.info("after the swap")  # raised ValueError: I/O operation on closed file
    get_logger(component="test").info("a new logger")
    written = now.getvalue()
    assert '"event": "after the swap"' in written
    assert '"event": "a new logger"' in written
