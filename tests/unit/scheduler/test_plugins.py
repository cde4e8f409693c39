"""Scheduler filters and scores on precomputed node/pod views."""

from __future__ import annotations

import random
from typing import Any

from berth.machinery.objects import freeze
from berth.scheduler import plugins
from berth.scheduler.nodeinfo import NodeInfo, PodInfo, node_info, pod_info


def node(
    name: str = "n1",
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    ready: bool = True,
    unschedulable: bool = False,
) -> NodeInfo:
    return node_info(
        freeze(
            {
                "metadata": {"name": name, "labels": labels or {}},
                "spec": {"taints": taints or [], "unschedulable": unschedulable},
                "status": {
                    "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
        )
    )


def pod(
    *, cpu: str | None = None, memory: str | None = None, owner: str = "", **spec: Any
) -> PodInfo:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    meta: dict[str, Any] = {"name": "p", "namespace": "default", "uid": "u-p"}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet"}]
    body = {
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}], **spec},
    }
    return pod_info(freeze(body))


def test_pod_requests_sum_containers_and_take_max_with_init_containers() -> None:
    info = pod_info(
        freeze(
            {
                "metadata": {"name": "p", "uid": "u"},
                "spec": {
                    "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                        {"name": "b", "resources": {"requests": {"cpu": "0.5"}}},
                    ],
                    "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1Gi"}}}],
                },
            }
        )
    )
    assert info.cpu == 750
    assert info.memory == 1024**3


def test_resources_fit_counts_what_is_already_bound() -> None:
    n = node(cpu="1", memory="1Gi", pods="2")
    assert plugins.filter_node(pod(cpu="600m"), n) == []
    n.add_pod(pod(cpu="600m"))
    assert plugins.filter_node(pod(cpu="600m", memory="2Gi"), n) == [
        plugins.INSUFFICIENT_CPU,
        plugins.INSUFFICIENT_MEMORY,
    ]
    other = pod(cpu="100m")
    other.uid = "u-2"
    n.add_pod(other)
    assert plugins.TOO_MANY_PODS in plugins.filter_node(pod(), n)
    n.remove_pod("u-2")
    assert plugins.filter_node(pod(cpu="300m"), n) == []


def test_node_selector_and_required_affinity_operators() -> None:
    n = node(labels={"disk": "ssd", "gen": "5"})
    assert plugins.filter_node(pod(nodeSelector={"disk": "ssd"}), n) == []
    assert plugins.filter_node(pod(nodeSelector={"disk": "hdd"}), n) == [plugins.SELECTOR_MISMATCH]

    def affinity(*exprs: dict[str, Any]) -> dict[str, Any]:
        return {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": list(exprs)}]
                }
            }
        }

    fits: list[dict[str, Any]] = [
        {"key": "disk", "operator": "In", "values": ["ssd", "nvme"]},
        {"key": "disk", "operator": "NotIn", "values": ["hdd"]},
        {"key": "gen", "operator": "Exists"},
        {"key": "gpu", "operator": "DoesNotExist"},
        {"key": "gen", "operator": "Gt", "values": ["4"]},
        {"key": "gen", "operator": "Lt", "values": ["6"]},
    ]
    for expr in fits:
        assert plugins.filter_node(pod(affinity=affinity(expr)), n) == [], expr
    misses: list[dict[str, Any]] = [
        {"key": "disk", "operator": "In", "values": ["hdd"]},
        {"key": "disk", "operator": "NotIn", "values": ["ssd"]},
        {"key": "gpu", "operator": "Exists"},
        {"key": "gen", "operator": "DoesNotExist"},
        {"key": "gen", "operator": "Gt", "values": ["5"]},
        {"key": "gen", "operator": "Lt", "values": ["5"]},
    ]
    for expr in misses:
        assert plugins.filter_node(pod(affinity=affinity(expr)), n) == [
            plugins.SELECTOR_MISMATCH
        ], expr
    by_name = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
                ]
            }
        }
    }
    assert plugins.filter_node(pod(affinity=by_name), n) == [plugins.SELECTOR_MISMATCH]
    assert plugins.filter_node(pod(affinity=by_name), node("n2")) == []


