"""StatefulSet ``volumeClaimTemplates`` with the storage kinds end to end: a real API server,
the controller manager (StatefulSet controller, volume binder, local provisioner), the
scheduler's WaitForFirstConsumer handling and a simulated fleet. Each pod gets its own claim
on the default ``berth-local`` class, bound to a volume made on the pod's node; a deleted pod
comes back under its name with the same claim, on the same node; the retention policy
removes claims (and so their volumes) on scale down and with the set; a pod evicted from the
cordoned node holding its volume waits for that node."""

from __future__ import annotations

import asyncio
from pathlib import Path

from berth.api import storage as st
from berth.api.resources import (
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STATEFULSETS,
)
from berth.client.interface import Obj, evict
from tests.harness.apiserver import ServerHandle

from .cluster import Cluster, control_plane, wait_until


def statefulset_with_claims(name: str, replicas: int) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": "x",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            # No storageClassName: the default class (berth-local) is filled in.
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }


def _running(pod: Obj) -> bool:
    return (
        not pod["metadata"].get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") == "Running"
    )


async def running_pods(c: Cluster) -> dict[str, Obj]:
    return {p["metadata"]["name"]: p for p in await c.pods(selector="app=db") if _running(p)}


def test_each_pod_gets_its_own_bound_claim_on_its_node_and_keeps_it(
    server: ServerHandle, tmp_path: Path
) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=3) as c:
            await c.api.create(STATEFULSETS, statefulset_with_claims("db", 2), namespace="default")

            async def both_running() -> dict[str, Obj] | None:
                pods = await running_pods(c)
                return pods if sorted(pods) == ["db-0", "db-1"] else None

            pods = await wait_until(both_running, within=60, what="db-0 and db-1 Running")

            claims: dict[str, Obj] = {}
            for ordinal in (0, 1):
                pod = pods[f"db-{ordinal}"]
                cname = f"data-db-{ordinal}"
                volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
                assert volumes["data"]["persistentVolumeClaim"] == {"claimName": cname}
                pvc = await c.api.get(PERSISTENTVOLUMECLAIMS, cname, namespace="default")
                assert pvc["status"]["phase"] == "Bound"
                assert pvc["spec"]["storageClassName"] == st.LOCAL_STORAGE_CLASS
                assert pvc["metadata"]["labels"] == {"app": "db"}
                node = pod["spec"]["nodeName"]
                assert pvc["metadata"]["annotations"][st.SELECTED_NODE_ANNOTATION] == node
                pv = await c.api.get(PERSISTENTVOLUMES, pvc["spec"]["volumeName"])
                assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
                assert st.pinned_node(pv) == node  # the pod runs where its volume is
                claims[cname] = pvc
            assert len({c_["spec"]["volumeName"] for c_ in claims.values()}) == 2

            # A deleted pod returns under its name, with the same claim, on the same node.
            old = pods["db-1"]
            await c.api.delete(PODS, "db-1", namespace="default")

            async def back() -> Obj | None:
                p = (await running_pods(c)).get("db-1")
                fresh = p is not None and p["metadata"]["uid"] != old["metadata"]["uid"]
                return p if fresh else None

            again = await wait_until(back, within=60, what="db-1 recreated and Running")
            volumes = {v["name"]: v for v in again["spec"]["volumes"]}
            assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "data-db-1"}
            assert again["spec"]["nodeName"] == old["spec"]["nodeName"]
            pvc = await c.api.get(PERSISTENTVOLUMECLAIMS, "data-db-1", namespace="default")
            before = claims["data-db-1"]
            assert pvc["metadata"]["uid"] == before["metadata"]["uid"]
            assert pvc["spec"]["volumeName"] == before["spec"]["volumeName"]
            assert pvc["status"]["phase"] == "Bound"
            assert len((await c.api.list(PERSISTENTVOLUMECLAIMS, namespace="default")).items) == 2

    asyncio.run(body())


