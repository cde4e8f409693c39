"""Deployment reconcile(key): new ReplicaSet naming and revisions, rolling update within
maxSurge/maxUnavailable, Recreate, rollback, proportional scaling, progress deadline,
history cleanup — driven step by step with a fake clock and a pretend kubelet."""

from __future__ import annotations

import contextlib

from berth.api.resources import DEPLOYMENTS, PODS, REPLICASETS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.deployment import (
    HASH_LABEL,
    REVISION,
    DeploymentController,
    surge_and_unavailable,
    template_hash,
)
from berth.controllers.replicaset import ReplicaSetController
from berth.machinery.controller import Retry
from berth.machinery.objects import freeze

from .harness import Harness, pod_template, run

KEY = ObjectKey("default/web")


def deployment(replicas: int = 3, *, image: str = "nginx:1", **strategy: object) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": pod_template({"app": "web"}, image),
        "progressDeadlineSeconds": 60,
    }
    if strategy:
        spec["strategy"] = dict(strategy)
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def revision_of(rs: Obj) -> int:
    return int(rs["metadata"]["annotations"][REVISION])


def sets(h: Harness) -> dict[str, Obj]:
    return {rs["metadata"]["name"]: rs for rs in h.api.objects(REPLICASETS)}


def status(h: Harness) -> Obj:
    d = h.api.stored(DEPLOYMENTS, "default/web")
    assert d is not None
    result: Obj = d.get("status") or {}
    return result


def condition(h: Harness, type_: str) -> Obj:
    return next(c for c in status(h).get("conditions", []) if c["type"] == type_)


async def set_image(h: Harness, image: str) -> None:
    await h.api.patch(
        DEPLOYMENTS,
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}},
        namespace="default",
    )


class Rig:
    def __init__(self) -> None:
        self.h = Harness()
        self.d = DeploymentController(self.h.ctx)
        self.rs = ReplicaSetController(self.h.ctx)

    async def converge(self, **kw: object) -> None:
        await self.h.converge(self.d.controller, self.rs.controller, **kw)  # type: ignore[arg-type]


def test_surge_and_unavailable_resolve_percentages_like_kubernetes() -> None:
    d = freeze(deployment(10, type="RollingUpdate", rollingUpdate={"maxSurge": "25%"}))
    assert surge_and_unavailable(d) == (3, 2)
    d = freeze(deployment(3, rollingUpdate={"maxSurge": 0, "maxUnavailable": 0}))
    assert surge_and_unavailable(d) == (0, 1)
    assert surge_and_unavailable(freeze(deployment(3, type="Recreate"))) == (0, 0)


def test_first_sync_creates_hashed_replicaset_revision_1() -> None:
    async def body() -> None:
        r = Rig()
        d = r.h.api.seed(DEPLOYMENTS, deployment(3))
        await r.h.sync()
        with contextlib.suppress(Retry):
            await r.d.reconcile(KEY)
        (rs,) = r.h.api.objects(REPLICASETS)
        h = template_hash(d["spec"]["template"])
        assert rs["metadata"]["name"] == f"web-{h}"
        assert rs["metadata"]["annotations"][REVISION] == "1"
        assert rs["spec"]["replicas"] == 3
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
        assert rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == h
        assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        assert condition(r.h, "Progressing")["reason"] == "NewReplicaSetCreated"
        stored = r.h.api.stored(DEPLOYMENTS, "default/web")
        assert stored is not None
        assert stored["metadata"]["annotations"][REVISION] == "1"

    run(body)


