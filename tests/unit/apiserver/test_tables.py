from __future__ import annotations

from datetime import timedelta

import pytest

from berth.api.meta import format_time, now
from berth.api.resources import TABLE, ResourceDef
from berth.apiserver.kinds import strategy_for
from berth.apiserver.tables import Printer, human_duration, to_table


def _printer(rd: ResourceDef) -> Printer:
    return strategy_for(rd).printer(rd)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (182, "3m2s"),
        (599, "9m59s"),
        (600, "10m"),
        (45 * 60, "45m"),
        (3 * 3600, "3h"),
        (4 * 3600, "4h"),
        (4 * 3600 + 5 * 60, "4h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (51 * 3600, "2d3h"),
        (7 * 86400, "7d"),
        (8 * 86400, "8d"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400, "3y"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_age_strings_as_kubectl_prints_them(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def _pod(**status: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "creationTimestamp": format_time(now() - timedelta(minutes=5)),
        },
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": status,
    }


def test_pod_rows() -> None:
    rd = TABLE.lookup("", "v1", "pods")
    assert rd is not None
    running = _pod(
        phase="Running",
        podIP="10.244.0.5",
        containerStatuses=[
            {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
            {
                "name": "b",
                "ready": False,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            },
        ],
    )
    t = to_table(_printer(rd), [running], table_api_version="meta.k8s.io/v1", resource_version="7")
    assert t["metadata"] == {"resourceVersion": "7"}
    assert [c["name"] for c in t["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert t["rows"][0]["cells"] == [
        "web-1",
        "1/2",
        "CrashLoopBackOff",
        3,
        "5m",
        "10.244.0.5",
        "n1",
        "<none>",
        "<none>",
    ]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    terminating = _pod(phase="Running")
    terminating["metadata"]["deletionTimestamp"] = format_time(now())  # type: ignore[index]
    t = to_table(
        _printer(rd),
        [terminating],
        table_api_version="meta.k8s.io/v1",
        resource_version="8",
        include_object="None",
    )
    assert t["rows"][0]["cells"][2] == "Terminating"
    assert "object" not in t["rows"][0]


def test_node_and_deployment_rows() -> None:
    node_rd = TABLE.lookup("", "v1", "nodes")
    assert node_rd is not None
    n = {
        "metadata": {
            "name": "n1",
            "labels": {"node-role.kubernetes.io/control-plane": ""},
            "creationTimestamp": format_time(now()),
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v0.1.0"},
        },
    }
    cells = to_table(
        _printer(node_rd), [n], table_api_version="meta.k8s.io/v1", resource_version="1"
    )["rows"][0]["cells"]
    assert cells[:5] == ["n1", "Ready,SchedulingDisabled", "control-plane", "0s", "v0.1.0"]
    dep_rd = TABLE.lookup("apps", "v1", "deployments")
    assert dep_rd is not None
    d = {
        "metadata": {"name": "web", "creationTimestamp": format_time(now())},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.20"}]}},
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    cells = to_table(
        _printer(dep_rd), [d], table_api_version="meta.k8s.io/v1", resource_version="1"
    )["rows"][0]["cells"]
    assert cells == ["web", "2/3", 3, 2, "0s", "nginx", "nginx:1.20", "app=web"]


def test_pdb_and_default_rows() -> None:
    pdb_rd = TABLE.lookup("policy", "v1", "poddisruptionbudgets")
    role_rd = TABLE.lookup("rbac.authorization.k8s.io", "v1", "roles")
    assert pdb_rd is not None
    assert role_rd is not None
    created = format_time(now())
    pdb = {"metadata": {"name": "p", "creationTimestamp": created}, "spec": {"minAvailable": "50%"}}
    t = to_table(_printer(pdb_rd), [pdb], table_api_version="meta.k8s.io/v1", resource_version="1")
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name",
        "Min Available",
        "Max Unavailable",
        "Allowed Disruptions",
        "Age",
    ]
    assert t["rows"][0]["cells"] == ["p", "50%", "N/A", 0, "0s"]
    role = {"metadata": {"name": "r", "creationTimestamp": created}}
    t = to_table(
        _printer(role_rd), [role], table_api_version="meta.k8s.io/v1beta1", resource_version="1"
    )
    assert t["apiVersion"] == "meta.k8s.io/v1beta1"
    assert t["rows"][0]["cells"] == ["r", created]
