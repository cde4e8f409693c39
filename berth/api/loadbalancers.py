"""LoadBalancer Services on bare metal: the address pool, the Service fields that decide who
handles one, and the election of the node that announces an address.

Shared by the controller that allocates addresses (:mod:`berth.controllers.servicelb`), the
node agent that announces them and the service proxy that forwards them, and the provisioner
that validates the pool in the cluster spec, so all four read the pool and the fields alike.

Two modes, as in MetalLB's layer-2 mode and k3s's ServiceLB:

* with a pool, each Service gets one address of the pool; one node, elected per address,
  holds it on its interface (the kernel then answers ARP for it) and every node forwards it;
* without a pool, a Service's ingress addresses are the addresses of the Ready nodes.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A pool bigger than this is refused: the allocator walks it to find a free address.
MAX_POOL_ADDRESSES = 65536
# Nodes labelled so never announce nor serve as an ingress address (upstream's label).
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
INGRESS_IP_MODE = "VIP"


class PoolError(ValueError):
    """An entry of the pool is neither an IPv4 CIDR nor a range ``first-last``."""


@dataclass(frozen=True, slots=True)
class Block:
    """One pool entry: the addresses ``first..last`` (both included)."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, ipaddress.IPv4Address) and self.first <= ip <= self.last

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def overlaps(self, network: ipaddress.IPv4Network) -> bool:
        return self.first <= network.broadcast_address and network.network_address <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def parse_block(text: str) -> Block:
    """``10.0.0.0/28`` (every address of it but the network and broadcast ones, unless /31
    or /32) or ``10.0.0.10-10.0.0.20``."""
    value = text.strip()
    try:
        if "-" in value:
            a, _, b = value.partition("-")
            first, last = ipaddress.IPv4Address(a.strip()), ipaddress.IPv4Address(b.strip())
            if last < first:
                raise PoolError(f"{text!r}: the range ends before it starts")
            return Block(first, last)
        net = ipaddress.IPv4Network(value, strict=True)
    except PoolError:
        raise
    except ValueError as exc:
        raise PoolError(
            f"{text!r} is neither an IPv4 CIDR (10.0.0.240/28) nor a range "
            f"(10.0.0.240-10.0.0.250): {exc}"
        ) from None
    if net.prefixlen >= 31:
        return Block(net.network_address, net.broadcast_address)
    return Block(net.network_address + 1, net.broadcast_address - 1)


@dataclass(frozen=True, slots=True)
class Pool:
    blocks: tuple[Block, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Pool:
        blocks = tuple(parse_block(e) for e in entries)
        if sum(b.size for b in blocks) > MAX_POOL_ADDRESSES:
            raise PoolError(f"the pool holds more than {MAX_POOL_ADDRESSES} addresses")
        return cls(blocks)

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def contains(self, address: str) -> bool:
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            return False
        return any(ip in b for b in self.blocks)

    def addresses(self) -> Iterator[str]:
        for b in self.blocks:
            for n in range(int(b.first), int(b.last) + 1):
                yield str(ipaddress.IPv4Address(n))

    def first_free(self, used: Iterable[str]) -> str | None:
        taken = set(used)
        return next((a for a in self.addresses() if a not in taken), None)


# -- the Service fields ------------------------------------------------------------------------


def _spec(svc: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = svc.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def handled_here(svc: Mapping[str, Any]) -> bool:
    """A LoadBalancer Service of the default class (no ``loadBalancerClass``): ours. A Service
    naming a class belongs to that class's implementation, as upstream's service controller
    leaves it alone."""
    spec = _spec(svc)
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def ingress_ips(svc: Mapping[str, Any]) -> list[str]:
    """The IPv4 addresses of ``status.loadBalancer.ingress`` (hostnames are skipped). Lists
    may be tuples: informer caches hold frozen objects."""
    status = svc.get("status")
    lb = status.get("loadBalancer") if isinstance(status, Mapping) else None
    ingress = lb.get("ingress") if isinstance(lb, Mapping) else None
    out = []
    for item in ingress if isinstance(ingress, list | tuple) else ():
        ip = item.get("ip") if isinstance(item, Mapping) else None
        if isinstance(ip, str):
            try:
                out.append(str(ipaddress.IPv4Address(ip)))
            except ValueError:
                continue
    return out


def local_traffic(svc: Mapping[str, Any]) -> bool:
    """``externalTrafficPolicy: Local`` on a Service reachable from outside."""
    spec = _spec(svc)
    return spec.get("type") in ("NodePort", "LoadBalancer") and (
        spec.get("externalTrafficPolicy") == "Local"
    )


# -- nodes -------------------------------------------------------------------------------------


def node_ready(node: Mapping[str, Any]) -> bool:
    status = node.get("status")
    for cond in (status.get("conditions") if isinstance(status, Mapping) else None) or ():
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def node_name(node: Mapping[str, Any]) -> str:
    meta = node.get("metadata")
    return str(meta.get("name") or "") if isinstance(meta, Mapping) else ""


def node_internal_ip(node: Mapping[str, Any]) -> str | None:
    status = node.get("status")
    addresses = status.get("addresses") if isinstance(status, Mapping) else None
    for kind in ("InternalIP", "ExternalIP"):
        for a in addresses if isinstance(addresses, list | tuple) else ():
            if isinstance(a, Mapping) and a.get("type") == kind:
                try:
                    return str(ipaddress.IPv4Address(str(a.get("address"))))
                except ValueError:
                    continue
    return None


def eligible(node: Mapping[str, Any]) -> bool:
    """A node that may announce or serve load-balancer traffic: Ready, not excluded."""
    meta = node.get("metadata")
    node_labels = meta.get("labels") if isinstance(meta, Mapping) else None
    excluded = isinstance(node_labels, Mapping) and EXCLUDE_LABEL in node_labels
    return node_ready(node) and not excluded


def announcer(address: str, candidates: Sequence[str]) -> str | None:
    """The node that announces ``address``: every agent computes the same answer from the same
    candidates (MetalLB's layer-2 election: each node ranks the candidates by a hash of node
    and address, the first wins), so no lock is needed, and the addresses of a pool spread over
    the nodes. When the winner leaves the candidates (NotReady), the next one takes over."""
    if not candidates:
        return None
    return min(
        sorted(set(candidates)),
        key=lambda n: hashlib.sha256(f"{n}#{address}".encode()).digest(),
    )
