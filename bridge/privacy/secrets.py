"""Keeping secrets out of everything the bridge says: logs, command output, ``/readyz``.

Why a registry: a secret can surface where no code expects it (an exception quoting a URL, a
backend echoing a token in its error body, a library's log line). So every secret of the loaded
config is registered once (``register_config``) and every log line, every alert reason and
every URL printed passes through ``scrub``, which replaces them wherever they appear.

URLs are redacted with a URL parser, not a pattern: a password may hold ``@``, ``:`` or ``/``
(percent-encoded or not), and credentials also travel as query parameters (``?password=``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import BaseModel, SecretStr

from bridge.privacy.pii import redact_text

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; config refuses them anyway
REASON_LIMIT = 200

_registered: set[str] = set()
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|key|auth|credential|signature|sig$|session", re.IGNORECASE
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _userinfo(raw: str) -> tuple[str, str, str | None, str] | None:
    """``(scheme, user, password, after_at)`` of ``scheme://user:password@rest``, or None.

    The last ``@`` before the query ends the userinfo, so a password may hold ``@``, ``:`` or
    even an unencoded ``/`` (which a strict parser would take for the start of the path)."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return None
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0:
        return None
    user, has_password, password = rest[:at].partition(":")
    if "/" in user:  # an '@' in the path, not credentials
        return None
    return scheme, user, password if has_password else None, rest[at + 1 :]


def redacted_url(url: SecretStr | str) -> str:
    """A URL safe to print: the password (however it is written) and secret-looking query
    parameters replaced by ``***``; the scheme, user, host, port and path kept."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    shown = raw
    info = _userinfo(raw)
    if info is not None and info[2] is not None:
        scheme, user, _, after = info
        shown = f"{scheme}://{user}:{MASK}@{after}"
    try:
        parts = urlsplit(shown)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "<unparsable URL>"
    if any(_SECRET_PARAM.search(k) for k, _ in pairs):
        query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
        shown = shown.replace("?" + parts.query, "?" + query, 1)
    return shown


def secret_values(value: Any) -> list[str]:
    """Every secret in a config (model): SecretStr values, URL passwords (as written and
    decoded) and secret query parameters, found by walking the whole model."""
    found: list[str] = []
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        found.append(secret)
        if "://" in secret:
            found += _url_secrets(secret)
    elif isinstance(value, str):
        if "://" in value:
            found += _url_secrets(value)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found += secret_values(getattr(value, name, None))
        for extra in (value.model_extra or {}).values():
            found += secret_values(extra)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str) and _SECRET_PARAM.search(k) and isinstance(v, str):
                found.append(v)
            found += secret_values(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found += secret_values(v)
    return [s for s in found if len(s) >= MIN_SECRET_LENGTH]


def _url_secrets(url: str) -> list[str]:
    found = []
    info = _userinfo(url)
    if info is not None and info[2]:
        password = info[2]
        found += [password, unquote(password), quote(unquote(password), safe="")]
    try:
        query = urlsplit(url).query
    except ValueError:
        return found
    for k, v in parse_qsl(query, keep_blank_values=True):
        if _SECRET_PARAM.search(k) and v:
            found += [v, quote(v, safe="")]
    return found


def register_secrets(values: Iterable[str]) -> None:
    """Remember secrets to be scrubbed from every later log line and reason."""
    _registered.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)


def register_config(cfg: BaseModel) -> None:
    register_secrets(secret_values(cfg))


_ordered: list[str] = []


def _longest_first() -> list[str]:
    """The registered secrets, longest first (a secret inside a longer one is masked with
    it), sorted again only when one was added (the set only grows): every value of every
    log line is scrubbed."""
    global _ordered
    if len(_ordered) != len(_registered):
        _ordered = sorted(_registered, key=len, reverse=True)
    return _ordered


def scrub(text: str) -> str:
    """``text`` without any registered secret and with every URL in it redacted."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redacted_url(m.group()), text)
    for secret in _longest_first():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def sanitise_reason(reason: str, limit: int = REASON_LIMIT) -> str:
    """An alert reason fit for ``/readyz`` and a metric label: one line, no control
    characters, no secrets, no personal data, at most ``limit`` characters of the backend's
    words."""
    text = _CONTROL.sub(" ", str(reason))
    text = " ".join(text.split())
    text = redact_text(scrub(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_scrub_value(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, SecretStr) or value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    cleaned = scrub(text)
    return value if cleaned == text else cleaned


def secrets_processor(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog processor: no registered secret and no URL password in any value. An
    exception attached with ``exc_info`` is rendered to its ``exception`` text first (its
    message may quote a URL or a token). Runs before the personal-data redactor, which would
    otherwise take ``password@host`` for an e-mail address and break the URL apart."""
    if event_dict.get("exc_info"):
        from structlog.processors import format_exc_info

        event_dict = format_exc_info(logger, method_name, event_dict)
    return {key: _scrub_value(value) for key, value in event_dict.items()}


class ScrubFilter(logging.Filter):
    """For the standard library's log records (aio-pika, asyncpg, aiohttp): the message and
    any exception text are rendered, then scrubbed of secrets and personal data."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(scrub(formatted))
            record.exc_info = None
        record.msg = redact_text(scrub(message))
        record.args = None
        return True
