"""Render Services and their ready endpoints into one nftables table owned by berth.

Shape (kube-proxy's nftables mode, simplified)::

    table ip berth {
        map service_ips        ClusterIP . proto . port -> goto svc chain
        map service_nodeports  proto . nodePort -> goto ext chain
        set no_endpoint_ips / no_endpoint_nodeports   (rejected fast)
        chain svc_*  { [affinity lookups] numgen random mod N vmap { i : goto ep_* } }
        chain ext_*  { mark for masquerade; goto svc_* }
        chain ep_*   { hairpin mark if saddr == endpoint; [affinity update]; dnat to ip:port }
        chain services { ip daddr . l4proto . dport vmap @service_ips;
                         fib daddr type local (not 127/8): l4proto . dport vmap @service_nodeports }
        nat prerouting/output -> services; nat postrouting: masquerade marked packets
        filter input/forward/output: reject traffic for services without ready endpoints
    }

Masquerading (each case measured in the lab, see the node-runtime facts):
* NodePort traffic always (the backend may be on another node and must answer through us);
* a pod reaching its own Service and being load-balanced back to itself (hairpin);
* ClusterIP traffic whose source is outside the cluster's pod CIDR (e.g. a host process),
  when ``cluster_cidr`` is given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from berth.proxy.model import Endpoint, Service, ServiceKey, ServicePort

TABLE = "berth"
MASQ_MARK = "0x00004000"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def _name(prefix: str, *parts: str) -> str:
    """A readable, collision-free nft identifier (``prefix_readable_hash``)."""
    readable = _UNSAFE.sub("_", "_".join(p for p in parts if p))[:48]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
    return f"{prefix}_{readable}_{digest}"


@dataclass(frozen=True)
class _Backend:
    chain: str
    affinity_set: str | None
    ip: str
    port: int
    local: bool = False


@dataclass(frozen=True)
class _Entry:
    service: Service
    port: ServicePort
    proto: str
    svc_chain: str
    ext_chain: str | None
    backends: tuple[_Backend, ...]
    local_chain: str | None = None  # externalTrafficPolicy Local: this node's endpoints only

    @property
    def local_backends(self) -> tuple[_Backend, ...]:
        return tuple(b for b in self.backends if b.local)

    @property
    def lb_ips(self) -> tuple[str, ...]:
        return tuple(
            ip
            for ip in dict.fromkeys(self.service.load_balancer_ips)
            if ip != self.service.cluster_ip
        )


def _entries(
    services: Iterable[Service],
    endpoints: Mapping[ServiceKey, Sequence[Endpoint]],
    node_name: str = "",
) -> list[_Entry]:
    entries = []
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        if not svc.cluster_ip:
            continue
        ipaddress.IPv4Address(svc.cluster_ip)  # raises on anything that is not an IPv4 address
        for port in sorted(svc.ports, key=lambda p: (p.name, p.port, p.protocol)):
            proto = PROTOCOLS.get(port.protocol.upper())
            if proto is None:
                continue
            pid = port.name or str(port.port)
            ready = sorted(
                {
                    (ep.ip, ep.ports[port.name], bool(node_name) and ep.node_name == node_name)
                    for ep in endpoints.get(svc.key, ())
                    if ep.ready and port.name in ep.ports
                },
                key=lambda item: (ipaddress.IPv4Address(item[0]), item[1], item[2]),
            )
            affinity = svc.session_affinity == "ClientIP"
            backends = tuple(
                _Backend(
                    chain=_name("ep", svc.namespace, svc.name, pid, proto, ip, str(tp)),
                    affinity_set=(
                        _name("aff", svc.namespace, svc.name, pid, proto, ip, str(tp))
                        if affinity
                        else None
                    ),
                    ip=ip,
                    port=tp,
                    local=local,
                )
                for ip, tp, local in ready
            )
            with_nodeport = port.node_port is not None and svc.type in ("NodePort", "LoadBalancer")
            external = with_nodeport or bool(svc.load_balancer_ips)
            entries.append(
                _Entry(
                    service=svc,
                    port=port,
                    proto=proto,
                    svc_chain=_name("svc", svc.namespace, svc.name, pid, proto),
                    ext_chain=(
                        _name("ext", svc.namespace, svc.name, pid, proto) if external else None
                    ),
                    backends=backends,
                    local_chain=(
                        _name("lcl", svc.namespace, svc.name, pid, proto)
                        if external and svc.local_external
                        else None
                    ),
                )
            )
    return entries


def _elements(items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return ["\t\telements = {", *(f"\t\t\t{item}," for item in items), "\t\t}"]


def render_ruleset(
    services: Iterable[Service],
    endpoints: Mapping[ServiceKey, Sequence[Endpoint]],
    *,
    cluster_cidr: str | None = None,
    table: str = TABLE,
    node_name: str = "",
) -> str:
    """The complete ``table ip <table> { … }`` text for ``nft -f`` (deterministic output).
    ``node_name`` is this node's: externalTrafficPolicy Local picks its endpoints by it."""
    entries = _entries(services, endpoints, node_name)
    lines = [f"table ip {table} {{"]
    service_ips = [
        f"{e.service.cluster_ip} . {e.proto} . {e.port.port} : goto {e.svc_chain}"
        for e in entries
        if e.backends
    ]
    # load-balancer addresses are external traffic, as NodePorts
    service_ips += [
        f"{ip} . {e.proto} . {e.port.port} : goto {e.ext_chain}"
        for e in entries
        if e.backends and e.ext_chain
        for ip in e.lb_ips
    ]
    nodeports = [
        f"{e.proto} . {e.port.node_port} : goto {e.ext_chain}"
        for e in entries
        if e.backends and e.ext_chain
    ]
    dead_ips = [
        f"{ip} . {e.proto} . {e.port.port}"
        for e in entries
        if not e.backends
        for ip in (e.service.cluster_ip, *e.lb_ips)
    ]
    dead_nodeports = [
        f"{e.proto} . {e.port.node_port}" for e in entries if not e.backends and e.ext_chain
    ]
    lines += ["\tmap service_ips {", "\t\ttype ipv4_addr . inet_proto . inet_service : verdict"]
    lines += [*_elements(service_ips), "\t}"]
    lines += ["\tmap service_nodeports {", "\t\ttype inet_proto . inet_service : verdict"]
    lines += [*_elements(nodeports), "\t}"]
    lines += ["\tset no_endpoint_ips {", "\t\ttype ipv4_addr . inet_proto . inet_service"]
    lines += [*_elements(dead_ips), "\t}"]
    lines += ["\tset no_endpoint_nodeports {", "\t\ttype inet_proto . inet_service"]
    lines += [*_elements(dead_nodeports), "\t}"]
    for e in entries:
        for b in e.backends:
            if b.affinity_set:
                lines += [
                    f"\tset {b.affinity_set} {{",
                    "\t\ttype ipv4_addr",
                    "\t\tflags dynamic,timeout",
                    f"\t\ttimeout {e.service.affinity_timeout_seconds}s",
                    "\t}",
                ]
    for e in entries:
        if not e.backends:
            continue
        lines.append(f"\tchain {e.svc_chain} {{")
        if cluster_cidr:
            lines.append(f"\t\tip saddr != {cluster_cidr} meta mark set meta mark | {MASQ_MARK}")
        lines += [
            f"\t\tip saddr @{b.affinity_set} goto {b.chain}" for b in e.backends if b.affinity_set
        ]
        if len(e.backends) == 1:
            lines.append(f"\t\tgoto {e.backends[0].chain}")
        else:
            vmap = ", ".join(f"{i} : goto {b.chain}" for i, b in enumerate(e.backends))
            lines.append(f"\t\tnumgen random mod {len(e.backends)} vmap {{ {vmap} }}")
        lines.append("\t}")
        if e.ext_chain and e.local_chain:
            lines += _local_policy_chains(e, cluster_cidr)
        elif e.ext_chain:
            lines += [
                f"\tchain {e.ext_chain} {{",
                f"\t\tmeta mark set meta mark | {MASQ_MARK}",
                f"\t\tgoto {e.svc_chain}",
                "\t}",
            ]
        for b in e.backends:
            lines += [
                f"\tchain {b.chain} {{",
                f"\t\tip saddr {b.ip} meta mark set meta mark | {MASQ_MARK}",
            ]
            if b.affinity_set:
                lines.append(f"\t\tupdate @{b.affinity_set} {{ ip saddr }}")
            lines += [f"\t\tmeta l4proto {e.proto} dnat to {b.ip}:{b.port}", "\t}"]
    lines += [
        "\tchain services {",
        "\t\tip daddr . meta l4proto . th dport vmap @service_ips",
        "\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap "
        "@service_nodeports",
        "\t}",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority -100; policy accept;",
        "\t\tjump services",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        "\t\tjump services",
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority 100; policy accept;",
        f"\t\tmeta mark & {MASQ_MARK} == {MASQ_MARK} meta mark set meta mark ^ {MASQ_MARK} "
        "masquerade",
        "\t}",
        "\tchain reject_forward {",
        "\t\ttype filter hook forward priority -10; policy accept;",
        "\t\tip daddr . meta l4proto . th dport @no_endpoint_ips reject",
        "\t}",
        "\tchain reject_output {",
        "\t\ttype filter hook output priority -10; policy accept;",
        "\t\tip daddr . meta l4proto . th dport @no_endpoint_ips reject",
        "\t}",
        "\tchain reject_input {",
        "\t\ttype filter hook input priority -10; policy accept;",
        "\t\tip daddr . meta l4proto . th dport @no_endpoint_ips reject",
        "\t\tfib daddr type local meta l4proto . th dport @no_endpoint_nodeports reject",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _local_policy_chains(e: _Entry, cluster_cidr: str | None) -> list[str]:
    """externalTrafficPolicy Local (as kube-proxy): outside traffic goes to this node's ready
    endpoints only, without masquerade (the pod sees the client's address), and is dropped
    when the node has none (the load balancer's health check steers clients elsewhere).
    Pods and the node itself still reach every endpoint, as for Cluster."""
    assert e.ext_chain is not None
    assert e.local_chain is not None
    lines = [f"\tchain {e.ext_chain} {{"]
    if cluster_cidr:
        lines.append(f"\t\tip saddr {cluster_cidr} goto {e.svc_chain}")
    lines += [
        f"\t\tfib saddr type local meta mark set meta mark | {MASQ_MARK} goto {e.svc_chain}",
        f"\t\tgoto {e.local_chain}",
        "\t}",
        f"\tchain {e.local_chain} {{",
    ]
    local = e.local_backends
    lines += [f"\t\tip saddr @{b.affinity_set} goto {b.chain}" for b in local if b.affinity_set]
    if not local:
        lines.append("\t\tdrop")
    elif len(local) == 1:
        lines.append(f"\t\tgoto {local[0].chain}")
    else:
        vmap = ", ".join(f"{i} : goto {b.chain}" for i, b in enumerate(local))
        lines.append(f"\t\tnumgen random mod {len(local)} vmap {{ {vmap} }}")
    lines.append("\t}")
    return lines


def transaction(ruleset: str, *, table: str = TABLE) -> str:
    """One ``nft -f`` script that replaces the table atomically: ``add`` (so ``delete`` never
    fails on a fresh node), ``delete``, then the new table — all in a single transaction."""
    return f"add table ip {table}\ndelete table ip {table}\n{ruleset}"
