"""The DNS server: UDP and TCP, answers from the current :class:`~berth.dns.records.Zone`,
everything else through the :class:`~berth.dns.forward.Forwarder`.

Hot path: each UDP socket is served by threads of their own (an asyncio datagram endpoint
measured at a sixth of the queries/s). A response to an in-zone query depends only on the
query's bytes after the ID (flags, counts, question, EDNS) and on the zone, so it is built once
and then served from a dict keyed by those bytes. The dict is emptied whenever a new zone is
swapped in, and bounded (:data:`MAX_ANSWER_CACHE`). On Linux the threads receive and send in
batches (:meth:`DnsServer._udp_batch_loop`, ``recvmmsg``/``sendmmsg``): a hit costs one slice,
one lookup and one copy over the query in a fixed buffer, and a batch of up to 64 costs two
system calls; under dnsperf that took the server's CPU per query from 3.2-3.8 us
(``recvfrom``/``sendto`` per datagram, :meth:`DnsServer._udp_loop`, still the fallback) to
about 2.0 us, below unbound's 2.4-2.7 us.

Bounds for untrusted clients: datagrams over :data:`~berth.dns.wire.MAX_QUERY` bytes are
dropped; TCP connections are limited in number (:data:`MAX_TCP_CONNECTIONS`), in message size
(a 2-byte length, at most :data:`~berth.dns.wire.MAX_QUERY`) and idle time
(:data:`TCP_IDLE_SECONDS`); messages that are responses are never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from berth.dns import batch, wire
from berth.dns.forward import Forwarder
from berth.dns.records import Zone

log = logging.getLogger(__name__)

MAX_ANSWER_CACHE = 50_000
MAX_TCP_CONNECTIONS = 256
TCP_IDLE_SECONDS = 10.0
TCP_LIMIT = 65535
MAX_MISS_BACKLOG = 2048
# recvmmsg/sendmmsg where libc has them; "0" keeps the per-datagram loop (for comparison)
UDP_BATCH = os.environ.get("BERTH_DNS_UDP_BATCH", "1") != "0" and batch.available()
# receiving threads per socket: batched, a second thread only fights the first for the GIL
# (bench/dns.py, same rounds: 1.6-1.9 us of CPU per query with one, 1.9-2.0 us with two, and
# more queries/s with one); one datagram per call, two overlap one's system calls with the
# other's Python
UDP_THREADS = int(os.environ.get("BERTH_DNS_UDP_THREADS", "1" if UDP_BATCH else "2"))


class DnsServer:
    def __init__(
        self, zone: Zone, forwarder: Forwarder | None = None, *, synced: bool = True
    ) -> None:
        self.zone = zone
        # False until the first zone built from the API arrives (set_zone): until then a name
        # of the cluster zone is answered SERVFAIL, not NXDOMAIN. An empty zone would deny
        # every Service, and resolvers cache a denial (a pod starting while berth-dns
        # restarts would not find its Services for the negative TTL); SERVFAIL is retried.
        self.synced = synced
        self.forwarder = forwarder
        self._answers: dict[bytes, bytes] = {}
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._backlog = 0  # misses handed to the loop, not yet answered (approximate)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tcp: list[asyncio.Server] = []
        self._tcp_connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.served = 0

    def set_zone(self, zone: Zone) -> None:
        """Answer from ``zone`` from now on (the previous answers are forgotten)."""
        self.zone = zone
        self._answers = {}
        self.synced = True

    # -- answering ------------------------------------------------------------------------

    def answer_local(self, data: bytes, *, tcp: bool = False) -> bytes | wire.Query | _Chase | None:
        """The response bytes when the zone answers (or the query is malformed: FORMERR, or
        to be dropped: ``None``); the parsed :class:`~berth.dns.wire.Query` when it must be
        forwarded; a :class:`_Chase` when the zone answers a CNAME to a name outside it (an
        ExternalName Service), whose addresses the forwarder must add."""
        try:
            query = wire.parse_query(data)
        except wire.FormError:
            return wire.error_response(data, wire.FORMERR)
        if wire.opcode(data) != 0:
            return wire.error_response(data, wire.NOTIMP)
        if query.qclass not in (wire.CLASS_IN, wire.ANY):
            return wire.response(query, wire.NOTIMP, authoritative=False)
        if not self.synced and self.zone.owns(query.name):
            return wire.response(query, wire.SERVFAIL, authoritative=False)  # not cached
        answer = self.zone.lookup(query.name, query.qtype)
        if answer is None:
            return query
        if (
            self.forwarder is not None
            and answer.answers
            and answer.answers[-1].rtype == wire.CNAME
            and query.qtype in (wire.A, wire.AAAA)
        ):
            target = _target(answer.answers[-1])
            if not self.zone.owns(target):
                return _Chase(query, answer.answers, target)
        out = wire.response(
            query,
            answer.rcode,
            answer.answers,
            answer.authority,
            answer.additional,
            limit=TCP_LIMIT if tcp else None,
        )
        if not tcp:
            if len(self._answers) >= MAX_ANSWER_CACHE:
                self._answers = {}
            self._answers[data[2:]] = out[2:]
        return out

    async def answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The full response to ``data`` (``None``: send nothing)."""
        local = self.answer_local(data, tcp=tcp)
        if isinstance(local, _Chase):
            return await self._chase(local, tcp=tcp)
        if not isinstance(local, wire.Query):
            return local
        if self.forwarder is None:
            return wire.response(local, wire.SERVFAIL, authoritative=False)
        reply = await self.forwarder.resolve(local)
        if not tcp and len(reply) > local.udp_size:
            return wire.response(local, wire.rcode_of(reply), authoritative=False, limit=0)
        return reply

    async def _chase(self, chase: _Chase, *, tcp: bool) -> bytes:
        """The zone's CNAME chain, then the target's records from the upstream resolvers (as
        CoreDNS resolves an ExternalName's target); the target's own failure is not ours:
        the CNAME alone is still the answer."""
        assert self.forwarder is not None
        question = wire.encode_name(chase.target) + struct.pack("!HH", chase.query.qtype, 1)
        target_query = wire.Query(
            id=0,
            flags=wire.RD,
            name=chase.target,
            qtype=chase.query.qtype,
            qclass=wire.CLASS_IN,
            question=question,
            udp_size=wire.OUR_UDP_SIZE,
            edns=True,
        )
        reply = await self.forwarder.resolve(target_query)
        records = wire.answer_records(reply) if wire.rcode_of(reply) == wire.NOERROR else []
        return wire.response(
            chase.query,
            wire.NOERROR,
            [*chase.answers, *records],
            limit=TCP_LIMIT if tcp else None,
        )

    # -- transports -----------------------------------------------------------------------

    async def start(self, addresses: list[tuple[str, int]]) -> None:
        """Listen on UDP and TCP at each (host, port); port 0 picks one free for both."""
        self.loop = asyncio.get_running_loop()
        for host, port in addresses:
            sock, tcp = await self._bind(host, port)
            self._sockets.append(sock)
            self._tcp.append(tcp)
            bound_port = int(sock.getsockname()[1])
            for i in range(UDP_THREADS):
                self._threads.append(
                    threading.Thread(
                        target=self._udp_batch_loop if UDP_BATCH else self._udp_loop,
                        args=(sock,),
                        name=f"dns-udp-{host}:{bound_port}-{i}",
                        daemon=True,
                    )
                )
        for thread in self._threads:
            thread.start()
        log.info(
            "UDP: %d threads per socket, %s",
            UDP_THREADS,
            "recvmmsg/sendmmsg batches" if UDP_BATCH else "one datagram per system call",
        )
        if self.forwarder is not None:
            self.forwarder.start()

    async def _bind(self, host: str, port: int) -> tuple[socket.socket, asyncio.Server]:
        for attempt in range(20):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
                bound = int(sock.getsockname()[1])
                tcp = await asyncio.start_server(self._tcp_client, host, bound, backlog=128)
            except OSError:
                sock.close()
                # an ephemeral UDP port whose TCP twin is taken: try another
                if port != 0 or attempt == 19:
                    raise
                continue
            return sock, tcp
        raise AssertionError("unreachable")

    def _udp_loop(self, sock: socket.socket) -> None:
        """The UDP hot path, in a thread of its own with a blocking socket: a repeated query is
        answered here from :attr:`_answers` without touching the event loop (the GIL is free
        while the thread waits in ``recvfrom``); anything else goes to the loop."""
        recv, send = sock.recvfrom, sock.sendto
        loop = self.loop
        assert loop is not None
        while True:
            try:
                data, addr = recv(wire.MAX_QUERY + 1)
            except OSError:
                data, addr = b"", None
            if self._stopping:
                return
            if len(data) > wire.MAX_QUERY:
                continue
            hit = self._answers.get(data[2:])
            if hit is not None:
                with contextlib.suppress(OSError):
                    send(data[:2] + hit, addr)
                continue
            if self._backlog >= MAX_MISS_BACKLOG:
                continue  # the loop is behind (a flood of new names): shed, clients retry
            self._backlog += 1
            loop.call_soon_threadsafe(self._udp_miss, sock, data, addr)

    def _udp_batch_loop(self, sock: socket.socket) -> None:
        """:meth:`_udp_loop` a batch at a time (:mod:`berth.dns.batch`): one ``recvmmsg`` for
        up to 64 queries, each hit's response written over its query in the buffer (the ID
        stays: only the bytes after it are copied), one ``sendmmsg`` per run of hits.

        The answers dict is read once per batch, after the batch arrived: a zone swapped in
        before that is what answers it, so no query received after a swap gets an answer of
        the previous zone."""
        io = batch.DatagramBatch(sock, wire.MAX_QUERY + 1)
        data, slot = io.data, io.slot
        lengths, length_index = io.lengths, io.length_index
        sizes, size_index = io.reply_sizes, io.reply_size_index
        receive, send = io.receive, io.send
        loop = self.loop
        assert loop is not None
        smallest, largest = 12, wire.MAX_QUERY
        while True:
            try:
                n = receive()
            except OSError as exc:
                if self._stopping or exc.errno == errno.EBADF:
                    return
                log.exception("receiving DNS queries failed")
                time.sleep(0.1)  # not a busy loop on an error that persists
                continue
            if self._stopping:
                return
            answers = self._answers
            run = 0  # the first slot of the current run of hits
            for i in range(n):
                length = lengths[length_index[i]]
                at = i * slot
                miss: bytes | None = None
                if smallest <= length <= largest:
                    hit = answers.get(data[at + 2 : at + length].tobytes())
                    if hit is not None:
                        data[at + 2 : at + 2 + len(hit)] = hit
                        sizes[size_index[i]] = len(hit) + 2
                        continue
                    miss = data[at : at + length].tobytes()
                # else no header (our stop() wake-up) or over the size bound: dropped
                if run < i:
                    send(run, i)
                run = i + 1
                if miss is None:
                    continue
                if self._backlog >= MAX_MISS_BACKLOG:
                    continue  # the loop is behind (a flood of new names): shed, clients retry
                self._backlog += 1
                loop.call_soon_threadsafe(self._udp_miss, sock, miss, io.source(i))
            if run < n:
                send(run, n)

    def _udp_miss(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        self._backlog -= 1
        self.served += 1
        local = self.answer_local(data)
        if local is None:
            return
        if isinstance(local, bytes):
            with contextlib.suppress(OSError):
                sock.sendto(local, addr)
            return
        self._spawn(self._udp_forward(sock, data, addr))

    async def _udp_forward(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        out = await self.answer(data)
        if out is not None and not self._stopping:
            with contextlib.suppress(OSError):
                sock.sendto(out, addr)

    def bound(self) -> list[tuple[str, int]]:
        """The (address, port) of each UDP socket (TCP listens on the same)."""
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self._sockets]

    async def stop(self) -> None:
        self._stopping = True
        for sock in self._sockets:
            # wake every thread blocked in a receive (it then sees _stopping): on Linux a
            # shutdown wakes the waiters of a UDP socket too, though it answers ENOTCONN for
            # one that is not connected. A wake-up datagram per thread would not do for the
            # batched loop, whose one recvmmsg can take them all.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 2.0)
        for sock in self._sockets:
            sock.close()
        for srv in self._tcp:
            srv.close()
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.forwarder is not None:
            self.forwarder.close()
        self._sockets, self._threads, self._tcp = [], [], []

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_connections >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tcp_connections += 1
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                (length,) = struct.unpack("!H", head)
                if length > wire.MAX_QUERY:
                    break
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_SECONDS)
                out = await self.answer(data, tcp=True)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await asyncio.wait_for(writer.drain(), TCP_IDLE_SECONDS)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._tcp_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@dataclass(frozen=True, slots=True)
class _Chase:
    query: wire.Query
    answers: tuple[wire.Record, ...]
    target: str


def _target(record: wire.Record) -> str:
    """The name a CNAME record points to (its rdata is uncompressed)."""
    return wire.read_name(record.rdata, 0)[0]
