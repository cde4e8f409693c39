"""Objects written without a status come back with their kind's empty status, as
kube-apiserver serves them: the Go status type's fields without ``omitempty`` at their zero
values (``{}`` for a Deployment, ``{"replicas": 0}`` for a ReplicaSet). Kinds without a
status get none."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from tests.harness.registry import memory_registry

TEMPLATE = {
    "metadata": {"labels": {"app": "x"}},
    "spec": {"containers": [{"name": "c", "image": "i"}]},
}
SELECTOR = {"matchLabels": {"app": "x"}}
NODE_INFO_FIELDS = (
    "architecture",
    "bootID",
    "containerRuntimeVersion",
    "kernelVersion",
    "kubeProxyVersion",
    "kubeletVersion",
    "machineID",
    "operatingSystem",
    "osImage",
    "systemUUID",
)


def _rd(group: str, plural: str) -> ResourceDef:
    rd = TABLE.lookup(group, "v1", plural)
    assert rd is not None
    return rd


# (resource, object without status, the status kube-apiserver answers with)
CASES: list[tuple[ResourceDef, dict[str, Any], dict[str, Any] | None]] = [
    (
        _rd("apps", "deployments"),
        {"spec": {"selector": SELECTOR, "template": TEMPLATE}},
        {},
    ),
    (
        _rd("apps", "replicasets"),
        {"spec": {"selector": SELECTOR, "template": TEMPLATE}},
        {"replicas": 0},
    ),
    (
        _rd("apps", "daemonsets"),
        {"spec": {"selector": SELECTOR, "template": TEMPLATE}},
        {
            "currentNumberScheduled": 0,
            "desiredNumberScheduled": 0,
            "numberMisscheduled": 0,
            "numberReady": 0,
        },
    ),
    (
        _rd("policy", "poddisruptionbudgets"),
        {"spec": {"minAvailable": 1, "selector": SELECTOR}},
        {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0},
    ),
    (
        _rd("", "services"),
        {"spec": {"ports": [{"port": 80}]}},
        {"loadBalancer": {}},
    ),
    (
        _rd("", "nodes"),
        {"spec": {}},
        {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": dict.fromkeys(NODE_INFO_FIELDS, ""),
        },
    ),
    (_rd("", "namespaces"), {}, {"phase": "Active"}),
    (_rd("", "configmaps"), {"data": {"a": "b"}}, None),
    (_rd("", "serviceaccounts"), {}, None),
]


@pytest.mark.parametrize(("rd", "body", "status"), CASES, ids=[c[0].kind for c in CASES])
def test_created_updated_and_read_objects_carry_the_empty_status(
    rd: ResourceDef, body: dict[str, Any], status: dict[str, Any] | None
) -> None:
    ns = "default" if rd.namespaced else ""

    async def scenario() -> None:
        reg = await memory_registry()
        obj = {"metadata": {"name": "x"}, **copy.deepcopy(body)}
        created = await reg.create(rd, ns, obj, user=None)
        assert created.get("status") == status
        assert (await reg.get(rd, ns, "x")).get("status") == status
        updated = await reg.patch(
            rd, ns, "x", "merge", {"metadata": {"labels": {"y": "z"}}}, user=None
        )
        assert updated.get("status") == status
        if "status" in rd.subresources:
            # A status write that drops everything still carries the zero-valued fields.
            cleared = await reg.update(
                rd, ns, "x", {"metadata": {"name": "x"}, "status": {}}, subresource="status",
                user=None,
            )  # fmt: skip
            assert cleared["status"] == status
            assert (await reg.get(rd, ns, "x"))["status"] == status

    asyncio.run(scenario())


def test_a_status_keeps_what_it_has_and_gains_what_it_lacks() -> None:
    nodes = _rd("", "nodes")

    async def scenario() -> None:
        reg = await memory_registry()
        node = {
            "metadata": {"name": "n1"},
            "status": {"nodeInfo": {"kubeletVersion": "v1.32.0"}, "addresses": []},
        }
        created = await reg.create(nodes, "", node, user=None)
        assert created["status"]["nodeInfo"] == {
            **dict.fromkeys(NODE_INFO_FIELDS, ""),
            "kubeletVersion": "v1.32.0",
        }
        assert created["status"]["addresses"] == []
        rs = _rd("apps", "replicasets")
        body = {
            "metadata": {"name": "r"},
            "spec": {"selector": SELECTOR, "template": TEMPLATE},
        }
        await reg.create(rs, "default", body, user=None)
        written = await reg.patch(
            rs, "default", "r", "merge", {"status": {"replicas": 3, "readyReplicas": 2}},
            subresource="status", user=None,
        )  # fmt: skip
        assert written["status"] == {"replicas": 3, "readyReplicas": 2}
        nulled = await reg.patch(
            rs, "default", "r", "merge", {"status": {"replicas": None}},
            subresource="status", user=None,
        )  # fmt: skip
        assert nulled["status"] == {"replicas": 0, "readyReplicas": 2}

    asyncio.run(scenario())