def test_retention_delete_removes_claims_and_their_volumes(
    server: ServerHandle, tmp_path: Path
) -> None:
    """``whenScaled: Delete``: the claim of a pod removed by a scale down goes with the pod
    (pvc-protection holds it until then), and its local volume is reclaimed; ``whenDeleted:
    Delete``: the garbage collector removes the remaining claims with the set."""

    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=2) as c:
            sts = statefulset_with_claims("db", 2)
            sts["spec"]["persistentVolumeClaimRetentionPolicy"] = {
                "whenDeleted": "Delete",
                "whenScaled": "Delete",
            }
            await c.api.create(STATEFULSETS, sts, namespace="default")

            async def both_bound() -> dict[str, str] | None:
                items = (await c.api.list(PERSISTENTVOLUMECLAIMS, namespace="default")).items
                bound = {
                    p["metadata"]["name"]: p["spec"]["volumeName"]
                    for p in items
                    if (p.get("status") or {}).get("phase") == "Bound"
                }
                ready = len(await running_pods(c)) == 2
                return bound if ready and sorted(bound) == ["data-db-0", "data-db-1"] else None

            volumes = await wait_until(both_bound, within=60, what="two pods, two bound claims")

            await c.api.patch(STATEFULSETS, "db", {"spec": {"replicas": 1}}, namespace="default")

            async def claim_and_volume_gone(claim: str) -> bool:
                names = {
                    p["metadata"]["name"]
                    for p in (await c.api.list(PERSISTENTVOLUMECLAIMS, namespace="default")).items
                }
                pvs = {p["metadata"]["name"] for p in (await c.api.list(PERSISTENTVOLUMES)).items}
                return claim not in names and volumes[claim] not in pvs

            async def scaled() -> bool:
                pods = await c.pods(selector="app=db")
                return [p["metadata"]["name"] for p in pods] == ["db-0"] and (
                    await claim_and_volume_gone("data-db-1")
                )

            await wait_until(scaled, within=60, what="db-1, data-db-1 and its volume gone")
            kept = await c.api.get(PERSISTENTVOLUMECLAIMS, "data-db-0", namespace="default")
            assert kept["status"]["phase"] == "Bound"

            await c.api.delete(STATEFULSETS, "db", namespace="default")

            async def all_gone() -> bool:
                return not await c.pods(selector="app=db") and await claim_and_volume_gone(
                    "data-db-0"
                )

            await wait_until(all_gone, within=60, what="the set's pods, claims and volumes gone")

    asyncio.run(body())


def test_an_evicted_pod_waits_for_its_cordoned_volume_node_and_returns_there(
    server: ServerHandle, tmp_path: Path
) -> None:
    """A drain of the node holding a pod's local volume, as ``kubectl drain`` (and ``berth
    upgrade``) does it: cordon, evict. The replacement can run only where its volume is: it
    stays unscheduled while the node is cordoned, and is scheduled there once uncordoned."""

    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=3) as c:
            await c.api.create(STATEFULSETS, statefulset_with_claims("db", 1), namespace="default")

            async def running() -> Obj | None:
                return (await running_pods(c)).get("db-0")

            first = await wait_until(running, within=60, what="db-0 Running")
            node = first["spec"]["nodeName"]
            await c.api.patch(NODES, node, {"spec": {"unschedulable": True}})
            await evict(c.api, namespace="default", pod="db-0")

            async def waiting() -> Obj | None:
                for p in await c.pods(selector="app=db"):
                    if p["metadata"]["uid"] == first["metadata"]["uid"]:
                        return None
                    conditions = (p.get("status") or {}).get("conditions") or []
                    if any(
                        x["type"] == "PodScheduled" and x["status"] == "False" for x in conditions
                    ):
                        return p
                return None

            pending = await wait_until(waiting, within=60, what="db-0 replaced, unschedulable")
            await asyncio.sleep(2)  # the scheduler tries again: it must not move it
            again = await c.api.get(PODS, "db-0", namespace="default")
            assert again["metadata"]["uid"] == pending["metadata"]["uid"]
            assert not again["spec"].get("nodeName")
            await c.api.patch(NODES, node, {"spec": {"unschedulable": None}})

            async def back() -> Obj | None:
                p = await running()
                return (
                    p
                    if p is not None and p["metadata"]["uid"] != first["metadata"]["uid"]
                    else None
                )

            returned = await wait_until(back, within=60, what="db-0 Running again")
            assert returned["spec"]["nodeName"] == node

    asyncio.run(body())
