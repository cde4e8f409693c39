"""The server over real sockets on 127.0.0.1: UDP (threaded hot path) and TCP, zone swaps,
forwarding with caching, failing fast without an upstream, hostile packets."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from berth.dns import server as server_module
from berth.dns.forward import Forwarder, host_nameservers
from berth.dns.records import build_zone
from berth.dns.server import DnsServer

D = "cluster.local"


def zone(ip: str = "10.96.0.20", endpoints: int = 2) -> Any:
    services = [
        {"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": ip}},
        {"metadata": {"name": "hl", "namespace": "default"}, "spec": {"clusterIP": "None"}},
    ]
    slices = [
        {
            "metadata": {
                "name": "hl-x",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "hl"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"], "conditions": {"ready": True}}
                for i in range(endpoints)
            ],
        }
    ]
    return build_zone(services, slices, domain=D, serial=1)


def run(
    fn: Callable[[DnsServer, int], Awaitable[None]],
    *,
    forwarder: Forwarder | None = None,
    synced: bool = True,
) -> None:
    async def body() -> None:
        server = DnsServer(zone(), forwarder, synced=synced)
        await server.start([("127.0.0.1", 0)])
        try:
            await fn(server, server.bound()[0][1])
        finally:
            await server.stop()

    asyncio.run(body())


async def udp(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in msg.answer for r in rrset if hasattr(r, "address"))


def test_before_its_first_zone_from_the_api_the_cluster_zone_is_servfail_not_nxdomain() -> None:
    """berth-dns starts serving before its informers synced: a denial then would be cached
    by resolvers (a pod starting during a berth-dns restart would not find its Services for
    the negative TTL); SERVFAIL is retried. Other names are still forwarded."""

    async def body(server: DnsServer, port: int) -> None:
        for _ in range(2):  # the second must not come from a cache either
            early = await udp(port, f"web.default.svc.{D}.")
            assert early.rcode() == dns.rcode.SERVFAIL
        assert (await udp(port, f"nope.default.svc.{D}.")).rcode() == dns.rcode.SERVFAIL
        server.set_zone(zone())
        assert addresses(await udp(port, f"web.default.svc.{D}.")) == ["10.96.0.20"]
        assert (await udp(port, f"nope.default.svc.{D}.")).rcode() == dns.rcode.NXDOMAIN

    run(body, synced=False)


def test_udp_answers_and_a_new_zone_is_answered_at_once() -> None:
    async def body(server: DnsServer, port: int) -> None:
        for _ in range(3):  # the first builds the answer, the others come from the cache
            msg = await udp(port, f"web.default.svc.{D}.")
            assert addresses(msg) == ["10.96.0.20"]
            assert msg.flags & dns.flags.AA
        server.set_zone(zone(ip="10.96.0.21"))
        assert addresses(await udp(port, f"web.default.svc.{D}.")) == ["10.96.0.21"]
        nx = await udp(port, f"nope.default.svc.{D}.")
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert nx.authority[0].rdtype == dns.rdatatype.SOA

    run(body)


def test_truncated_over_udp_whole_over_tcp() -> None:
    async def body(server: DnsServer, port: int) -> None:
        server.set_zone(zone(endpoints=100))
        small = await udp(port, f"hl.default.svc.{D}.")
        assert small.flags & dns.flags.TC
        q = dns.message.make_query(f"hl.default.svc.{D}.", "A")
        whole = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=3)
        assert len(addresses(whole)) == 100

    run(body)


class _Upstream(asyncio.DatagramProtocol):
    """A fake resolver: answers every A query with 192.0.2.1, TTL 60, counting queries."""

    def __init__(self) -> None:
        self.count = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.1"))
        self.transport.sendto(r.to_wire(), addr)


def test_other_names_are_forwarded_and_cached() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        transport, upstream = await loop.create_datagram_endpoint(
            _Upstream, local_addr=("127.0.0.1", 0)
        )
        up_port = transport.get_extra_info("sockname")[1]
        server = DnsServer(zone(), Forwarder(["127.0.0.1"], port=up_port))
        await server.start([("127.0.0.1", 0)])
        port = server.bound()[0][1]
        try:
            for _ in range(3):
                msg = await udp(port, "Example.ORG.")
                assert addresses(msg) == ["192.0.2.1"]
                assert msg.question[0].name.to_text() == "Example.ORG."
            assert upstream.count == 1, "answers are cached for their TTL"
            # an ExternalName's target outside the zone: CNAME, then the target's address
            server.set_zone(
                build_zone(
                    [
                        {
                            "metadata": {"name": "ext", "namespace": "default"},
                            "spec": {"type": "ExternalName", "externalName": "www.example.org"},
                        }
                    ],
                    [],
                    domain=D,
                )
            )
            chased = await udp(port, f"ext.default.svc.{D}.")
            assert [rrset.rdtype for rrset in chased.answer] == [
                dns.rdatatype.CNAME,
                dns.rdatatype.A,
            ]
            assert addresses(chased) == ["192.0.2.1"]
            assert chased.answer[1].name.to_text() == "www.example.org."
        finally:
            await server.stop()
            transport.close()

    asyncio.run(body())


def test_without_a_reachable_upstream_servfail_comes_fast() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed

    # "Fast" means the refusal ends the query, not the forwarder's timeout: the timeout is set
    # far above the bound, so only the refusal path can answer within it, even on a loaded
    # machine (a fixed sub-second bound flaked under CI load).
    slow_timeout = 60.0

    async def body(server: DnsServer, port: int) -> None:
        for _ in range(2):
            start = time.monotonic()
            msg = await udp(port, "example.org.")
            assert msg.rcode() == dns.rcode.SERVFAIL
            assert time.monotonic() - start < slow_timeout / 4

    run(body, forwarder=Forwarder(["127.0.0.1"], port=closed, timeout=slow_timeout))
    run(body, forwarder=Forwarder([], timeout=slow_timeout))  # no resolvers at all


def test_hostile_packets_do_not_stop_the_server() -> None:
    async def body(server: DnsServer, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            s.sendto(b"\x00", ("127.0.0.1", port))  # no header: dropped
            s.sendto(b"\x00" * 5000, ("127.0.0.1", port))  # too long: dropped
            # a response (QR set) is never answered: no reflection loops
            s.sendto(
                struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01",
                ("127.0.0.1", port),
            )
            # a pointer in the question: FORMERR
            s.sendto(
                struct.pack("!HHHHHH", 2, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
                ("127.0.0.1", port),
            )
            reply = await asyncio.to_thread(s.recv, 512)  # the loop answers misses
            assert struct.unpack("!H", reply[:2])[0] == 2
            assert reply[3] & 0xF == 1
        # a TCP client announcing a message longer than any query is cut off
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\xff\xff" + b"x" * 100)
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
        assert addresses(await udp(port, f"web.default.svc.{D}.")) == ["10.96.0.20"]

    run(body)


def test_host_nameservers_skip_our_own_addresses(tmp_path: Any) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "search x\nnameserver 10.96.0.10\nnameserver 1.1.1.1\nnameserver ::1\n"
        "nameserver bogus\nnameserver 8.8.8.8\nnameserver 9.9.9.9\nnameserver 4.4.4.4\n"
    )
    assert host_nameservers(str(conf), exclude=["10.96.0.10"]) == ["1.1.1.1", "8.8.8.8", "9.9.9.9"]
    assert host_nameservers(str(tmp_path / "missing")) == []


@pytest.fixture(params=["batched", "per-datagram"])
def udp_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both UDP hot paths: recvmmsg/sendmmsg batches and the recvfrom/sendto fallback."""
    monkeypatch.setattr(server_module, "UDP_BATCH", request.param == "batched")
    return str(request.param)


