"""SPDY/3.1 framing and a server-side session, as far as Kubernetes streaming uses it.

kubectl up to 1.29 (and newer ones as a fallback) runs ``exec``, ``attach`` and
``port-forward`` over an HTTP connection upgraded to ``SPDY/3.1``: the client opens one SPDY
stream per channel (``streamType`` header: ``error``, ``stdin``, ``stdout``, ``stderr``,
``resize``; or ``error``/``data`` per port and ``requestID`` for port-forward), and bytes flow
as DATA frames. Only what those clients send is implemented: SYN_STREAM/SYN_REPLY, DATA,
RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE. Flow control windows are not
enforced on our sends (the Go implementation kubectl uses does not enforce them either).

The peer is untrusted, so everything is bounded before it is buffered or inflated:
a frame's declared length (:data:`MAX_DATA_FRAME`, :data:`MAX_CONTROL_FRAME`), the inflated
size of a header block (:data:`MAX_HEADER_BLOCK`), the number and size of header pairs, the
number of open streams (:data:`MAX_STREAMS`) and the bytes buffered for a stream nobody reads
(:data:`MAX_STREAM_BUFFER`). Any violation ends the session (:class:`SpdyError`), never the
process.

Header blocks are zlib streams primed with the SPDY/3 dictionary, one compression context per
direction for the whole session, flushed with ``Z_SYNC_FLUSH`` after each block.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9

MAX_DATA_FRAME = 1 << 20
"""Largest DATA payload accepted (kubectl writes at most 32 KiB at a time)."""
MAX_CONTROL_FRAME = 64 * 1024
MAX_HEADER_BLOCK = 64 * 1024
"""Largest inflated header block (the ones kubectl sends are ~100 bytes)."""
MAX_HEADER_PAIRS = 64
MAX_STREAMS = 512
"""Most streams open at once in one session (port-forward opens two per connection)."""
MAX_STREAM_BUFFER = 4 << 20
"""Most bytes received on a stream and not yet read before the session is torn down."""
SEND_FRAME = 256 * 1024
"""Largest DATA payload we send. kubectl (1.20's and 1.32's spdystream) takes any length
SPDY allows; fewer, larger frames cut its CPU per byte (measured: bench/streams.py)."""
READ_COALESCE = 256 * 1024
"""Most bytes one :meth:`Stream.read` joins from frames already received."""
PAUSE_BUFFER = 1 << 20
"""Unread bytes of a stream being read at which the session stops reading the connection
until the reader catches up (one connection read past it stays far under
:data:`MAX_STREAM_BUFFER`)."""

_HEAD = struct.Struct(">II")


class SpdyError(Exception):
    """The peer broke the protocol or a bound: the session must end."""


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (section 2.6.10.1 of the draft): a run of
    length-prefixed header names and values, then a run of bare strings."""
    prefixed = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
    ]
    prefixed += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive"]
    prefixed += ["origin"]
    bare = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505"
        "203 Non-Authoritative Information"
        "204 No Content"
        "301 Moved Permanently"
        "400 Bad Request"
        "401 Unauthorized"
        "403 Forbidden"
        "404 Not Found"
        "500 Internal Server Error"
        "501 Not Implemented"
        "503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00"
        " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    out = bytearray()
    for word in prefixed:
        out += struct.pack(">I", len(word)) + word.encode()
    return bytes(out) + bare.encode()


DICTIONARY = _dictionary()


# --- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    flags: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    associated_id: int
    priority: int
    flags: int
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    flags: int
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...]  # (flags, id, value)


@dataclass(frozen=True, slots=True)
class Ping:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Headers:
    stream_id: int
    flags: int
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = (
    DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | Headers | WindowUpdate
)