def test_taints_and_tolerations() -> None:
    n = node(taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    assert plugins.filter_node(pod(), n) == ["node(s) had untolerated taint {dedicated: db}"]
    ok = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    assert plugins.filter_node(pod(tolerations=ok), n) == []
    assert plugins.filter_node(pod(tolerations=[{"operator": "Exists"}]), n) == []
    wrong = [{"key": "dedicated", "operator": "Equal", "value": "web"}]
    assert plugins.filter_node(pod(tolerations=wrong), n) != []
    soft = node(taints=[{"key": "x", "value": "", "effect": "PreferNoSchedule"}])
    assert plugins.filter_node(pod(), soft) == []


def test_unschedulable_and_not_ready_nodes() -> None:
    assert plugins.filter_node(pod(), node(unschedulable=True)) == [plugins.UNSCHEDULABLE]
    assert plugins.filter_node(pod(), node(ready=False)) == [plugins.NOT_READY]
    tolerant = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
    assert plugins.filter_node(pod(tolerations=tolerant), node(ready=False)) == []


def test_host_ports_conflict() -> None:
    ports = [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]
    n = node()
    first = pod_info(freeze({"metadata": {"uid": "a"}, "spec": {"containers": ports}}))
    assert plugins.filter_node(first, n) == []
    n.add_pod(first)
    second = pod_info(freeze({"metadata": {"uid": "b"}, "spec": {"containers": ports}}))
    assert plugins.filter_node(second, n) == [plugins.PORTS_IN_USE]
    n.remove_pod("a")
    assert plugins.filter_node(second, n) == []


def test_scores_prefer_emptier_nodes_and_spread_owners() -> None:
    empty, busy = node("a"), node("b")
    filler = pod(cpu="3", memory="6Gi")
    filler.uid = "f"
    busy.add_pod(filler)
    p = pod(cpu="100m", memory="100Mi")
    assert plugins.least_allocated(p, empty) > plugins.least_allocated(p, busy)
    sibling = pod(owner="rs-1")
    sibling.uid = "s"
    empty.add_pod(sibling)
    mine = pod(owner="rs-1")
    assert plugins.spread(mine, empty, 1) == 0.0
    assert plugins.spread(mine, busy, 1) == 100.0


def test_summary_message_matches_kube_scheduler_wording() -> None:
    msg = plugins.summarize(
        3, {"node(s) had untolerated taint {node-role: }": 1, "Insufficient cpu": 2}
    )
    assert msg == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role: }, "
        "2 Insufficient cpu."
    )


def test_fast_paths_agree_with_the_reference_filters_and_scores() -> None:
    rng = random.Random(7)
    for trial in range(300):
        n = node(
            f"n{trial}",
            cpu=str(rng.randint(1, 4)),
            memory=f"{rng.randint(1, 4)}Gi",
            pods=str(rng.randint(1, 3)),
        )
        for j in range(rng.randint(0, 3)):
            filler = pod(
                cpu=f"{rng.randint(0, 2000)}m",
                memory=f"{rng.randint(0, 2048)}Mi",
                owner=rng.choice(["", "rs-1", "rs-2"]),
            )
            filler.uid = f"f{j}"
            n.add_pod(filler)
        p = pod(
            cpu=f"{rng.randint(0, 2000)}m",
            memory=f"{rng.randint(0, 2048)}Mi",
            owner=rng.choice(["", "rs-1"]),
        )
        assert n.plain
        assert p.simple
        assert plugins.fits_plain(p, n) == (plugins.filter_node(p, n) == [])
        other = node("other")
        max_owned = max(n.owners.get(p.owner, 0), other.owners.get(p.owner, 0))

        def total(x: NodeInfo, p: PodInfo = p, max_owned: int = max_owned) -> float:
            s = plugins.least_allocated(p, x)
            if p.owner:
                s += plugins.SPREAD_WEIGHT * plugins.spread(p, x, max_owned)
            return s

        want = [x for x in (n, other) if total(x) == max(total(n), total(other))]
        assert plugins.best_nodes(p, [n, other]) == want
