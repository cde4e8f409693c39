"""SPDY/3.1 framing and the server session: what kubectl sends, and what a hostile client may."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from berth.apiserver.streaming import spdy


def syn(codec: spdy.HeaderCodec, sid: int, **headers: str) -> bytes:
    return spdy.encode_syn_stream(codec, sid, headers)


def test_dictionary_is_the_spdy3_one() -> None:
    # 1423 bytes; starts with the length-prefixed "options", ends with "enq=0."
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b",utf-,*,enq=0.")
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2  # the id a zlib header names it by


def test_header_blocks_round_trip_through_one_context_per_direction() -> None:
    sender, receiver = spdy.HeaderCodec(), spdy.HeaderCodec()
    reader = spdy.FrameReader(receiver)
    wire = syn(sender, 1, streamType="error", port="8080", requestID="0")
    wire += syn(sender, 3, streamType="data", port="8080", requestID="0")
    frames = reader.feed(wire)
    assert frames == [
        spdy.SynStream(1, 0, 0, 0, {"streamtype": "error", "port": "8080", "requestid": "0"}),
        spdy.SynStream(3, 0, 0, 0, {"streamtype": "data", "port": "8080", "requestid": "0"}),
    ]


def test_frames_split_anywhere_are_reassembled() -> None:
    sender = spdy.HeaderCodec()
    wire = syn(sender, 1, streamtype="stdin") + spdy.encode_data(1, b"hello", fin=True)
    wire += spdy.encode_ping(1) + spdy.encode_window_update(1, 100) + spdy.encode_rst(1, 5)
    reader = spdy.FrameReader(spdy.HeaderCodec())
    frames = []
    for i in range(len(wire)):
        frames += reader.feed(wire[i : i + 1])
    assert frames == [
        spdy.SynStream(1, 0, 0, 0, {"streamtype": "stdin"}),
        spdy.DataFrame(1, spdy.FLAG_FIN, b"hello"),
        spdy.Ping(1),
        spdy.WindowUpdate(1, 100),
        spdy.RstStream(1, 5),
    ]


def _control(kind: int, payload: bytes, *, version: int = 3, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(">II", 0x80000000 | (version << 16) | kind, n) + payload


def _deflated(block: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)
    return z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)


def _block(pairs: list[tuple[bytes, bytes]], count: int | None = None) -> bytes:
    out = struct.pack(">I", len(pairs) if count is None else count)
    for name, value in pairs:
        out += struct.pack(">I", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


HOSTILE = {
    "data frame longer than allowed": struct.pack(">II", 1, spdy.MAX_DATA_FRAME + 1),
    "control frame longer than allowed": _control(
        spdy.SYN_STREAM, b"", length=spdy.MAX_CONTROL_FRAME + 1
    ),
    "SPDY/2": _control(spdy.PING, b"\x00\x00\x00\x01", version=2),
    "truncated SYN_STREAM": _control(spdy.SYN_STREAM, b"\x00\x00\x00\x01"),
    "header block that is not zlib": _control(
        spdy.SYN_STREAM, struct.pack(">IIBB", 1, 0, 0, 0) + b"\xff" * 40
    ),
    "header block inflating past the bound (a zip bomb)": _control(
        spdy.SYN_STREAM,
        struct.pack(">IIBB", 1, 0, 0, 0)
        + _deflated(_block([(b"x", b"a" * (spdy.MAX_HEADER_BLOCK * 4))])),
    ),
    "too many headers": _control(
        spdy.SYN_STREAM, struct.pack(">IIBB", 1, 0, 0, 0) + _deflated(_block([], count=10**6))
    ),
    "header length past its block": _control(
        spdy.SYN_STREAM,
        struct.pack(">IIBB", 1, 0, 0, 0) + _deflated(struct.pack(">II", 1, 0xFFFFFFF0) + b"name"),
    ),
    "duplicate header": _control(
        spdy.SYN_STREAM,
        struct.pack(">IIBB", 1, 0, 0, 0) + _deflated(_block([(b"a", b"1"), (b"a", b"2")])),
    ),
    "empty header name": _control(
        spdy.SYN_STREAM, struct.pack(">IIBB", 1, 0, 0, 0) + _deflated(_block([(b"", b"1")]))
    ),
    "SETTINGS count beyond its length": _control(spdy.SETTINGS, struct.pack(">I", 1000)),
}


@pytest.mark.parametrize("wire", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_frames_are_refused(wire: bytes) -> None:
    with pytest.raises(spdy.SpdyError):
        spdy.FrameReader(spdy.HeaderCodec()).feed(wire)


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    # nothing of the announced 16 MiB needs to arrive (or be buffered) for the refusal
    with pytest.raises(spdy.SpdyError, match="larger than"):
        spdy.FrameReader(spdy.HeaderCodec()).feed(struct.pack(">II", 1, 0xFFFFFF))


def test_unknown_control_frames_are_ignored() -> None:
    assert spdy.FrameReader(spdy.HeaderCodec()).feed(_control(5, b"noop")) == []


class Pipe:
    """The client's side of a session under test."""

    def __init__(self) -> None:
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.from_server = bytearray()
        self.codec = spdy.HeaderCodec()
        self.reader = spdy.FrameReader(spdy.HeaderCodec())

    async def read(self) -> bytes:
        return await self.to_server.get()

    async def write(self, data: bytes | bytearray) -> None:
        self.from_server += data

    def received(self) -> list[spdy.Frame]:
        frames = self.reader.feed(bytes(self.from_server))
        self.from_server.clear()
        return frames


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_session_answers_streams_and_delivers_data() -> None:
    asyncio.run(_test_session_answers_streams_and_delivers_data())


