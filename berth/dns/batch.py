"""Batched UDP receive and send on Linux: ``recvmmsg(2)`` and ``sendmmsg(2)`` through ctypes.

Python's ``recvfrom``/``sendto`` cost one system call, one bytes object and one address tuple
(the address formatted as text) per datagram; under dnsperf that was most of berth-dns's CPU per
answered query. A :class:`DatagramBatch` owns fixed buffers for :data:`BATCH` datagrams: one
``recvmmsg`` fills them (blocking for the first only: ``MSG_WAITFORONE``), the caller writes each
reply in place over its query (same slot, same source address), and ``sendmmsg`` sends a run of
replies in one call. Nothing is allocated per datagram but the bytes the caller asks for.

Only for IPv4 sockets (the sockaddr slots are ``sockaddr_in``); :func:`available` says whether
this libc has the calls (else the server keeps the per-datagram loop).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct

BATCH = 64
MSG_WAITFORONE = 0x10000
_SOCKADDR_IN = 16


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _libc() -> ctypes.CDLL | None:
    try:
        # CDLL (not PyDLL): the GIL is released while a call blocks
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


class DatagramBatch:
    """Buffers for :data:`BATCH` datagrams of at most ``slot`` bytes on one IPv4 UDP socket.

    After :meth:`receive` returned ``n``, datagram ``i < n`` is ``data[offset(i) :
    offset(i) + length(i)]`` (a longer one is cut to ``slot`` bytes); a reply written at
    ``offset(i)`` and marked with :meth:`reply_length` goes back to datagram ``i``'s sender
    on :meth:`send`."""

    def __init__(self, sock: socket.socket, slot: int, batch: int = BATCH) -> None:
        assert _LIBC is not None
        self._fd = sock.fileno()
        self.slot = slot
        self.batch = batch
        self._buf = (ctypes.c_char * (slot * batch))()
        self._names = (ctypes.c_char * (_SOCKADDR_IN * batch))()
        # receiving and sending use the same slots and addresses but headers of their own, so
        # a reply's length never has to be undone before the next receive
        self._recv_iovs = (_Iovec * batch)()
        self._send_iovs = (_Iovec * batch)()
        self._recv_msgs = (_Mmsghdr * batch)()
        self._send_msgs = (_Mmsghdr * batch)()
        base = ctypes.addressof(self._buf)
        names = ctypes.addressof(self._names)
        for iovs, msgs in ((self._recv_iovs, self._recv_msgs), (self._send_iovs, self._send_msgs)):
            for i in range(batch):
                iovs[i].iov_base = base + i * slot
                iovs[i].iov_len = slot
                hdr = msgs[i].msg_hdr
                hdr.msg_name = names + i * _SOCKADDR_IN
                hdr.msg_namelen = _SOCKADDR_IN
                hdr.msg_iov = ctypes.pointer(iovs[i])
                hdr.msg_iovlen = 1
        # the received lengths and the reply lengths, read and written through memoryviews
        # (no ctypes object per datagram)
        msg_size = ctypes.sizeof(_Mmsghdr)
        len_at = _Mmsghdr.msg_len.offset
        words = memoryview(self._recv_msgs).cast("B").cast("I")
        self.lengths = words
        self.length_index = [(i * msg_size + len_at) // words.itemsize for i in range(batch)]
        iov_size = ctypes.sizeof(_Iovec)
        iov_len_at = _Iovec.iov_len.offset
        sizes = memoryview(self._send_iovs).cast("B").cast("L")  # size_t is unsigned long on Linux
        self.reply_sizes = sizes
        self.reply_size_index = [
            (i * iov_size + iov_len_at) // sizes.itemsize for i in range(batch)
        ]
        self.data = memoryview(self._buf).cast("B")
        self._name_bytes = memoryview(self._names).cast("B")
        self._recv_at = ctypes.addressof(self._recv_msgs)
        self._send_at = ctypes.addressof(self._send_msgs)
        self._msg_size = msg_size
        self._recv = _LIBC.recvmmsg
        self._send = _LIBC.sendmmsg

    def receive(self) -> int:
        """Block for at least one datagram; how many were received (0 after EINTR)."""
        n = int(self._recv(self._fd, self._recv_at, self.batch, MSG_WAITFORONE, None))
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EINTR, errno.EAGAIN):
                return 0
            raise OSError(err, "recvmmsg")
        return n

    def offset(self, i: int) -> int:
        return i * self.slot

    def length(self, i: int) -> int:
        """Datagram ``i``'s length (the hot loop reads ``lengths[length_index[i]]`` itself)."""
        return int(self.lengths[self.length_index[i]])

    def reply_length(self, i: int, length: int) -> None:
        """Datagram ``i``'s slot now holds a reply of ``length`` bytes (the hot loop writes
        ``reply_sizes[reply_size_index[i]]`` itself)."""
        self.reply_sizes[self.reply_size_index[i]] = length

    def send(self, start: int, stop: int) -> None:
        """Send the replies in slots ``start`` to ``stop`` (exclusive); one a client cannot
        take (an error on its address) is skipped, as ``sendto`` errors were."""
        while start < stop:
            sent = int(
                self._send(self._fd, self._send_at + start * self._msg_size, stop - start, 0)
            )
            start += sent if sent > 0 else 1

    def source(self, i: int) -> tuple[str, int]:
        """Datagram ``i``'s sender as ``(address, port)``."""
        at = i * _SOCKADDR_IN
        port = struct.unpack_from("!H", self._name_bytes, at + 2)[0]
        return socket.inet_ntoa(self._name_bytes[at + 4 : at + 8]), int(port)
