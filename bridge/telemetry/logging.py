"""structlog set-up: readable console lines on a terminal, JSON lines otherwise.

Every log line passes through the personal-data redactor, so a phone or ID number that slips
into an event field never reaches the log, and through the secrets scrubber
(``bridge.privacy.secrets``):
no configured secret and no URL password, in our lines or in the libraries' (standard
``logging``) lines.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from bridge.privacy.pii import redact_processor
from bridge.privacy.secrets import ScrubFilter, secrets_processor


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is when a line is written, not when logging was set
    up: a logger made while a caller had swapped stderr (a test capturing output, a tool
    redirecting it) would otherwise keep writing to a closed stream afterwards."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", json: bool | None = None, cache: bool = False) -> None:
    """``cache``: loggers keep their processors after first use (much cheaper per line; for
    processes that configure logging once, such as the daemon)."""
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    processors.append(secrets_processor)  # renders an exception first, so both see its text
    processors.append(redact_processor)
    # the time after the redactor: it is the bridge's own, and searching it for personal
    # data was a third of the redactor's work per line
    processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    processors.append(structlog.processors.format_exc_info if json else structlog.dev.set_exc_info)
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("govbridge").bind(**context)
