"""Which resource an HPA's scaleTargetRef names: built-ins with /scale from the table, custom
resources through their CRD's scale subresource, anything else refused."""

from __future__ import annotations

import asyncio

import pytest

from berth.api.resources import CRD_RESOURCE, DEPLOYMENTS, REPLICASETS
from berth.controllers.autoscaling.targets import TargetResolver
from berth.machinery.clock import FakeClock
from tests.harness.fake_client import FakeClient

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "workers.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "workers", "singular": "worker", "kind": "Worker"},
        "versions": [
            {"name": "v1", "served": True, "storage": True,
             "subresources": {"scale": {"specReplicasPath": ".spec.replicas",
                                        "statusReplicasPath": ".status.replicas"}}},
            {"name": "v0", "served": True, "storage": False},
        ],
    },
}  # fmt: skip


def test_targets_resolve_to_resources_serving_scale() -> None:
    async def scenario() -> None:
        client = FakeClient()
        client.seed(CRD_RESOURCE, CRD)
        clock = FakeClock()
        resolver = TargetResolver(client, clock)
        assert await resolver.resolve("apps/v1", "Deployment") == DEPLOYMENTS
        assert await resolver.resolve("apps/v1", "ReplicaSet") == REPLICASETS
        worker = await resolver.resolve("example.com/v1", "Worker")
        assert (worker.group, worker.version, worker.plural) == ("example.com", "v1", "workers")
        assert worker.namespaced
        with pytest.raises(LookupError, match="no scale subresource"):
            await resolver.resolve("apps/v1", "DaemonSet")
        with pytest.raises(LookupError, match='no matches for kind "Worker"'):
            await resolver.resolve("example.com/v0", "Worker")  # that version has no /scale

    asyncio.run(scenario())
