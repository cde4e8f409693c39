"""StatefulSet reconcile(key): stable names in order (OrderedReady) or all at once (Parallel),
replacement under the same name, scale down from the highest ordinal, rolling update from the
highest ordinal down to the partition, OnDelete, ControllerRevisions and their history, status,
volume claims."""

from __future__ import annotations

from typing import Any

from berth.api.resources import (
    CONTROLLERREVISIONS,
    EVENTS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    STATEFULSETS,
    ResourceDef,
)
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.history import data_hash, revision_data, revision_name
from berth.controllers.statefulset import StatefulSetController
from berth.controllers.statefulset_claims import ClaimManager

from .harness import Harness, pod_template, run

KEY = ObjectKey("default/web")
CLAIMS = ResourceDef(
    group="",
    version="v1",
    plural="persistentvolumeclaims",
    singular="persistentvolumeclaim",
    kind="PersistentVolumeClaim",
    namespaced=True,
)


CLAIM_TEMPLATE: Obj = {
    "metadata": {"name": "data"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}


def statefulset(replicas: int = 3, **spec: Any) -> Obj:
    """A StatefulSet as the API server stores it (defaults filled)."""
    update = spec.pop(
        "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default", "generation": 1},
        "spec": {
            "replicas": replicas,
            "serviceName": "web-svc",
            "podManagementPolicy": spec.pop("podManagementPolicy", "OrderedReady"),
            "revisionHistoryLimit": spec.pop("revisionHistoryLimit", 10),
            "updateStrategy": update,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template({"app": "web"}, image=spec.pop("image", "nginx:1")),
            **spec,
        },
    }


async def running(
    h: Harness, sts: Obj, *, claims: ResourceDef | None = None
) -> StatefulSetController:
    """Seed ``sts`` and converge its controller (its claims made in ``claims`` if given)."""
    h.api.seed(STATEFULSETS, sts)
    c = StatefulSetController(h.ctx)
    if claims is not None:
        c.claims = ClaimManager(h.ctx, resource=claims)
    await h.converge(c.controller)
    return c


def live(h: Harness) -> dict[str, Obj]:
    return {
        p["metadata"]["name"]: p
        for p in h.api.objects(PODS)
        if not p["metadata"].get("deletionTimestamp")
    }


def image(pod: Obj) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def status(h: Harness) -> Obj:
    sts = h.api.stored(STATEFULSETS, "default/web")
    assert sts is not None
    return dict(sts.get("status") or {})


async def set_spec(h: Harness, **spec: Any) -> None:
    await h.api.patch(STATEFULSETS, "web", {"spec": spec}, namespace="default")
    sts = h.api.stored(STATEFULSETS, "default/web")
    assert sts is not None
    sts["metadata"]["generation"] += 1


async def set_image(h: Harness, img: str) -> None:
    await set_spec(h, template=pod_template({"app": "web"}, image=img))


def deleted_pods(h: Harness) -> list[str]:
    """Pods deleted, in order (the pretend kubelet's final deletes not repeated)."""
    return list(dict.fromkeys(a.name for a in h.api.writes("delete", PODS) if a.name))


def test_ordered_ready_creates_one_pod_at_a_time_and_waits_for_ready() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(STATEFULSETS, statefulset(3))
        c = StatefulSetController(h.ctx)
        await h.sync()
        await c.reconcile(KEY)
        assert sorted(live(h)) == ["web-0"]
        # web-0 runs but is not Ready: web-1 must wait
        await h.kubelet_step(ready=lambda _p: False)
        await h.sync()
        await c.reconcile(KEY)
        assert sorted(live(h)) == ["web-0"]
        await h.converge(c.controller)
        pods = live(h)
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        creates = [a.name for a in h.api.writes("create", PODS)]
        assert creates == ["web-0", "web-1", "web-2"]
        for ordinal, (pod_name, pod) in enumerate(sorted(pods.items())):
            lbl = pod["metadata"]["labels"]
            assert lbl["statefulset.kubernetes.io/pod-name"] == pod_name
            assert lbl["apps.kubernetes.io/pod-index"] == str(ordinal)
            assert lbl["app"] == "web"
            assert pod["spec"]["hostname"] == pod_name
            assert pod["spec"]["subdomain"] == "web-svc"
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
        st = status(h)
        revs = h.api.objects(CONTROLLERREVISIONS)
        assert len(revs) == 1
        assert revs[0]["revision"] == 1
        assert revs[0]["metadata"]["labels"]["app"] == "web"
        assert revs[0]["data"]["spec"]["template"]["$patch"] == "replace"
        rev_name = revs[0]["metadata"]["name"]
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods.values()} == {
            rev_name
        }
        assert st == {
            "observedGeneration": 1,
            "replicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "currentReplicas": 3,
            "updatedReplicas": 3,
            "currentRevision": rev_name,
            "updateRevision": rev_name,
            "collisionCount": 0,
        }

    run(body)


