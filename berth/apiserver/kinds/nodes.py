"""Nodes: status written by their agents from the start, restricted updates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver import resourceproxy
from berth.apiserver.errors import FieldError
from berth.apiserver.nodevalidation import validate_node, validate_node_update
from berth.apiserver.selectors import field_string
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy


def _node_row(o: Obj) -> list[Cell]:
    status = o.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    ready = conds.get("Ready")
    state = "Ready" if ready == "True" else "NotReady" if ready == "False" else "Unknown"
    if get_path(o, "spec", "unschedulable"):
        state += ",SchedulingDisabled"
    roles: set[str] = set()
    for k, v in (get_path(o, "metadata", "labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k.split("/", 1)[1]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = status.get("nodeInfo") or {}
    addrs = status.get("addresses") or []

    def addr(kind: str) -> str:
        return next((a.get("address", "") for a in addrs if a.get("type") == kind), "<none>")

    return [
        name_of(o),
        state,
        ",".join(sorted(roles)) or "<none>",
        age(created(o)),
        info.get("kubeletVersion") or "",
        addr("InternalIP"),
        addr("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


NODE = Printer(
    (
        NAME,
        Column("Status", description="The status of the node"),
        Column("Roles", description="The roles of the node"),
        AGE,
        Column("Version", description="Kubelet Version reported by the node."),
        Column("Internal-IP", priority=1),
        Column("External-IP", priority=1),
        Column("OS-Image", priority=1),
        Column("Kernel-Version", priority=1),
        Column("Container-Runtime", priority=1),
    ),
    _node_row,
)


class NodeStrategy(KindStrategy):
    kind = "Node"
    endpoints = resourceproxy.NODE_PROXY
    empty_status: Mapping[str, Any] = {
        # daemonEndpoints and nodeInfo are structs (omitempty does not drop them); the
        # endpoint's Port and every NodeSystemInfo string have no omitempty.
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            f: ""
            for f in (
                "machineID",
                "systemUUID",
                "bootID",
                "kernelVersion",
                "osImage",
                "containerRuntimeVersion",
                "kubeletVersion",
                "kubeProxyVersion",
                "operatingSystem",
                "architecture",
            )
        },
    }
    field_selectors = {
        "spec.unschedulable": lambda o: field_string(bool(get_path(o, "spec", "unschedulable")))
    }
    columns = NODE

    def reset_status(self, rd: ResourceDef, obj: Obj) -> None:
        """A node agent registers its Node with its status: kept as created."""

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return validate_node(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return validate_node_update(old, new)
