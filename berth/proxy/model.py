"""Services and endpoints as the proxy sees them, and conversion from Kubernetes objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NewType

from berth.api.loadbalancers import ingress_ips, local_traffic

ServiceKey = NewType("ServiceKey", str)
"""``namespace/name``."""

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800


def service_key(namespace: str, name: str) -> ServiceKey:
    return ServiceKey(f"{namespace}/{name}")


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: str = "TCP"
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ip: str | None
    ports: tuple[ServicePort, ...]
    type: str = "ClusterIP"
    session_affinity: str = "None"
    affinity_timeout_seconds: int = DEFAULT_AFFINITY_TIMEOUT
    # status.loadBalancer.ingress addresses (LoadBalancer Services), forwarded like NodePorts
    load_balancer_ips: tuple[str, ...] = ()
    # externalTrafficPolicy Local: outside traffic goes only to this node's endpoints, unNATed
    local_external: bool = False
    health_check_node_port: int | None = None

    @property
    def key(self) -> ServiceKey:
        return service_key(self.namespace, self.name)


@dataclass(frozen=True)
class Endpoint:
    """One backend address with its ports by service-port name."""

    ip: str
    ports: Mapping[str, int] = field(default_factory=dict)
    ready: bool = True
    node_name: str = ""


def service_from_k8s(obj: Mapping[str, Any]) -> Service | None:
    """A ``v1/Service`` as a :class:`Service`; ``None`` for headless and ExternalName ones."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    svc_type = str(spec.get("type") or "ClusterIP")
    cluster_ip = spec.get("clusterIP")
    if svc_type == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return None
    ports = tuple(
        ServicePort(
            name=str(p.get("name") or ""),
            port=int(p["port"]),
            protocol=str(p.get("protocol") or "TCP"),
            node_port=int(p["nodePort"]) if p.get("nodePort") else None,
        )
        for p in spec.get("ports") or []
    )
    affinity = str(spec.get("sessionAffinity") or "None")
    timeout = (
        ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    ) or DEFAULT_AFFINITY_TIMEOUT
    hc_port = spec.get("healthCheckNodePort")
    return Service(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta["name"]),
        cluster_ip=str(cluster_ip),
        ports=ports,
        type=svc_type,
        session_affinity=affinity,
        affinity_timeout_seconds=int(timeout),
        load_balancer_ips=tuple(ingress_ips(obj)) if svc_type == "LoadBalancer" else (),
        local_external=local_traffic(obj),
        health_check_node_port=int(hc_port) if hc_port and local_traffic(obj) else None,
    )


def endpoints_from_slices(
    slices: Iterable[Mapping[str, Any]],
) -> dict[ServiceKey, list[Endpoint]]:
    """Group ``discovery.k8s.io/v1`` EndpointSlices by service. Endpoints whose ``ready``
    condition is false are kept but marked not ready (the renderer skips them)."""
    out: dict[ServiceKey, list[Endpoint]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc or sl.get("addressType", "IPv4") != "IPv4":
            continue
        ports = {str(p.get("name") or ""): int(p["port"]) for p in sl.get("ports") or []}
        key = service_key(str(meta.get("namespace") or "default"), str(svc))
        for ep in sl.get("endpoints") or []:
            conditions = ep.get("conditions") or {}
            ready = conditions.get("ready")
            for address in ep.get("addresses") or []:
                out.setdefault(key, []).append(
                    Endpoint(
                        ip=str(address),
                        ports=ports,
                        ready=ready is not False,
                        node_name=str(ep.get("nodeName") or ""),
                    )
                )
    return out


def endpoints_from_k8s_endpoints(obj: Mapping[str, Any]) -> tuple[ServiceKey, list[Endpoint]]:
    """A ``v1/Endpoints`` object: ``addresses`` are ready, ``notReadyAddresses`` are not."""
    meta = obj.get("metadata") or {}
    key = service_key(str(meta.get("namespace") or "default"), str(meta["name"]))
    endpoints: list[Endpoint] = []
    for subset in obj.get("subsets") or []:
        ports = {str(p.get("name") or ""): int(p["port"]) for p in subset.get("ports") or []}
        for field_name, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(field_name) or []:
                endpoints.append(
                    Endpoint(
                        ip=str(address["ip"]),
                        ports=ports,
                        ready=ready,
                        node_name=str(address.get("nodeName") or ""),
                    )
                )
    return key, endpoints
