"""The DNS message format (RFC 1035, EDNS0 from RFC 6891), as much as answering stub
resolvers needs.

Parsing is for untrusted input: a query is at most :data:`MAX_QUERY` bytes, its one question
a name of at most 255 octets in labels of at most 63, without compression pointers (nothing
precedes the question a pointer could legitimately name); anything else is a :class:`FormError`
(answered FORMERR when the header could be read, else dropped). Responses compress only the
owner names equal to the question name (a pointer to offset 12), which is what keeps the
question's letter case in every answer (clients may randomise it, "0x20").
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

MAX_QUERY = 4096
MAX_NAME = 255
MAX_LABEL = 63
CLASSIC_UDP = 512
OUR_UDP_SIZE = 1232  # the DNS flag day 2020 size: no fragmentation on usual paths

A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 16, 28, 33, 41, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080

_HEADER = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_RRHEAD = struct.Struct("!HHIH")
_OPT_RR = b"\x00" + struct.pack("!HHIH", OPT, OUR_UDP_SIZE, 0, 0)


class FormError(ValueError):
    """The message is not a query this server can read."""


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    name: str  # lower case, no trailing dot ("" for the root)
    qtype: int
    qclass: int
    question: bytes  # the question section exactly as received (name + type + class)
    udp_size: int  # what the client can take over UDP (512 without EDNS)
    edns: bool


def _read_name(data: bytes, offset: int) -> tuple[list[bytes], int]:
    labels: list[bytes] = []
    total = 1
    while True:
        if offset >= len(data):
            raise FormError("name runs past the message")
        length = data[offset]
        if length == 0:
            return labels, offset + 1
        if length & 0xC0:
            raise FormError("compression or extended label in a question")
        if length > MAX_LABEL:
            raise FormError("label longer than 63 octets")
        total += length + 1
        if total > MAX_NAME:
            raise FormError("name longer than 255 octets")
        end = offset + 1 + length
        if end > len(data):
            raise FormError("label runs past the message")
        labels.append(data[offset + 1 : end])
        offset = end


def header_id(data: bytes) -> int | None:
    """The ID of a message with a readable header that is a query (else ``None``: drop it;
    answering responses could loop two servers into each other)."""
    if len(data) < 12:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    if flags & QR:
        return None
    return int(ident)


def parse_query(data: bytes) -> Query:
    """The one question of a standard query, and what EDNS says about the client's buffer."""
    if len(data) > MAX_QUERY:
        raise FormError("message too long")
    if len(data) < 12:
        raise FormError("message shorter than a header")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & QR:
        raise FormError("a response, not a query")
    if qdcount != 1:
        raise FormError("a query has exactly one question")
    labels, offset = _read_name(data, 12)
    if offset + 4 > len(data):
        raise FormError("question runs past the message")
    qtype, qclass = _QTAIL.unpack_from(data, offset)
    end = offset + 4
    question = data[12:end]
    udp_size, edns = CLASSIC_UDP, False
    # an OPT pseudo-record: root name, TYPE 41, CLASS = the client's UDP size
    if (arcount, ancount, nscount) == (1, 0, 0) and end + 11 <= len(data) and data[end] == 0:
        rtype, rclass, _ttl, rdlen = _RRHEAD.unpack_from(data, end + 1)
        if rtype == OPT and end + 11 + rdlen <= len(data):
            edns = True
            udp_size = max(CLASSIC_UDP, min(int(rclass), OUR_UDP_SIZE))
    try:
        name = b".".join(labels).decode("ascii").lower()
    except UnicodeDecodeError:
        # octets outside ASCII: no cluster name has them; keep them distinct but matchable
        name = b".".join(labels).decode("latin-1").lower()
    return Query(
        id=int(ident),
        flags=int(flags),
        name=name,
        qtype=int(qtype),
        qclass=int(qclass),
        question=bytes(question),
        udp_size=udp_size,
        edns=edns,
    )


def encode_name(name: str) -> bytes:
    """``name`` (dotted, with or without the final dot) in wire form, uncompressed."""
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("ascii")
        if not 0 < len(raw) <= MAX_LABEL:
            raise ValueError(f"bad label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; ``rdata`` already in wire form (names uncompressed)."""

    name: str  # lower case, no trailing dot
    rtype: int
    ttl: int
    rdata: bytes

    def encode(self, qname: str) -> bytes:
        owner = b"\xc0\x0c" if self.name == qname else encode_name(self.name)
        return owner + _RRHEAD.pack(self.rtype, CLASS_IN, self.ttl, len(self.rdata)) + self.rdata


def a_rdata(ip: str) -> bytes:
    parts = [int(p) for p in ip.split(".")]
    if len(parts) != 4 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"not an IPv4 address: {ip!r}")
    return bytes(parts)


