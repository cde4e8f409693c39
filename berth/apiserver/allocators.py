"""ClusterIP and NodePort allocation for Services.

The allocator's state is rebuilt from the stored Services at start and kept in memory; one API
server owns allocation (berth runs a single writer per datastore).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .errors import ApiError


class IPAllocator:
    """Hands out addresses of ``cidr``; the first host address is reserved for ``kubernetes``."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.used: set[int] = set()
        self._base = int(self.network.network_address)
        self._size = self.network.num_addresses
        self._next = 2  # offset 1 is the kubernetes service

    @property
    def first(self) -> str:
        return str(ipaddress.ip_address(self._base + 1))

    def contains(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def reserve(self, ip: str) -> None:
        """Mark ``ip`` used; raises 422-style ApiError if taken or outside the range."""
        if not self.contains(ip):
            raise ApiError(
                422,
                "Invalid",
                f"spec.clusterIP: Invalid value: {ip!r}: provided IP is not in the valid range."
                f" The range of valid IPs is {self.network}",
            )
        off = int(ipaddress.ip_address(ip)) - self._base
        if off in self.used:
            raise ApiError(
                422,
                "Invalid",
                f"spec.clusterIP: Invalid value: {ip!r}: provided IP is already allocated",
            )
        self.used.add(off)

    def mark(self, ip: Any) -> None:
        if isinstance(ip, str) and self.contains(ip):
            self.used.add(int(ipaddress.ip_address(ip)) - self._base)

    def allocate(self) -> str:
        span = self._size - 2  # skip network and broadcast addresses
        for i in range(span):
            off = 1 + (self._next - 1 + i) % span
            if off not in self.used:
                self.used.add(off)
                self._next = off + 1
                return str(ipaddress.ip_address(self._base + off))
        raise ApiError(500, "InternalError", "failed to allocate a serviceIP: range is full")

    def release(self, ip: Any) -> None:
        if isinstance(ip, str) and self.contains(ip):
            self.used.discard(int(ipaddress.ip_address(ip)) - self._base)


class PortAllocator:
    """NodePorts from an inclusive range (default 30000-32767)."""

    def __init__(self, low: int = 30000, high: int = 32767) -> None:
        self.low = low
        self.high = high
        self.used: set[int] = set()
        self._next = low

    def reserve(self, port: int) -> None:
        if not self.low <= port <= self.high:
            raise ApiError(
                422,
                "Invalid",
                f"spec.ports.nodePort: Invalid value: {port}: provided port is not in the valid"
                f" range. The range of valid ports is {self.low}-{self.high}",
            )
        if port in self.used:
            raise ApiError(
                422,
                "Invalid",
                f"spec.ports.nodePort: Invalid value: {port}: provided port is already allocated",
            )
        self.used.add(port)

    def mark(self, port: Any) -> None:
        if isinstance(port, int):
            self.used.add(port)

    def allocate(self) -> int:
        span = self.high - self.low + 1
        for i in range(span):
            port = self.low + (self._next - self.low + i) % span
            if port not in self.used:
                self.used.add(port)
                self._next = port + 1
                return port
        raise ApiError(500, "InternalError", "failed to allocate a nodePort: range is full")

    def release(self, port: Any) -> None:
        if isinstance(port, int):
            self.used.discard(port)
