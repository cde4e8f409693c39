"""Pod GC reconcile(pod): pods bound to a deleted Node are force-deleted; pods on live nodes
(even ones the cache has not seen yet) are left alone."""

from __future__ import annotations

from berth.api.resources import NODES, PODS
from berth.client.keys import ObjectKey
from berth.controllers.podgc import PodGarbageCollector

from .harness import Harness, run


def pod(name: str, node: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
    }


def test_pods_of_deleted_nodes_are_force_deleted() -> None:
    async def body() -> None:
        h = Harness()
        c = PodGarbageCollector(h.ctx)
        h.api.seed(NODES, {"metadata": {"name": "alive"}})
        h.api.seed(NODES, {"metadata": {"name": "dead"}})
        h.api.seed(PODS, pod("keep", "alive"))
        h.api.seed(PODS, pod("stuck", "dead"))
        await h.api.delete(PODS, "stuck", namespace="default")  # graceful: stays Terminating
        await h.sync()
        await c.controller.drain()
        assert h.api.stored(PODS, "default/stuck") is not None
        await h.api.delete(NODES, "dead")
        await h.sync()
        await c.controller.drain()
        assert h.api.stored(PODS, "default/stuck") is None
        assert h.api.stored(PODS, "default/keep") is not None
        final = h.api.writes("delete", PODS)[-1]
        assert final.body is not None
        assert final.body["gracePeriodSeconds"] == 0

    run(body)


def test_lagging_node_cache_is_checked_live() -> None:
    async def body() -> None:
        h = Harness()
        c = PodGarbageCollector(h.ctx)
        h.api.seed(PODS, pod("new", "fresh-node"))
        await h.sync()
        h.api.seed(NODES, {"metadata": {"name": "fresh-node"}})  # not in the cache yet
        await c.reconcile(ObjectKey("default/new"))
        assert h.api.stored(PODS, "default/new") is not None

    run(body)
