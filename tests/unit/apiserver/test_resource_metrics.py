"""The resource metrics store: rates between the last two samples, a fresh container
measured from its start, restarts, forgetting what a node no longer reports, bounded input."""

from __future__ import annotations

from typing import Any

from berth.apiserver.resourcemetrics import (
    MetricsStore,
    Point,
    Rate,
    node_metrics,
    pod_metrics,
    rate,
    usage,
)

T0 = "2026-01-01T00:00:%02d.000000Z"


def _summary(t: int, node_cpu: int, pods: list[dict[str, Any]]) -> dict[str, Any]:
    stamp = T0 % t
    return {
        "node": {
            "nodeName": "n1",
            "cpu": {"time": stamp, "usageCoreNanoSeconds": node_cpu},
            "memory": {"time": stamp, "workingSetBytes": 1 << 30},
        },
        "pods": pods,
    }


def _pod(name: str, t: int, cpu: int, mem: int, start: int = 0) -> dict[str, Any]:
    stamp = T0 % t
    return {
        "podRef": {"name": name, "namespace": "ns", "uid": "u-" + name},
        "containers": [
            {
                "name": "app",
                "startTime": T0 % start,
                "cpu": {"time": stamp, "usageCoreNanoSeconds": cpu},
                "memory": {"time": stamp, "workingSetBytes": mem},
            }
        ],
    }


def test_rate_between_two_samples_and_from_start() -> None:
    assert rate(Point(10.0, 1_000, 5), Point(12.0, 2_001_000, 6)) == Rate(12.0, 2.0, 1_000_000, 6)
    # first sample of a container that started after nothing was seen: from its start
    assert rate(None, Point(12.0, 4_000_000_000, 6, start=10.0)) == Rate(
        12.0, 2.0, 2_000_000_000, 6
    )
    assert rate(None, Point(12.0, 5, 6)) is None  # no start, no previous: unknown
    # restarted (counter went back, start after the previous sample): from the new start
    r = rate(Point(10.0, 9_000, 5, start=1.0), Point(12.0, 1_000_000_000, 6, start=11.0))
    assert r == Rate(12.0, 1.0, 1_000_000_000, 6)


def test_store_rates_and_forgetting() -> None:
    s = MetricsStore()
    s.record("n1", _summary(10, 5_000_000_000, [_pod("a", 10, 1_000_000_000, 100, start=5)]))
    assert s.node_rate("n1") is None  # a node needs two samples
    first = s.pod_rates("ns", "a")
    assert first is not None
    assert first["app"].nanocores == 200_000_000  # 1 s of CPU over the 5 s since start
    s.record("n1", _summary(20, 15_000_000_000, [_pod("a", 20, 3_500_000_000, 200, start=5)]))
    node = s.node_rate("n1")
    assert node is not None
    assert (node.nanocores, node.window) == (1_000_000_000, 10.0)
    second = s.pod_rates("ns", "a")
    assert second is not None
    assert second["app"] == Rate(second["app"].time, 10.0, 250_000_000, 200)
    # the pod moves to another node (same name, a new pod): found there
    s.record("n2", _summary(21, 1, [_pod("a", 21, 900_000_000, 300, start=20)]))
    moved = s.pod_rates("ns", "a")
    assert moved is not None
    assert moved["app"].memory == 300
    s.forget_except(["n1"])
    assert s.pod_rates("ns", "a") is None
    s.record("n1", _summary(25, 15_000_000_001, [_pod("a", 25, 4_000_000_000, 200, start=5)]))
    assert s.pod_rates("ns", "a") is not None
    # the pod is gone from the node's next summary: forgotten; the node too when removed
    s.record("n1", _summary(30, 16_000_000_000, []))
    assert s.pod_rates("ns", "a") is None
    s.forget_except([])
    assert s.node_rate("n1") is None


def test_store_ignores_malformed_entries() -> None:
    s = MetricsStore()
    bad: dict[str, Any] = {
        "node": {"cpu": {"time": "yesterday", "usageCoreNanoSeconds": 1}},
        "pods": [
            "x",
            {"podRef": "x"},
            {"podRef": {"name": 1, "namespace": "ns"}, "containers": []},
            {"podRef": {"name": "p", "namespace": "ns"}, "containers": [{"name": "c"}]},
            {
                "podRef": {"name": "q", "namespace": "ns"},
                "containers": [
                    {
                        "name": "c",
                        "cpu": {"time": T0 % 1, "usageCoreNanoSeconds": -5},
                        "memory": {"time": T0 % 1, "workingSetBytes": 1},
                    }
                ],
            },
        ],
    }
    s.record("n1", bad)
    assert s.node_rate("n1") is None
    assert s.pod_rates("ns", "p") is None
    assert s.pod_rates("ns", "q") is None


def test_documents_match_metrics_server() -> None:
    r = Rate(1767225610.0, 10.5, 250_000_000, 64 << 20)
    assert usage(r) == {"cpu": "250000000n", "memory": "65536Ki"}
    node = node_metrics({"metadata": {"name": "n1", "labels": {"a": "b"}}}, r, lambda: r.time)
    assert node["kind"] == "NodeMetrics"
    assert node["timestamp"] == "2026-01-01T00:00:10Z"
    assert node["window"] == "10.5s"
    assert node["metadata"]["labels"] == {"a": "b"}
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "b"}, {"name": "a"}]},
    }
    doc = pod_metrics(pod, {"a": r, "b": r}, lambda: r.time)
    assert [c["name"] for c in doc["containers"]] == ["b", "a"]  # the pod's order
