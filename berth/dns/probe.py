"""``python -m berth.dns.probe SERVER NAME``: ask SERVER (port 53, UDP) for NAME's A records and
print them one per line (exit 1 on no answer, 2 on an error rcode). ``berth verify`` runs it on
every node against the node-local cluster DNS; stdlib and berth only, so it runs from the
bundle on a bare host."""

from __future__ import annotations

import secrets
import socket
import struct
import sys

from berth.dns import wire


def a_records(reply: bytes, ident: int) -> tuple[int, list[str]]:
    """(rcode, addresses) of a reply to our query ``ident`` (bounded walk)."""
    if len(reply) < 12 or struct.unpack_from("!H", reply)[0] != ident:
        raise ValueError("not the reply to this query")
    _id, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", reply)
    offset = 12
    for _ in range(qd):
        offset = wire.skip_name(reply, offset) + 4
    out: list[str] = []
    for _ in range(an):
        offset = wire.skip_name(reply, offset)
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", reply, offset)
        offset += 10
        if rtype == wire.A and rdlen == 4:
            out.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += rdlen
    return flags & 0xF, out


def query(server: str, name: str, *, port: int = 53, timeout: float = 2.0) -> tuple[int, list[str]]:
    ident = secrets.randbits(16)
    message = struct.pack("!HHHHHH", ident, wire.RD, 1, 0, 0, 0)
    message += wire.encode_name(name) + struct.pack("!HH", wire.A, wire.CLASS_IN)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(message, (server, port))
        return a_records(s.recv(4096), ident)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m berth.dns.probe SERVER NAME [PORT]", file=sys.stderr)
        return 64
    try:
        rcode, addresses = query(args[0], args[1], port=int(args[2]) if len(args) == 3 else 53)
    except (OSError, ValueError, struct.error, IndexError) as exc:
        print(f"no answer from {args[0]}: {exc}", file=sys.stderr)
        return 1
    if rcode != wire.NOERROR:
        print(f"rcode {rcode}", file=sys.stderr)
        return 2
    print("\n".join(addresses))
    return 0 if addresses else 1


if __name__ == "__main__":
    raise SystemExit(main())
