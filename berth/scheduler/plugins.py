"""Filters and scores. A filter returns the reasons a node cannot take a pod (empty = fits),
worded as kube-scheduler words them, so the FailedScheduling summary reads the same; a score
returns 0..100 (higher is better)."""

from __future__ import annotations

from collections.abc import Mapping

from berth.api.scheduling import Taint, first_untolerated
from berth.scheduler.nodeinfo import ANY_IP, NodeInfo, PodInfo

UNSCHEDULABLE = "node(s) were unschedulable"
NOT_READY = "node(s) were not ready"
SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
PORTS_IN_USE = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
INSUFFICIENT_CPU = "Insufficient cpu"
INSUFFICIENT_MEMORY = "Insufficient memory"
NOT_READY_KEY = "node.kubernetes.io/not-ready"
UNREACHABLE_KEY = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_KEY = "node.kubernetes.io/unschedulable"


def _tolerates_key(pod: PodInfo, key: str) -> bool:
    return any(t.tolerates(Taint(key, "", "NoSchedule")) for t in pod.tolerations)


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> str | None:
    if node.unschedulable and not _tolerates_key(pod, UNSCHEDULABLE_KEY):
        return UNSCHEDULABLE
    return None


def node_ready(pod: PodInfo, node: NodeInfo) -> str | None:
    if node.ready:
        return None
    if _tolerates_key(pod, NOT_READY_KEY) or _tolerates_key(pod, UNREACHABLE_KEY):
        return None
    return NOT_READY


def taints(pod: PodInfo, node: NodeInfo) -> str | None:
    if not node.taints:
        return None
    # not-ready/unreachable taints are judged by node_ready, which words them better.
    relevant = tuple(
        t
        for t in node.schedule_taints
        if t.key not in (NOT_READY_KEY, UNREACHABLE_KEY, UNSCHEDULABLE_KEY)
    )
    bad = first_untolerated(pod.tolerations, relevant)
    return f"node(s) had untolerated taint {bad}" if bad is not None else None


def node_affinity(pod: PodInfo, node: NodeInfo) -> str | None:
    return None if pod.affinity.matches(node.labels, node.name) else SELECTOR_MISMATCH


def host_ports(pod: PodInfo, node: NodeInfo) -> str | None:
    for proto, ip, port in pod.host_ports:
        for (uproto, uip, uport), n in node.ports.items():
            if n <= 0 or uport != port or uproto != proto:
                continue
            if ip == uip or ANY_IP in (ip, uip):
                return PORTS_IN_USE
    return None


def resources(pod: PodInfo, node: NodeInfo) -> list[str]:
    reasons = []
    if node.pod_count + 1 > node.alloc_pods:
        reasons.append(TOO_MANY_PODS)
    if pod.cpu and node.req_cpu + pod.cpu > node.alloc_cpu:
        reasons.append(INSUFFICIENT_CPU)
    if pod.memory and node.req_memory + pod.memory > node.alloc_memory:
        reasons.append(INSUFFICIENT_MEMORY)
    return reasons


def filter_node(pod: PodInfo, node: NodeInfo) -> list[str]:
    """All filters in kube's order; stops at the first failing one (as the framework does)."""
    for check in (node_unschedulable, node_ready, taints):
        reason = check(pod, node)
        if reason:
            return [reason]
    if not pod.simple:
        for check in (node_affinity, host_ports):
            reason = check(pod, node)
            if reason:
                return [reason]
    return resources(pod, node)


# Pods without requests still count for spreading/least-allocated, as kube's defaults do.
DEFAULT_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


def least_allocated(pod: PodInfo, node: NodeInfo) -> float:
    cpu = pod.cpu or DEFAULT_CPU
    mem = pod.memory or DEFAULT_MEMORY
    score = 0.0
    if node.alloc_cpu:
        score += max(0.0, (node.alloc_cpu - node.req_cpu - cpu) * 100 / node.alloc_cpu)
    if node.alloc_memory:
        score += max(0.0, (node.alloc_memory - node.req_memory - mem) * 100 / node.alloc_memory)
    return score / 2


def spread(pod: PodInfo, node: NodeInfo, max_count: int) -> float:
    """Fewer pods of the same owner on the node score higher."""
    if not pod.owner or max_count == 0:
        return 100.0
    return 100.0 * (max_count - node.owners.get(pod.owner, 0)) / max_count


SPREAD_WEIGHT = 2.0


def fits_plain(pod: PodInfo, node: NodeInfo) -> bool:
    """The whole filter chain for a simple pod on a plain node: resources only (inlined, as
    this runs for hundreds of nodes per pod)."""
    return not (
        node.pod_count >= node.alloc_pods
        or (pod.cpu and node.req_cpu + pod.cpu > node.alloc_cpu)
        or (pod.memory and node.req_memory + pod.memory > node.alloc_memory)
    )


def best_nodes(pod: PodInfo, feasible: list[NodeInfo]) -> list[NodeInfo]:
    """The feasible nodes with the highest total score (least allocated + spreading);
    the same arithmetic as :func:`least_allocated` and :func:`spread`, in one pass."""
    cpu = pod.cpu or DEFAULT_CPU
    mem = pod.memory or DEFAULT_MEMORY
    owner = pod.owner
    max_owned = max((n.owners.get(owner, 0) for n in feasible), default=0) if owner else 0
    best: list[NodeInfo] = []
    best_score = -1.0
    for node in feasible:
        ac, am = node.alloc_cpu, node.alloc_memory
        score = 0.0
        if ac:
            free = ac - node.req_cpu - cpu
            if free > 0:
                score += free * 100 / ac
        if am:
            free = am - node.req_memory - mem
            if free > 0:
                score += free * 100 / am
        score /= 2
        if owner and max_owned:
            score += SPREAD_WEIGHT * 100.0 * (max_owned - node.owners.get(owner, 0)) / max_owned
        elif owner:
            score += SPREAD_WEIGHT * 100.0
        if score > best_score:
            best, best_score = [node], score
        elif score == best_score:
            best.append(node)
    return best


def summarize(total: int, reasons: Mapping[str, int]) -> str:
    """``0/3 nodes are available: 1 node(s) had untolerated taint {a: b}, 2 Insufficient cpu.``"""
    # kube-scheduler sorts the formatted "<count> <reason>" strings, count included.
    parts = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
    if not parts:
        return f"0/{total} nodes are available."
    return f"0/{total} nodes are available: {parts}."
