"""The persistent volume controller against the fake API: one volume never goes to two
claims, a bound claim whose volume vanished is Lost, a released Recycle volume is Failed, a
claim pre-bound to a volume by volumeName gets it, and a local volume that no node made is
let go without waiting for a node; the local provisioner makes no volume on a node that is gone
(the claim's selected node is dropped so the scheduler picks again), not Ready, or without room
for the claim."""

from __future__ import annotations

from typing import Any

from berth.api import storage as st
from berth.api.resources import (
    EVENTS,
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    STORAGECLASSES,
)
from berth.client.interface import Obj
from berth.controllers.volumes import VolumeController, local_volume
from tests.unit.controllers.harness import Harness, run


def pv(name: str, size: str = "1Gi", *, policy: str = "Retain") -> Obj:
    return {
        "metadata": {"name": name, "finalizers": [st.PV_PROTECTION_FINALIZER]},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual",
            "persistentVolumeReclaimPolicy": policy,
            "volumeMode": "Filesystem",
            "hostPath": {"path": f"/srv/{name}"},
        },
        "status": {"phase": "Available"},
    }


def claim(name: str, *, volume: str = "", cls: str = "manual") -> Obj:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
        "storageClassName": cls,
        "volumeMode": "Filesystem",
    }
    if volume:
        spec["volumeName"] = volume
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "finalizers": [st.PVC_PROTECTION_FINALIZER],
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def rig() -> tuple[Harness, VolumeController]:
    h = Harness()
    return h, VolumeController(h.ctx)


def phase(h: Harness, resource: Any, key: str) -> str:
    obj = h.api.stored(resource, key)
    assert obj is not None, key
    return str(obj["status"]["phase"])


def test_one_volume_never_goes_to_two_claims() -> None:
    async def body() -> None:
        h, c = rig()
        h.api.seed(PERSISTENTVOLUMES, pv("only"))
        for n in ("a", "b", "c"):
            h.api.seed(PERSISTENTVOLUMECLAIMS, claim(n))
        await h.converge(c.controller, kubelet=False)
        phases = {n: phase(h, PERSISTENTVOLUMECLAIMS, f"default/{n}") for n in "abc"}
        assert sorted(phases.values()) == ["Bound", "Pending", "Pending"]
        winner = next(n for n, p in phases.items() if p == "Bound")
        stored = h.api.stored(PERSISTENTVOLUMES, "only")
        assert stored is not None
        assert stored["spec"]["claimRef"]["name"] == winner
        assert stored["status"]["phase"] == "Bound"

    run(body)


def test_claim_prebound_by_volume_name_gets_that_volume() -> None:
    async def body() -> None:
        h, c = rig()
        h.api.seed(PERSISTENTVOLUMES, pv("small"))
        h.api.seed(PERSISTENTVOLUMES, pv("chosen", "5Gi"))
        h.api.seed(PERSISTENTVOLUMECLAIMS, claim("mine", volume="chosen"))
        await h.converge(c.controller, kubelet=False)
        assert phase(h, PERSISTENTVOLUMECLAIMS, "default/mine") == "Bound"
        chosen = h.api.stored(PERSISTENTVOLUMES, "chosen")
        assert chosen is not None
        assert chosen["spec"]["claimRef"]["name"] == "mine"
        assert phase(h, PERSISTENTVOLUMES, "small") == "Available"

    run(body)


def test_bound_claim_whose_volume_vanished_is_lost() -> None:
    async def body() -> None:
        h, c = rig()
        h.api.seed(PERSISTENTVOLUMES, pv("v"))
        h.api.seed(PERSISTENTVOLUMECLAIMS, claim("x"))
        await h.converge(c.controller, kubelet=False)
        assert phase(h, PERSISTENTVOLUMECLAIMS, "default/x") == "Bound"
        stored = h.api.stored(PERSISTENTVOLUMES, "v")
        assert stored is not None
        stored["metadata"]["finalizers"] = []
        await h.api.update(PERSISTENTVOLUMES, stored)
        await h.api.delete(PERSISTENTVOLUMES, "v")
        await h.converge(c.controller, kubelet=False)
        assert phase(h, PERSISTENTVOLUMECLAIMS, "default/x") == "Lost"

    run(body)


def test_released_recycle_volume_fails() -> None:
    async def body() -> None:
        h, c = rig()
        h.api.seed(PERSISTENTVOLUMES, pv("r", policy="Recycle"))
        h.api.seed(PERSISTENTVOLUMECLAIMS, claim("x"))
        await h.converge(c.controller, kubelet=False)
        await h.api.delete(PERSISTENTVOLUMECLAIMS, "x", namespace="default")
        await h.converge(c.controller, kubelet=False)  # no pod uses it: protection lets go
        assert h.api.stored(PERSISTENTVOLUMECLAIMS, "default/x") is None
        stored = h.api.stored(PERSISTENTVOLUMES, "r")
        assert stored is not None
        assert stored["status"]["phase"] == "Failed"
        assert stored["status"]["reason"] == "VolumeFailedRecycle"

    run(body)