def test_rolling_update_respects_surge_and_unavailability_and_completes() -> None:
    async def body() -> None:
        r = Rig()
        r.h.api.seed(DEPLOYMENTS, deployment(4, rollingUpdate={"maxSurge": 1, "maxUnavailable": 1}))
        await r.converge()
        assert condition(r.h, "Progressing")["reason"] == "NewReplicaSetAvailable"
        assert condition(r.h, "Available")["status"] == "True"
        await set_image(r.h, "nginx:2")
        for _ in range(40):
            before = len(r.h.api.actions)
            await r.h.sync()
            await r.d.controller.drain()
            await r.rs.controller.drain()
            pods = [p for p in r.h.api.objects(PODS) if not p["metadata"].get("deletionTimestamp")]
            assert len(pods) <= 4 + 1, "maxSurge exceeded"
            ready = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
            total = sum(rs["spec"]["replicas"] for rs in r.h.api.objects(REPLICASETS))
            assert total <= 5
            assert len(ready) >= 4 - 1, "maxUnavailable exceeded"
            await r.h.kubelet_step()
            if len(r.h.api.actions) == before:
                break
        rss = sorted(
            r.h.api.objects(REPLICASETS), key=lambda x: x["metadata"]["annotations"][REVISION]
        )
        assert [x["spec"]["replicas"] for x in rss] == [0, 4]
        assert rss[1]["metadata"]["annotations"][REVISION] == "2"
        images = {p["spec"]["containers"][0]["image"] for p in r.h.api.objects(PODS)}
        assert images == {"nginx:2"}
        st = status(r.h)
        assert st["updatedReplicas"] == 4
        assert st["availableReplicas"] == 4
        assert st["observedGeneration"] == 2
        assert condition(r.h, "Progressing")["reason"] == "NewReplicaSetAvailable"

    run(body)


def test_recreate_waits_for_old_pods_before_creating_new() -> None:
    async def body() -> None:
        r = Rig()
        r.h.api.seed(DEPLOYMENTS, deployment(2, type="Recreate"))
        await r.converge()
        await set_image(r.h, "nginx:2")
        await r.h.sync()
        with contextlib.suppress(Retry):
            await r.d.reconcile(KEY)
        assert len(r.h.api.objects(REPLICASETS)) == 1, "new RS must wait for old pods"
        (old,) = r.h.api.objects(REPLICASETS)
        assert old["spec"]["replicas"] == 0
        await r.converge()
        rss = sorted(
            r.h.api.objects(REPLICASETS), key=lambda x: x["metadata"]["annotations"][REVISION]
        )
        assert [x["spec"]["replicas"] for x in rss] == [0, 2]
        assert {p["spec"]["containers"][0]["image"] for p in r.h.api.objects(PODS)} == {"nginx:2"}

    run(body)


def test_rollback_reuses_old_replicaset_with_next_revision() -> None:
    async def body() -> None:
        r = Rig()
        r.h.api.seed(DEPLOYMENTS, deployment(2))
        await r.converge()
        first = next(iter(sets(r.h)))
        await set_image(r.h, "nginx:2")
        await r.converge()
        await set_image(r.h, "nginx:1")  # what `kubectl rollout undo` does
        await r.converge()
        rss = sets(r.h)
        assert len(rss) == 2
        assert rss[first]["metadata"]["annotations"][REVISION] == "3"
        assert rss[first]["spec"]["replicas"] == 2
        stored = r.h.api.stored(DEPLOYMENTS, "default/web")
        assert stored is not None
        assert stored["metadata"]["annotations"][REVISION] == "3"

    run(body)


def test_proportional_scaling_during_a_stuck_rollout() -> None:
    async def body() -> None:
        r = Rig()
        r.h.api.seed(
            DEPLOYMENTS, deployment(10, rollingUpdate={"maxSurge": 3, "maxUnavailable": 2})
        )
        await r.converge()
        await set_image(r.h, "nginx:404")
        # New pods never become ready: the rollout stalls at old 8 / new 5.
        await r.converge(ready=lambda p: p["spec"]["containers"][0]["image"] != "nginx:404")
        by_rev = {x["metadata"]["annotations"][REVISION]: x for x in r.h.api.objects(REPLICASETS)}
        assert by_rev["1"]["spec"]["replicas"] == 8
        assert by_rev["2"]["spec"]["replicas"] == 5
        await r.h.api.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 30}}, namespace="default")
        await r.converge(ready=lambda p: p["spec"]["containers"][0]["image"] != "nginx:404")
        by_rev = {x["metadata"]["annotations"][REVISION]: x for x in r.h.api.objects(REPLICASETS)}
        assert by_rev["1"]["spec"]["replicas"] == 20
        assert by_rev["2"]["spec"]["replicas"] == 13

    run(body)


