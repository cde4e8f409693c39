"""The VIP on this host's interface, through iproute2's ``ip`` (present on every host berth
supports). The commands go through a :data:`Runner` so tests replace them."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Runner = Callable[[Sequence[str]], tuple[int, str, str]]
"""Runs a command: ``argv`` -> (exit code, stdout, stderr)."""


def run_command(argv: Sequence[str]) -> tuple[int, str, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=5, check=False)
    return done.returncode, done.stdout, done.stderr


class AddressError(RuntimeError):
    """An ``ip`` command failed, or no interface fits the VIP."""


def parse_ipv4_addresses(out: str) -> list[tuple[str, str]]:
    """``(interface, address/prefix)`` of each line of ``ip -o -4 addr show``."""
    found = []
    for line in out.splitlines():
        # "2: eth0    inet 10.231.1.11/24 brd 10.231.1.255 scope global eth0\ ..."
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            found.append((fields[1].split("@", 1)[0], fields[3]))
    return found


def subnet_interface(vip: str, addresses: list[tuple[str, str]]) -> str | None:
    """The interface with an address whose subnet (wider than /32) contains ``vip``."""
    ip = ipaddress.IPv4Address(vip)
    for name, cidr in addresses:
        network = ipaddress.IPv4Interface(cidr).network
        if ip in network and network.prefixlen < 32 and not network.network_address.is_loopback:
            return name
    return None


def interface_for(vip: str, run: Runner = run_command) -> str:
    """The interface the VIP goes on: the one whose subnet contains it (the VIP must be on the
    hosts' own link for gratuitous ARP to reach the clients)."""
    code, out, err = run(["ip", "-o", "-4", "addr", "show"])
    if code != 0:
        raise AddressError(f"ip addr show failed: {err.strip()}")
    addresses = parse_ipv4_addresses(out)
    name = subnet_interface(vip, addresses)
    if name is None:
        raise AddressError(outside_every_subnet(vip, addresses))
    return name


def outside_every_subnet(vip: str, addresses: list[tuple[str, str]]) -> str:
    seen = ", ".join(f"{name} {cidr}" for name, cidr in addresses) or "none"
    return (
        f"the VIP {vip} lies in no subnet of this host's interfaces ({seen}): pick a free "
        "address of the control-plane hosts' subnet for apiServer.vip, or name the interface "
        "with apiServer.vipInterface"
    )


@dataclass
class IpAddresses:
    """Add, drop and look for ``vip/32`` on ``interface``."""

    vip: str
    interface: str
    run: Runner = run_command

    @property
    def _cidr(self) -> str:
        return f"{self.vip}/32"

    def present(self) -> bool:
        code, out, err = self.run(["ip", "-o", "-4", "addr", "show", "dev", self.interface])
        if code != 0:
            raise AddressError(f"ip addr show dev {self.interface} failed: {err.strip()}")
        return any(f" {self._cidr} " in f" {line} " for line in out.splitlines())

    def add(self) -> None:
        code, _, err = self.run(["ip", "addr", "add", self._cidr, "dev", self.interface])
        if code != 0 and "File exists" not in err:  # already there: fine
            raise AddressError(f"ip addr add {self._cidr} dev {self.interface}: {err.strip()}")

    def remove(self) -> None:
        code, _, err = self.run(["ip", "addr", "del", self._cidr, "dev", self.interface])
        if code != 0 and "Cannot assign requested address" not in err:  # already gone
            raise AddressError(f"ip addr del {self._cidr} dev {self.interface}: {err.strip()}")
