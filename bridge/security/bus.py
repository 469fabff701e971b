"""Signed messages between the bridge's own stages: whoever can publish to the exchange cannot
make the bridge act.

Every message the bridge publishes carries two headers::

    x-govbridge-signature: v1:<key id>:<signed at, unix ms>:<hex HMAC-SHA256>
    x-govbridge-signed-for: <the routing key it was published with>

The HMAC covers the version, the routing key, the message type, the signing time and the body
(the exact bytes sent: nothing is serialised again to check it). Binding the routing key is what
makes a genuine body useless under another key: a ``ticket.created`` replayed as
``ticket.updated``, or one department's event re-routed to another. The body and headers stay
plain, so systems that only read (``reply.posted.*``, ``sla.*``) need no key.

A consumer checks before it decodes anything (``check``):

- delivered by the topic exchange: the routing key must be the one signed for;
- delivered otherwise (the delay tiers and a dead-letter replay republish through the default
  exchange, under the queue's name): the key signed for must be one this stage binds;
- the key id must be a configured key's and the HMAC must match.

A retried or dead-lettered copy keeps its headers, so its signature stays valid; a replay
(``govbridge dlq replay``, the console) republishes the dead letter as it is and is checked
again like any other delivery: a genuine message goes through, a forged one is refused again.
Nothing is re-signed on an operator's say-so (the body is never shown, so nobody could vouch
for it).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

from bridge.security.keyring import Keyring

SIGNATURE_HEADER = "x-govbridge-signature"
SIGNED_FOR_HEADER = "x-govbridge-signed-for"
VERSION = "v1"
_DOMAIN = b"govbridge-bus-v1"
_SHOWN = 80  # characters of an untrusted value quoted in a reason


def _prefix(routing_key: str, type_: str, signed_at: str) -> bytes:
    """What the HMAC covers before the body: length-prefixed fields, so no two different
    (key, type, time) triples read alike."""
    out = bytearray(_DOMAIN)
    for text in (routing_key, type_, signed_at):
        value = text.encode()
        out += len(value).to_bytes(4, "big")
        out += value
    return bytes(out)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _shown(value: str) -> str:
    return repr(value[:_SHOWN])


@functools.lru_cache(maxsize=4096)
def binds(patterns: tuple[str, ...], key: str) -> bool:
    """Whether any of a queue's binding ``patterns`` matches ``key`` (cached: a bridge sees few
    distinct routing keys, and this runs for every delivery)."""
    return any(topic_matches(pattern, key) for pattern in patterns)


def topic_matches(pattern: str, key: str) -> bool:
    """Whether routing ``key`` matches a topic binding ``pattern`` (``*`` one word, ``#``
    zero or more), as RabbitMQ's topic exchange matches them."""
    return _match(pattern.split("."), key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


class BusAuth:
    """Signs what the bridge publishes and checks what its stages consume."""

    def __init__(self, keys: Keyring) -> None:
        self.keys = keys

    def headers(self, routing_key: str, body: bytes, type_: str | None) -> dict[str, Any]:
        """The headers that make ``body`` a message signed for ``routing_key``."""
        signed_at = str(time.time_ns() // 1_000_000)
        kid, mac = self.keys.sign(_prefix(routing_key, type_ or "", signed_at), body)
        return {
            SIGNATURE_HEADER: f"{VERSION}:{kid}:{signed_at}:{mac}",
            SIGNED_FOR_HEADER: routing_key,
        }

    def check(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None,
        type_: str | None,
        *,
        exchange: str | None,
        routing_key: str | None,
        topic_exchange: str,
        bindings: tuple[str, ...],
    ) -> str | None:
        """Why the delivery is not an authentic message for a stage binding ``bindings``, or
        None when it is. The reason quotes at most a few characters of what was sent."""
        headers = headers or {}
        raw = _text(headers.get(SIGNATURE_HEADER))
        if raw is None:
            return "unsigned"
        parts = raw.split(":")
        if len(parts) != 4 or parts[0] != VERSION:
            return "signature header not understood"
        _, kid, signed_at, mac = parts
        signed_for = _text(headers.get(SIGNED_FOR_HEADER))
        if not signed_for:
            return f"signature names no routing key ({SIGNED_FOR_HEADER})"
        if exchange == topic_exchange and routing_key != signed_for:
            return (
                f"signed for {_shown(signed_for)} but routed as {_shown(routing_key or '')}"
                " (a signed body replayed under another routing key)"
            )
        if not binds(bindings, signed_for):
            return f"signed for {_shown(signed_for)}, which this stage does not consume"
        if not self.keys.has(kid):
            return f"signed with key {_shown(kid)}, which is not configured"
        if not self.keys.check(kid, mac, _prefix(signed_for, type_ or "", signed_at), body):
            return "signature does not match the message (body, type or routing key changed)"
        return None