def test_progress_deadline_exceeded_when_pods_never_become_ready() -> None:
    async def body() -> None:
        r = Rig()
        r.h.api.seed(DEPLOYMENTS, deployment(2))
        await r.converge(ready=lambda _p: False)
        assert condition(r.h, "Progressing")["status"] == "True"
        r.h.clock.advance(61)
        await r.h.sync()
        await r.d.reconcile(KEY)
        cond = condition(r.h, "Progressing")
        assert cond["status"] == "False"
        assert cond["reason"] == "ProgressDeadlineExceeded"

    run(body)


def test_old_replicasets_beyond_history_limit_are_deleted() -> None:
    async def body() -> None:
        r = Rig()
        d = deployment(1)
        d["spec"]["revisionHistoryLimit"] = 1
        r.h.api.seed(DEPLOYMENTS, d)
        await r.converge()
        for image in ("nginx:2", "nginx:3", "nginx:4"):
            await set_image(r.h, image)
            await r.converge()
        revisions = sorted(
            int(x["metadata"]["annotations"][REVISION]) for x in r.h.api.objects(REPLICASETS)
        )
        assert revisions == [3, 4]

    run(body)


def test_orphaned_replicaset_with_matching_labels_is_adopted() -> None:
    async def body() -> None:
        r = Rig()
        d = deployment(2)
        h = template_hash(d["spec"]["template"])
        tmpl = pod_template({"app": "web", HASH_LABEL: h})
        r.h.api.seed(
            REPLICASETS,
            {
                "metadata": {
                    "name": f"web-{h}",
                    "namespace": "default",
                    "labels": {"app": "web", HASH_LABEL: h},
                    "annotations": {REVISION: "4"},
                },
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web", HASH_LABEL: h}},
                    "template": tmpl,
                },
            },
        )
        owner = r.h.api.seed(DEPLOYMENTS, d)
        await r.h.sync()
        with contextlib.suppress(Retry):
            await r.d.reconcile(KEY)
        (rs,) = r.h.api.objects(REPLICASETS)
        assert rs["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        assert r.h.api.writes("create", REPLICASETS) == []

    run(body)


def test_status_write_keeps_a_condition_written_since_the_cache_read() -> None:
    """The controller writes its own conditions only: computed from a cached Deployment that
    predates another writer's condition, the whole list would drop it."""

    async def body() -> None:
        r = Rig()
        r.h.api.seed(DEPLOYMENTS, deployment(2))
        await r.converge()
        assert status(r.h)["readyReplicas"] == 2
        audited = {"type": "example.com/Audited", "status": "True", "reason": "Tested"}
        conditions = [*status(r.h)["conditions"], audited]
        patch = {"status": {"conditions": conditions}}
        await r.h.api.patch(DEPLOYMENTS, "web", patch, namespace="default", subresource="status")
        victim = next(p for p in r.h.api.objects(PODS))
        await r.h.api.patch(
            PODS,
            victim["metadata"]["name"],
            {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            namespace="default",
            subresource="status",
        )
        for _ in range(2):  # every cache but the Deployments' catches up; the sets settle
            for informer in r.h.informers.all():
                if informer.resource is not DEPLOYMENTS:
                    await informer.relist()
            await r.rs.controller.drain()
        with contextlib.suppress(Retry):
            await r.d.reconcile(KEY)
        assert status(r.h)["readyReplicas"] == 1
        assert condition(r.h, "example.com/Audited") == audited
        assert condition(r.h, "Available")["status"] == "False"  # 1 of 2 ready, none may be out

    run(body)
