"""Large response bodies reach the transport in slices (berth.apiserver.slicedbody): each
``transport.write`` is encrypted into the connection's TLS buffer whole, and that buffer keeps
its largest size for the life of the connection."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import make_mocked_request

from berth.apiserver.slicedbody import SLICE, slice_large_body


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(bytes(d) for d in list_of_data))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _send(resp: web.Response) -> tuple[bytes, list[bytes]]:
    async def body() -> list[bytes]:
        transport = RecordingTransport()
        loop = asyncio.get_running_loop()
        protocol = BaseProtocol(loop)
        protocol.connection_made(transport)
        writer = StreamWriter(protocol, loop)
        request = make_mocked_request("GET", "/api/v1/configmaps", writer=writer)
        slice_large_body(resp)
        await resp.prepare(request)
        await resp.write_eof()
        return transport.writes

    writes = asyncio.run(body())
    wire = b"".join(writes)
    head, _, payload = wire.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(payload) in head.lower()
    return payload, writes


def test_a_large_body_is_written_a_slice_at_a_time() -> None:
    big = bytes(range(256)) * (5 * SLICE // 256) + b"tail"
    payload, writes = _send(web.Response(body=big, content_type="application/json"))
    assert payload == big
    assert len(writes) >= 6
    assert max(len(w) for w in writes) <= SLICE + 1024  # the first also carries the headers


def test_small_bodies_and_other_responses_are_left_alone() -> None:
    small = web.Response(body=b'{"kind":"Status"}', content_type="application/json")
    slice_large_body(small)
    assert small.body == b'{"kind":"Status"}'
    payload, writes = _send(web.Response(body=b"x" * SLICE, content_type="application/json"))
    assert payload == b"x" * SLICE
    assert len(writes) == 1
    streamed = web.StreamResponse()
    slice_large_body(streamed)  # streams write their own pieces: nothing to do
    assert not streamed.prepared
