"""Signed webhooks the way a platform or ticket system sends them (``adapters/signing.py``:
``X-Govbridge-Timestamp`` and ``X-Govbridge-Signature``, HMAC-SHA256 of ``timestamp.body``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from adapters import signing


def encode(doc: object) -> bytes:
    """A JSON body as platforms send it (UTF-8, Chinese left as it is)."""
    return json.dumps(doc, ensure_ascii=False).encode()


class SignedHook:
    """POSTs to one hook URL, signed with ``secret`` unless told otherwise.

    ``post`` sends bytes as they are with the headers given (``None``: signed with
    ``signed_with``, default the hook's secret); ``push`` encodes a document first.
    Both return (HTTP status, JSON answer)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, secret: str) -> None:
        self.http = http
        self.url = url
        self.secret = secret

    async def post(
        self,
        body: Any,  # bytes, or a stream of them (then pass the headers)
        headers: Mapping[str, str] | None = None,
        *,
        signed_with: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        if headers is None:
            headers = signing.sign(signed_with or self.secret, body, timestamp)
        sent = {"Content-Type": "application/json", **headers}
        async with self.http.post(self.url, data=body, headers=sent) as resp:
            return resp.status, await resp.json()

    async def push(self, doc: object, **kw: Any) -> tuple[int, dict[str, Any]]:
        return await self.post(encode(doc), **kw)
