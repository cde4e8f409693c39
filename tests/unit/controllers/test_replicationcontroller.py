"""The ReplicationController controller (the ReplicaSet loop over a map selector): creates
pods owned by the RC, adopts orphans its map selector matches (and not others), releases
pods whose labels stop matching, writes the RC's status, and ignores ReplicaSet-owned pods."""

from __future__ import annotations

from berth.api.resources import PODS, REPLICASETS, REPLICATIONCONTROLLERS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.replicaset import ReplicaSetController
from berth.controllers.replicationcontroller import ReplicationControllerController

from .harness import Harness, pod_template, run

KEY = ObjectKey("default/web")


def rc(replicas: int, selector: dict[str, str] | None = None) -> Obj:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": selector or {"app": "web"},
            "template": pod_template({"app": "web", "tier": "front"}),
        },
    }


def live(h: Harness) -> list[Obj]:
    return [p for p in h.api.objects(PODS) if not p["metadata"].get("deletionTimestamp")]


def test_creates_owned_pods_and_reports_status() -> None:
    async def body() -> None:
        h = Harness()
        owner = h.api.seed(REPLICATIONCONTROLLERS, rc(3))
        c = ReplicationControllerController(h.ctx)
        await h.converge(c.controller)
        pods = live(h)
        assert len(pods) == 3
        for p in pods:
            (ref,) = p["metadata"]["ownerReferences"]
            assert (ref["apiVersion"], ref["kind"]) == ("v1", "ReplicationController")
            assert ref["uid"] == owner["metadata"]["uid"]
            assert p["metadata"]["labels"] == {"app": "web", "tier": "front"}
        await h.sync()
        await c.reconcile(KEY)
        status = h.api.stored(REPLICATIONCONTROLLERS, "default/web")["status"]  # type: ignore[index]
        assert status["replicas"] == 3
        assert status["readyReplicas"] == 3
        assert status["fullyLabeledReplicas"] == 3
        # scale down through spec.replicas
        await h.api.patch(
            REPLICATIONCONTROLLERS, "web", {"spec": {"replicas": 1}}, namespace="default"
        )
        await h.converge(c.controller)
        assert len(live(h)) == 1

    run(body)


def test_map_selector_adopts_matching_orphans_only() -> None:
    async def body() -> None:
        h = Harness()
        for name, labels in (("match", {"app": "web", "x": "y"}), ("other", {"app": "db"})):
            h.api.seed(
                PODS,
                {
                    "metadata": {"name": name, "namespace": "default", "labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            )
        owner = h.api.seed(REPLICATIONCONTROLLERS, rc(1))
        c = ReplicationControllerController(h.ctx)
        await h.sync()
        await c.reconcile(KEY)
        assert h.api.writes("create", PODS) == []
        match, other = h.api.stored(PODS, "default/match"), h.api.stored(PODS, "default/other")
        assert match is not None
        assert other is not None
        assert match["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        assert not other["metadata"].get("ownerReferences")

    run(body)


def test_replicaset_and_rc_controllers_leave_each_others_pods_alone() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(REPLICATIONCONTROLLERS, rc(2))
        h.api.seed(
            REPLICASETS,
            {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "other"}},
                    "template": pod_template({"app": "other"}),
                },
            },
        )
        rcs = ReplicationControllerController(h.ctx)
        sets = ReplicaSetController(h.ctx)
        await h.converge(rcs.controller)
        await h.converge(sets.controller)
        kinds = sorted(p["metadata"]["ownerReferences"][0]["kind"] for p in live(h))
        assert kinds == ["ReplicaSet", "ReplicationController", "ReplicationController"]

    run(body)
