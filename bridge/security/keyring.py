"""HMAC-SHA256 keys for one purpose (the bus's signatures, the audit trail's records).

A keyring holds the configured keys in order: the first signs, every one verifies, so a key can
be rotated without losing what the old one signed (add the new key first, keep the old one
until nothing signed with it is left). Each key has a short id (a keyed fingerprint, not the
key) written beside every MAC, so a verifier picks the right key at once and can say "signed
with a key that is not configured" instead of only "does not match".

With no key configured, a development key is used. It is published here (so it is no secret):
it keeps the demo, the example configs and a developer's machine working with the same code
path as production, and ``govbridge check`` / ``govbridge run`` refuse it in a config that
reaches beyond this machine (``bridge.config.weak_keys``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import SecretStr

Purpose = Literal["bus", "audit"]

DEVELOPMENT_KEYS: dict[str, str] = {
    "bus": "govbridge-development-bus-key (published: not a secret)",
    "audit": "govbridge-development-audit-key (published: not a secret)",
}


def key_id(purpose: str, key: bytes) -> str:
    """Eight hex digits naming a key (an HMAC of the purpose under the key: it reveals
    nothing of the key, and the same secret gets different ids for different purposes)."""
    return hmac.new(key, b"govbridge-key-id:" + purpose.encode(), hashlib.sha256).hexdigest()[:8]


class Keyring:
    """The keys of one purpose. ``sign`` uses the first; ``mac_for`` finds any by its id."""

    def __init__(self, purpose: Purpose, keys: Sequence[SecretStr | str] = ()) -> None:
        values = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        # empty entries are unset optional keys (``"${GOVBRIDGE_BUS_KEY_OLD:-}"``)
        chosen = [v.encode() for v in values if v.strip()]
        self.purpose = purpose
        self.development = not chosen
        if not chosen:
            chosen = [DEVELOPMENT_KEYS[purpose].encode()]
        # a prepared HMAC per key, copied for each use: the key schedule is computed once
        self._templates: dict[str, Any] = {}
        for key in chosen:
            self._templates.setdefault(key_id(purpose, key), hmac.new(key, None, hashlib.sha256))
        self.signing_id = key_id(purpose, chosen[0])

    def __repr__(self) -> str:  # never the keys
        return f"Keyring({self.purpose}, ids={self.ids}, development={self.development})"

    @property
    def ids(self) -> list[str]:
        return list(self._templates)

    def has(self, kid: str) -> bool:
        return kid in self._templates

    def mac(self, kid: str, *parts: bytes) -> str | None:
        """The hex HMAC of ``parts`` (concatenated) under key ``kid``; None for an unknown id."""
        template = self._templates.get(kid)
        if template is None:
            return None
        h = template.copy()
        for part in parts:
            h.update(part)
        return str(h.hexdigest())

    def sign(self, *parts: bytes) -> tuple[str, str]:
        """``(key id, hex HMAC)`` of ``parts`` under the signing key."""
        mac = self.mac(self.signing_id, *parts)
        assert mac is not None
        return self.signing_id, mac

    def check(self, kid: str, mac: str, *parts: bytes) -> bool:
        expected = self.mac(kid, *parts)
        return expected is not None and hmac.compare_digest(expected, mac)

    def describe(self) -> str:
        """For ``govbridge check``: which key signs, how many verify (ids only)."""
        if self.development:
            return "the published development key (no key configured)"
        more = len(self._templates) - 1
        return f"key {self.signing_id} signs" + (f", {more} more verify" if more else "")
