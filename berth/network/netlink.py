"""A small rtnetlink client: the few link, address and route requests a pod's eth0 needs.

What the CNI ``bridge`` plugin asks the kernel for (through Go's vishvananda/netlink), sent
from Python over a ``NETLINK_ROUTE`` socket: a veth pair created with its peer already in
the pod's network namespace, the host end on the bridge with hairpin mode, the pod end's
address and default route. Each request is one datagram and its acknowledgement; errors
come back as :class:`OSError` with the kernel's errno.

A netlink socket talks to the network namespace it was *created* in: :func:`socket_in`
makes one for another namespace (the calling thread enters it for the ``socket()`` call
only, then returns to where it was).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_LINKINFO = 18
IFLA_AF_SPEC = 26
IFLA_INET_CONF = 1
IPV4_DEVCONF_ARP_NOTIFY = 22
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
NLA_F_NESTED = 0x8000
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
IFF_UP = 0x1
CLONE_NEWNET = 0x40000000
IFNAMSIZ = 16  # with the terminating NUL

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_NLMSGERR = struct.Struct("=i")


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One ``rtattr``: length, type, payload, padded to 4 bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def ifname_attr(name: str) -> bytes:
    return attr(IFLA_IFNAME, check_ifname(name).encode() + b"\0")


def check_ifname(name: str) -> str:
    """A name the kernel takes for a link: 1-15 bytes, no ``/``, whitespace or ``:``
    (``dev_valid_name``), not ``.``/``..``; refused with :class:`ValueError` otherwise."""
    raw = name.encode()
    bad = name in (".", "..") or any(c in name for c in "/:\0") or any(c.isspace() for c in name)
    if not raw or len(raw) >= IFNAMSIZ or bad or not name.isascii():
        raise ValueError(f"invalid interface name {name!r}")
    return name


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """The attributes of a message body (the last of a repeated type wins); a truncated or
    malformed attribute ends the walk instead of reading past the buffer."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            break
        out[kind & ~NLA_F_NESTED] = data[offset + _RTATTR.size : offset + length]
        offset += _align(length)
    return out


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    flags: int
    mac: str
    master: int

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


def _link_from(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = parse_attrs(body[_IFINFOMSG.size :])
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    mac = ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b""))
    master_raw = attrs.get(IFLA_MASTER, b"")
    master = struct.unpack("=I", master_raw)[0] if len(master_raw) == 4 else 0
    return Link(index=index, name=name, flags=flags, mac=mac, master=master)