def test_local_volume_no_node_made_is_let_go_and_a_made_one_waits_for_its_node() -> None:
    async def body() -> None:
        h, c = rig()
        cls = h.api.seed(STORAGECLASSES, st.default_storage_class())
        for n in ("unused", "used"):
            made = h.api.seed(PERSISTENTVOLUMECLAIMS, claim(n, cls=st.LOCAL_STORAGE_CLASS))
            body = local_volume(made, cls, "node-1")
            if n == "used":
                body["metadata"]["annotations"][st.LOCAL_VOLUME_MADE_ANNOTATION] = "true"
            h.api.seed(PERSISTENTVOLUMES, body)
        await h.converge(c.controller, kubelet=False)
        for n in ("unused", "used"):
            await h.api.delete(PERSISTENTVOLUMECLAIMS, n, namespace="default")
        await h.converge(c.controller, kubelet=False)
        left = {p["metadata"]["name"]: p for p in h.api.objects(PERSISTENTVOLUMES)}
        assert len(left) == 1  # the unused one is gone entirely
        (held,) = left.values()
        assert held["metadata"]["annotations"][st.LOCAL_VOLUME_MADE_ANNOTATION] == "true"
        assert held["metadata"]["deletionTimestamp"]
        assert held["metadata"]["finalizers"] == [st.LOCAL_CLEANUP_FINALIZER]

    run(body)


def node(name: str, *, ready: str = "True", free: str | None = None) -> Obj:
    annotations = {st.LOCAL_AVAILABLE_ANNOTATION: free} if free is not None else {}
    return {
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name},
            "annotations": annotations,
        },
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def selected(name: str, on: str, size: str = "1Gi") -> Obj:
    made = claim(name, cls=st.LOCAL_STORAGE_CLASS)
    made["spec"]["resources"]["requests"]["storage"] = size
    made["metadata"]["annotations"] = {st.SELECTED_NODE_ANNOTATION: on}
    return made


def warnings(h: Harness) -> list[str]:
    return [
        str(e["message"])
        for e in h.api.objects(EVENTS)
        if e["reason"] == "ProvisioningFailed" and e["type"] == "Warning"
    ]


def test_a_claim_whose_selected_node_is_gone_is_rescheduled() -> None:
    async def body() -> None:
        h, c = rig()
        h.api.seed(STORAGECLASSES, st.default_storage_class())
        h.api.seed(PERSISTENTVOLUMECLAIMS, selected("data", "ghost"))
        await h.converge(c.controller, kubelet=False)
        assert h.api.objects(PERSISTENTVOLUMES) == []
        stored = h.api.stored(PERSISTENTVOLUMECLAIMS, "default/data")
        assert stored is not None
        assert st.SELECTED_NODE_ANNOTATION not in (stored["metadata"].get("annotations") or {})
        assert stored["status"]["phase"] == "Pending"
        assert warnings(h) == [
            "selected node 'ghost' not found: rescheduling the claim's first consumer"
        ]

    run(body)


def test_no_local_volume_is_pinned_to_a_node_that_is_not_ready() -> None:
    async def body() -> None:
        h, c = rig()
        h.api.seed(STORAGECLASSES, st.default_storage_class())
        h.api.seed(NODES, node("down", ready="Unknown"))
        h.api.seed(PERSISTENTVOLUMECLAIMS, selected("data", "down"))
        await h.converge(c.controller, kubelet=False)
        assert h.api.objects(PERSISTENTVOLUMES) == []
        assert warnings(h) == [
            "selected node 'down' is not Ready: no local volume is made there now"
        ]
        stored = h.api.stored(PERSISTENTVOLUMECLAIMS, "default/data")
        assert stored is not None
        assert stored["metadata"]["annotations"][st.SELECTED_NODE_ANNOTATION] == "down"
        # the node comes back: the claim is looked at again and provisioned there
        await h.api.patch(NODES, "down", {"status": node("down")["status"]}, subresource="status")
        h.clock.advance(20)
        await h.converge(c.controller, kubelet=False)
        (pv,) = h.api.objects(PERSISTENTVOLUMES)
        assert st.pinned_node(pv) == "down"
        assert phase(h, PERSISTENTVOLUMECLAIMS, "default/data") == "Bound"

    run(body)


def test_a_local_claim_bigger_than_its_nodes_free_space_is_not_provisioned() -> None:
    async def body() -> None:
        h, c = rig()
        h.api.seed(STORAGECLASSES, st.default_storage_class())
        h.api.seed(NODES, node("small", free="900Mi"))
        h.api.seed(PERSISTENTVOLUMECLAIMS, selected("big", "small", size="2Gi"))
        h.api.seed(PERSISTENTVOLUMECLAIMS, selected("fits", "small", size="100Mi"))
        await h.converge(c.controller, kubelet=False)
        (pv,) = h.api.objects(PERSISTENTVOLUMES)
        assert pv["spec"]["claimRef"]["name"] == "fits"
        assert pv["spec"]["capacity"] == {"storage": "100Mi"}
        assert warnings(h) == [
            "node 'small' has 900Mi free for local volumes; the claim requests 2048Mi"
        ]
        assert phase(h, PERSISTENTVOLUMECLAIMS, "default/big") == "Pending"

    run(body)
