"""Pods, namespaces and NetworkPolicies as the renderer sees them, converted from Kubernetes
objects with every value the ruleset will carry validated here: addresses and CIDRs parsed with
:mod:`ipaddress`, ports as ints in 1..65535, protocols from a fixed table. Names and labels
never reach the nft text (only hashes of them do), so nothing a client writes can be
interpolated into it.

A policy the server should have refused but that is somehow malformed fails closed: an
unreadable pod selector selects every pod of its namespace, an unreadable peer or port matches
nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.api.selectors import (
    EVERYTHING,
    LabelSelector,
    SelectorError,
    label_selector_from_object,
)

PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
IPv4Net = ipaddress.IPv4Network


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: int
    """The pod's IPv4 address as an integer (parsed and checked once)."""
    labels: Mapping[str, str]
    node: str = ""
    named_ports: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(port name, nft protocol) -> container port."""


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class PortMatch:
    """One entry of a rule's ``ports``: a protocol and either all ports, a number or a range,
    or a name resolved per pod."""

    protocol: str  # nft name: tcp / udp / sctp
    first: int | None = None
    last: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class Peer:
    """``ipBlock`` (``block`` + ``excepts``), or selectors: ``pods`` alone (the policy's
    namespace), ``namespaces`` alone (every pod there), or both. ``None`` for an unreadable
    peer, which matches nothing."""

    block: IPv4Net | None = None
    excepts: tuple[IPv4Net, ...] = ()
    pods: LabelSelector | None = None
    namespaces: LabelSelector | None = None


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] | None
    """``None``: every source (or destination); else only these (none readable: nothing)."""
    ports: tuple[PortMatch, ...] | None
    """``None``: every port; else only these."""


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    selector: LabelSelector
    ingress: tuple[Rule, ...] | None
    """``None``: the policy does not isolate for ingress; else its allow rules."""
    egress: tuple[Rule, ...] | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = _meta(obj).get("labels")
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def _ipv4(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    return None


def pod_from_k8s(obj: Mapping[str, Any]) -> Pod | None:
    """A pod the policies can see: it has an IPv4 pod address of its own (not host network)
    and is not finished. ``None`` otherwise."""
    spec = obj.get("spec")
    status = obj.get("status")
    if not isinstance(spec, Mapping) or not isinstance(status, Mapping):
        return None
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ip = _ipv4(status.get("podIP"))
    if ip is None:
        return None
    named: dict[tuple[str, str], int] = {}
    for c in spec.get("containers") or ():
        if not isinstance(c, Mapping):
            continue
        for p in c.get("ports") or ():
            if not isinstance(p, Mapping) or not isinstance(p.get("name"), str):
                continue
            proto = PROTOCOLS.get(str(p.get("protocol") or "TCP"))
            number = _port(p.get("containerPort"))
            if proto is not None and number is not None:
                named.setdefault((p["name"], proto), number)
    meta = _meta(obj)
    return Pod(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        ip=ip,
        labels=_labels(obj),
        node=str(spec.get("nodeName") or ""),
        named_ports=named,
    )


_POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels")


def policy_pod_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod :func:`pod_from_k8s` reads, plus what an informer keys and resumes
    by (name, namespace, uid, resourceVersion): ``pod_from_k8s`` of it is ``pod_from_k8s`` of
    the whole pod. What the node agent's NetworkPolicy informer caches of every pod of the
    cluster: volumes, env, affinity, conditions and container statuses are most of a pod and
    the rules read none of them."""
    meta = _meta(obj)
    view: dict[str, Any] = {"metadata": {k: meta[k] for k in _POD_METADATA if k in meta}}
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        kept = {k: spec[k] for k in ("nodeName", "hostNetwork") if k in spec}
        containers = spec.get("containers")
        if isinstance(containers, list | tuple):
            kept["containers"] = [
                {"ports": c["ports"]} if isinstance(c, Mapping) and "ports" in c else {}
                for c in containers
            ]
        view["spec"] = kept
    status = obj.get("status")
    if isinstance(status, Mapping):
        view["status"] = {k: status[k] for k in ("podIP", "phase") if k in status}
    return view