async def _test_session_answers_streams_and_delivers_data() -> None:
    pipe = Pipe()
    session = spdy.Session(pipe.read, pipe.write)
    runner = asyncio.create_task(session.run())
    pipe.to_server.put_nowait(syn(pipe.codec, 1, streamtype="stdin"))
    stream = await session.accept()
    assert stream is not None
    assert stream.headers == {"streamtype": "stdin"}
    pipe.to_server.put_nowait(spdy.encode_data(1, b"abc") + spdy.encode_data(1, b"", fin=True))
    assert await stream.read() == b"abc"
    assert await stream.read() == b""
    assert await stream.read() == b""  # the end stays the end
    await stream.write(b"out")
    await stream.close()
    pipe.to_server.put_nowait(spdy.encode_ping(7))
    await _settle()
    assert pipe.received() == [
        spdy.SynReply(1, 0, {}),
        spdy.DataFrame(1, 0, b"out"),
        spdy.DataFrame(1, spdy.FLAG_FIN, b""),
        spdy.Ping(7),
    ]
    pipe.to_server.put_nowait(b"")  # the client hangs up
    await runner
    assert await session.accept() is None


def test_reused_stream_id_ends_the_session_with_goaway() -> None:
    asyncio.run(_test_reused_stream_id_ends_the_session_with_goaway())


async def _test_reused_stream_id_ends_the_session_with_goaway() -> None:
    pipe = Pipe()
    session = spdy.Session(pipe.read, pipe.write)
    runner = asyncio.create_task(session.run())
    pipe.to_server.put_nowait(syn(pipe.codec, 3, streamtype="a"))
    pipe.to_server.put_nowait(syn(pipe.codec, 1, streamtype="b"))
    await asyncio.wait_for(runner, 5)
    frames = pipe.received()
    assert frames[-1] == spdy.GoAway(3, spdy.PROTOCOL_ERROR)
    assert "not a new client stream" in session.error


def test_data_for_an_unknown_stream_is_reset() -> None:
    asyncio.run(_test_data_for_an_unknown_stream_is_reset())


async def _test_data_for_an_unknown_stream_is_reset() -> None:
    pipe = Pipe()
    session = spdy.Session(pipe.read, pipe.write)
    runner = asyncio.create_task(session.run())
    pipe.to_server.put_nowait(spdy.encode_data(9, b"x"))
    await _settle()
    assert pipe.received() == [spdy.RstStream(9, spdy.INVALID_STREAM)]
    pipe.to_server.put_nowait(b"")
    await runner


def test_unread_data_past_the_bound_ends_the_session() -> None:
    asyncio.run(_test_unread_data_past_the_bound_ends_the_session())


