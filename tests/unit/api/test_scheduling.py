"""The placement rules the scheduler and the DaemonSet controller share."""

from __future__ import annotations

from typing import Any

from berth.api.scheduling import (
    Taint,
    Toleration,
    first_untolerated,
    node_taints,
    pod_tolerations,
    required_node_affinity,
)


def test_tolerations_as_upstream_tolerates_taint() -> None:
    taint = Taint("dedicated", "gpu", "NoSchedule")
    assert Toleration("dedicated", "Equal", "gpu", "NoSchedule").tolerates(taint)
    assert Toleration("dedicated", "", "gpu", "").tolerates(taint)  # "" operator is Equal
    assert not Toleration("dedicated", "Equal", "cpu", "NoSchedule").tolerates(taint)
    assert Toleration("dedicated", "Exists", "", "").tolerates(taint)
    assert Toleration("", "Exists", "", "").tolerates(taint)  # tolerates everything
    assert not Toleration("", "Exists", "", "NoExecute").tolerates(taint)
    assert not Toleration("dedicated", "Bogus", "gpu", "").tolerates(taint)
    gpu = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, gpu]}}
    spec = {"tolerations": [{"key": "a", "operator": "Exists"}]}
    assert first_untolerated(pod_tolerations(spec), node_taints(node)) == taint


def test_required_node_affinity() -> None:
    terms = [
        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]},
        {"matchExpressions": [{"key": "x", "operator": "Gt", "values": ["nan"]}]},
    ]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    spec = {"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": required}}
    aff = required_node_affinity(spec)
    assert aff.matches({"disk": "ssd", "cores": "8"}, "n1")
    assert aff.matches({"disk": "ssd"}, "n9")
    assert not aff.matches({"disk": "ssd", "cores": "2"}, "n1")
    assert not aff.matches({"cores": "8"}, "n1")  # nodeSelector first
    # the unparsable third term matches no node, whatever its labels
    bad: list[dict[str, Any]] = [
        {"key": "x", "operator": "Exists"},
        {"key": "y", "operator": "Gt", "values": ["z"]},
    ]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": bad}]}}  # fmt: skip
    aff = required_node_affinity({"affinity": {"nodeAffinity": required}})
    assert not aff.matches({"x": "1", "y": "5"}, "n1")
    assert required_node_affinity({}).empty
    assert required_node_affinity({}).matches({}, "any")
