"""NetworkPolicies -> one nftables table (``inet berth-netpol``), a pure function of the state.

Where the packets are: every pod's traffic to another pod crosses the node's ``forward`` hook,
whether it is routed to another node (host-gw) or bridged to a pod on the same node (the CNI
bridge; bridged IPv4 reaches the IP hooks through ``br_netfilter``, which the agent turns on).
A Service's DNAT happens earlier (prerouting), so ``forward`` sees the pod addresses. Traffic
between a pod and its own node (probes, the node-local DNS) goes through ``input``/``output``
and is left alone, as upstream plugins do for the kubelet's probes.

Shape (no rule per pod pair; per-packet cost is the policies selecting the pod)::

    table inet berth-netpol {
        map ingress_pods  pod IP -> goto in_<group>     (pods isolated for ingress)
        map egress_pods   pod IP -> goto eg_<group>     (pods isolated for egress)
        set <policy>_<dir><n>_pods / _blocks / _ports / _named  (one rule's peers and ports)
        chain in_<group> { jump <policy>_in ...; drop }   one per distinct set of policies
        chain <policy>_in { ip saddr @peers [ports] accept; ... }   one per policy
        chain egress  { hook forward priority 0: established accept; ip saddr vmap @egress_pods }
        chain ingress { hook forward priority 1: established accept; ip daddr vmap @ingress_pods }
    }

Egress and ingress are two base chains so that an egress ``accept`` still leaves the packet
to the ingress check (same-node traffic meets both on this node; traffic between nodes meets
egress on the source node and ingress on the destination). Established and related traffic
is accepted first: a policy change never cuts a connection it admitted, and replies flow.

Pods grouped by the set of policies selecting them share one chain, so the number of chains is
bounded by the policies' overlaps, not by pods. A rule's peers become sets: pod addresses
(plain set) and ipBlocks minus their excepts (interval set); its numbered ports and ranges an
interval set of ``protocol . port``; its named ports, resolved per destination pod, a set of
``address . protocol . port``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from berth.api.selectors import LabelSelector
from berth.netpol.model import Namespace, Peer, Pod, Policy, PortMatch, Rule

TABLE = "berth-netpol"
FAMILY = "inet"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _ident(prefix: str, *parts: str) -> str:
    """A readable, collision-free nft identifier: only ``[A-Za-z0-9_]`` ever reaches the
    text, whatever the names hold."""
    readable = _UNSAFE.sub("_", "_".join(parts))[:40]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
    return f"{prefix}_{readable}_{digest}"


def _ip(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


class _Selection:
    """Label matching done once per distinct label set (pods of a workload share theirs)."""

    def __init__(self, pods: Sequence[Pod], namespaces: Iterable[Namespace]) -> None:
        self.ns_labels = {ns.name: ns.labels for ns in namespaces}
        by_ns: dict[str, dict[tuple[tuple[str, str], ...], list[Pod]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for pod in pods:
            by_ns[pod.namespace][tuple(sorted(pod.labels.items()))].append(pod)
        self.by_ns = by_ns
        self._ns_cache: dict[str, list[str]] = {}

    def pods(self, namespace: str, selector: LabelSelector) -> list[Pod]:
        out: list[Pod] = []
        for labels, pods in self.by_ns.get(namespace, {}).items():
            if selector.matches(dict(labels)):
                out.extend(pods)
        return out

    def namespaces(self, selector: LabelSelector) -> list[str]:
        key = str(selector)
        cached = self._ns_cache.get(key)
        if cached is None:
            cached = [
                name
                for name, labels in self.ns_labels.items()
                # a namespace the informer has not seen yet has only its name label
                if selector.matches(labels)
            ]
            cached += [
                name
                for name in self.by_ns
                if name not in self.ns_labels
                and selector.matches({"kubernetes.io/metadata.name": name})
            ]
            self._ns_cache[key] = cached
        return cached

    def peer_pods(self, policy: Policy, peer: Peer) -> list[Pod]:
        if peer.namespaces is None:
            return self.pods(policy.namespace, peer.pods) if peer.pods is not None else []
        pod_sel = peer.pods
        out: list[Pod] = []
        for ns in self.namespaces(peer.namespaces):
            if pod_sel is None:
                for pods in self.by_ns.get(ns, {}).values():
                    out.extend(pods)
            else:
                out.extend(self.pods(ns, pod_sel))
        return out


def _minus(
    nets: list[ipaddress.IPv4Network], ex: ipaddress.IPv4Network
) -> list[ipaddress.IPv4Network]:
    out: list[ipaddress.IPv4Network] = []
    for net in nets:
        if not net.overlaps(ex):
            out.append(net)
        elif ex.subnet_of(net):
            out.extend(net.address_exclude(ex))
        # else: net lies inside the excepted range, nothing of it is left
    return out


def _blocks(peers: Iterable[Peer]) -> list[str]:
    """The ipBlocks minus their excepts, merged into non-overlapping networks (an interval
    set refuses overlaps)."""
    nets: list[ipaddress.IPv4Network] = []
    for peer in peers:
        if peer.block is None:
            continue
        parts = [peer.block]
        for ex in peer.excepts:
            parts = _minus(parts, ex)
        nets.extend(parts)
    return [str(n) for n in ipaddress.collapse_addresses(nets)]


def _numbered(ports: Iterable[PortMatch]) -> list[str]:
    out = set()
    for p in ports:
        if p.name is not None:
            continue
        if p.first is None:
            out.add((p.protocol, 1, 65535))
        else:
            out.add((p.protocol, p.first, p.last if p.last is not None else p.first))
    # an interval set refuses overlapping elements: merge them per protocol
    merged: list[str] = []
    for proto in sorted({o[0] for o in out}):
        spans = sorted((a, b) for q, a, b in out if q == proto)
        cur: list[int] = []
        for a, b in spans:
            if cur and a <= cur[1] + 1:
                cur[1] = max(cur[1], b)
            else:
                if cur:
                    merged.append(_span(proto, cur[0], cur[1]))
                cur = [a, b]
        if cur:
            merged.append(_span(proto, cur[0], cur[1]))
    return merged


def _span(proto: str, first: int, last: int) -> str:
    return f"{proto} . {first}" if first == last else f"{proto} . {first}-{last}"


def _named(ports: Iterable[PortMatch], pods: Iterable[Pod]) -> list[str]:
    wanted = {(p.name, p.protocol) for p in ports if p.name is not None}
    if not wanted:
        return []
    out = set()
    for pod in pods:
        for name, proto in wanted:
            number = pod.named_ports.get((name or "", proto))
            if number is not None:
                out.add((pod.ip, proto, number))
    return [f"{_ip(ip)} . {proto} . {number}" for ip, proto, number in sorted(out)]


@dataclass
class _Out:
    sets: list[str]
    chains: list[str]


def _set(out: _Out, name: str, kind: str, elements: Sequence[str], *, interval: bool) -> None:
    lines = [f"\tset {name} {{", f"\t\ttype {kind}"]
    if interval:
        lines.append("\t\tflags interval")
    if elements:
        lines.append("\t\telements = { " + ", ".join(elements) + " }")
    lines.append("\t}")
    out.sets.append("\n".join(lines))


def _rule_lines(
    out: _Out,
    base: str,
    rule: Rule,
    *,
    peer_field: str,
    peer_pods: list[Pod] | None,
    peers: Sequence[Peer],
    named_pods: Iterable[Pod],
) -> list[str]:
    """The accept rules of one policy rule (peers AND ports), with their sets."""
    matches: list[str] = []
    if rule.peers is None:
        matches.append("")
    else:
        if peer_pods:
            ips = sorted({p.ip for p in peer_pods})
            _set(out, f"{base}_pods", "ipv4_addr", [_ip(i) for i in ips], interval=False)
            matches.append(f"ip {peer_field} @{base}_pods ")
        blocks = _blocks(peers)
        if blocks:
            _set(out, f"{base}_blocks", "ipv4_addr", blocks, interval=True)
            matches.append(f"ip {peer_field} @{base}_blocks ")
    if not matches:
        return []
    ports: list[str] = []
    if rule.ports is None:
        ports.append("")
    else:
        numbered = _numbered(rule.ports)
        if numbered:
            _set(out, f"{base}_ports", "inet_proto . inet_service", numbered, interval=True)
            ports.append(f"meta l4proto . th dport @{base}_ports ")
        named = _named(rule.ports, named_pods)
        if named:
            _set(
                out, f"{base}_named", "ipv4_addr . inet_proto . inet_service", named, interval=False
            )
            ports.append(f"ip daddr . meta l4proto . th dport @{base}_named ")
    return [f"\t\t{m}{p}accept" for m in matches for p in ports]


def render_ruleset(
    policies: Iterable[Policy],
    pods: Iterable[Pod],
    namespaces: Iterable[Namespace],
    *,
    node: str | None = None,
    table: str = TABLE,
) -> str:
    """The complete ``table inet <table> { … }`` for ``nft -f`` (deterministic output).
    ``node``: enforce for this node's pods only (``None``: every pod, as a bench does)."""
    all_pods = sorted(pods, key=lambda p: (p.namespace, p.name, p.ip))
    sel = _Selection(all_pods, namespaces)
    out = _Out([], [])
    # pod IP -> names of the policy chains isolating it, per direction
    isolating: dict[str, dict[int, list[str]]] = {"in": defaultdict(list), "eg": defaultdict(list)}
    for policy in sorted(policies, key=lambda p: (p.namespace, p.name)):
        selected = [
            p for p in sel.pods(policy.namespace, policy.selector) if node is None or p.node == node
        ]
        if not selected:
            continue
        for direction, rules in (("in", policy.ingress), ("eg", policy.egress)):
            if rules is None:
                continue
            chain = _ident(f"p{direction}", policy.namespace, policy.name)
            body: list[str] = []
            for i, rule in enumerate(rules):
                peers = rule.peers or ()
                peer_pods = [q for peer in peers for q in sel.peer_pods(policy, peer)]
                body += _rule_lines(
                    out,
                    f"{chain}_{i}",
                    rule,
                    peer_field="saddr" if direction == "in" else "daddr",
                    peer_pods=peer_pods,
                    peers=peers,
                    # ingress: a named port is the selected pod's; egress: the peer's (any
                    # pod the packet may go to when the rule names no peers)
                    named_pods=selected
                    if direction == "in"
                    else (all_pods if rule.peers is None else peer_pods),
                )
            out.chains.append("\n".join([f"\tchain {chain} {{", *body, "\t}"]))
            for p in selected:
                isolating[direction][p.ip].append(chain)
    maps: dict[str, list[str]] = {}
    for direction, by_ip in isolating.items():
        groups: dict[tuple[str, ...], str] = {}
        entries = []
        for ip in sorted(by_ip):
            chains = tuple(by_ip[ip])
            group = groups.get(chains)
            if group is None:
                group = _ident(f"g{direction}", *chains)
                groups[chains] = group
                jumps = [f"\t\tjump {c}" for c in chains]
                out.chains.append("\n".join([f"\tchain {group} {{", *jumps, "\t\tdrop", "\t}"]))
            entries.append(f"{_ip(ip)} : goto {group}")
        maps[direction] = entries
    lines = [f"table {FAMILY} {table} {{"]
    for name, direction in (("ingress_pods", "in"), ("egress_pods", "eg")):
        lines += [f"\tmap {name} {{", "\t\ttype ipv4_addr : verdict"]
        if maps[direction]:
            lines.append("\t\telements = { " + ", ".join(maps[direction]) + " }")
        lines.append("\t}")
    lines += out.sets
    lines += out.chains
    lines += [
        "\tchain egress {",
        "\t\ttype filter hook forward priority 0; policy accept;",
        "\t\tct state established,related accept",
        "\t\tip saddr vmap @egress_pods",
        "\t}",
        "\tchain ingress {",
        "\t\ttype filter hook forward priority 1; policy accept;",
        "\t\tct state established,related accept",
        "\t\tip daddr vmap @ingress_pods",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def transaction(ruleset: str, *, table: str = TABLE) -> str:
    """One ``nft -f`` script replacing the table atomically (``add`` first so that ``delete``
    never fails on a fresh node)."""
    return f"add table {FAMILY} {table}\ndelete table {FAMILY} {table}\n{ruleset}"