class Netlink:
    """A ``NETLINK_ROUTE`` socket of one network namespace; requests wait for their reply."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; the reply messages (type, body) up to its ACK or DONE. An error
        reply raises :class:`OSError`."""
        self._seq += 1
        seq = self._seq
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0)
        self.sock.send(header + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, rseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size or offset + length > len(data):
                    raise OSError(errno.EBADMSG, "truncated netlink reply")
                body_out = data[offset + _NLMSGHDR.size : offset + length]
                offset += _align(length)
                if rseq != seq:
                    continue  # a stale reply to an earlier, abandoned request
                if kind == NLMSG_ERROR:
                    (code,) = _NLMSGERR.unpack_from(body_out)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return replies  # the ACK
                if kind == NLMSG_DONE:
                    return replies
                replies.append((kind, body_out))
                if not flags & (NLM_F_ACK | NLM_F_DUMP):
                    return replies

    # ---- links ----------------------------------------------------------------------------

    def link(self, name: str) -> Link | None:
        """The link named ``name``, or ``None``."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + ifname_attr(name)
        try:
            replies = self.request(RTM_GETLINK, 0, body)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        for kind, reply in replies:
            if kind == RTM_NEWLINK:
                return _link_from(reply)
        return None

    def add_veth(
        self, host: str, peer: str, *, peer_netns_fd: int, master: int, mtu: int | None
    ) -> None:
        """A veth pair: ``host`` here (up, port of bridge ``master``), ``peer`` created right
        in the namespace of ``peer_netns_fd`` (down). Refused if either name exists."""
        up = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
        mtu_attr = attr(IFLA_MTU, struct.pack("=I", mtu)) if mtu else b""
        netns_attr = attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        # not up at creation: the kernel configures the peer before pairing it, and a veth
        # without its pair refuses to come up (ENOTCONN); the caller sets it up after
        down = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        peer_info = down + ifname_attr(peer) + mtu_attr + netns_attr
        linkinfo = nested(
            IFLA_LINKINFO,
            attr(IFLA_INFO_KIND, b"veth"),
            nested(IFLA_INFO_DATA, nested(VETH_INFO_PEER, peer_info)),
        )
        body = up + ifname_attr(host) + mtu_attr + attr(IFLA_MASTER, struct.pack("=I", master))
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body + linkinfo)

    def set_hairpin(self, index: int, on: bool = True) -> None:
        """Hairpin mode of bridge port ``index`` (a pod reaching itself through a Service)."""
        body = _IFINFOMSG.pack(socket.AF_BRIDGE, 0, index, 0, 0) + nested(
            IFLA_PROTINFO, attr(IFLA_BRPORT_MODE, bytes([1 if on else 0]))
        )
        self.request(RTM_SETLINK, NLM_F_ACK, body)

    def set_arp_notify(self, index: int) -> None:
        """``net.ipv4.conf.<link>.arp_notify = 1``: the kernel announces the link's addresses
        (a gratuitous ARP) whenever it comes up, so neighbours drop what they had cached
        for a reused address. A packet socket would do it too, but closing one waits for
        an RCU grace period (~15 ms of wall per pod)."""
        conf = nested(IFLA_INET_CONF, attr(IPV4_DEVCONF_ARP_NOTIFY, struct.pack("=I", 1)))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + nested(
            IFLA_AF_SPEC, nested(socket.AF_INET, conf)
        )
        self.request(RTM_SETLINK, NLM_F_ACK, body)

    def set_up(self, index: int) -> None:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
        self.request(RTM_NEWLINK, NLM_F_ACK, body)

    def delete_link(self, name: str) -> bool:
        """Delete the link named ``name`` (a veth takes its peer with it); False if none."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + ifname_attr(name)
        try:
            self.request(RTM_DELLINK, NLM_F_ACK, body)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    # ---- addresses and routes -------------------------------------------------------------

    def ipv4_addresses(self, index: int) -> list[tuple[str, int]]:
        """The IPv4 addresses (address, prefix length) of link ``index``."""
        body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        out = []
        for kind, reply in self.request(RTM_GETADDR, NLM_F_DUMP, body):
            if kind != RTM_NEWADDR or len(reply) < _IFADDRMSG.size:
                continue
            _family, prefix, _flags, _scope, link = _IFADDRMSG.unpack_from(reply)
            local = parse_attrs(reply[_IFADDRMSG.size :]).get(IFA_LOCAL, b"")
            if link == index and len(local) == 4:
                out.append((socket.inet_ntoa(local), prefix))
        return out

    def add_ipv4_address(self, index: int, address: str, prefix: int, broadcast: str) -> None:
        packed = socket.inet_aton(address)
        body = (
            _IFADDRMSG.pack(socket.AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, index)
            + attr(IFA_LOCAL, packed)
            + attr(IFA_ADDRESS, packed)
            + attr(IFA_BROADCAST, socket.inet_aton(broadcast))
        )
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def add_default_route(self, index: int, gateway: str) -> None:
        """``default via gateway dev index`` in the main table, as ``ip route add`` makes it."""
        kind = (RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST)
        body = (
            _RTMSG.pack(socket.AF_INET, 0, 0, 0, *kind, 0)
            + attr(RTA_DST, bytes(4))  # 0.0.0.0/0
            + attr(RTA_GATEWAY, socket.inet_aton(gateway))
            + attr(RTA_OIF, struct.pack("=i", index))
        )
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace ``fd`` refers to."""
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(netns_fd: int) -> Iterator[None]:
    """The calling thread in namespace ``netns_fd`` for the block, then back where it was.
    Use in a thread of one's own: if the way back fails the thread must not run anything
    else (it raises, and the thread's owner ends it)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(netns_fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def socket_in(netns_fd: int, family: int, kind: int, proto: int) -> socket.socket:
    """A socket of the namespace ``netns_fd`` (sockets keep the namespace they were made in)."""
    with entered(netns_fd):
        return socket.socket(family, kind, proto)
