"""Large response bodies go to the connection in slices, so TLS buffers stay small.

The TLS transport (uvloop's, like asyncio's) encrypts each ``transport.write`` into an
OpenSSL memory BIO in one go and then drains it to the socket. A drained memory BIO keeps
its capacity for the life of the connection, so a 2 MB LIST answered in one write leaves
~2 MB behind on that connection until the client closes it (measured: 50 BIOs each fed one
2 MB write kept +2,034 KiB each once drained; fed 62.5 KB writes, each drained in turn,
+105 KiB). With clients holding connections open for minutes (keep-alive, watches), an API
server that had answered a few big LISTs on each of its ~100 connections held hundreds of MB
it no longer used. Writing the body in :data:`SLICE` pieces, each one encrypted and drained
before the next, bounds what each connection keeps to about one slice; aiohttp's writer also
waits for the socket between slices once its buffer is full, instead of queuing the whole
encrypted body.
"""

from __future__ import annotations

from aiohttp import payload, web
from aiohttp.abc import AbstractStreamWriter

SLICE = 64 * 1024
"""Bytes per ``transport.write``: large enough that the per-write cost vanishes beside the
encryption (TLS records are 16 KiB), small enough that no connection keeps much."""


class SlicedBytes(payload.Payload):
    """A bytes body written :data:`SLICE` bytes at a time (aiohttp's ``BytesPayload``
    writes it whole)."""

    _value: bytes

    def __init__(self, value: bytes, *, content_type: str) -> None:
        super().__init__(value, content_type=content_type)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._value.decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        view = memoryview(self._value)
        for start in range(0, len(view), SLICE):
            await writer.write(view[start : start + SLICE])


def slice_large_body(resp: web.StreamResponse) -> None:
    """Give ``resp`` a :class:`SlicedBytes` body if it is a plain response with a bytes body
    larger than one slice (streamed responses write their own pieces already)."""
    if type(resp) is not web.Response or resp.prepared:
        return
    body = resp.body
    if isinstance(body, bytes) and len(body) > SLICE:
        resp.body = SlicedBytes(body, content_type=resp.content_type)
