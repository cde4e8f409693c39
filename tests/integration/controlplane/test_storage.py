"""Persistent volumes end to end on a real API server with the controller manager, the
scheduler and a simulated fleet (each node with its own identity): static binding of the
smallest fitting volume, WaitForFirstConsumer with the local provisioner (the scheduler picks
the node, the volume is made there, the pod starts once the claim is bound), a pod waiting for
an unbound Immediate claim, protection finalizers, and the reclaim policies; the room nodes
report for local volumes, and a claim whose selected node is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from berth.api import storage as st
from berth.api.resources import (
    EVENTS,
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STORAGECLASSES,
)
from berth.client import errors
from berth.client.interface import Obj
from tests.harness.apiserver import ServerHandle

from .cluster import Cluster, control_plane, wait_until


def run(coro: Any) -> None:
    asyncio.run(coro)


def static_pv(name: str, size: str, *, cls: str = "manual", policy: str = "Retain") -> Obj:
    return {
        "metadata": {"name": name, "labels": {"size": size}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": cls,
            "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": f"/srv/{name}"},
        },
    }


def claim(name: str, size: str, cls: str | None = None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def pod_using(name: str, claim_name: str) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "app",
                    "image": "x",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


async def phase_of(c: Cluster, resource: Any, name: str, ns: str | None = None) -> str:
    obj = await c.api.get(resource, name, namespace=ns)
    return str((obj.get("status") or {}).get("phase") or "")


async def wait_phase(
    c: Cluster, resource: Any, name: str, phase: str, ns: str | None = None
) -> None:
    async def check() -> bool:
        return await phase_of(c, resource, name, ns) == phase

    await wait_until(check, what=f"{resource.plural}/{name} {phase}")


async def gone(c: Cluster, resource: Any, name: str, ns: str | None = None) -> bool:
    try:
        await c.api.get(resource, name, namespace=ns)
    except errors.NotFound:
        return True
    return False


def test_static_binding_picks_the_smallest_fit_and_retain_releases(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=1) as c:
            for name, size in (("pv-big", "10Gi"), ("pv-small", "2Gi"), ("pv-tiny", "500Mi")):
                await c.api.create(PERSISTENTVOLUMES, static_pv(name, size))
            await c.api.create(
                PERSISTENTVOLUMECLAIMS, claim("c1", "1Gi", "manual"), namespace="default"
            )
            await wait_phase(c, PERSISTENTVOLUMECLAIMS, "c1", "Bound", "default")
            got = await c.api.get(PERSISTENTVOLUMECLAIMS, "c1", namespace="default")
            assert got["spec"]["volumeName"] == "pv-small"
            assert got["status"]["capacity"] == {"storage": "2Gi"}
            assert got["status"]["accessModes"] == ["ReadWriteOnce"]
            pv = await c.api.get(PERSISTENTVOLUMES, "pv-small")
            assert pv["spec"]["claimRef"]["uid"] == got["metadata"]["uid"]
            await wait_phase(c, PERSISTENTVOLUMES, "pv-small", "Bound")
            await wait_phase(c, PERSISTENTVOLUMES, "pv-big", "Available")
            row = (await c.kubectl("get", "pvc", "c1")).splitlines()[1].split()
            assert row[:5] == ["c1", "Bound", "pv-small", "2Gi", "RWO"]

            # pv-protection: a Bound volume is not removed while bound.
            await c.api.delete(PERSISTENTVOLUMES, "pv-small")
            await asyncio.sleep(0.5)
            assert not await gone(c, PERSISTENTVOLUMES, "pv-small")

            # Retain: the claim goes, the volume stays Released (and, deleted, then goes).
            await c.api.delete(PERSISTENTVOLUMECLAIMS, "c1", namespace="default")

            async def claim_gone() -> bool:
                return await gone(c, PERSISTENTVOLUMECLAIMS, "c1", "default")

            await wait_until(claim_gone, what="claim removed")

            async def released_or_gone() -> bool:
                return await gone(c, PERSISTENTVOLUMES, "pv-small")

            # It was marked for deletion earlier: once Released, pv-protection lets it go.
            await wait_until(released_or_gone, what="pv-small removed once no longer bound")

            # A Retain volume no one deleted stays Released.
            await c.api.create(
                PERSISTENTVOLUMECLAIMS, claim("c2", "5Gi", "manual"), namespace="default"
            )
            await wait_phase(c, PERSISTENTVOLUMECLAIMS, "c2", "Bound", "default")
            await c.api.delete(PERSISTENTVOLUMECLAIMS, "c2", namespace="default")
            await wait_phase(c, PERSISTENTVOLUMES, "pv-big", "Released")

    run(body())


def test_immediate_claim_without_volume_keeps_its_pod_pending(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=1) as c:
            await c.api.create(
                STORAGECLASSES,
                {"metadata": {"name": "slow"}, "provisioner": "example.com/none"},
            )
            await c.api.create(
                PERSISTENTVOLUMECLAIMS, claim("wait", "1Gi", "slow"), namespace="default"
            )
            await c.api.create(PODS, pod_using("waiter", "wait"), namespace="default")

            async def unschedulable() -> str | None:
                pod = await c.api.get(PODS, "waiter", namespace="default")
                for cond in (pod.get("status") or {}).get("conditions") or ():
                    if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                        return str(cond.get("message"))
                return None

            message = await wait_until(unschedulable, what="PodScheduled=False")
            assert "pod has unbound immediate PersistentVolumeClaims" in message
            got = await c.api.get(PERSISTENTVOLUMECLAIMS, "wait", namespace="default")
            annotations = got["metadata"].get("annotations") or {}
            assert annotations.get(st.STORAGE_PROVISIONER_ANNOTATION) == "example.com/none"
            # A matching volume appears: the claim binds and the pod is scheduled.
            await c.api.create(PERSISTENTVOLUMES, static_pv("late", "1Gi", cls="slow"))
            await wait_phase(c, PERSISTENTVOLUMECLAIMS, "wait", "Bound", "default")
            await wait_phase(c, PODS, "waiter", "Running", "default")

    run(body())


def test_wait_for_first_consumer_provisions_on_the_pods_node(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=3) as c:
            # No class named: the default (berth-local, WaitForFirstConsumer) is filled in.
            await c.api.create(PERSISTENTVOLUMECLAIMS, claim("data", "1Gi"), namespace="default")

            async def reasons() -> list[str]:
                events = (await c.api.list(EVENTS, namespace="default")).items
                return [e["reason"] for e in events if e["involvedObject"]["name"] == "data"]

            # the binder's event, polled (it was 'sleep 1 s, then it must be there')
            assert await wait_until(reasons, what="the claim's event") == ["WaitForFirstConsumer"]
            got = await c.api.get(PERSISTENTVOLUMECLAIMS, "data", namespace="default")
            assert got["spec"]["storageClassName"] == st.LOCAL_STORAGE_CLASS
            assert got["status"]["phase"] == "Pending"  # waits for its first consumer
            assert not (await c.api.list(PERSISTENTVOLUMES)).items

            await c.api.create(PODS, pod_using("user", "data"), namespace="default")
            await wait_phase(c, PODS, "user", "Running", "default")
            pod = await c.api.get(PODS, "user", namespace="default")
            node = pod["spec"]["nodeName"]
            got = await c.api.get(PERSISTENTVOLUMECLAIMS, "data", namespace="default")
            assert got["metadata"]["annotations"][st.SELECTED_NODE_ANNOTATION] == node
            assert got["status"]["phase"] == "Bound"
            pv_name = got["spec"]["volumeName"]
            assert pv_name == f"pvc-{got['metadata']['uid']}"
            pv = await c.api.get(PERSISTENTVOLUMES, pv_name)
            assert st.pinned_node(pv) == node
            assert pv["spec"]["local"]["path"] == f"{st.LOCAL_VOLUMES_DIR}/{pv_name}"
            assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
            assert st.LOCAL_CLEANUP_FINALIZER in pv["metadata"]["finalizers"]

            # A second pod on the same claim must land on the volume's node.
            await c.api.create(PODS, pod_using("second", "data"), namespace="default")
            await wait_phase(c, PODS, "second", "Running", "default")
            second = await c.api.get(PODS, "second", namespace="default")
            assert second["spec"]["nodeName"] == node

            # pvc-protection: the claim stays while pods use it.
            await c.api.delete(PERSISTENTVOLUMECLAIMS, "data", namespace="default")
            await asyncio.sleep(1.0)
            held = await c.api.get(PERSISTENTVOLUMECLAIMS, "data", namespace="default")
            assert held["metadata"].get("deletionTimestamp")
            assert held["metadata"]["finalizers"] == [st.PVC_PROTECTION_FINALIZER]
            for p in ("user", "second"):
                await c.api.delete(PODS, p, namespace="default")

            async def claim_gone() -> bool:
                return await gone(c, PERSISTENTVOLUMECLAIMS, "data", "default")

            await wait_until(claim_gone, what="claim removed once its pods are gone")

            # Reclaim Delete: the volume is deleted; no node ever made its directory (the
            # simulated fleet has no disk, so never marked it made): nothing holds it.
            async def volume_gone() -> bool:
                return await gone(c, PERSISTENTVOLUMES, pv_name)

            await wait_until(volume_gone, what="released local volume deleted")

    run(body())


async def scheduling_message(c: Cluster, pod: str) -> str | None:
    got = await c.api.get(PODS, pod, namespace="default")
    for cond in (got.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message"))
    return None


def test_a_local_claim_goes_where_there_is_room_and_a_gone_selected_node_is_dropped(
    server: ServerHandle, tmp_path: Path
) -> None:
    """The room nodes report for local volumes steers WaitForFirstConsumer claims (a claim
    bigger than every node's free space leaves its pod Pending with upstream's reason), and a
    claim whose selected node no longer exists is given back to the scheduler."""

    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=3) as c:
            nodes = sorted(n["metadata"]["name"] for n in (await c.api.list(NODES)).items)
            for n, free in zip(nodes, ("100Mi", "5Gi", "200Mi"), strict=True):
                # what a runc node's agent writes (simulated nodes have no disk to report)
                room = {st.LOCAL_AVAILABLE_ANNOTATION: free}
                await c.api.patch(NODES, n, {"metadata": {"annotations": room}})
            await c.api.create(PERSISTENTVOLUMECLAIMS, claim("big", "1Gi"), namespace="default")
            await c.api.create(PODS, pod_using("big-user", "big"), namespace="default")
            await wait_phase(c, PODS, "big-user", "Running", "default")
            placed = await c.api.get(PODS, "big-user", namespace="default")
            assert placed["spec"]["nodeName"] == nodes[1]

            await c.api.create(PERSISTENTVOLUMECLAIMS, claim("huge", "6Gi"), namespace="default")
            await c.api.create(PODS, pod_using("huge-user", "huge"), namespace="default")

            async def refused() -> str | None:
                return await scheduling_message(c, "huge-user")

            message = await wait_until(refused, what="huge-user unschedulable")
            assert message == "0/3 nodes are available: 3 node(s) did not have enough free storage."
            await c.api.delete(PODS, "huge-user", namespace="default")

            # The scheduler chose a node that is gone before the volume was made there (as if
            # the binder had been down meanwhile): the binder gives the claim back.
            late = claim("late", "1Gi")
            late["metadata"]["annotations"] = {st.SELECTED_NODE_ANNOTATION: "gone-node"}
            await c.api.create(PERSISTENTVOLUMECLAIMS, late, namespace="default")

            async def dropped() -> bool:
                got = await c.api.get(PERSISTENTVOLUMECLAIMS, "late", namespace="default")
                return st.SELECTED_NODE_ANNOTATION not in (got["metadata"].get("annotations") or {})

            await wait_until(dropped, what="the gone node dropped from the claim")
            events = (await c.api.list(EVENTS, namespace="default")).items
            assert any(
                e["reason"] == "ProvisioningFailed" and "gone-node" in e["message"]
                for e in events
                if e["involvedObject"]["name"] == "late"
            )
            assert not [
                pv
                for pv in (await c.api.list(PERSISTENTVOLUMES)).items
                if st.pinned_node(pv) == "gone-node"
            ]
            await c.api.create(PODS, pod_using("late-user", "late"), namespace="default")
            await wait_phase(c, PODS, "late-user", "Running", "default")
            got = await c.api.get(PERSISTENTVOLUMECLAIMS, "late", namespace="default")
            node = (await c.api.get(PODS, "late-user", namespace="default"))["spec"]["nodeName"]
            assert got["metadata"]["annotations"][st.SELECTED_NODE_ANNOTATION] == node
            pv = await c.api.get(PERSISTENTVOLUMES, got["spec"]["volumeName"])
            assert st.pinned_node(pv) == node == nodes[1]

    run(body())
