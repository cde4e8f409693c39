"""Server-side ``meta.k8s.io Table`` rendering: the columns ``kubectl get`` prints.

kubectl asks for ``as=Table`` and prints the cells it gets, so the server formats every cell,
the Age included, exactly the way kube-apiserver's printers do. Columns with ``priority: 1``
appear only with ``-o wide``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from berth.api.meta import Obj, get_path, now, parse_time
from berth.api.resources import ResourceDef

from .selectors import selector_to_string

Cell = str | int | float | bool | None


def human_duration(seconds: float) -> str:
    """Duration as kubectl prints ages: ``5s``, ``3m2s``, ``45m``, ``4h``, ``2d3h``, ``400d``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def age(ts: Any, at: datetime | None = None) -> str:
    t = parse_time(ts) if isinstance(ts, str) else None
    if t is None:
        return "<unknown>"
    return human_duration(((at or now()) - t).total_seconds())


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str = "string"
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description or self.name,
            "priority": self.priority,
        }


@dataclass(frozen=True, slots=True)
class Printer:
    columns: tuple[Column, ...]
    row: Callable[[Obj], list[Cell]]


NAME = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE = Column(
    "Age",
    description="Time since the object was created.",
)


def _none(v: Any) -> str:
    return str(v) if v not in (None, "") else "<none>"


def _created(o: Obj) -> Any:
    return get_path(o, "metadata", "creationTimestamp")


def _name(o: Obj) -> str:
    return str(get_path(o, "metadata", "name") or "")


# --- pods --------------------------------------------------------------------------------------


