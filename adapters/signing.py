"""HMAC-SHA256 signatures for pushed requests (source webhooks and ticket callbacks).

Scheme: ``X-Govbridge-Timestamp: <unix seconds>`` and
``X-Govbridge-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>``.
Signing the timestamp with the body is what makes the replay window enforceable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Govbridge-Timestamp"
SIGNATURE_HEADER = "X-Govbridge-Signature"

# A unix time in seconds: ASCII digits only (``int()`` would also take "١٢٣", "1_0" and
# 4,000-digit numbers, and a huge one cannot even be compared with the clock).
_UNIX_TIME = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """The request is not authentic or is too old; ``reason`` is safe to return to the caller."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that make ``body`` a valid signed request (used by senders, simulators and tests)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={mac}"}


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    window_seconds: float = 300,
    now: float | None = None,
) -> None:
    """Raise ``SignatureError`` unless ``body`` was signed with ``secret`` within the window."""
    ts_raw = headers.get(TIMESTAMP_HEADER)
    sig = headers.get(SIGNATURE_HEADER)
    if not ts_raw or not sig:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not _UNIX_TIME.fullmatch(ts_raw):
        raise SignatureError(f"{TIMESTAMP_HEADER} is not a unix time")
    ts = int(ts_raw)
    current = time.time() if now is None else now
    if abs(current - ts) > window_seconds:
        raise SignatureError(
            f"timestamp outside the {int(window_seconds)} s replay window", status=401
        )
    expected = sign(secret, body, ts)[SIGNATURE_HEADER]
    # compare_digest takes str only when it is ASCII; anything else cannot match anyway.
    if not sig.isascii() or not hmac.compare_digest(expected, sig):
        raise SignatureError("signature does not match")
