"""Drain through the API the way `kubectl drain --ignore-daemonsets --delete-emptydir-data`
does, against an in-memory API."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from berth.api.resources import NODES, PODS, ResourceDef
from berth.client import errors as api_errors
from berth.client.interface import ApiClient, ObjectList
from provisioner.upgrade.drain import DrainError, drain, uncordon

Obj = dict[str, Any]


def pod(name: str, *, owner: str | None = "ReplicaSet", **spec: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": "w1", **spec}, "status": {"phase": "Running"}}


class FakeApi:
    """Pods on node w1; evictions remove a pod after ``linger`` lists; PDB refusals first."""

    def __init__(self, pods: list[Obj], *, refuse: int = 0, linger: int = 1) -> None:
        self.pods = {p["metadata"]["name"]: p for p in pods}
        self.node: Obj = {"spec": {}}
        self.refuse = refuse
        self.linger = linger
        self.evicting: dict[str, int] = {}
        self.calls: list[str] = []

    async def patch(self, resource: ResourceDef, name: str, patch: Obj, **_: Any) -> Obj:
        assert resource is NODES
        assert name == "w1"
        self.node["spec"].update(patch["spec"])
        self.calls.append(f"patch {patch}")
        return self.node

    async def list(self, resource: ResourceDef, **kw: Any) -> ObjectList:
        assert resource is PODS
        assert kw["field_selector"] == "spec.nodeName=w1"
        for name in list(self.evicting):
            self.evicting[name] -= 1
            if self.evicting[name] <= 0:
                del self.evicting[name]
                self.pods.pop(name, None)
        return ObjectList(items=list(self.pods.values()), resource_version="1")

    async def create_subresource(
        self, resource: ResourceDef, name: str, subresource: str, **_: Any
    ) -> Obj:
        assert subresource == "eviction"
        if self.refuse:
            self.refuse -= 1
            raise api_errors.TooManyRequests(
                429, "TooManyRequests", "Cannot evict pod as it would violate the PDB"
            )
        if name not in self.pods:
            raise api_errors.NotFound(404, "NotFound", name)
        self.calls.append(f"evict {name}")
        self.evicting[name] = self.linger
        return {}

    async def delete(self, resource: ResourceDef, name: str, **_: Any) -> None:
        self.calls.append(f"delete {name}")
        self.pods.pop(name, None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(api: FakeApi, *, timeout: float = 10.0, force: bool = False) -> Any:
    clock = Clock()
    return asyncio.run(
        drain(cast(ApiClient, api), "w1", timeout=timeout, force=force, sleep=clock.sleep,
              monotonic=clock.monotonic)
    )  # fmt: skip


def test_drain_cordons_evicts_and_leaves_daemonset_pods() -> None:
    done = pod("job-1")
    done["status"]["phase"] = "Succeeded"
    api = FakeApi([
        pod("web-1"), pod("cache-1", volumes=[{"name": "scratch", "emptyDir": {}}]),
        pod("logs-1", owner="DaemonSet"), done,
    ])  # fmt: skip
    result = run(api)
    assert api.node["spec"]["unschedulable"] is True
    assert api.calls[0] == "patch {'spec': {'unschedulable': True}}"
    assert sorted(result.evicted) == ["default/cache-1", "default/web-1"]
    assert result.emptydir == ["default/cache-1"]
    assert result.ignored_daemonset == ["default/logs-1"]
    assert result.deleted_finished == ["default/job-1"]
    assert list(api.pods) == ["logs-1"]
    assert result.summary() == (
        "2 pod(s) evicted, 1 with emptyDir data deleted, 1 finished pod(s) deleted, "
        "1 DaemonSet pod(s) left"
    )


def test_pods_no_controller_manages_are_refused_by_name_unless_forced() -> None:
    api = FakeApi([pod("web-1"), pod("bare", owner=None)])
    with pytest.raises(DrainError, match="no controller manages: default/bare"):
        run(api)
    assert not [c for c in api.calls if c.startswith("evict")]  # refused before evicting
    assert sorted(run(FakeApi([pod("bare", owner=None)]), force=True).evicted) == ["default/bare"]


def test_a_disruption_budget_refusal_is_retried_until_it_passes() -> None:
    api = FakeApi([pod("web-1")], refuse=3)
    assert run(api).evicted == ["default/web-1"]


def test_a_budget_that_never_allows_it_fails_at_the_timeout() -> None:
    api = FakeApi([pod("web-1")], refuse=10_000)
    with pytest.raises(DrainError, match="eviction of default/web-1 still refused at the 5s"):
        run(api, timeout=5)


def test_pods_that_do_not_go_away_fail_at_the_timeout_naming_them() -> None:
    api = FakeApi([pod("web-1"), pod("web-2")], linger=1_000)
    with pytest.raises(DrainError, match=r"still terminating .* default/web-1, default/web-2"):
        run(api, timeout=3)


def test_uncordon_clears_unschedulable() -> None:
    api = FakeApi([])
    api.node["spec"]["unschedulable"] = True
    asyncio.run(uncordon(cast(ApiClient, api), "w1"))
    assert api.node["spec"]["unschedulable"] is None