def test_parallel_creates_all_pods_at_once_and_ordinals_start() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(
            STATEFULSETS, statefulset(3, podManagementPolicy="Parallel", ordinals={"start": 5})
        )
        c = StatefulSetController(h.ctx)
        await h.sync()
        await c.reconcile(KEY)
        assert sorted(live(h)) == ["web-5", "web-6", "web-7"]

    run(body)


def test_deleted_pod_comes_back_with_the_same_name() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(3))
        old_uid = live(h)["web-1"]["metadata"]["uid"]
        await h.api.delete(PODS, "web-1", namespace="default", grace_period_seconds=0)
        await h.converge(c.controller)
        pods = live(h)
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        assert pods["web-1"]["metadata"]["uid"] != old_uid

    run(body)


def test_failed_pod_is_replaced_under_its_name() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(2))
        await h.api.patch(
            PODS,
            "web-0",
            {"status": {"phase": "Failed"}},
            namespace="default",
            subresource="status",
        )
        await h.converge(c.controller)
        assert deleted_pods(h) == ["web-0"]
        assert sorted(live(h)) == ["web-0", "web-1"]

    run(body)


def test_scale_down_removes_the_highest_ordinal_first_one_at_a_time() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(4))
        await set_spec(h, replicas=1)
        await h.sync()
        await c.reconcile(KEY)
        await h.sync()
        await c.reconcile(KEY)  # web-3 is still terminating: nothing else goes
        assert deleted_pods(h) == ["web-3"]
        await h.converge(c.controller)
        assert deleted_pods(h) == ["web-3", "web-2", "web-1"]
        assert sorted(live(h)) == ["web-0"]
        assert status(h)["replicas"] == 1

    run(body)


def test_partitioned_rolling_update_stops_at_the_partition_highest_first() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(3))
        first = status(h)["currentRevision"]
        await set_spec(
            h, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
        )
        await set_image(h, "nginx:2")
        await h.converge(c.controller)
        pods = live(h)
        assert {n: image(p) for n, p in pods.items()} == {
            "web-0": "nginx:1",
            "web-1": "nginx:2",
            "web-2": "nginx:2",
        }
        assert deleted_pods(h) == ["web-2", "web-1"]
        st = status(h)
        assert st["currentRevision"] == first
        assert st["updateRevision"] != first
        assert (st["currentReplicas"], st["updatedReplicas"]) == (1, 2)
        # a deleted pod below the partition comes back at the current revision
        await h.api.delete(PODS, "web-0", namespace="default", grace_period_seconds=0)
        await h.converge(c.controller)
        assert image(live(h)["web-0"]) == "nginx:1"
        # lifting the partition finishes the rollout; the update revision becomes current
        await set_spec(
            h, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        )
        await h.converge(c.controller)
        assert {image(p) for p in live(h).values()} == {"nginx:2"}
        st = status(h)
        assert st["currentRevision"] == st["updateRevision"] != first
        assert (st["currentReplicas"], st["updatedReplicas"]) == (3, 3)
        assert len(h.api.objects(CONTROLLERREVISIONS)) == 2

    run(body)


def test_rolling_update_waits_for_each_replaced_pod_to_be_ready() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(3))
        await set_image(h, "nginx:2")
        # new pods never become ready: only web-2 is replaced
        await h.converge(c.controller, ready=lambda p: image(p) == "nginx:1")
        assert deleted_pods(h) == ["web-2"]
        assert {n: image(p) for n, p in live(h).items()}["web-1"] == "nginx:1"

    run(body)


def test_on_delete_waits_for_users_and_recreates_at_the_update_revision() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(2, updateStrategy={"type": "OnDelete"}))
        await set_image(h, "nginx:2")
        await h.converge(c.controller)
        assert deleted_pods(h) == []
        await h.api.delete(PODS, "web-0", namespace="default", grace_period_seconds=0)
        await h.converge(c.controller)
        assert {n: image(p) for n, p in live(h).items()} == {"web-0": "nginx:2", "web-1": "nginx:1"}
        assert status(h)["updatedReplicas"] == 1

    run(body)


def test_rollback_renumbers_the_old_revision_and_history_is_limited() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(1, revisionHistoryLimit=1))
        await set_image(h, "nginx:2")
        await h.converge(c.controller)
        await set_image(h, "nginx:1")  # kubectl rollout undo puts the old template back
        await h.converge(c.controller)
        revs = {
            r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]: r["revision"]
            for r in h.api.objects(CONTROLLERREVISIONS)
        }
        assert revs == {"nginx:1": 3, "nginx:2": 2}
        for img in ("nginx:3", "nginx:4"):
            await set_image(h, img)
            await h.converge(c.controller)
        revs = {
            r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]: r["revision"]
            for r in h.api.objects(CONTROLLERREVISIONS)
        }
        # the live revision plus one of history
        assert revs == {"nginx:3": 4, "nginx:4": 5}

    run(body)