def srv_rdata(priority: int, weight: int, port: int, target: str) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + encode_name(target)


def soa_rdata(mname: str, rname: str, serial: int, minimum: int) -> bytes:
    times = struct.pack("!IIIII", serial & 0xFFFFFFFF, 7200, 1800, 86400, minimum)
    return encode_name(mname) + encode_name(rname) + times


def txt_rdata(text: str) -> bytes:
    raw = text.encode()[:255]
    return bytes([len(raw)]) + raw


def response(
    query: Query,
    rcode: int,
    answers: Sequence[Record] = (),
    authority: Sequence[Record] = (),
    additional: Sequence[Record] = (),
    *,
    authoritative: bool = True,
    limit: int | None = None,
) -> bytes:
    """The response to ``query``; over ``limit`` bytes (default: the client's UDP size) only
    the header and question go out, with TC set so the client retries over TCP."""
    flags = QR | (query.flags & RD) | RA | (AA if authoritative else 0) | (rcode & 0xF)
    opt = _OPT_RR if query.edns else b""
    body = b"".join(
        [
            *(r.encode(query.name) for r in answers),
            *(r.encode(query.name) for r in authority),
            *(r.encode(query.name) for r in additional),
        ]
    )
    size = query.udp_size if limit is None else limit
    counts = (len(answers), len(authority), len(additional) + (1 if opt else 0))
    if 12 + len(query.question) + len(body) + len(opt) > size:
        flags |= TC
        body = b""
        counts = (0, 0, 1 if opt else 0)
    header = _HEADER.pack(query.id, flags, 1, *counts)
    return header + query.question + body + opt


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A bare response with ``rcode`` to a message whose header is readable (FORMERR to
    a malformed query, NOTIMP to another opcode); ``None``: send nothing."""
    ident = header_id(data)
    if ident is None:
        return None
    flags = struct.unpack_from("!H", data, 2)[0]
    out_flags = QR | (flags & (RD | 0x7800)) | RA | (rcode & 0xF)
    return _HEADER.pack(ident, out_flags, 0, 0, 0, 0)


def opcode(data: bytes) -> int:
    return (struct.unpack_from("!H", data, 2)[0] >> 11) & 0xF if len(data) >= 4 else 0


def rcode_of(message: bytes) -> int:
    return message[3] & 0xF if len(message) >= 4 else SERVFAIL


def skip_name(data: bytes, offset: int) -> int:
    """The offset just past the name at ``offset`` (a pointer ends it), without reading the
    name; an IndexError when it runs past ``data`` or has more than 128 labels."""
    for _ in range(128):
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
    raise IndexError("name too long")


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at ``offset`` of a message from an upstream: (lower-case
    name, offset after it). Pointers are followed at most 64 times and only backwards; the
    name is at most 255 octets."""
    labels: list[str] = []
    total = 1
    end: int | None = None
    for _ in range(128):
        if offset >= len(data):
            raise FormError("name runs past the message")
        length = data[offset]
        if length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise FormError("pointer runs past the message")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if target >= offset:
                raise FormError("compression pointer does not point backwards")
            if end is None:
                end = offset + 2
            offset = target
            continue
        if length & 0xC0:
            raise FormError("extended label type")
        total += length + 1
        if total > MAX_NAME or offset + 1 + length > len(data):
            raise FormError("bad name")
        labels.append(data[offset + 1 : offset + 1 + length].decode("latin-1").lower())
        offset += 1 + length
    raise FormError("too many labels or pointers")


def answer_records(message: bytes, *, limit: int = 64) -> list[Record]:
    """The A, AAAA and CNAME records of a response's answer section (names decompressed),
    at most ``limit``; anything unreadable ends the list."""
    out: list[Record] = []
    try:
        _id, _flags, qd, an, _ns, _ar = _HEADER.unpack_from(message)
        offset = 12
        for _ in range(min(qd, 4)):
            offset = read_name(message, offset)[1] + 4
        for _ in range(min(an, limit)):
            name, offset = read_name(message, offset)
            rtype, _cls, ttl, rdlen = _RRHEAD.unpack_from(message, offset)
            offset += 10
            if offset + rdlen > len(message):
                break
            rdata = message[offset : offset + rdlen]
            if rtype == CNAME:
                rdata = encode_name(read_name(message, offset)[0])
            offset += rdlen
            if rtype in (A, AAAA, CNAME):
                name.encode("ascii")
                out.append(Record(name, rtype, ttl, rdata))
    except (FormError, ValueError, struct.error, UnicodeError):
        pass
    return out
