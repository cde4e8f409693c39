"""Preemption (kube-scheduler's DefaultPreemption, simplified): when a pod fits no node,
find a node where removing pods of lower priority would let it fit, and the fewest, least
important such pods to remove.

Per node: take away every pod of lower priority; if the pod still does not fit, the node is
no candidate. Otherwise give pods back, most important first — those whose eviction would
break a PodDisruptionBudget before the others — keeping each that still leaves room: the
rest are the victims. Among candidate nodes the one chosen breaks the fewest budgets, then
has the least important most-important victim, then the smallest sum of victim priorities,
then the fewest victims (upstream's order, without its start-time tie-break).

Pure functions over the scheduler's :class:`~berth.scheduler.nodeinfo.NodeInfo` views: the
scheduler nominates the node, deletes the victims (gracefully) and schedules the pod when
they are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from berth.scheduler import plugins
from berth.scheduler.nodeinfo import NodeInfo, PodInfo

Violations = Callable[[list[PodInfo]], set[str]]
"""Given victims (in the order they would go), the uids of those whose eviction would break
a PodDisruptionBudget."""


@dataclass(frozen=True, slots=True)
class Candidate:
    node: str
    victims: tuple[PodInfo, ...]
    violations: int

    def rank(self) -> tuple[int, int, int, int]:
        top = max((v.priority for v in self.victims), default=-(2**31))
        return (self.violations, top, sum(v.priority for v in self.victims), len(self.victims))


def with_pods(node: NodeInfo, keep: Iterable[PodInfo]) -> NodeInfo:
    """A copy of ``node`` holding only the pods ``keep``."""
    view = NodeInfo(
        name=node.name,
        labels=node.labels,
        taints=node.taints,
        unschedulable=node.unschedulable,
        ready=node.ready,
        alloc_cpu=node.alloc_cpu,
        alloc_memory=node.alloc_memory,
        alloc_pods=node.alloc_pods,
    )
    for p in keep:
        view.add_pod(p)
    return view


def victims_on(pod: PodInfo, node: NodeInfo, violations: Violations) -> Candidate | None:
    """The fewest, least important pods to remove from ``node`` for ``pod`` to fit there;
    ``None`` when removing every lower-priority pod is not enough (or there are none)."""
    lower = [p for p in node.pods.values() if p.priority < pod.priority]
    if not lower:
        return None
    others = [p for p in node.pods.values() if p.priority >= pod.priority]
    view = with_pods(node, others)
    if plugins.filter_node(pod, view):
        return None
    lower.sort(key=lambda p: -p.priority)  # most important first
    breaking = violations(lower)
    victims: list[PodInfo] = []
    for group in (
        [p for p in lower if p.uid in breaking],
        [p for p in lower if p.uid not in breaking],
    ):
        for p in group:
            view.add_pod(p)
            if plugins.filter_node(pod, view):
                view.remove_pod(p.uid)
                victims.append(p)
    if not victims:
        return None  # it fits without preempting (the cache moved): nothing to do here
    return Candidate(node.name, tuple(victims), sum(1 for v in victims if v.uid in breaking))


def choose(pod: PodInfo, nodes: Iterable[NodeInfo], violations: Violations) -> Candidate | None:
    """The best node to preempt on, and its victims; ``None`` when preemption cannot help."""
    best: Candidate | None = None
    for node in nodes:
        candidate = victims_on(pod, node, violations)
        if candidate is not None and (best is None or candidate.rank() < best.rank()):
            best = candidate
    return best