def test_volume_claims_are_made_per_pod_and_kept_across_recreation() -> None:
    async def body() -> None:
        h = Harness()
        policy = {"whenDeleted": "Delete", "whenScaled": "Retain"}
        sts = statefulset(
            2, volumeClaimTemplates=[CLAIM_TEMPLATE], persistentVolumeClaimRetentionPolicy=policy
        )
        c = await running(h, sts, claims=CLAIMS)
        claims = {x["metadata"]["name"]: x for x in h.api.objects(CLAIMS)}
        assert sorted(claims) == ["data-web-0", "data-web-1"]
        assert claims["data-web-0"]["metadata"]["labels"] == {"app": "web"}
        assert claims["data-web-0"]["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
        pod = live(h)["web-1"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in pod[
            "spec"
        ]["volumes"]
        uid = claims["data-web-1"]["metadata"]["uid"]
        await h.api.delete(PODS, "web-1", namespace="default", grace_period_seconds=0)
        await h.converge(c.controller)
        again = {x["metadata"]["name"]: x for x in h.api.objects(CLAIMS)}
        assert again["data-web-1"]["metadata"]["uid"] == uid
        assert len(again) == 2

    run(body)


def test_scaled_down_claim_is_owned_by_its_pod_alone_when_both_policies_delete() -> None:
    """``whenScaled: Delete`` with ``whenDeleted: Delete``: the condemned pod's claim swaps the
    set's owner reference for the pod's (with both, the garbage collector would keep the claim
    as long as the set lives); the kept pod's claim stays the set's."""

    async def body() -> None:
        h = Harness()
        policy = {"whenDeleted": "Delete", "whenScaled": "Delete"}
        sts = statefulset(
            2, volumeClaimTemplates=[CLAIM_TEMPLATE], persistentVolumeClaimRetentionPolicy=policy
        )
        c = await running(h, sts, claims=CLAIMS)
        pod_uid = live(h)["web-1"]["metadata"]["uid"]
        await set_spec(h, replicas=1)
        await h.converge(c.controller)
        assert deleted_pods(h) == ["web-1"]
        claims = {x["metadata"]["name"]: x for x in h.api.objects(CLAIMS)}
        owners = claims["data-web-1"]["metadata"]["ownerReferences"]
        assert [(o["kind"], o["uid"]) for o in owners] == [("Pod", pod_uid)]
        kept = claims["data-web-0"]["metadata"]["ownerReferences"]
        assert [o["kind"] for o in kept] == ["StatefulSet"]
        # scaled up again before the collector removed it: the claim is the set's once more
        await set_spec(h, replicas=2)
        await h.converge(c.controller)
        again = {x["metadata"]["name"]: x for x in h.api.objects(CLAIMS)}
        owners = again["data-web-1"]["metadata"]["ownerReferences"]
        assert [o["kind"] for o in owners] == ["StatefulSet"]
        assert again["data-web-1"]["metadata"]["uid"] == claims["data-web-1"]["metadata"]["uid"]

    run(body)


def test_volume_claims_without_served_claims_are_noted_not_made() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(STATEFULSETS, statefulset(1, volumeClaimTemplates=[CLAIM_TEMPLATE]))
        h.api.unserved.add(PERSISTENTVOLUMECLAIMS)  # a server without storage
        c = StatefulSetController(h.ctx)
        await h.converge(c.controller)
        assert "volumes" not in live(h)["web-0"]["spec"]
        reasons = [e.get("reason") for e in h.api.objects(EVENTS)]
        assert "VolumeClaimsNotServed" in reasons

    run(body)


def test_a_revision_name_taken_by_another_object_bumps_the_collision_count() -> None:
    async def body() -> None:
        h = Harness()
        sts = h.api.seed(STATEFULSETS, statefulset(1))
        taken = revision_name("web", data_hash(revision_data(sts), 0))
        h.api.seed(
            CONTROLLERREVISIONS,
            {
                "metadata": {"name": taken, "namespace": "default"},
                "data": {"someone": "else"},
                "revision": 1,
            },
        )
        c = StatefulSetController(h.ctx)
        await h.converge(c.controller)
        st = status(h)
        assert st["collisionCount"] == 1
        assert st["updateRevision"] == revision_name("web", data_hash(revision_data(sts), 1))
        assert (
            live(h)["web-0"]["metadata"]["labels"]["controller-revision-hash"]
            == (st["updateRevision"])
        )
        # the next pass keeps the same revision (the count is remembered in the status)
        await h.sync()
        await c.reconcile(KEY)
        assert len(h.api.objects(CONTROLLERREVISIONS)) == 2

    run(body)


def test_parallel_scale_down_deletes_every_condemned_pod_at_once() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(4, podManagementPolicy="Parallel"))
        await set_spec(h, replicas=1)
        await h.sync()
        await c.reconcile(KEY)
        assert deleted_pods(h) == ["web-3", "web-2", "web-1"]

    run(body)


def test_moving_the_start_ordinal_replaces_pods_outside_the_range() -> None:
    async def body() -> None:
        h = Harness()
        c = await running(h, statefulset(2))
        await set_spec(h, ordinals={"start": 1})
        await h.converge(c.controller)
        assert sorted(live(h)) == ["web-1", "web-2"]
        assert deleted_pods(h) == ["web-0"]

    run(body)