async def _test_unread_data_past_the_bound_ends_the_session() -> None:
    pipe = Pipe()
    session = spdy.Session(pipe.read, pipe.write)
    runner = asyncio.create_task(session.run())
    pipe.to_server.put_nowait(syn(pipe.codec, 1, streamtype="stdin"))
    chunk = spdy.encode_data(1, b"x" * 1_000_000)
    for _ in range(spdy.MAX_STREAM_BUFFER // 1_000_000 + 1):
        pipe.to_server.put_nowait(chunk)
    await asyncio.wait_for(runner, 5)
    assert "unread bytes" in session.error


def test_streams_beyond_the_bound_are_refused() -> None:
    asyncio.run(_test_streams_beyond_the_bound_are_refused())


async def _test_streams_beyond_the_bound_are_refused() -> None:
    pipe = Pipe()
    session = spdy.Session(pipe.read, pipe.write)
    runner = asyncio.create_task(session.run())
    for i in range(spdy.MAX_STREAMS + 1):
        pipe.to_server.put_nowait(syn(pipe.codec, 2 * i + 1, streamtype="data"))
    await _settle()
    for _ in range(50):
        await asyncio.sleep(0)
    refused = [f for f in pipe.received() if isinstance(f, spdy.RstStream)]
    assert refused == [spdy.RstStream(2 * spdy.MAX_STREAMS + 1, spdy.REFUSED_STREAM)]
    pipe.to_server.put_nowait(b"")
    await runner


def test_reads_join_what_arrived_and_writes_go_out_at_once() -> None:
    asyncio.run(_test_reads_join_what_arrived_and_writes_go_out_at_once())


async def _test_reads_join_what_arrived_and_writes_go_out_at_once() -> None:
    pipe = Pipe()
    writes: list[int] = []
    original = pipe.write

    async def counting_write(data: bytes | bytearray) -> None:
        writes.append(len(data))
        await original(data)

    session = spdy.Session(pipe.read, counting_write)
    runner = asyncio.create_task(session.run())
    pipe.to_server.put_nowait(syn(pipe.codec, 1, streamtype="data"))
    stream = await session.accept()
    assert stream is not None
    # frames that arrived before a read come back joined, up to READ_COALESCE per read
    small = [bytes([i]) * 32 * 1024 for i in range(12)]  # 384 KiB in 32 KiB frames
    pipe.to_server.put_nowait(
        b"".join(spdy.encode_data(1, s) for s in small) + spdy.encode_data(1, b"", fin=True)
    )
    await _settle()
    first = await stream.read()
    assert first == b"".join(small[:8])  # 256 KiB
    assert await stream.read() == b"".join(small[8:])
    assert await stream.read() == b""  # the end comes last, and stays
    assert await stream.read() == b""
    # a large write: DATA frames of at most SEND_FRAME bytes, in one write to the connection
    pipe.received()
    writes.clear()
    big = bytes(range(256)) * (3 * spdy.SEND_FRAME // 256 + 7)
    await stream.write(memoryview(big))
    assert len(writes) == 1
    frames = pipe.received()
    assert all(isinstance(f, spdy.DataFrame) and f.stream_id == 1 for f in frames)
    assert [len(f.data) for f in frames if isinstance(f, spdy.DataFrame)] == [
        spdy.SEND_FRAME,
        spdy.SEND_FRAME,
        spdy.SEND_FRAME,
        7 * 256,
    ]
    assert b"".join(f.data for f in frames if isinstance(f, spdy.DataFrame)) == big
    pipe.to_server.put_nowait(b"")
    await runner


def test_a_stream_being_read_holds_the_connection_instead_of_overrunning() -> None:
    asyncio.run(_test_a_stream_being_read_holds_the_connection_instead_of_overrunning())


async def _test_a_stream_being_read_holds_the_connection_instead_of_overrunning() -> None:
    pipe = Pipe()
    session = spdy.Session(pipe.read, pipe.write)
    runner = asyncio.create_task(session.run())
    pipe.to_server.put_nowait(syn(pipe.codec, 1, streamtype="data"))
    stream = await session.accept()
    assert stream is not None
    stream.will_read()  # as a port-forward does while it dials the agent
    chunk = spdy.encode_data(1, b"x" * 500_000)
    total = spdy.MAX_STREAM_BUFFER // 500_000 + 4  # more than the bound
    for _ in range(total):
        pipe.to_server.put_nowait(chunk)
    await _settle()
    # the session stopped reading the connection: nothing ended, the client waits on TCP
    assert not session.closed
    assert not pipe.to_server.empty()
    got = 0
    while got < total * 500_000:
        got += len(await asyncio.wait_for(stream.read(), 5))
    assert pipe.to_server.empty()
    assert not session.closed
    # a stream given up drops what still comes, without holding or ending the session
    stream.abandon()
    for _ in range(total):
        pipe.to_server.put_nowait(chunk)
    pipe.to_server.put_nowait(spdy.encode_ping(3))
    for _ in range(50):
        await _settle()
        if pipe.to_server.empty():
            break
    assert pipe.to_server.empty()
    assert not session.closed
    assert spdy.Ping(3) in pipe.received()
    pipe.to_server.put_nowait(b"")
    await asyncio.wait_for(runner, 5)
    assert session.error == ""
