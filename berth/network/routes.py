"""host-gw routing: a route to every other node's pod CIDR via that node's address.

Berth's routes carry their own routing protocol number (:data:`ROUTE_PROTO`), so the sync
only ever touches routes it made. :func:`plan_routes` is pure; :class:`RouteSync` applies it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from berth.network.command import Runner, check

ROUTE_PROTO = "199"


@dataclass(frozen=True, order=True)
class Route:
    """``dst`` via a gateway (``via``) or straight out of a device (``dev``)."""

    dst: str
    via: str | None = None
    dev: str | None = None

    def argv(self, verb: str) -> list[str]:
        argv = ["ip", "route", verb, self.dst]
        if self.via:
            argv += ["via", self.via]
        if self.dev:
            argv += ["dev", self.dev]
        return [*argv, "proto", ROUTE_PROTO]


@dataclass(frozen=True)
class Peer:
    """Another node: its pod CIDR and the address to reach it at."""

    pod_cidr: str
    node_ip: str


def desired_routes(
    peers: Iterable[Peer],
    *,
    own_pod_cidr: str | None,
    service_cidr: str | None = None,
    service_dev: str | None = None,
) -> set[Route]:
    """Routes this node needs: one per *other* node's pod CIDR, and (when given) a route for
    the service CIDR out of ``service_dev`` so that ClusterIPs are routable at all on hosts
    without a default route (the proxy DNATs them before they leave)."""
    routes: set[Route] = set()
    for peer in peers:
        cidr = str(ipaddress.ip_network(peer.pod_cidr, strict=True))
        if cidr == own_pod_cidr:
            continue
        routes.add(Route(dst=cidr, via=str(ipaddress.ip_address(peer.node_ip))))
    if service_cidr and service_dev:
        routes.add(Route(dst=str(ipaddress.ip_network(service_cidr)), dev=service_dev))
    return routes


def parse_routes(ip_json: str) -> set[Route]:
    """Routes from ``ip -j route show proto 199`` (gateway routes keep only ``via``)."""
    routes = set()
    for entry in json.loads(ip_json or "[]"):
        dst = str(entry["dst"])
        if "/" not in dst:
            dst += "/32"
        gateway = entry.get("gateway")
        routes.add(Route(dst=dst, via=gateway, dev=None if gateway else entry.get("dev")))
    return routes


def plan_routes(current: set[Route], desired: set[Route]) -> list[list[str]]:
    """``ip route`` commands turning ``current`` into ``desired`` (deletes first)."""
    stale = sorted(current - desired)
    wanted_dsts = {r.dst for r in desired}
    commands = [r.argv("del") for r in stale if r.dst not in wanted_dsts]
    commands += [r.argv("replace") for r in sorted(desired - current)]
    return commands


IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def enable_forwarding(path: Path = IP_FORWARD) -> bool:
    """Turn on IPv4 forwarding in this network namespace (a node routes pod and NodePort
    traffic even when it runs no pods itself). Returns whether it had to change."""
    if path.read_text().strip() == "1":
        return False
    path.write_text("1\n")
    return True


class RouteSync:
    """Keeps the node's host-gw routes equal to the desired set; re-run on every change."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def current(self) -> set[Route]:
        result = await check(
            self.runner, ["ip", "-j", "route", "show", "proto", ROUTE_PROTO], what="list routes"
        )
        return parse_routes(result.stdout.decode())

    async def sync(self, desired: set[Route]) -> Sequence[list[str]]:
        """Apply the difference; returns the commands run (empty when nothing changed)."""
        commands = plan_routes(await self.current(), desired)
        for argv in commands:
            await check(self.runner, argv, what="sync host-gw routes")
        return commands
