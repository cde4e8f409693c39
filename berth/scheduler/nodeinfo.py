"""Precomputed scheduling views of nodes and pods, and incremental accounting.

Everything the filters and scores need is computed once per object change (not once per
pod-node pair): a :class:`PodInfo` holds a pod's summed requests, selectors, tolerations and host
ports; a :class:`NodeInfo` holds a node's allocatable, labels, taints, readiness, and the
running totals of what is bound to it. Binding a pod adds its requests to the node's totals;
deleting it subtracts them — no rescans.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from berth.api.quantity import int_value, milli_value
from berth.api.scheduling import (
    RequiredNodeAffinity,
    Taint,
    Toleration,
    node_taints,
    pod_tolerations,
    required_node_affinity,
)
from berth.machinery.objects import Frozen, controller_ref, key_of, meta

DEFAULT_POD_LIMIT = 110
ANY_IP = "0.0.0.0"  # noqa: S104 - a host port without hostIP conflicts with every address


@dataclass(slots=True)
class PodInfo:
    key: str
    uid: str
    cpu: int  # millicores
    memory: int  # bytes
    affinity: RequiredNodeAffinity  # nodeSelector and required node affinity
    tolerations: tuple[Toleration, ...]
    host_ports: tuple[tuple[str, str, int], ...]  # (protocol, hostIP, port)
    owner: str  # controller uid ("" when none): used for spreading
    node_name: str = ""
    priority: int = 0  # spec.priority, set by Priority admission
    preempts: bool = True  # spec.preemptionPolicy is not Never

    @property
    def simple(self) -> bool:
        return self.affinity.empty and not self.host_ports


def _requests(containers: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    cpu = mem = 0
    for c in containers:
        req = (c.get("resources") or {}).get("requests") or {}
        if "cpu" in req:
            cpu += milli_value(req["cpu"])
        if "memory" in req:
            mem += int_value(req["memory"])
    return cpu, mem


def pod_info(pod: Frozen) -> PodInfo:
    spec = pod.get("spec") or {}
    cpu, mem = _requests(spec.get("containers") or ())
    for init in spec.get("initContainers") or ():
        icpu, imem = _requests([init])
        cpu, mem = max(cpu, icpu), max(mem, imem)
    overhead = spec.get("overhead") or {}
    if "cpu" in overhead:
        cpu += milli_value(overhead["cpu"])
    if "memory" in overhead:
        mem += int_value(overhead["memory"])
    ports = tuple(
        (str(p.get("protocol") or "TCP"), str(p.get("hostIP") or ANY_IP), int(p["hostPort"]))
        for c in spec.get("containers") or ()
        for p in c.get("ports") or ()
        if p.get("hostPort")
    )
    ref = controller_ref(pod)
    priority = spec.get("priority") or 0
    return PodInfo(
        key=key_of(pod),
        uid=str(meta(pod).get("uid", "")),
        cpu=cpu,
        memory=mem,
        affinity=required_node_affinity(spec),
        tolerations=pod_tolerations(spec),
        host_ports=ports,
        owner=str(ref.get("uid")) if ref is not None else "",
        node_name=str(spec.get("nodeName") or ""),
        priority=priority if isinstance(priority, int) else 0,
        preempts=spec.get("preemptionPolicy") != "Never",
    )


@dataclass(slots=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    unschedulable: bool
    ready: bool
    alloc_cpu: int
    alloc_memory: int
    alloc_pods: int
    req_cpu: int = 0
    req_memory: int = 0
    pod_count: int = 0
    ports: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    pods: dict[str, PodInfo] = field(default_factory=dict)  # by pod uid
    plain: bool = False  # schedulable, ready, no NoSchedule/NoExecute taints (see refresh)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Recompute :attr:`plain`: on a plain node only resources can reject a simple pod,
        which lets the scheduler skip the other filters."""
        self.plain = self.ready and not self.unschedulable and not self.schedule_taints

    @property
    def schedule_taints(self) -> tuple[Taint, ...]:
        return tuple(t for t in self.taints if t.effect in ("NoSchedule", "NoExecute"))

    def add_pod(self, pod: PodInfo) -> None:
        if pod.uid in self.pods:
            return
        self.pods[pod.uid] = pod
        self.req_cpu += pod.cpu
        self.req_memory += pod.memory
        self.pod_count += 1
        self.ports.update(pod.host_ports)
        if pod.owner:
            self.owners[pod.owner] += 1

    def remove_pod(self, uid: str) -> PodInfo | None:
        pod = self.pods.pop(uid, None)
        if pod is None:
            return None
        self.req_cpu -= pod.cpu
        self.req_memory -= pod.memory
        self.pod_count -= 1
        self.ports.subtract(pod.host_ports)
        self.ports += Counter()  # drop zero counts
        if pod.owner:
            self.owners[pod.owner] -= 1
            if self.owners[pod.owner] <= 0:
                del self.owners[pod.owner]
        return pod

    def update_node(self, other: NodeInfo) -> None:
        """Take ``other``'s node-level fields, keeping this node's accounting."""
        self.labels = other.labels
        self.taints = other.taints
        self.unschedulable = other.unschedulable
        self.ready = other.ready
        self.alloc_cpu = other.alloc_cpu
        self.alloc_memory = other.alloc_memory
        self.alloc_pods = other.alloc_pods
        self.refresh()


def node_info(node: Frozen) -> NodeInfo:
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    return NodeInfo(
        name=str(meta(node).get("name")),
        labels=dict(meta(node).get("labels") or {}),
        taints=node_taints(node),
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready,
        alloc_cpu=milli_value(alloc["cpu"]) if "cpu" in alloc else 0,
        alloc_memory=int_value(alloc["memory"]) if "memory" in alloc else 0,
        alloc_pods=int_value(alloc["pods"]) if "pods" in alloc else DEFAULT_POD_LIMIT,
    )