def namespace_from_k8s(obj: Mapping[str, Any]) -> Namespace:
    name = str(_meta(obj).get("name") or "")
    labels = _labels(obj)
    # set by the server on every namespace; put here too so selecting by it never misses
    labels.setdefault("kubernetes.io/metadata.name", name)
    return Namespace(name=name, labels=labels)


def _selector(sel: Any) -> LabelSelector | None:
    if sel is None:
        return None
    if not isinstance(sel, Mapping):
        raise SelectorError("not an object")
    return label_selector_from_object(sel)


def _network(text: Any) -> IPv4Net:
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"not a CIDR: {text!r}")
    net = ipaddress.ip_network(text, strict=False)
    if not isinstance(net, IPv4Net):
        raise ValueError("IPv6 is not served by this cluster")
    return net


def _peer(raw: Any) -> Peer | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        block = raw.get("ipBlock")
        if block is not None:
            if (
                not isinstance(block, Mapping)
                or raw.get("podSelector")
                or raw.get("namespaceSelector")
            ):
                return None
            net = _network(block.get("cidr"))
            excepts = tuple(_network(e) for e in block.get("except") or ())
            if any(not e.subnet_of(net) for e in excepts):
                return None
            return Peer(block=net, excepts=excepts)
        pods = _selector(raw.get("podSelector"))
        namespaces = _selector(raw.get("namespaceSelector"))
    except (SelectorError, ValueError, TypeError):
        return None
    if pods is None and namespaces is None:
        return None
    return Peer(pods=pods, namespaces=namespaces)


def _port_match(raw: Any) -> PortMatch | None:
    if not isinstance(raw, Mapping):
        return None
    proto = PROTOCOLS.get(str(raw.get("protocol") or "TCP"))
    if proto is None:
        return None
    port = raw.get("port")
    end = raw.get("endPort")
    if port is None:
        return PortMatch(proto) if end is None else None
    if isinstance(port, str):
        if end is not None or not port or len(port) > 15:
            return None
        return PortMatch(proto, name=port)
    first = _port(port)
    if first is None:
        return None
    if end is None:
        return PortMatch(proto, first, first)
    last = _port(end)
    if last is None or last < first:
        return None
    return PortMatch(proto, first, last)


def _rule(raw: Any, peers_key: str) -> Rule:
    if not isinstance(raw, Mapping):
        return Rule(peers=(), ports=())  # matches nothing
    raw_peers = raw.get(peers_key)
    raw_ports = raw.get("ports")
    peers: tuple[Peer, ...] | None = None
    if isinstance(raw_peers, list | tuple) and raw_peers:
        peers = tuple(p for p in map(_peer, raw_peers) if p is not None)
    elif raw_peers:
        peers = ()
    ports: tuple[PortMatch, ...] | None = None
    if isinstance(raw_ports, list | tuple) and raw_ports:
        ports = tuple(p for p in map(_port_match, raw_ports) if p is not None)
    elif raw_ports:
        ports = ()
    return Rule(peers=peers, ports=ports)


def policy_from_k8s(obj: Mapping[str, Any]) -> Policy:
    meta = _meta(obj)
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        spec = {}
    try:
        selector = _selector(spec.get("podSelector")) or EVERYTHING
    except (SelectorError, TypeError):
        selector = EVERYTHING  # fail closed: isolate the whole namespace
    egress_rules = spec.get("egress")
    types = spec.get("policyTypes")
    if not isinstance(types, list | tuple) or not types:
        types = ["Ingress", "Egress"] if egress_rules else ["Ingress"]

    def rules(key: str, peers_key: str) -> tuple[Rule, ...]:
        raw = spec.get(key)
        return tuple(_rule(r, peers_key) for r in raw) if isinstance(raw, list | tuple) else ()

    return Policy(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        selector=selector,
        ingress=rules("ingress", "from") if "Ingress" in types else None,
        egress=rules("egress", "to") if "Egress" in types else None,
    )
