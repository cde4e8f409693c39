"""Informer caches drop ``metadata.managedFields`` (memory: they are often the largest part of
a pod) and nothing else, and controllers decide exactly the same with or without them."""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from typing import Any

import pytest

from berth.api.resources import CONFIGMAPS, DEPLOYMENTS, PODS, ResourceDef
from berth.client.interface import Obj, WatchEvent
from berth.controllers.deployment import DeploymentController
from berth.controllers.replicaset import ReplicaSetController
from berth.machinery.clock import FakeClock
from berth.machinery.informer import Informer, InformerFactory, Transform
from berth.machinery.objects import cache_view, freeze
from tests.harness.fake_client import FakeClient
from tests.unit.controllers.harness import Harness, pod_template

MANAGED = [
    {
        "manager": "kube-controller-manager",
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
    }
]


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": "x"},
            "resourceVersion": "7",
            "managedFields": copy.deepcopy(MANAGED),
        },
        "data": {"k": "v"},
    }


def without_managed(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].pop("managedFields", None)
    return out


def test_cache_view_drops_managed_fields_and_keeps_everything_else() -> None:
    source = configmap("a")
    view = cache_view(source)
    assert view == freeze(without_managed(source))
    assert "managedFields" not in view["metadata"]
    assert source["metadata"]["managedFields"] == MANAGED  # the input is left alone
    with pytest.raises(TypeError):
        view["metadata"]["labels"]["app"] = "y"  # still frozen
    plain = {"metadata": {"name": "b"}, "data": {"k": "v"}}
    assert cache_view(plain) == freeze(plain)


def test_informer_caches_without_managed_fields_on_list_and_watch() -> None:
    inf = Informer(FakeClient(), CONFIGMAPS, clock=FakeClock())
    inf.replace([configmap("a")], "7")
    inf.apply(WatchEvent("ADDED", configmap("b")))
    for key in ("default/a", "default/b"):
        cached = inf.get(key)
        assert cached is not None
        assert "managedFields" not in cached["metadata"]
        assert cached["metadata"]["labels"] == {"app": "x"}
        assert cached["data"] == {"k": "v"}


def test_the_transform_is_the_factorys_choice() -> None:
    factory = InformerFactory(FakeClient(), clock=FakeClock(), transform=freeze)
    inf = factory.informer(CONFIGMAPS)
    inf.replace([configmap("a")], "7")
    cached = inf.get("default/a")
    assert cached is not None
    assert cached["metadata"]["managedFields"][0]["manager"] == "kube-controller-manager"


class ManagedFieldsClient(FakeClient):
    """A fake API server that, like the real one, keeps managedFields on every object
    (a write that omits them keeps the stored ones)."""

    def _create(
        self, resource: ResourceDef, body: Obj, namespace: str | None, *, api: bool = False
    ) -> Obj:
        body.setdefault("metadata", {})["managedFields"] = copy.deepcopy(MANAGED)
        return super()._create(resource, body, namespace, api=api)

    def _store_update(self, resource: ResourceDef, old: Obj, new: Obj) -> Obj:
        new["metadata"]["managedFields"] = copy.deepcopy(MANAGED)
        return super()._store_update(resource, old, new)


def _rollout_actions(transform: Transform, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every write the Deployment and ReplicaSet controllers make for a Deployment created,
    rolled to a new image and scaled, with caches made by ``transform``; bodies without
    managedFields (a cache that keeps them sends them back in a PUT)."""
    names = itertools.count(1)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(names)))
    h = Harness(api=lambda now: ManagedFieldsClient(now=now), transform=transform)
    d = DeploymentController(h.ctx)
    rs = ReplicaSetController(h.ctx)

    async def body() -> None:
        h.api.seed(
            DEPLOYMENTS,
            {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": pod_template({"app": "web"}),
                    "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                },
            },
        )
        await h.converge(d.controller, rs.controller)
        for patch in (
            {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}},
            {"spec": {"replicas": 5}},
        ):
            await h.api.patch(DEPLOYMENTS, "web", patch, namespace="default")
            await h.converge(d.controller, rs.controller)

    asyncio.run(body())
    assert len(h.api.objects(PODS)) == 5
    out = []
    for action in h.api.actions:
        a = copy.deepcopy(action)
        if isinstance(a.body, dict) and isinstance(a.body.get("metadata"), dict):
            a.body["metadata"].pop("managedFields", None)
        out.append(a)
    return out


def test_controllers_decide_the_same_without_managed_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keeping = _rollout_actions(freeze, monkeypatch)
    stripping = _rollout_actions(cache_view, monkeypatch)
    assert len(keeping) > 10
    assert stripping == keeping
