"""A TCP connection made from inside another network namespace (port-forward's dial to
``127.0.0.1:<port>`` of a pod).

``setns(2)`` switches only the calling thread, so the switch happens in a thread started for
this one connection and ended right after: a pooled thread would stay in the pod's namespace
and carry it into unrelated work. A socket keeps the namespace it was created in, so once
connected it is used from the event loop like any other.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
CONNECT_SECONDS = 5.0
BUFFER_LIMIT = 1 << 20
"""Bytes the stream reader buffers before it stops reading the socket: room for whole
port-forward messages (``berth.api.agentstreams.PF_CHUNK``) per read, not asyncio's 64 KiB."""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _connect_in(netns: str, port: int) -> socket.socket:
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)
    return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECONDS)


async def open_connection_in(
    netns: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``127.0.0.1:port`` in the namespace at ``netns`` (a path; "" = ours)."""
    if not netns:
        opening = asyncio.open_connection("127.0.0.1", port, limit=BUFFER_LIMIT)
        return await asyncio.wait_for(opening, CONNECT_SECONDS)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[socket.socket] = loop.create_future()

    def work() -> None:
        try:
            sock = _connect_in(netns, port)
        except BaseException as exc:  # handed to the waiting coroutine
            loop.call_soon_threadsafe(_fail, done, exc)
            return
        loop.call_soon_threadsafe(_succeed, done, sock)

    threading.Thread(target=work, name=f"netns-connect-{port}", daemon=True).start()
    sock = await done
    sock.settimeout(None)
    sock.setblocking(False)
    return await asyncio.open_connection(sock=sock, limit=BUFFER_LIMIT)


def _succeed(fut: asyncio.Future[socket.socket], sock: socket.socket) -> None:
    if fut.cancelled():
        sock.close()
    else:
        fut.set_result(sock)


def _fail(fut: asyncio.Future[socket.socket], exc: BaseException) -> None:
    if not fut.cancelled():
        fut.set_exception(exc if isinstance(exc, OSError) else OSError(str(exc)))
