"""Node-level network setup the agent runs at start and whenever the set of nodes changes."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from berth.network.command import Runner
from berth.network.routes import Peer, RouteSync, desired_routes, enable_forwarding


def peers_from_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[Peer]:
    """``(spec.podCIDR, InternalIP)`` of every ``v1/Node`` that has both."""
    peers = []
    for node in nodes:
        cidr = (node.get("spec") or {}).get("podCIDR")
        addresses = (node.get("status") or {}).get("addresses") or []
        internal = next(
            (a.get("address") for a in addresses if a.get("type") == "InternalIP"), None
        )
        if cidr and internal:
            ipaddress.ip_network(cidr)  # raises on a malformed podCIDR
            peers.append(Peer(pod_cidr=str(cidr), node_ip=str(internal)))
    return sorted(peers, key=lambda p: p.pod_cidr)


async def sync_node_network(
    runner: Runner,
    *,
    own_pod_cidr: str,
    peers: Sequence[Peer],
    service_cidr: str | None,
    service_dev: str | None,
) -> list[list[str]]:
    """Enable forwarding and make host-gw routes (+ the service CIDR route) match ``peers``;
    returns the ``ip route`` commands that ran (none when already in sync)."""
    enable_forwarding()
    desired = desired_routes(
        peers, own_pod_cidr=own_pod_cidr, service_cidr=service_cidr, service_dev=service_dev
    )
    return list(await RouteSync(runner).sync(desired))
