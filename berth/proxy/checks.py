"""What one Service may bring to the node's nftables table, checked before rendering.

Every Service shares one ``nft -f`` transaction, so a single value nft refuses (an address
that is not IPv4, port 0 or 70000, a timeout of 0, two map elements with the same key) would
block every update on the node. The API server validates these objects too; the proxy does
not rely on it (an older server, a direct datastore write): a Service whose own object, or
whose endpoints, cannot be rendered is left out and named in a :class:`Rejected`, the others
are programmed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from berth.api.services import MAX_AFFINITY_SECONDS, is_port_number
from berth.proxy.model import (
    Endpoint,
    Service,
    ServiceKey,
    endpoints_from_k8s_endpoints,
    endpoints_from_slices,
    service_from_k8s,
    service_key,
)
from berth.proxy.render import PROTOCOLS


@dataclass(frozen=True)
class Rejected:
    """A Service left out of the table, and why (for the log and an Event on it)."""

    key: ServiceKey
    reason: str

    @property
    def namespace(self) -> str:
        return self.key.partition("/")[0]

    @property
    def name(self) -> str:
        return self.key.partition("/")[2]


def forwardable_ipv4(address: str) -> bool:
    """An IPv4 address the node may DNAT to: not loopback, link-local, multicast,
    unspecified or broadcast."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return not (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip == ipaddress.IPv4Address("255.255.255.255")
    )


def service_problem(svc: Service, service_cidr: str | None = None) -> str | None:
    """Why ``svc`` cannot be rendered, or ``None``. A ClusterIP outside ``service_cidr``
    (when given) would capture traffic for some other host, so it is refused too."""
    if svc.cluster_ip is not None:
        if not forwardable_ipv4(svc.cluster_ip):
            return f"clusterIP {svc.cluster_ip!r} is not a usable IPv4 address"
        if service_cidr and ipaddress.IPv4Address(svc.cluster_ip) not in ipaddress.IPv4Network(
            service_cidr, strict=False
        ):
            return f"clusterIP {svc.cluster_ip} is outside the service CIDR {service_cidr}"
    for ip in svc.load_balancer_ips:
        if not forwardable_ipv4(ip):
            return f"load-balancer ingress {ip!r} is not a usable IPv4 address"
    if not 0 < svc.affinity_timeout_seconds <= MAX_AFFINITY_SECONDS:
        return (
            f"sessionAffinityConfig.clientIP.timeoutSeconds {svc.affinity_timeout_seconds} is"
            f" not in 1..{MAX_AFFINITY_SECONDS}"
        )
    seen: set[tuple[str, int]] = set()
    names: set[str] = set()
    for p in svc.ports:
        if not is_port_number(p.port):
            return f"port {p.port!r} is not in 1..65535"
        if p.node_port is not None and not is_port_number(p.node_port):
            return f"nodePort {p.node_port!r} is not in 1..65535"
        proto = p.protocol.upper()
        if (proto, p.port) in seen:
            return f"port {p.port}/{proto} is listed twice"
        if p.name in names:
            return f"port name {p.name!r} is listed twice"
        if svc.health_check_node_port is not None and not is_port_number(
            svc.health_check_node_port
        ):
            return f"healthCheckNodePort {svc.health_check_node_port!r} is not in 1..65535"
        seen.add((proto, p.port))
        names.add(p.name)
    return None


def endpoints_problem(endpoints: Sequence[Endpoint]) -> str | None:
    """Why these endpoints of one Service cannot be rendered, or ``None``."""
    for ep in endpoints:
        if not forwardable_ipv4(ep.ip):
            return f"endpoint address {ep.ip!r} is not a forwardable IPv4 address"
        for name, port in ep.ports.items():
            if not is_port_number(port):
                return f"endpoint port {name or '(unnamed)'}={port!r} is not in 1..65535"
    return None


def _object_key(obj: Mapping[str, Any]) -> ServiceKey:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return service_key(str(meta.get("namespace") or "default"), str(meta.get("name") or "?"))


@dataclass
class Checked:
    """The renderable Services and their endpoints, and what was left out."""

    services: list[Service]
    endpoints: dict[ServiceKey, list[Endpoint]]
    rejected: list[Rejected]

    def without(self, keys: Iterable[ServiceKey], reason: str) -> Checked:
        """The same with ``keys`` left out too (each rejected with ``reason``)."""
        drop = set(keys)
        return Checked(
            [s for s in self.services if s.key not in drop],
            {k: v for k, v in self.endpoints.items() if k not in drop},
            [*self.rejected, *(Rejected(k, reason) for k in sorted(drop))],
        )


def _everything(_ip: str) -> bool:
    return True


