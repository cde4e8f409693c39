"""recvmmsg/sendmmsg batches over real UDP sockets on 127.0.0.1 (loopback queues a datagram
at the receiver before ``sendto`` returns, so one receive takes all that were sent): several
senders in one receive, replies written in place go back to their own sender, a skipped
slot gets nothing, an oversized datagram is cut to the slot."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from berth.dns import batch


@contextmanager
def sockets(count: int) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    with ExitStack() as stack:
        server = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        server.bind(("127.0.0.1", 0))
        clients = []
        for _ in range(count):
            c = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            c.bind(("127.0.0.1", 0))
            c.settimeout(5)
            clients.append(c)
        yield server, clients


def test_libc_has_the_calls() -> None:
    assert batch.available()


def test_one_receive_takes_several_senders_and_replies_reach_each() -> None:
    with sockets(3) as (server, clients):
        for k, c in enumerate(clients):
            c.sendto(f"query-{k}".encode(), server.getsockname())
        io = batch.DatagramBatch(server, 512)
        assert io.receive() == 3
        seen = {}
        for i in range(3):
            at = io.offset(i)
            body = bytes(io.data[at : at + io.length(i)])
            seen[body] = i
        assert sorted(seen) == [b"query-0", b"query-1", b"query-2"]
        for body, i in seen.items():
            reply = b"reply-" + body[-1:] * 3
            io.data[io.offset(i) : io.offset(i) + len(reply)] = reply
            io.reply_length(i, len(reply))
        io.send(0, 3)
        for k, c in enumerate(clients):
            assert c.recvfrom(512) == (f"reply-{k}{k}{k}".encode(), server.getsockname())


def test_sources_are_the_senders_and_a_skipped_slot_gets_nothing() -> None:
    with sockets(3) as (server, clients):
        for c in clients:
            c.sendto(b"x", server.getsockname())  # queued in this order (loopback)
        io = batch.DatagramBatch(server, 512)
        assert io.receive() == 3
        assert [io.source(i) for i in range(3)] == [c.getsockname() for c in clients]
        for i in range(3):
            io.data[io.offset(i) : io.offset(i) + 2] = b"ok"
            io.reply_length(i, 2)
        io.send(0, 1)
        io.send(2, 3)
        assert clients[0].recv(512) == b"ok"
        assert clients[2].recv(512) == b"ok"
        clients[1].settimeout(0.3)
        try:
            clients[1].recv(512)
        except TimeoutError:
            pass
        else:
            raise AssertionError("the skipped slot was sent")


def test_an_oversized_datagram_is_cut_to_the_slot_and_the_next_is_whole() -> None:
    with sockets(1) as (server, (client,)):
        client.sendto(b"y" * 100, server.getsockname())
        client.sendto(b"short", server.getsockname())
        io = batch.DatagramBatch(server, 64, batch=4)
        assert io.receive() == 2
        assert io.length(0) == 64
        assert bytes(io.data[io.offset(1) : io.offset(1) + io.length(1)]) == b"short"
