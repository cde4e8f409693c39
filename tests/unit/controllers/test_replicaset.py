"""ReplicaSet reconcile(key): create/delete the difference, never double-count in-flight
writes, replace deleted pods, adopt orphans, report status."""

from __future__ import annotations

import pytest

from berth.api.resources import EVENTS, PODS, REPLICASETS
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.replicaset import ReplicaSetController
from berth.machinery.controller import Retry

from .harness import Harness, pod_template, run

KEY = ObjectKey("default/web")


def replicaset(replicas: int, *, min_ready: int = 0) -> Obj:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template({"app": "web"}),
        },
    }


def owned_pods(h: Harness) -> list[Obj]:
    return [p for p in h.api.objects(PODS) if not p["metadata"].get("deletionTimestamp")]


def test_creates_missing_pods_from_template_with_owner_reference() -> None:
    async def body() -> None:
        h = Harness()
        rs = h.api.seed(REPLICASETS, replicaset(3))
        c = ReplicaSetController(h.ctx)
        await h.sync()
        await c.reconcile(KEY)
        pods = owned_pods(h)
        assert len(pods) == 3
        for p in pods:
            assert p["metadata"]["labels"] == {"app": "web"}
            assert p["metadata"]["name"].startswith("web-")
            (ref,) = p["metadata"]["ownerReferences"]
            assert ref["uid"] == rs["metadata"]["uid"]
            assert ref["controller"] is True
            assert ref["kind"] == "ReplicaSet"
        events = h.api.objects(EVENTS)
        assert [e["reason"] for e in events] == ["SuccessfulCreate"]

    run(body)


def test_lagging_cache_does_not_double_create() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(REPLICASETS, replicaset(3))
        c = ReplicaSetController(h.ctx)
        await h.sync()
        await c.reconcile(KEY)
        await c.reconcile(KEY)  # the cache has not seen the three pods yet
        assert len(h.api.writes("create", PODS)) == 3
        await h.sync()
        await c.reconcile(KEY)
        assert len(h.api.writes("create", PODS)) == 3

    run(body)


def test_replaces_a_deleted_pod_and_scales_down_unready_first() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(REPLICASETS, replicaset(3))
        c = ReplicaSetController(h.ctx)
        await h.converge(c.controller)
        victim = owned_pods(h)[0]["metadata"]["name"]
        await h.api.delete(PODS, victim, namespace="default", grace_period_seconds=0)
        await h.converge(c.controller, kubelet=False)
        names = {p["metadata"]["name"] for p in owned_pods(h)}
        assert len(names) == 3
        assert victim not in names
        # The new pod is not scheduled nor ready: scaling to 2 must remove it first.
        (fresh,) = [p for p in owned_pods(h) if not p["spec"].get("nodeName")]
        await h.api.patch(REPLICASETS, "web", {"spec": {"replicas": 2}}, namespace="default")
        await h.sync()
        await c.reconcile(KEY)
        deleted = [a.name for a in h.api.writes("delete", PODS)]
        assert deleted == [victim, fresh["metadata"]["name"]]

    run(body)


def test_status_counts_ready_and_available_after_min_ready_seconds() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(REPLICASETS, replicaset(2, min_ready=10))
        c = ReplicaSetController(h.ctx)
        await h.converge(c.controller)
        await h.sync()
        with pytest.raises(Retry) as retry:
            await c.reconcile(KEY)
        assert 0 < retry.value.delay <= 10.01
        status = h.api.stored(REPLICASETS, "default/web")["status"]  # type: ignore[index]
        assert status["replicas"] == 2
        assert status["readyReplicas"] == 2
        assert status["availableReplicas"] == 0
        assert status["observedGeneration"] == 1
        h.clock.advance(10)
        await c.reconcile(KEY)
        status = h.api.stored(REPLICASETS, "default/web")["status"]  # type: ignore[index]
        assert status["availableReplicas"] == 2

    run(body)


def test_adopts_matching_orphans_instead_of_creating() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(
            PODS,
            {
                "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        )
        rs = h.api.seed(REPLICASETS, replicaset(1))
        c = ReplicaSetController(h.ctx)
        await h.sync()
        await c.reconcile(KEY)
        assert h.api.writes("create", PODS) == []
        stray = h.api.stored(PODS, "default/stray")
        assert stray is not None
        assert stray["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]

    run(body)


def test_create_failure_is_reported_and_retried() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(REPLICASETS, replicaset(1))
        c = ReplicaSetController(h.ctx)
        await h.sync()
        h.api.fail_next("create", PODS, errors.Forbidden(403, "Forbidden", "quota exceeded"))
        with pytest.raises(errors.Forbidden):
            await c.reconcile(KEY)
        assert [e["reason"] for e in h.api.objects(EVENTS)] == ["FailedCreate"]
        await c.reconcile(KEY)  # the failed name is not counted as in flight
        assert len(owned_pods(h)) == 1

    run(body)


def test_deleted_replicaset_is_a_no_op() -> None:
    async def body() -> None:
        h = Harness()
        c = ReplicaSetController(h.ctx)
        await h.sync()
        await c.reconcile(KEY)
        assert h.api.actions == []

    run(body)


def test_pods_whose_labels_stop_matching_are_released_and_replaced() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(REPLICASETS, replicaset(2))
        c = ReplicaSetController(h.ctx)
        await h.converge(c.controller)
        victim = owned_pods(h)[0]["metadata"]["name"]
        await h.api.patch(
            PODS, victim, {"metadata": {"labels": {"app": "debug"}}}, namespace="default"
        )
        await h.converge(c.controller)
        released = h.api.stored(PODS, f"default/{victim}")
        assert released is not None
        assert not released["metadata"].get("ownerReferences"), "released as an orphan"
        mine = [p for p in owned_pods(h) if p["metadata"].get("ownerReferences")]
        assert len(mine) == 2
        assert victim not in {p["metadata"]["name"] for p in mine}

    run(body)
