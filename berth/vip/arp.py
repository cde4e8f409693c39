"""Gratuitous ARP: tell every host on the link that the VIP is now at this host's MAC.

Two broadcast frames per announcement, as Linux's ``arping -U`` and ``arping -A`` send: an ARP
request and an ARP reply whose sender and target protocol addresses are both the VIP. Hosts
that already have the VIP in their ARP cache replace the old MAC (a gratuitous ARP overrides
the kernel's lock time), so a client's next connection reaches the new holder without waiting
for the stale entry to fail. Sent through a raw ``AF_PACKET`` socket (needs CAP_NET_RAW; the
unit runs as root), so no package is needed on the host.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806
REQUEST, REPLY = 1, 2


def parse_mac(text: str) -> bytes:
    parts = text.strip().split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return bytes(int(p, 16) for p in parts)


def gratuitous_frames(mac: bytes, vip: str) -> list[bytes]:
    """The Ethernet frames announcing ``vip`` at ``mac`` (request, then reply)."""
    ip = ipaddress.IPv4Address(vip).packed
    frames = []
    for op, target_mac in ((REQUEST, b"\x00" * 6), (REPLY, BROADCAST)):
        ethernet = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
        # hardware Ethernet (1), protocol IPv4, address lengths 6 and 4
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ip + target_mac + ip
        frames.append(ethernet + arp)
    return frames


def interface_mac(interface: str) -> bytes:
    return parse_mac(Path(f"/sys/class/net/{interface}/address").read_text())


class ArpAnnouncer:
    """Sends the gratuitous ARP frames for ``vip`` on ``interface``."""

    def __init__(self, vip: str, interface: str) -> None:
        self.vip = vip
        self.interface = interface

    def announce(self) -> None:
        frames = gratuitous_frames(interface_mac(self.interface), self.vip)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
            sock.bind((self.interface, 0))
            for frame in frames:
                sock.send(frame)