def _pod_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    status = o.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = 0
    restarts = 0
    reason = status.get("reason") or status.get("phase") or ""
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    n_init = len(spec.get("initContainers") or [])
    for i, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount") or 0)
        st = cs.get("state") or {}
        term = st.get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif (st.get("waiting") or {}).get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + st["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            st = cs.get("state") or {}
            waiting, term, running = st.get("waiting"), st.get("terminated"), st.get("running")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                sig = term.get("signal")
                reason = f"Signal:{sig}" if sig else f"ExitCode:{term.get('exitCode', 0)}"
            elif running is not None and cs.get("ready"):
                has_running = True
                ready += 1
            elif running is not None:
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
    if get_path(o, "metadata", "deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_cell = f"{ok}/{len(gates)}"
    ip = status.get("podIP")
    return [
        _name(o),
        f"{ready}/{total}",
        reason,
        restarts,
        age(_created(o)),
        _none(ip),
        _none(spec.get("nodeName")),
        _none(status.get("nominatedNodeName")),
        gates_cell,
    ]


POD = Printer(
    (
        NAME,
        Column(
            "Ready", description="The aggregate readiness state of this pod for accepting traffic."
        ),
        Column("Status", description="The aggregate status of the containers in this pod."),
        Column(
            "Restarts",
            type="integer",
            description="The number of times the containers in this pod have been restarted.",
        ),
        AGE,
        Column("IP", priority=1, description="IP address allocated to the pod."),
        Column("Node", priority=1, description="Name of the Node this pod is assigned to."),
        Column(
            "Nominated Node",
            priority=1,
            description="Name of the Node where this pod is nominated to run.",
        ),
        Column("Readiness Gates", priority=1, description="Pod readiness gates."),
    ),
    _pod_row,
)


# --- nodes -------------------------------------------------------------------------------------


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
        _name(o),
        state,
        ",".join(sorted(roles)) or "<none>",
        age(_created(o)),
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


# --- workloads ---------------------------------------------------------------------------------


def _template_cells(o: Obj) -> list[Cell]:
    containers = get_path(o, "spec", "template", "spec", "containers") or []
    return [
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        selector_to_string(get_path(o, "spec", "selector")) or "<none>",
    ]


WIDE_TEMPLATE = (
    Column("Containers", priority=1, description="Names of each container in the template."),
    Column(
        "Images", priority=1, description="Images referenced by each container in the template."
    ),
    Column("Selector", priority=1, description="Label selector for pods."),
)


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _deploy_row(o: Obj) -> list[Cell]:
    st = o.get("status") or {}
    desired = get_path(o, "spec", "replicas")
    desired = 1 if desired is None else _int(desired)
    return [
        _name(o),
        f"{_int(st.get('readyReplicas'))}/{desired}",
        _int(st.get("updatedReplicas")),
        _int(st.get("availableReplicas")),
        age(_created(o)),
        *_template_cells(o),
    ]


DEPLOYMENT = Printer(
    (
        NAME,
        Column("Ready", description="Number of the pod with ready state"),
        Column(
            "Up-to-date",
            type="integer",
            description="Pods that have the desired template spec.",
        ),
        Column(
            "Available",
            type="integer",
            description="Pods ready for at least minReadySeconds.",
        ),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _deploy_row,
)


def _rs_row(o: Obj) -> list[Cell]:
    st = o.get("status") or {}
    desired = get_path(o, "spec", "replicas")
    return [
        _name(o),
        1 if desired is None else _int(desired),
        _int(st.get("replicas")),
        _int(st.get("readyReplicas")),
        age(_created(o)),
        *_template_cells(o),
    ]


REPLICASET = Printer(
    (
        NAME,
        Column("Desired", type="integer"),
        Column("Current", type="integer"),
        Column("Ready", type="integer"),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _rs_row,
)


def _ds_row(o: Obj) -> list[Cell]:
    st = o.get("status") or {}
    node_sel = get_path(o, "spec", "template", "spec", "nodeSelector") or {}
    return [
        _name(o),
        _int(st.get("desiredNumberScheduled")),
        _int(st.get("currentNumberScheduled")),
        _int(st.get("numberReady")),
        _int(st.get("updatedNumberScheduled")),
        _int(st.get("numberAvailable")),
        ",".join(f"{k}={v}" for k, v in sorted(node_sel.items())) or "<none>",
        age(_created(o)),
        *_template_cells(o),
    ]


DAEMONSET = Printer(
    (
        NAME,
        Column("Desired", type="integer"),
        Column("Current", type="integer"),
        Column("Ready", type="integer"),
        Column("Up-to-date", type="integer"),
        Column("Available", type="integer"),
        Column("Node Selector"),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _ds_row,
)


# --- services and friends ----------------------------------------------------------------------


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
        _name(o),
        stype,
        spec.get("clusterIP") or "<none>",
        external,
        ",".join(ports) or "<none>",
        age(_created(o)),
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
    return [_name(o), shown or "<none>", age(_created(o))]


ENDPOINTS = Printer((NAME, Column("Endpoints"), AGE), _endpoints_row)

NAMESPACE = Printer(
    (NAME, Column("Status"), AGE),
    lambda o: [_name(o), get_path(o, "status", "phase") or "Active", age(_created(o))],
)
CONFIGMAP = Printer(
    (NAME, Column("Data", type="integer"), AGE),
    lambda o: [
        _name(o),
        len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        age(_created(o)),
    ],
)
SECRET = Printer(
    (NAME, Column("Type"), Column("Data", type="integer"), AGE),
    lambda o: [
        _name(o),
        o.get("type") or "Opaque",
        len(o.get("data") or {}),
        age(_created(o)),
    ],
)
SERVICEACCOUNT = Printer(
    (NAME, Column("Secrets", type="integer"), AGE),
    lambda o: [_name(o), len(o.get("secrets") or []), age(_created(o))],
)
LEASE = Printer(
    (NAME, Column("Holder"), AGE),
    lambda o: [_name(o), get_path(o, "spec", "holderIdentity") or "", age(_created(o))],
)


def _event_row(o: Obj) -> list[Cell]:
    inv = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or _created(o)
    first = o.get("firstTimestamp") or o.get("eventTime") or _created(o)
    src = o.get("source") or {}
    source = src.get("component") or o.get("reportingComponent") or ""
    if src.get("host"):
        source = f"{source}, {src['host']}"
    return [
        age(last),
        o.get("type") or "",
        o.get("reason") or "",
        f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
        o.get("message") or "",
        inv.get("fieldPath") or "",
        source,
        age(first),
        _int(o.get("count")) or 1,
        _name(o),
    ]


EVENT = Printer(
    (
        Column("Last Seen"),
        Column("Type"),
        Column("Reason"),
        Column("Object"),
        Column("Message"),
        Column("Subobject", priority=1),
        Column("Source", priority=1),
        Column("First Seen", priority=1),
        Column("Count", type="integer", priority=1),
        Column("Name", priority=1, format="name"),
    ),
    _event_row,
)


def _subjects(o: Obj, kind: str) -> str:
    names = []
    for s in o.get("subjects") or []:
        if s.get("kind") == kind:
            if kind == "ServiceAccount":
                names.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
            else:
                names.append(str(s.get("name", "")))
    return ", ".join(names)


def _binding_row(o: Obj) -> list[Cell]:
    ref = o.get("roleRef") or {}
    return [
        _name(o),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        age(_created(o)),
        _subjects(o, "User"),
        _subjects(o, "Group"),
        _subjects(o, "ServiceAccount"),
    ]


BINDING = Printer(
    (
        NAME,
        Column("Role"),
        AGE,
        Column("Users", priority=1),
        Column("Groups", priority=1),
        Column("ServiceAccounts", priority=1),
    ),
    _binding_row,
)


def _pdb_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    return [
        _name(o),
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        _int(get_path(o, "status", "disruptionsAllowed")),
        age(_created(o)),
    ]


PDB = Printer(
    (
        NAME,
        Column("Min Available"),
        Column("Max Unavailable"),
        Column("Allowed Disruptions", type="integer"),
        AGE,
    ),
    _pdb_row,
)

DEFAULT = Printer(
    (NAME, Column("Created At", type="date", description="Creation timestamp")),
    lambda o: [_name(o), _created(o) or ""],
)

PRINTERS: dict[str, Printer] = {
    "Pod": POD,
    "Node": NODE,
    "Deployment": DEPLOYMENT,
    "ReplicaSet": REPLICASET,
    "DaemonSet": DAEMONSET,
    "Service": SERVICE,
    "Endpoints": ENDPOINTS,
    "Namespace": NAMESPACE,
    "ConfigMap": CONFIGMAP,
    "Secret": SECRET,
    "ServiceAccount": SERVICEACCOUNT,
    "Lease": LEASE,
    "Event": EVENT,
    "RoleBinding": BINDING,
    "ClusterRoleBinding": BINDING,
    "PodDisruptionBudget": PDB,
}


def printer_for(rd: ResourceDef) -> Printer:
    return PRINTERS.get(rd.kind, DEFAULT)


def _row_object(o: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return o
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata") or {},
    }


def to_table(
    rd: ResourceDef,
    objs: list[Obj],
    *,
    table_api_version: str,
    resource_version: str,
    include_object: str = "Metadata",
    with_columns: bool = True,
    continue_token: str = "",
) -> Obj:
    """Render ``objs`` as a Table; ``with_columns=False`` for watch events after the first."""
    printer = printer_for(rd)
    rows = []
    for o in objs:
        row: Obj = {"cells": printer.row(o)}
        obj = _row_object(o, include_object)
        if obj is not None:
            row["object"] = obj
        rows.append(row)
    meta: Obj = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    table: Obj = {"kind": "Table", "apiVersion": table_api_version, "metadata": meta}
    table["columnDefinitions"] = [c.definition() for c in printer.columns] if with_columns else None
    table["rows"] = rows
    return table
