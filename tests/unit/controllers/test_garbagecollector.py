"""Garbage collector reconcile(uid): background cascade, orphaning, foreground deletion with
blockOwnerDeletion, dangling reference cleanup."""

from __future__ import annotations

from typing import Any

from berth.api.resources import CONFIGMAPS, PODS, REPLICASETS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.garbagecollector import GarbageCollector
from tests.harness.fake_client import count_gets

from .harness import Harness, run


def owner_ref(obj: Obj, *, block: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def setup() -> tuple[Harness, GarbageCollector, Obj, Obj]:
    h = Harness()
    gc = GarbageCollector(h.ctx, resources=(REPLICASETS, PODS, CONFIGMAPS))
    rs = h.api.seed(
        REPLICASETS, {"metadata": {"name": "rs", "namespace": "default"}, "spec": {"replicas": 1}}
    )
    pod = h.api.seed(
        PODS,
        {
            "metadata": {"name": "p", "namespace": "default", "ownerReferences": [owner_ref(rs)]},
            "spec": {"containers": [{"name": "c"}]},
        },
    )
    return h, gc, rs, pod


async def settle(h: Harness, gc: GarbageCollector) -> None:
    for _ in range(10):
        before = len(h.api.actions)
        await h.sync()
        await gc.controller.drain()
        if len(h.api.actions) == before:
            return


def test_background_deletion_collects_dependents() -> None:
    async def body() -> None:
        h, gc, _rs, _pod = setup()
        await settle(h, gc)
        assert h.api.writes("delete") == []
        await h.api.delete(REPLICASETS, "rs", namespace="default", propagation_policy="Background")
        await settle(h, gc)
        assert h.api.stored(PODS, "default/p") is None

    run(body)


def test_orphan_deletion_keeps_dependents_and_strips_owner_reference() -> None:
    async def body() -> None:
        h, gc, _rs, _pod = setup()
        await settle(h, gc)
        await h.api.delete(REPLICASETS, "rs", namespace="default", propagation_policy="Orphan")
        assert h.api.stored(REPLICASETS, "default/rs") is not None, "held by the orphan finalizer"
        await settle(h, gc)
        assert h.api.stored(REPLICASETS, "default/rs") is None
        pod = h.api.stored(PODS, "default/p")
        assert pod is not None
        assert not pod["metadata"].get("ownerReferences")

    run(body)


def test_foreground_deletion_waits_for_blocking_dependents() -> None:
    async def body() -> None:
        h, gc, rs, _pod = setup()
        cm = h.api.seed(
            CONFIGMAPS,
            {
                "metadata": {
                    "name": "cm",
                    "namespace": "default",
                    "ownerReferences": [owner_ref(rs, block=False)],
                }
            },
        )
        del cm
        await settle(h, gc)
        await h.api.delete(REPLICASETS, "rs", namespace="default", propagation_policy="Foreground")
        await h.sync()
        await gc.controller.drain()
        stored = h.api.stored(REPLICASETS, "default/rs")
        assert stored is not None
        assert "foregroundDeletion" in stored["metadata"]["finalizers"]
        await settle(h, gc)
        assert h.api.stored(PODS, "default/p") is None
        assert h.api.stored(CONFIGMAPS, "default/cm") is None
        assert h.api.stored(REPLICASETS, "default/rs") is None

    run(body)


def test_dangling_owner_among_live_ones_is_removed_from_references() -> None:
    async def body() -> None:
        h = Harness()
        gc = GarbageCollector(h.ctx, resources=(REPLICASETS, PODS))
        live = h.api.seed(REPLICASETS, {"metadata": {"name": "live", "namespace": "default"}})
        ghost = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "ghost",
            "uid": "00000000-dead",
            "controller": False,
        }
        h.api.seed(
            PODS,
            {
                "metadata": {
                    "name": "p",
                    "namespace": "default",
                    "ownerReferences": [owner_ref(live), ghost],
                },
                "spec": {"containers": [{"name": "c"}]},
            },
        )
        await settle(h, gc)
        pod = h.api.stored(PODS, "default/p")
        assert pod is not None
        assert [r["name"] for r in pod["metadata"]["ownerReferences"]] == ["live"]

    run(body)


