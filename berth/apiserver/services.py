"""Service address bookkeeping: ClusterIPs and NodePorts allocated, kept, released.

Allocation happens when a Service is created or its type changes; addresses are released when
the Service is deleted or stops using them. State is rebuilt from the stored Services at
start (:meth:`ServiceAddresses.mark`).
"""

from __future__ import annotations

from berth.api.meta import Obj, get_path

from .allocators import IPAllocator, PortAllocator
from .errors import ApiError

Allocation = tuple[list[str], list[int]]


class ServiceAddresses:
    def __init__(self, ips: IPAllocator, ports: PortAllocator) -> None:
        self.ips = ips
        self.ports = ports

    def mark(self, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        self.ips.mark(spec.get("clusterIP"))
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                self.ports.mark(p.get("nodePort"))

    def allocate(self, obj: Obj, old: Obj | None = None) -> tuple[list[str], list[int]]:
        """Allocate a ClusterIP and NodePorts; returns what was newly taken (for rollback)."""
        spec = obj.setdefault("spec", {})
        ips: list[str] = []
        ports: list[int] = []
        old_spec = (old or {}).get("spec") or {}
        try:
            stype = spec.get("type", "ClusterIP")
            if stype == "ExternalName":
                spec.pop("clusterIP", None)
            elif old is not None and old_spec.get("clusterIP"):
                wanted = spec.get("clusterIP")
                if wanted not in (None, "", old_spec["clusterIP"]):
                    raise ApiError(
                        422,
                        "Invalid",
                        f'Service "{get_path(obj, "metadata", "name")}" is invalid: spec.clusterIP:'
                        " Invalid value: field is immutable",
                    )
                spec["clusterIP"] = old_spec["clusterIP"]
            elif spec.get("clusterIP") == "None":
                pass
            elif spec.get("clusterIP"):
                self.ips.reserve(spec["clusterIP"])
                ips.append(spec["clusterIP"])
            else:
                spec["clusterIP"] = self.ips.allocate()
                ips.append(spec["clusterIP"])
            if spec.get("clusterIP"):
                spec["clusterIPs"] = [spec["clusterIP"]]
            old_ports = {
                p.get("nodePort") for p in old_spec.get("ports") or [] if isinstance(p, dict)
            }
            for p in spec.get("ports") or []:
                if not isinstance(p, dict):
                    continue
                if stype in ("NodePort", "LoadBalancer"):
                    np = p.get("nodePort")
                    if np in old_ports and np:
                        continue
                    if isinstance(np, int) and np:
                        self.ports.reserve(np)
                    else:
                        p["nodePort"] = self.ports.allocate()
                    ports.append(p["nodePort"])
                else:
                    p.pop("nodePort", None)
        except BaseException:
            self.release((ips, ports))
            raise
        return ips, ports

    def release(self, allocated: tuple[list[str], list[int]] | None) -> None:
        if allocated is None:
            return
        for ip in allocated[0]:
            self.ips.release(ip)
        for port in allocated[1]:
            self.ports.release(port)

    def freed(self, old: Obj, new: Obj | None) -> tuple[list[str], list[int]]:
        """Addresses and ports ``old`` held that ``new`` (None = deleted) no longer holds."""
        old_spec = old.get("spec") or {}
        new_spec = (new or {}).get("spec") or {}
        ips = [
            ip
            for ip in [old_spec.get("clusterIP")]
            if isinstance(ip, str) and ip != new_spec.get("clusterIP")
        ]
        new_ports = {p.get("nodePort") for p in new_spec.get("ports") or [] if isinstance(p, dict)}
        ports = [
            p["nodePort"]
            for p in old_spec.get("ports") or []
            if isinstance(p, dict)
            and isinstance(p.get("nodePort"), int)
            and p["nodePort"] not in new_ports
        ]
        return ips, ports
