"""Node-level network setup the agent runs at start and whenever the set of nodes changes."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from berth.network.command import Runner
from berth.network.routes import Peer, RouteSync, desired_routes, enable_forwarding

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _node_name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name") or "?")


def _candidate(
    node: Mapping[str, Any], cluster: Network | None, own: Network | None
) -> tuple[Network, str] | str | None:
    """``(pod network, InternalIP)`` of a usable node, a reason it is not, or ``None`` (no
    podCIDR or address yet)."""
    cidr = (node.get("spec") or {}).get("podCIDR")
    addresses = (node.get("status") or {}).get("addresses") or []
    internal = next(
        (
            a.get("address")
            for a in addresses
            if isinstance(a, Mapping) and a.get("type") == "InternalIP"
        ),
        None,
    )
    if not cidr or not internal:
        return None
    try:
        network = ipaddress.ip_network(str(cidr), strict=True)
        address = ipaddress.ip_address(str(internal))
    except ValueError as exc:
        return f"malformed podCIDR or InternalIP ({exc})"
    if network.version != address.version:
        return f"podCIDR {network} and InternalIP {address} are of different IP families"
    if cluster is not None and (
        network.version != cluster.version or not network.subnet_of(cluster)  # type: ignore[arg-type]
    ):
        return f"podCIDR {network} is outside the cluster pod CIDR {cluster}"
    if own is not None and (network.version, network.prefixlen) != (own.version, own.prefixlen):
        # node IPAM gives every node a range of one size: ours tells which
        return f"podCIDR {network} is not a /{own.prefixlen} like every node's"
    return network, str(address)


def _network(cidr: str | None) -> Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False) if cidr else None
    except ValueError:
        return None


def usable_peers(
    nodes: Iterable[Mapping[str, Any]],
    *,
    cluster_cidr: str | None = None,
    own_pod_cidr: str | None = None,
) -> tuple[list[Peer], dict[str, str]]:
    """The peers to route to, and ``{node: why it is left out}`` for the others.

    A malformed podCIDR or address, a range outside ``cluster_cidr`` or of another size than
    ``own_pod_cidr``, or two nodes claiming overlapping ranges leave those nodes out (a claim
    on a neighbour's range must not pull its traffic, and neither claim can be told right from
    here) while every other node keeps its route: one bad Node object never stops the sync,
    nor takes the routes of nodes it does not overlap."""
    cluster = _network(cluster_cidr)
    own = _network(own_pod_cidr)
    skipped: dict[str, str] = {}
    found: list[tuple[Network, str, str]] = []
    for node in nodes:
        got = _candidate(node, cluster, own)
        if isinstance(got, str):
            skipped[_node_name(node)] = got
        elif got is not None:
            found.append((got[0], got[1], _node_name(node)))
    # CIDRs overlap only by nesting: a range overlaps another exactly when the other is the
    # range itself or one of its supernets (at most 128 lookups per node).
    claims: dict[Network, list[int]] = {}
    for i, (network, _, _) in enumerate(found):
        claims.setdefault(network, []).append(i)
    overlapping: set[int] = set()
    for i, (network, _, _) in enumerate(found):
        if len(claims[network]) > 1:
            overlapping.add(i)
        for prefix in range(network.prefixlen):
            wider = claims.get(network.supernet(new_prefix=prefix))
            if wider:
                overlapping.add(i)
                overlapping.update(wider)
    peers = []
    for i, (network, address, name) in enumerate(found):
        if i in overlapping:
            skipped[name] = f"podCIDR {network} overlaps another node's"
        else:
            peers.append(Peer(pod_cidr=str(network), node_ip=address))
    return sorted(peers, key=lambda p: p.pod_cidr), skipped


def peers_from_nodes(
    nodes: Iterable[Mapping[str, Any]],
    *,
    cluster_cidr: str | None = None,
    own_pod_cidr: str | None = None,
) -> list[Peer]:
    """``(spec.podCIDR, InternalIP)`` of every ``v1/Node`` that has both and is usable (see
    :func:`usable_peers`)."""
    return usable_peers(nodes, cluster_cidr=cluster_cidr, own_pod_cidr=own_pod_cidr)[0]


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
