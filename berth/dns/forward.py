"""Names outside the cluster zone, forwarded to the host's resolvers.

* Upstreams are the ``nameserver`` lines of the host's resolv.conf, minus this server's own
  addresses (no loops). Each gets one connected, non-blocking UDP socket: a send with no route
  fails at once (``ENETUNREACH``) and an ICMP port-unreachable comes back as an error on the
  socket, so a host without a working resolver answers SERVFAIL immediately instead of after a
  timeout; an upstream that failed is skipped for :data:`DOWN_SECONDS`.
* Each forwarded query gets a fresh random ID, and a reply is taken only from the upstream it
  was sent to, with that ID and the same question (spoofing needs the 16-bit ID *and* the
  source port of the socket).
* Answers are cached by question for their smallest TTL (at most :data:`MAX_TTL`); NXDOMAIN and
  NODATA for the SOA minimum (at most :data:`MAX_NEGATIVE_TTL`); SERVFAIL is not cached.
* At most :data:`MAX_PENDING` queries wait on upstreams; more are SERVFAIL at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from berth.dns import wire

log = logging.getLogger(__name__)

MAX_PENDING = 1024
MAX_CACHE = 10_000
MAX_TTL = 300
MAX_NEGATIVE_TTL = 30
TIMEOUT_SECONDS = 2.0
DOWN_SECONDS = 5.0
MAX_REPLY = 65535


def host_nameservers(path: str = "/etc/resolv.conf", *, exclude: Iterable[str] = ()) -> list[str]:
    """The host's IPv4 resolvers (at most 3, as glibc), minus ``exclude``."""
    skip = set(exclude)
    out: list[str] = []
    try:
        text = Path(path).read_text(errors="replace")[:65536]
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] not in skip:
            try:
                socket.inet_pton(socket.AF_INET, parts[1])
            except OSError:
                continue
            out.append(parts[1])
    return out[:3]


def min_ttl(reply: bytes) -> int | None:
    """The smallest TTL among the answer and authority records of ``reply`` (``None`` if
    it cannot be read); bounded walk over a message from an upstream."""
    try:
        _id, _flags, qd, an, ns, _ar = struct.unpack_from("!HHHHHH", reply)
        offset = 12
        for _ in range(qd):
            offset = wire.skip_name(reply, offset) + 4
        ttls: list[int] = []
        for _ in range(an + ns):
            offset = wire.skip_name(reply, offset)
            _t, _c, ttl, rdlen = struct.unpack_from("!HHIH", reply, offset)
            ttls.append(ttl)
            offset += 10 + rdlen
            if offset > len(reply):
                return None
        return min(ttls) if ttls else 0
    except (struct.error, IndexError):
        return None


@dataclass
class _Upstream:
    address: str
    sock: socket.socket
    down_until: float = 0.0
    pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = field(default_factory=dict)


class Forwarder:
    def __init__(
        self,
        upstreams: list[str],
        *,
        port: int = 53,
        timeout: float = TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = list(upstreams)
        self.port = port
        self.timeout = timeout
        self.clock = clock
        self._upstreams: list[_Upstream] = []
        self._cache: dict[tuple[bytes, int], tuple[float, bytes]] = {}
        self._pending = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for address in self.addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            up = _Upstream(address, sock)
            try:
                sock.connect((address, self.port))
            except OSError as exc:
                log.warning("upstream resolver %s unreachable: %s", address, exc)
                up.down_until = self.clock() + DOWN_SECONDS
            self.loop.add_reader(sock.fileno(), self._readable, up)
            self._upstreams.append(up)

    def close(self) -> None:
        for up in self._upstreams:
            if self.loop is not None:
                self.loop.remove_reader(up.sock.fileno())
            up.sock.close()
            self._fail(up)
        self._upstreams = []

    def _fail(self, up: _Upstream) -> None:
        for _question, fut in up.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"upstream {up.address} failed"))
        up.pending.clear()

    def _readable(self, up: _Upstream) -> None:
        for _ in range(64):
            try:
                data = up.sock.recv(MAX_REPLY)
            except BlockingIOError:
                return
            except OSError:
                # ICMP unreachable (ECONNREFUSED...): everything waiting on it fails now
                up.down_until = self.clock() + DOWN_SECONDS
                self._fail(up)
                return
            if len(data) < 12:
                continue
            ident = struct.unpack_from("!H", data)[0]
            waiting = up.pending.get(ident)
            if waiting is None:
                continue
            question, fut = waiting
            if data[12 : 12 + len(question)].lower() != question.lower():
                continue  # not the reply to what we asked: ignore (spoofing, stray)
            del up.pending[ident]
            if not fut.done():
                fut.set_result(data)

    def cached(self, key: tuple[bytes, int]) -> bytes | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        expires, reply = hit
        if expires <= self.clock():
            self._cache.pop(key, None)
            return None
        return reply

    async def resolve(self, query: wire.Query) -> bytes:
        """The upstream reply to ``query`` (as a full message with the client's ID and RD),
        or a SERVFAIL."""
        key = (query.question.lower(), query.flags & wire.RD)
        reply = self.cached(key)
        if reply is None:
            reply = await self._ask(query)
            if reply is None:
                return _servfail(query)
            self._remember(key, reply)
        return struct.pack("!H", query.id) + reply[2:]

    def _remember(self, key: tuple[bytes, int], reply: bytes) -> None:
        rcode = reply[3] & 0xF
        ttl = min_ttl(reply)
        if ttl is None or rcode not in (wire.NOERROR, wire.NXDOMAIN):
            return
        an = struct.unpack_from("!H", reply, 6)[0]
        ttl = min(ttl, MAX_TTL if an and rcode == wire.NOERROR else MAX_NEGATIVE_TTL)
        if ttl <= 0:
            return
        if len(self._cache) >= MAX_CACHE:
            now = self.clock()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
        self._cache[key] = (self.clock() + ttl, reply)

    async def _ask(self, query: wire.Query) -> bytes | None:
        if self._pending >= MAX_PENDING or self.loop is None:
            return None
        now = self.clock()
        for up in self._upstreams:
            if up.down_until > now:
                continue
            ident = secrets.randbits(16)
            for _ in range(8):
                if ident not in up.pending:
                    break
                ident = secrets.randbits(16)
            else:
                continue
            flags = wire.RD | (query.flags & 0x0010)  # recursion desired; keep CD
            message = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 1 if query.edns else 0)
            message += query.question + (
                b"\x00" + struct.pack("!HHIH", wire.OPT, wire.OUR_UDP_SIZE, 0, 0)
                if query.edns
                else b""
            )
            fut: asyncio.Future[bytes] = self.loop.create_future()
            up.pending[ident] = (query.question, fut)
            self._pending += 1
            try:
                try:
                    up.sock.send(message)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        up.down_until = self.clock() + DOWN_SECONDS
                    continue
                try:
                    return await asyncio.wait_for(fut, self.timeout)
                except (TimeoutError, ConnectionError):
                    continue
            finally:
                self._pending -= 1
                up.pending.pop(ident, None)
        return None


def _servfail(query: wire.Query) -> bytes:
    return wire.response(query, wire.SERVFAIL, authoritative=False)