class HeaderCodec:
    """One direction's header compression context (a session has one for each way)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )
        self._inflate = zlib.decompressobj(15, DICTIONARY)

    def encode(self, headers: dict[str, str]) -> bytes:
        block = bytearray(struct.pack(">I", len(headers)))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            block += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._deflate.compress(bytes(block)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, compressed: bytes) -> dict[str, str]:
        try:
            block = self._inflate.decompress(compressed, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise SpdyError(f"bad header block compression: {exc}") from exc
        if self._inflate.unconsumed_tail:
            raise SpdyError(f"header block inflates past {MAX_HEADER_BLOCK} bytes")
        return parse_header_block(block)


def parse_header_block(block: bytes) -> dict[str, str]:
    """The name/value pairs of an inflated header block (names lower case, as SPDY/3 wants;
    a repeated name keeps its NUL-joined values)."""
    if len(block) < 4:
        raise SpdyError("truncated header block")
    (count,) = struct.unpack_from(">I", block, 0)
    if count > MAX_HEADER_PAIRS:
        raise SpdyError(f"too many headers: {count}")
    pos = 4
    out: dict[str, str] = {}
    for _ in range(count):
        name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        if not name:
            raise SpdyError("empty header name")
        try:
            key, text = name.decode("ascii").lower(), value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpdyError("header is not text") from exc
        if key in out:
            raise SpdyError(f"duplicate header {key!r}")
        out[key] = text
    if pos != len(block):
        raise SpdyError("trailing bytes after the header block")
    return out


def _string(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(block):
        raise SpdyError("truncated header block")
    (n,) = struct.unpack_from(">I", block, pos)
    end = pos + 4 + n
    if end > len(block):
        raise SpdyError("header length past the end of its block")
    return block[pos + 4 : end], end


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return _HEAD.pack(0x80000000 | (VERSION << 16) | kind, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, data: bytes | memoryview, *, fin: bool = False) -> bytes:
    return _HEAD.pack(stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(
    codec: HeaderCodec, stream_id: int, headers: dict[str, str], *, fin: bool = False
) -> bytes:
    payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + codec.encode(headers)
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, payload)


def encode_syn_reply(codec: HeaderCodec, stream_id: int, headers: dict[str, str]) -> bytes:
    return _control(SYN_REPLY, 0, struct.pack(">I", stream_id) + codec.encode(headers))


def encode_rst(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))


class FrameReader:
    """Turns a byte stream into frames; holds at most one frame's bytes."""

    def __init__(self, codec: HeaderCodec) -> None:
        self.codec = codec
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            first, second = _HEAD.unpack_from(self._buf, 0)
            length = second & 0xFFFFFF
            control = bool(first & 0x80000000)
            limit = MAX_CONTROL_FRAME if control else MAX_DATA_FRAME
            if length > limit:
                raise SpdyError(f"frame of {length} bytes is larger than {limit}")
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            flags = second >> 24
            if not control:
                frames.append(DataFrame(first & 0x7FFFFFFF, flags, payload))
                continue
            version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != VERSION:
                raise SpdyError(f"unsupported SPDY version {version}")
            frame = self._control(kind, flags, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _control(self, kind: int, flags: int, p: bytes) -> Frame | None:
        def need(n: int) -> None:
            if len(p) < n:
                raise SpdyError(f"control frame {kind} too short ({len(p)} bytes)")

        if kind == SYN_STREAM:
            need(10)
            sid, assoc = struct.unpack_from(">II", p, 0)
            return SynStream(
                sid & 0x7FFFFFFF, assoc & 0x7FFFFFFF, p[8] >> 5, flags, self.codec.decode(p[10:])
            )
        if kind == SYN_REPLY:
            need(4)
            (sid,) = struct.unpack_from(">I", p, 0)
            return SynReply(sid & 0x7FFFFFFF, flags, self.codec.decode(p[4:]))
        if kind == HEADERS:
            need(4)
            (sid,) = struct.unpack_from(">I", p, 0)
            return Headers(sid & 0x7FFFFFFF, flags, self.codec.decode(p[4:]))
        if kind == RST_STREAM:
            need(8)
            sid, status = struct.unpack_from(">II", p, 0)
            return RstStream(sid & 0x7FFFFFFF, status)
        if kind == SETTINGS:
            need(4)
            (count,) = struct.unpack_from(">I", p, 0)
            if len(p) != 4 + 8 * count:
                raise SpdyError("SETTINGS length does not match its entry count")
            entries = []
            for i in range(count):
                word, value = struct.unpack_from(">II", p, 4 + 8 * i)
                entries.append((word >> 24, word & 0xFFFFFF, value))
            return Settings(tuple(entries))
        if kind == PING:
            need(4)
            return Ping(struct.unpack_from(">I", p, 0)[0])
        if kind == GOAWAY:
            need(8)
            last, status = struct.unpack_from(">II", p, 0)
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == WINDOW_UPDATE:
            need(8)
            sid, delta = struct.unpack_from(">II", p, 0)
            return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # unknown control frames are ignored, as the spec says


# --- session -----------------------------------------------------------------------------------


ReadFn = Callable[[], Awaitable[bytes]]
"""Reads the next bytes of the connection; ``b""`` at its end."""
WriteFn = Callable[[bytes | bytearray], Awaitable[None]]


@dataclass(eq=False)
class Stream:
    """One stream the peer opened."""

    session: Session
    id: int
    headers: dict[str, str]
    _chunks: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    _buffered: int = 0
    remote_closed: bool = False
    local_closed: bool = False
    _reading: bool = False
    """Someone reads this stream: the session waits for it rather than overrun it."""
    _abandoned: bool = False
    _drained: asyncio.Event = field(default_factory=asyncio.Event)

    def _backlogged(self) -> bool:
        return self._reading and not self._abandoned and self._buffered > PAUSE_BUFFER

    def _consumed(self, size: int) -> None:
        self._buffered -= size
        if self._buffered <= PAUSE_BUFFER // 2:
            self._drained.set()

    def will_read(self) -> None:
        """Its reader is on the way (it may start later, after a dial): from now on the
        session waits for it instead of overrunning it."""
        self._reading = True

    def abandon(self) -> None:
        """Nobody will read this stream again: drop what is buffered and what still comes
        (instead of holding the session for it, or ending it at the buffer bound)."""
        self._abandoned = True
        while not self._chunks.empty():
            if not self._chunks.get_nowait():
                self._chunks.put_nowait(b"")
                break
        self._buffered = 0
        self._drained.set()

    async def read(self) -> bytes:
        """The next bytes the peer sent (what arrived since the last read, joined, up to
        :data:`READ_COALESCE`); ``b""`` once it finished (FIN, reset, session end)."""
        self._reading = True
        chunk = await self._chunks.get()
        if not chunk:
            self._chunks.put_nowait(b"")  # every later read sees the end too
            return chunk
        if self._chunks.empty():
            self._consumed(len(chunk))
            return chunk
        # The peer's frames are small (kubectl: 32 KiB); whoever relays them pays per read.
        parts, size = [chunk], len(chunk)
        while size < READ_COALESCE and not self._chunks.empty():
            more = self._chunks.get_nowait()
            if not more:
                self._chunks.put_nowait(b"")  # the end stays the last thing read
                break
            parts.append(more)
            size += len(more)
        self._consumed(size)
        return b"".join(parts)

    async def write(self, data: bytes | memoryview) -> None:
        """Send ``data`` as DATA frames of at most :data:`SEND_FRAME` bytes, written to the
        connection at once (one write, not one per frame)."""
        if self.local_closed or not data:
            return
        view = memoryview(data)
        if len(view) <= SEND_FRAME:
            await self.session.send(encode_data(self.id, view))
            return
        parts: list[bytes | memoryview] = []
        for i in range(0, len(view), SEND_FRAME):
            part = view[i : i + SEND_FRAME]
            parts += (_HEAD.pack(self.id & 0x7FFFFFFF, len(part)), part)
        await self.session.send(b"".join(parts))  # one allocation, one copy

    async def close(self) -> None:
        """Finish our side (FIN)."""
        if not self.local_closed:
            self.local_closed = True
            await self.session.send(encode_data(self.id, b"", fin=True))

    async def reset(self, status: int = CANCEL) -> None:
        self.local_closed = True
        self._end()
        await self.session.send(encode_rst(self.id, status))

    def _deliver(self, data: bytes) -> None:
        if self.remote_closed:
            raise SpdyError(f"data on stream {self.id} after its FIN")
        if data and not self._abandoned:
            self._buffered += len(data)
            if self._buffered > MAX_STREAM_BUFFER:
                raise SpdyError(f"stream {self.id} has {self._buffered} unread bytes")
            self._chunks.put_nowait(data)

    def _end(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._chunks.put_nowait(b"")
        self._drained.set()  # nothing more comes: the session need not wait for it


class Session:
    """The server side of one SPDY connection: streams are opened by the peer (odd ids), each
    answered with an empty SYN_REPLY, and handed out by :meth:`accept`."""

    def __init__(self, read: ReadFn, write: WriteFn) -> None:
        self._read = read
        self._write = write
        self._out = HeaderCodec()
        self._reader = FrameReader(HeaderCodec())
        self._lock = asyncio.Lock()
        self.streams: dict[int, Stream] = {}
        self._accepted: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._last_id = 0
        self.closed = False
        self.error: str = ""

    async def send(self, frame: bytes | bytearray) -> None:
        if self.closed:
            return
        async with self._lock:
            try:
                await self._write(frame)
            except (ConnectionError, OSError, RuntimeError):
                self._shutdown()

    async def accept(self) -> Stream | None:
        """The next stream the peer opened; ``None`` when the session ended."""
        stream = await self._accepted.get()
        if stream is None:
            self._accepted.put_nowait(None)
        return stream

    async def run(self) -> None:
        """Read frames until the connection ends or the peer breaks the protocol."""
        try:
            while not self.closed:
                data = await self._read()
                if not data:
                    break
                for frame in self._reader.feed(data):
                    await self._handle(frame)
                await self._wait_for_readers()
        except SpdyError as exc:
            self.error = str(exc)
            with contextlib.suppress(Exception):
                await self.send(encode_goaway(self._last_id, PROTOCOL_ERROR))
        except (ConnectionError, OSError):
            pass
        finally:
            self._shutdown()

    async def _wait_for_readers(self) -> None:
        """Back-pressure: while a stream someone reads holds more than
        :data:`PAUSE_BUFFER` unread bytes, read nothing more from the connection (the client
        then waits on TCP) until its reader has caught up. A stream nobody reads gets no
        such grace: past :data:`MAX_STREAM_BUFFER` it ends the session."""
        while not self.closed:
            full = next((s for s in self.streams.values() if s._backlogged()), None)
            if full is None:
                return
            full._drained.clear()
            if full._backlogged():
                await full._drained.wait()

    def _shutdown(self) -> None:
        self.closed = True
        for stream in self.streams.values():
            stream._end()
        self._accepted.put_nowait(None)

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                await self.send(encode_rst(frame.stream_id, INVALID_STREAM))
                return
            stream._deliver(frame.data)
            if frame.flags & FLAG_FIN:
                stream._end()
        elif isinstance(frame, SynStream):
            sid = frame.stream_id
            if sid % 2 == 0 or sid <= self._last_id:
                raise SpdyError(f"stream id {sid} is not a new client stream")
            self._last_id = sid
            if sum(1 for s in self.streams.values() if not s.remote_closed) >= MAX_STREAMS:
                await self.send(encode_rst(sid, REFUSED_STREAM))
                return
            stream = Stream(self, sid, frame.headers)
            self._forget_finished()
            self.streams[sid] = stream
            await self.send(encode_syn_reply(self._out, sid, {}))
            if frame.flags & FLAG_FIN:
                stream._end()
            self._accepted.put_nowait(stream)
        elif isinstance(frame, RstStream):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.local_closed = True
                stream._end()
        elif isinstance(frame, Ping):
            if frame.ping_id % 2 == 1:  # the peer's ping: echo it
                await self.send(encode_ping(frame.ping_id))
        elif isinstance(frame, GoAway):
            self.closed = True
        elif isinstance(frame, Headers):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and frame.flags & FLAG_FIN:
                stream._end()
        # SETTINGS, WINDOW_UPDATE and SYN_REPLY (we open no streams) need nothing from us.

    def _forget_finished(self) -> None:
        """Drop streams finished both ways (a long port-forward session opens thousands)."""
        if len(self.streams) < MAX_STREAMS:
            return
        for sid in [s.id for s in self.streams.values() if s.remote_closed and s.local_closed]:
            del self.streams[sid]

    async def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                await self.send(encode_goaway(self._last_id))
        self._shutdown()