def raw_query(name: str, ident: int, rdtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=False)
    q.id = ident
    return q.to_wire()


def test_cached_answers_keep_each_query_id_and_letter_case(udp_loop: str) -> None:
    async def body(server: DnsServer, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            for ident, name in [(1, "web"), (2, "web"), (3, "WeB"), (4, "web"), (5, "WeB")]:
                query = raw_query(f"{name}.default.svc.{D}.", ident)
                served = server.served
                await asyncio.to_thread(s.sendto, query, ("127.0.0.1", port))
                reply = await asyncio.to_thread(s.recv, 512)
                assert reply[:2] == struct.pack("!H", ident)
                # the question comes back byte for byte (0x20 case randomisation)
                assert reply[12 : len(query)] == query[12:]
                assert addresses(dns.message.from_wire(reply)) == ["10.96.0.20"]
                if ident in (4, 5):  # asked before with these bytes: a cache hit
                    assert server.served == served
        # the first of each spelling was built by the loop
        assert server.served == 2

    run(body)


# 4 clients x 30 queries in flight at once: well inside what a default socket buffer on
# loopback queues (256 small datagrams), so no query is lost however late the server runs
PER_CLIENT = 30


def test_a_burst_from_many_clients_gets_every_answer_right(udp_loop: str) -> None:
    names = {
        0: (f"web.default.svc.{D}.", dns.rcode.NOERROR, ["10.96.0.20"]),
        1: (f"hl.default.svc.{D}.", dns.rcode.NOERROR, ["10.244.0.1", "10.244.0.2"]),
        2: (f"nope.default.svc.{D}.", dns.rcode.NXDOMAIN, []),
    }

    async def body(server: DnsServer, port: int) -> None:
        def client(first: int) -> list[bytes]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(10)
                for ident in range(first, first + PER_CLIENT):
                    name = names[ident % 3][0]
                    if ident % 5 == 0:  # a name never asked before: a miss
                        name = f"new{ident}.default.svc.{D}."
                    s.sendto(raw_query(name, ident), ("127.0.0.1", port))
                return [s.recv(512) for _ in range(PER_CLIENT)]

        replies = await asyncio.gather(*(asyncio.to_thread(client, k * 100) for k in range(4)))
        seen = set()
        for reply in (r for rs in replies for r in rs):
            msg = dns.message.from_wire(reply)
            seen.add(msg.id)
            name, rcode, addrs = names[msg.id % 3]
            if msg.id % 5 == 0:
                name, rcode, addrs = f"new{msg.id}.default.svc.{D}.", dns.rcode.NXDOMAIN, []
            assert str(msg.question[0].name) == name
            assert (msg.rcode(), addresses(msg)) == (rcode, addrs)
        assert seen == {k * 100 + i for k in range(4) for i in range(PER_CLIENT)}

    run(body)


def test_no_query_after_a_zone_change_gets_the_previous_answer(udp_loop: str) -> None:
    async def body(server: DnsServer, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            query = raw_query(f"web.default.svc.{D}.", 7)
            for k in range(40):
                ip = f"10.96.1.{k + 1}"
                server.set_zone(zone(ip=ip))
                # the first answer after the swap, then the cached one: both the new zone's
                for _ in range(2):
                    await asyncio.to_thread(s.sendto, query, ("127.0.0.1", port))
                    reply = dns.message.from_wire(await asyncio.to_thread(s.recv, 512))
                    assert addresses(reply) == [ip]

    run(body)


def test_stop_ends_every_receiving_thread(udp_loop: str) -> None:
    async def body() -> None:
        for _ in range(5):
            server = DnsServer(zone())
            await server.start([("127.0.0.1", 0), ("127.0.0.1", 0)])
            threads = list(server._threads)
            assert len(threads) == 2 * server_module.UDP_THREADS
            await server.stop()
            assert not [t.name for t in threads if t.is_alive()]

    asyncio.run(body())
