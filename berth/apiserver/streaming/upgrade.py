"""Taking over an HTTP connection after answering ``101 Switching Protocols`` to an
``Upgrade: SPDY/3.1`` request.

aiohttp upgrades connections only for WebSocket: for any other ``Upgrade`` its parser would
go on reading the client's SPDY frames as HTTP requests. The client sends nothing after its
upgrade request until it has our 101, so the handler can safely mark the connection upgraded
before answering; from then on every byte the client sends is handed to a :class:`RawReader`
(aiohttp's payload-parser hook, the one its WebSocket support uses), and bytes are written
to the transport directly with aiohttp's back-pressure wait.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

READ_PAUSE_BYTES = 1 << 20
"""Unread bytes at which the socket stops being read until the consumer catches up."""


class RawReader:
    """What aiohttp feeds an upgraded connection's bytes to (its ``set_parser`` contract:
    ``feed_data`` returns ``(eof, tail)``)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._pending = 0
        self._paused = False

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        chunk = bytes(data)
        if chunk:
            self._pending += len(chunk)
            self._chunks.put_nowait(chunk)
            if self._pending > READ_PAUSE_BYTES and not self._paused:
                self._paused = True
                self._transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._chunks.put_nowait(b"")

    async def read(self) -> bytes:
        chunk = await self._chunks.get()
        if not chunk:
            self._chunks.put_nowait(b"")
            return b""
        self._pending -= len(chunk)
        if self._paused and self._pending < READ_PAUSE_BYTES // 2:
            self._paused = False
            self._transport.resume_reading()
        return chunk


class RawConnection:
    """The byte stream of a connection upgraded by :func:`switch_protocols`."""

    def __init__(self, request: web.Request, reader: RawReader) -> None:
        self._protocol = request.protocol
        transport = request.transport
        assert transport is not None
        self._transport = transport
        self.reader = reader

    async def read(self) -> bytes:
        return await self.reader.read()

    async def write(self, data: bytes | bytearray) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("the client connection is closed")
        self._transport.write(data)
        await self._protocol._drain_helper()

    def close(self) -> None:
        self._transport.close()


async def switch_protocols(
    request: web.Request, headers: dict[str, str]
) -> tuple[web.StreamResponse, RawConnection]:
    """Answer 101 with ``headers`` and return the raw connection (see the module docstring).
    The handler must return the response it got here once it is done with the connection."""
    protocol = request.protocol
    transport = request.transport
    assert transport is not None
    protocol._upgraded = True  # every later byte is the new protocol's, not HTTP
    reader = RawReader(transport)
    protocol.set_parser(reader)  # type: ignore[arg-type]
    resp = web.StreamResponse(status=101, reason="Switching Protocols", headers=headers)
    resp.force_close()
    await resp.prepare(request)
    await resp.write(b"")  # flushes the status line and headers
    await protocol._drain_helper()
    return resp, RawConnection(request, reader)
