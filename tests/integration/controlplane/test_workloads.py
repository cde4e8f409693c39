"""ReplicaSets, DaemonSets, garbage collection and namespaces end to end, mirroring the
conformance descriptions: ReplicaSet should serve/replace pods; Daemon set should run and stop
simple daemon (on every eligible node); Garbage collector should delete RS created by
deployment when not orphaning / orphan RS when PropagationPolicy is Orphan / keep the owner
until its dependents are deleted (foreground); Namespaces should ensure that all pods and
services are removed when a namespace is deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from berth.api.resources import (
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    NAMESPACES,
    NETWORKPOLICIES,
    NODES,
    PODS,
    REPLICASETS,
    SERVICES,
)
from berth.client import errors
from berth.client.interface import Obj
from tests.harness.apiserver import ServerHandle

from .cluster import Cluster, control_plane, deployment, wait_until


def run(coro: Any) -> None:
    asyncio.run(coro)


async def live_pods(c: Cluster, selector: str, namespace: str = "default") -> list[Obj]:
    return [
        p for p in await c.pods(namespace, selector) if not p["metadata"].get("deletionTimestamp")
    ]


async def running(c: Cluster, selector: str, n: int, namespace: str = "default") -> list[Obj]:
    async def check() -> list[Obj] | None:
        pods = await live_pods(c, selector, namespace)
        ok = [p for p in pods if p["status"].get("phase") == "Running"]
        return pods if len(ok) == n == len(pods) else None

    return await wait_until(check, what=f"{n} running pods for {selector}")


async def gone(c: Cluster, resource: Any, name: str, namespace: str | None = "default") -> bool:
    try:
        await c.api.get(resource, name, namespace=namespace)
    except errors.NotFound:
        return True
    return False


def test_replicaset_replaces_deleted_pods(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(
                REPLICASETS,
                {
                    "metadata": {"name": "rs", "namespace": "default"},
                    "spec": {
                        "replicas": 3,
                        "selector": {"matchLabels": {"app": "rs"}},
                        "template": {
                            "metadata": {"labels": {"app": "rs"}},
                            "spec": {
                                "containers": [{"name": "app", "image": "x"}],
                                "terminationGracePeriodSeconds": 1,
                            },
                        },
                    },
                },
            )
            pods = await running(c, "app=rs", 3)
            victim = pods[0]["metadata"]["name"]
            await c.kubectl("delete", "pod", victim, "--wait=false")
            after = await running(c, "app=rs", 3)
            assert victim not in {p["metadata"]["name"] for p in after}

            # The ReplicaSet's status follows the pods asynchronously (its next reconcile).
            async def status_caught_up() -> bool | None:
                rs = await c.api.get(REPLICASETS, "rs", namespace="default")
                return rs["status"].get("readyReplicas") == 3 or None

            await wait_until(status_caught_up, what="ReplicaSet reports 3 ready replicas")

    run(body())


def test_daemonset_runs_on_every_eligible_node(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        labels = {"node-0": {"pool": "a"}, "node-1": {"pool": "a"}, "node-2": {"pool": "b"}}
        async with control_plane(server, tmp_path, nodes=3, node_labels=labels) as c:
            await c.api.create(
                DAEMONSETS,
                {
                    "metadata": {"name": "ds", "namespace": "default"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "ds"}},
                        "template": {
                            "metadata": {"labels": {"app": "ds"}},
                            "spec": {
                                "nodeSelector": {"pool": "a"},
                                "containers": [{"name": "app", "image": "x"}],
                                "terminationGracePeriodSeconds": 1,
                            },
                        },
                    },
                },
            )
            pods = await running(c, "app=ds", 2)
            assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-0", "node-1"]
            out = await c.kubectl("rollout", "status", "daemonset/ds", "--timeout=90s")
            assert "successfully rolled out" in out
            # A node joining the pool gets a daemon pod; one leaving loses it.
            await c.api.patch(NODES, "node-2", {"metadata": {"labels": {"pool": "a"}}})
            await c.api.patch(NODES, "node-0", {"metadata": {"labels": {"pool": "b"}}})

            async def moved() -> bool:
                pods = await live_pods(c, "app=ds")
                return sorted(p["spec"].get("nodeName", "") for p in pods) == ["node-1", "node-2"]

            await wait_until(moved, what="daemon pods follow the node labels")
            # ControllerRevisions: kubectl's rollout history and undo of a DaemonSet
            await c.kubectl("set", "image", "daemonset/ds", "app=y")
            await c.kubectl("rollout", "status", "daemonset/ds", "--timeout=90s")
            history = await c.kubectl("rollout", "history", "daemonset/ds")
            assert [line.split()[0] for line in history.splitlines()[2:] if line] == ["1", "2"]
            await c.kubectl("rollout", "undo", "daemonset/ds")

            async def undone() -> bool:
                pods = await live_pods(c, "app=ds")
                images = {x["spec"]["containers"][0]["image"] for x in pods}
                return len(pods) == 2 and images == {"x"}

            await wait_until(undone, what="daemon pods back on the first template")
            history = await c.kubectl("rollout", "history", "daemonset/ds")
            assert [line.split()[0] for line in history.splitlines()[2:] if line] == ["2", "3"]
            await c.kubectl("delete", "daemonset", "ds")
            await wait_until(lambda: _none_left(c, "app=ds"), what="daemon pods removed")

    run(body())


async def _none_left(c: Cluster, selector: str) -> bool:
    return not await c.pods(selector=selector)


def test_garbage_collection_cascade_orphan_and_foreground(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            for name in ("bg", "orphan", "fg"):
                await c.api.create(DEPLOYMENTS, deployment(name, replicas=2))
            for name in ("bg", "orphan", "fg"):
                await running(c, f"app={name}", 2)
            # Background (kubectl's default): the Deployment goes, then its RS and pods.
            await c.kubectl("delete", "deployment", "bg")
            await wait_until(lambda: _none_left(c, "app=bg"), what="bg pods collected")
            rs = await c.api.list(REPLICASETS, namespace="default", label_selector="app=bg")
            assert rs.items == []
            # Orphan: the RS and pods stay, without an owner.
            await c.kubectl("delete", "deployment", "orphan", "--cascade=orphan")
            await wait_until(lambda: gone(c, DEPLOYMENTS, "orphan"), what="orphaning owner gone")
            (rs_obj,) = (
                await c.api.list(REPLICASETS, namespace="default", label_selector="app=orphan")
            ).items
            assert not rs_obj["metadata"].get("ownerReferences")
            pods_before = {p["metadata"]["name"] for p in await live_pods(c, "app=orphan")}
            assert len(pods_before) == 2
            # A new Deployment with the same selector adopts the orphan instead of starting over.
            await c.api.create(DEPLOYMENTS, deployment("orphan", replicas=2))
            await c.kubectl("rollout", "status", "deployment/orphan", "--timeout=90s")
            (adopted,) = (
                await c.api.list(REPLICASETS, namespace="default", label_selector="app=orphan")
            ).items
            assert adopted["metadata"]["uid"] == rs_obj["metadata"]["uid"]
            assert adopted["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
            pods_after = {p["metadata"]["name"] for p in await live_pods(c, "app=orphan")}
            assert pods_after == pods_before
            # Foreground: the owner stays (with the finalizer) until its dependents are gone.
            await c.api.delete(
                DEPLOYMENTS, "fg", namespace="default", propagation_policy="Foreground"
            )
            d = await c.api.get(DEPLOYMENTS, "fg", namespace="default")
            assert "foregroundDeletion" in d["metadata"]["finalizers"]
            await wait_until(lambda: gone(c, DEPLOYMENTS, "fg"), what="foreground owner gone")
            assert await c.pods(selector="app=fg") == []
            assert (
                await c.api.list(REPLICASETS, namespace="default", label_selector="app=fg")
            ).items == []

    run(body())


def test_namespace_deletion_removes_pods_and_services(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(NAMESPACES, {"metadata": {"name": "team"}})
            spec = deployment("web", replicas=2)
            spec["metadata"]["namespace"] = "team"
            await c.api.create(DEPLOYMENTS, spec, namespace="team")
            await c.api.create(
                SERVICES,
                {
                    "metadata": {"name": "web", "namespace": "team"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
                },
                namespace="team",
            )
            await c.api.create(
                NETWORKPOLICIES,
                {"metadata": {"name": "deny", "namespace": "team"}, "spec": {"podSelector": {}}},
                namespace="team",
            )
            await running(c, "app=web", 2, namespace="team")

            async def endpoints_ready() -> bool:
                try:
                    ep = await c.api.get(ENDPOINTS, "web", namespace="team")
                except errors.NotFound:
                    return False
                subsets = ep.get("subsets") or []
                return bool(subsets) and len(subsets[0].get("addresses") or []) == 2

            await wait_until(endpoints_ready, what="endpoints list both pods")
            await c.kubectl("delete", "namespace", "team", "--wait=false")
            await wait_until(
                lambda: gone(c, NAMESPACES, "team", None), within=30, what="namespace finalized"
            )
            assert (await c.api.list(PODS, namespace="team")).items == []
            assert (await c.api.list(SERVICES, namespace="team")).items == []
            assert (await c.api.list(NETWORKPOLICIES, namespace="team")).items == []

    run(body())