def test_unknown_uid_is_a_no_op() -> None:
    async def body() -> None:
        h, gc, _rs, _pod = setup()
        await h.sync()
        await gc.reconcile(ObjectKey("nope"))
        assert h.api.actions == []

    run(body)


def test_dependency_circle_does_not_block_background_deletion() -> None:
    async def body() -> None:
        h = Harness()
        gc = GarbageCollector(h.ctx, resources=(CONFIGMAPS,))
        a = h.api.seed(CONFIGMAPS, {"metadata": {"name": "a", "namespace": "default"}})
        b = h.api.seed(
            CONFIGMAPS,
            {"metadata": {"name": "b", "namespace": "default", "ownerReferences": [owner_ref(a)]}},
        )
        c = h.api.seed(
            CONFIGMAPS,
            {"metadata": {"name": "c", "namespace": "default", "ownerReferences": [owner_ref(b)]}},
        )
        await h.api.patch(
            CONFIGMAPS, "a", {"metadata": {"ownerReferences": [owner_ref(c)]}}, namespace="default"
        )
        await settle(h, gc)
        assert len(h.api.objects(CONFIGMAPS)) == 3, "a live circle is left alone"
        await h.api.delete(CONFIGMAPS, "a", namespace="default")
        await settle(h, gc)
        assert h.api.objects(CONFIGMAPS) == []

    run(body)


def test_the_dependents_of_a_deleted_owner_confirm_its_absence_once() -> None:
    """Five pods of a deleted ReplicaSet: one live GET says the owner is gone, not five (the
    upstream collector's absent-owner cache); every pod is still collected."""

    async def body() -> None:
        h, gc, rs, _pod = setup()
        for i in range(4):
            h.api.seed(
                PODS,
                {
                    "metadata": {
                        "name": f"p{i}",
                        "namespace": "default",
                        "ownerReferences": [owner_ref(rs)],
                    },
                    "spec": {"containers": [{"name": "c"}]},
                },
            )
        await settle(h, gc)
        owner_gets = count_gets(h.api, REPLICASETS)
        await h.api.delete(REPLICASETS, "rs", namespace="default", propagation_policy="Background")
        await settle(h, gc)
        assert [p["metadata"]["name"] for p in h.api.objects(PODS)] == []
        assert owner_gets == ["rs"]

    run(body)


def test_orphaning_keeps_an_owner_reference_added_since_the_cache_read() -> None:
    """The dependent's ownerReferences are written whole: computed from a cache that has not
    seen a second owner yet, the write would drop it."""

    async def body() -> None:
        h, gc, _rs, _pod = setup()
        cm = h.api.seed(CONFIGMAPS, {"metadata": {"name": "cm", "namespace": "default"}})
        await settle(h, gc)
        stored = h.api.stored(PODS, "default/p")
        assert stored is not None
        second = owner_ref(cm, block=False) | {"controller": False}
        refs = [*stored["metadata"]["ownerReferences"], second]
        await h.api.patch(PODS, "p", {"metadata": {"ownerReferences": refs}}, namespace="default")
        await h.api.delete(REPLICASETS, "rs", namespace="default", propagation_policy="Orphan")
        for informer in h.informers.all():  # the owner's deletion is seen, the pod's change not
            if informer.resource is REPLICASETS:
                await informer.relist()
        await gc.controller.drain()
        pod = h.api.stored(PODS, "default/p")
        assert pod is not None
        assert second in pod["metadata"]["ownerReferences"]
        assert h.api.stored(REPLICASETS, "default/rs") is not None, "not let go yet: kept"
        await settle(h, gc)  # the cache caught up: only the deleted owner's reference goes
        pod = h.api.stored(PODS, "default/p")
        assert pod is not None
        assert pod["metadata"]["ownerReferences"] == [second]
        assert h.api.stored(REPLICASETS, "default/rs") is None

    run(body)
