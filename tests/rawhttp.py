"""A raw HTTP/1.1 client over a socket, for tests that need what ordinary clients will not do:
a request cut into many small TCP segments, a chunked body in many chunks, header bytes that
are not UTF-8, a client that sends its headers and then nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Header = tuple[str | bytes, str | bytes]


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def request_head(
    method: str, path: str | bytes, headers: Iterable[Header], *, host: str = "127.0.0.1"
) -> bytes:
    lines = [_b(method) + b" " + _b(path) + b" HTTP/1.1", b"Host: " + _b(host)]
    lines += [_b(k) + b": " + _b(v) for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunked(body: bytes, size: int) -> list[bytes]:
    """``body`` in the chunked transfer coding, one element per chunk, then the last chunk."""
    parts = [
        f"{len(body[i : i + size]):x}\r\n".encode() + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    ]
    return [*parts, b"0\r\n\r\n"]


def segments(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def open_connection(
    port: int, host: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:  # every write leaves as its own segment
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawResponse(int(status_line.split()[1]), headers, body)


async def send(
    port: int,
    parts: Sequence[bytes],
    *,
    pause: float = 0.0,
    host: str = "127.0.0.1",
) -> RawResponse:
    """Write ``parts`` one by one (draining and pausing between them), read one response."""
    reader, writer = await open_connection(port, host)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        return await read_response(reader)
    finally:
        writer.close()