def _services(
    objects: Iterable[Mapping[str, Any]],
    service_cidr: str | None,
    lb_allowed: Callable[[str], bool] = _everything,
) -> tuple[list[Service], list[Rejected]]:
    """``lb_allowed`` filters the load-balancer addresses of the Services' status."""
    services: list[Service] = []
    rejected: list[Rejected] = []
    for obj in objects:
        try:
            svc = service_from_k8s(obj)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            rejected.append(Rejected(_object_key(obj), f"malformed Service: {exc!r}"))
            continue
        if svc is None:
            continue
        if svc.load_balancer_ips:
            allowed = tuple(ip for ip in dict.fromkeys(svc.load_balancer_ips) if lb_allowed(ip))
            svc = replace(svc, load_balancer_ips=allowed)
        problem = service_problem(svc, service_cidr)
        if problem is not None:
            rejected.append(Rejected(svc.key, problem))
        else:
            services.append(svc)
    return services, rejected


def _without_conflicts(services: list[Service]) -> tuple[list[Service], list[Rejected]]:
    """Two Services may not claim one ClusterIP port or one NodePort (nft refuses duplicate
    map keys): the first by namespace/name keeps it, the other is left out."""
    ips: dict[tuple[str, str, int], ServiceKey] = {}
    node_ports: dict[tuple[str, int], ServiceKey] = {}
    kept: list[Service] = []
    rejected: list[Rejected] = []
    for svc in sorted(services, key=lambda s: s.key):
        claims = [
            (
                p.protocol.upper(),
                p.port,
                p.node_port if svc.type in ("NodePort", "LoadBalancer") else None,
            )
            for p in svc.ports
            if p.protocol.upper() in PROTOCOLS
        ]
        addresses = list(dict.fromkeys([str(svc.cluster_ip), *svc.load_balancer_ips]))
        clash = next(
            (
                f"{ip}:{port}/{proto} is also claimed by Service {ips[key]}"
                for proto, port, _ in claims
                for ip in addresses
                if (key := (ip, proto, port)) in ips
            ),
            None,
        ) or next(
            (
                f"nodePort {np}/{proto} is also claimed by Service {node_ports[(proto, np)]}"
                for proto, _, np in claims
                if np is not None and (proto, np) in node_ports
            ),
            None,
        )
        if clash is not None:
            rejected.append(Rejected(svc.key, clash))
            continue
        for proto, port, np in claims:
            for ip in addresses:
                ips[(ip, proto, port)] = svc.key
            if np is not None:
                node_ports[(proto, np)] = svc.key
        kept.append(svc)
    return kept, rejected


def _checked(
    services: list[Service],
    rejected: list[Rejected],
    endpoints: dict[ServiceKey, list[Endpoint]],
) -> Checked:
    kept: list[Service] = []
    for svc in services:
        problem = endpoints_problem(endpoints.get(svc.key, ()))
        if problem is not None:
            rejected.append(Rejected(svc.key, problem))
        else:
            kept.append(svc)
    kept, clashes = _without_conflicts(kept)
    keys = {s.key for s in kept}
    return Checked(kept, {k: v for k, v in endpoints.items() if k in keys}, rejected + clashes)


def check_with_endpoints(
    service_objects: Iterable[Mapping[str, Any]],
    endpoints_objects: Iterable[Mapping[str, Any]],
    *,
    service_cidr: str | None = None,
    lb_allowed: Callable[[str], bool] = _everything,
) -> Checked:
    """Services + ``v1/Endpoints`` objects, each converted and checked on its own."""
    services, rejected = _services(service_objects, service_cidr, lb_allowed)
    endpoints: dict[ServiceKey, list[Endpoint]] = {}
    for obj in endpoints_objects:
        try:
            key, eps = endpoints_from_k8s_endpoints(obj)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            key = _object_key(obj)
            rejected.append(Rejected(key, f"malformed Endpoints: {exc!r}"))
            services = [s for s in services if s.key != key]
            continue
        endpoints[key] = eps
    return _checked(services, rejected, endpoints)


def check_with_slices(
    service_objects: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    *,
    service_cidr: str | None = None,
    lb_allowed: Callable[[str], bool] = _everything,
) -> Checked:
    """Services + EndpointSlices, each converted and checked on its own."""
    services, rejected = _services(service_objects, service_cidr, lb_allowed)
    endpoints: dict[ServiceKey, list[Endpoint]] = {}
    for sl in slices:
        try:
            by_service = endpoints_from_slices([sl])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            labels = (sl.get("metadata") or {}).get("labels") or {}
            ns = str((sl.get("metadata") or {}).get("namespace") or "default")
            key = service_key(ns, str(labels.get("kubernetes.io/service-name") or "?"))
            rejected.append(Rejected(key, f"malformed EndpointSlice: {exc!r}"))
            services = [s for s in services if s.key != key]
            continue
        for key, eps in by_service.items():
            endpoints.setdefault(key, []).extend(eps)
    return _checked(services, rejected, endpoints)
