"""Services (ClusterIP and NodePort allocation) and Endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver import resourceproxy, service_families
from berth.apiserver.errors import FieldError
from berth.apiserver.service_validation import (
    validate_endpoints,
    validate_service,
    validate_service_update,
)
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of
from berth.apiserver.validation import LABEL

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.registry import Registry

DEFAULT_AFFINITY_SECONDS = 10800
"""ClientIP affinity timeout a Service gets when it names none (upstream's
DefaultClientIPServiceAffinitySeconds; the proxy assumes the same)."""


def _svc_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            ports.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            ports.append(f"{p.get('port')}/{proto}")
    if stype == "ExternalName":
        external = spec.get("externalName") or "<none>"
    elif stype == "LoadBalancer":
        ing = get_path(o, "status", "loadBalancer", "ingress") or []
        ips = [i.get("ip") or i.get("hostname") for i in ing]
        external = ",".join(str(x) for x in ips if x) or "<pending>"
    else:
        external = ",".join(spec.get("externalIPs") or []) or "<none>"
    sel = spec.get("selector") or {}
    return [
        name_of(o),
        stype,
        spec.get("clusterIP") or "<none>",
        external,
        ",".join(ports) or "<none>",
        age(created(o)),
        ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>",
    ]


SERVICE = Printer(
    (
        NAME,
        Column("Type"),
        Column("Cluster-IP"),
        Column("External-IP"),
        Column("Port(s)"),
        AGE,
        Column("Selector", priority=1),
    ),
    _svc_row,
)


def _endpoints_row(o: Obj) -> list[Cell]:
    parts: list[str] = []
    for subset in o.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for addr in subset.get("addresses") or []:
            for p in ports:
                ip = addr.get("ip", "")
                parts.append(f"{ip}:{p['port']}" if p.get("port") else ip)
    shown = ",".join(parts[:3])
    if len(parts) > 3:
        shown += f" + {len(parts) - 3} more..."
    return [name_of(o), shown or "<none>", age(created(o))]


ENDPOINTS = Printer((NAME, Column("Endpoints"), AGE), _endpoints_row)


def drop_type_dependent_fields(new: Obj, old: Obj) -> None:
    """A Service that stops needing a health-check node port (no longer a LoadBalancer with
    externalTrafficPolicy Local) loses the one it carried over unchanged, and a Service that
    stops being a LoadBalancer loses allocateLoadBalancerNodePorts and loadBalancerClass
    (when unchanged), as upstream drops
    type-dependent fields: ``kubectl patch`` of the type alone must not be refused for them."""
    hc = new.get("healthCheckNodePort")
    still_local = new.get("type") == "LoadBalancer" and new.get("externalTrafficPolicy") == "Local"
    if hc and not still_local and hc == old.get("healthCheckNodePort"):
        new.pop("healthCheckNodePort", None)
    if new.get("type") != "LoadBalancer":
        for f in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if f in new and new.get(f) == old.get(f):
                new.pop(f, None)


class ServiceStrategy(KindStrategy):
    kind = "Service"
    endpoints = resourceproxy.SERVICE_PROXY
    empty_status: Mapping[str, Any] = {"loadBalancer": {}}
    name_rule = LABEL
    delete_returns_object = True
    columns = SERVICE

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec["sessionAffinity"] == "None":
                spec.pop("sessionAffinityConfig", None)  # upstream drops it, no error
            elif spec["sessionAffinity"] == "ClientIP":
                config = spec.get("sessionAffinityConfig")
                if config is None or (
                    isinstance(config, dict)
                    and get_path(config, "clientIP", "timeoutSeconds") is None
                ):
                    spec["sessionAffinityConfig"] = {
                        "clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_SECONDS}
                    }
            for p in spec.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
                    p.setdefault("targetPort", p.get("port"))
            service_families.fill_defaults(spec)

    def keep_on_update(self, rd: ResourceDef, old: Obj, new: Obj) -> None:
        super().keep_on_update(rd, old, new)
        new_spec, old_spec = new.get("spec"), old.get("spec")
        if isinstance(new_spec, dict) and isinstance(old_spec, dict):
            service_families.carry_on_update(new_spec, old_spec)
            drop_type_dependent_fields(new_spec, old_spec)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        spec = obj.get("spec")
        families = service_families.validate(spec) if isinstance(spec, dict) else []
        return validate_service(obj) + families

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return validate_service_update(old, new)

    async def reserve(self, reg: Registry, new: Obj, old: Obj | None, *, dry_run: bool) -> Any:
        return await reg.services.allocate(new, old, dry_run=dry_run)

    async def unreserve(self, reg: Registry, reserved: Any, *, keep: Obj | None = None) -> None:
        await reg.services.release(reserved, keep=keep)

    async def after_update(self, reg: Registry, rd: ResourceDef, old: Obj, new: Obj) -> None:
        await reg.services.release(reg.services.freed(old, new))

    async def after_delete(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        await reg.services.release(reg.services.freed(obj, None))


class EndpointsStrategy(KindStrategy):
    kind = "Endpoints"
    specless = True
    upsert = True
    columns = ENDPOINTS

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return validate_endpoints(obj)
