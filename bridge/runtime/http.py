"""What every HTTP handler of the bridge reads and answers with, the web side's and the roles'
signed hooks alike: a body read whole under a size cap and a time limit, JSON parsed strictly,
and errors as JSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

DEFAULT_BODY_TIMEOUT = 30.0


def json_error(status: int, reason: str, **headers: str) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers or None)


class BodyError(Exception):
    """The request body cannot be accepted; ``status`` and ``reason`` are for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def response(self) -> web.Response:
        resp = json_error(self.status, self.reason)
        # The rest of the body may still be on its way; nothing more is read from this client.
        resp.force_close()
        return resp


async def read_limited_body(
    request: web.Request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT
) -> bytes:
    """The whole request body, read to its end however it was segmented or chunked.

    ``Content-Length`` is checked first; chunked bodies are counted as they arrive, so a body
    over ``limit`` is refused (413) without being buffered. A body that does not arrive within
    ``timeout`` seconds is refused (408), so a slow client cannot hold a handler.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyError(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(408, f"body not received within {timeout:g} s") from None
    except HttpProcessingError as exc:  # broken chunked encoding, short Content-Length body
        raise BodyError(400, f"body not readable: {exc.message or type(exc).__name__}") from None
    return b"".join(chunks)


def loads_strict(body: bytes) -> Any:
    """JSON from ``body``, or ``ValueError`` with a reason: not UTF-8, not JSON, nested too
    deep, an integer too long, or text that is not valid Unicode (a lone surrogate)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    except RecursionError:
        raise ValueError("body is nested too deeply") from None
    except json.JSONDecodeError:
        raise ValueError("body is not JSON") from None
    except ValueError:  # an integer longer than Python converts
        raise ValueError("body has a number that is too large") from None
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("body has text that is not valid Unicode") from None
    except (RecursionError, ValueError):
        raise ValueError("body is nested too deeply") from None
    if _has_nul(doc):  # no store keeps it (PostgreSQL refuses it in text) and no text needs it
        raise ValueError("body has a NUL character (\\u0000)")
    return doc


def _has_nul(doc: Any) -> bool:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
