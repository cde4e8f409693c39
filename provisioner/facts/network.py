"""Facts about the network: listening sockets (read from ``/proc/net``, no ``ss`` needed)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from provisioner.facts.base import Fact

_LISTEN = {"tcp": "0A", "tcp6": "0A", "udp": "07", "udp6": "07"}


@dataclass(frozen=True)
class Listener:
    proto: str  # tcp | udp
    address: str
    port: int


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(IPv4Address(raw[::-1]))
    # IPv6 in /proc is four host-order (little-endian) 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(IPv6Address(words))


@dataclass(frozen=True)
class ListeningPorts(Fact[frozenset[Listener]]):
    """Every listening TCP socket and bound UDP socket (``Listener(proto, address, port)``)."""

    def command(self) -> str:
        return 'for f in tcp tcp6 udp udp6; do echo "#$f"; cat /proc/net/$f; done'

    def parse(self, output: str, exit_code: int) -> frozenset[Listener]:
        found: set[Listener] = set()
        table = ""
        for line in output.splitlines():
            if line.startswith("#"):
                table = line[1:]
                continue
            fields = line.split()
            if len(fields) < 4 or table not in _LISTEN or fields[0] == "sl":
                continue
            local, state = fields[1], fields[3]
            if state != _LISTEN[table]:
                continue
            hex_addr, _, hex_port = local.partition(":")
            found.add(Listener(table.rstrip("6"), _address(hex_addr), int(hex_port, 16)))
        return frozenset(found)
