"""The VolumeBinding plugin against the fake API: a bound claim's volume affinity pins the pod,
an unbound Immediate claim keeps it pending, a WFFC claim gets ``selected-node`` for the chosen
node, and a WFFC claim with neither a reachable volume nor a provisioner fits no node."""

from __future__ import annotations

from collections import Counter
from typing import Any

from berth.api import storage as st
from berth.api.resources import (
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STORAGECLASSES,
)
from berth.client.interface import Obj
from tests.unit.scheduler.test_scheduler import Rig, node, pod, run


def claim(name: str, cls: str, volume: str = "") -> Obj:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
        "storageClassName": cls,
    }
    if volume:
        spec["volumeName"] = volume
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def pinned_pv(name: str, node_name: str, cls: str = "manual", claim_ref: Obj | None = None) -> Obj:
    spec: dict[str, Any] = {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": cls,
        "local": {"path": f"/v/{name}"},
        "nodeAffinity": st.pinned_to(node_name),
    }
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {"metadata": {"name": name}, "spec": spec, "status": {"phase": "Available"}}


def claim_pod(name: str, claim_name: str) -> Obj:
    p = pod(name)
    p["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": claim_name}}]
    return p


def wffc_class(name: str, provisioner: str) -> Obj:
    return {
        "metadata": {"name": name},
        "provisioner": provisioner,
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def rig(nodes: int = 3) -> Rig:
    r = Rig()
    for i in range(nodes):
        r.api.seed(NODES, node(f"n{i}", cpu="64"))
    return r


def test_bound_claims_pin_pods_to_their_volumes_node() -> None:
    async def body() -> None:
        r = rig()
        r.api.seed(PERSISTENTVOLUMES, pinned_pv("pv", "n2"))
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("data", "manual", volume="pv"))
        for i in range(6):
            r.api.seed(PODS, claim_pod(f"p{i}", "data"))
        await r.sync()
        await r.drain()
        assert Counter(r.placement().values()) == {"n2": 6}

    run(body())


def test_a_volume_on_no_node_leaves_the_pod_pending_with_the_upstream_reason() -> None:
    async def body() -> None:
        r = rig()
        r.api.seed(PERSISTENTVOLUMES, pinned_pv("pv", "gone"))
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("data", "manual", volume="pv"))
        r.api.seed(PODS, claim_pod("p", "data"))
        await r.sync()
        key = r.sched.queue.get_nowait()
        assert key is not None
        decision = await r.sched.schedule_one(key)
        assert decision is not None
        assert decision.node is None
        assert decision.message == (
            "0/3 nodes are available: 3 node(s) had volume node affinity conflict."
        )

    run(body())


def test_unbound_immediate_claim_keeps_the_pod_pending() -> None:
    async def body() -> None:
        r = rig()
        r.api.seed(STORAGECLASSES, {"metadata": {"name": "now"}, "provisioner": "x.io/p"})
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("data", "now"))
        r.api.seed(PODS, claim_pod("p", "data"))
        await r.sync()
        await r.drain()
        assert r.placement() == {"p": ""}
        stored = r.api.stored(PODS, "default/p")
        assert stored is not None
        cond = stored["status"]["conditions"][0]
        assert cond["message"] == (
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        )

    run(body())


def test_wffc_claim_is_told_the_chosen_node() -> None:
    async def body() -> None:
        r = rig()
        r.api.seed(STORAGECLASSES, wffc_class("local", st.LOCAL_PROVISIONER))
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("data", "local"))
        r.api.seed(PODS, claim_pod("p", "data"))
        await r.sync()
        await r.drain()
        chosen = r.placement()["p"]
        assert chosen
        stored = r.api.stored(PERSISTENTVOLUMECLAIMS, "default/data")
        assert stored is not None
        assert stored["metadata"]["annotations"][st.SELECTED_NODE_ANNOTATION] == chosen

    run(body())


def test_wffc_without_provisioner_goes_where_a_static_volume_is() -> None:
    async def body() -> None:
        r = rig()
        r.api.seed(STORAGECLASSES, wffc_class("static", "kubernetes.io/no-provisioner"))
        r.api.seed(PERSISTENTVOLUMES, pinned_pv("pv-n1", "n1", cls="static"))
        taken = {"name": "other", "namespace": "default", "uid": "u"}
        r.api.seed(PERSISTENTVOLUMES, pinned_pv("pv-n0", "n0", cls="static", claim_ref=taken))
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("data", "static"))
        r.api.seed(PODS, claim_pod("p", "data"))
        await r.sync()
        await r.drain()
        assert r.placement() == {"p": "n1"}

    run(body())


def with_room(obj: Obj, free: str) -> Obj:
    obj["metadata"]["annotations"] = {st.LOCAL_AVAILABLE_ANNOTATION: free}
    return obj


def test_a_local_claim_goes_only_to_a_node_with_room_for_it() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, with_room(node("small", cpu="64"), "512Mi"))
        r.api.seed(NODES, with_room(node("roomy", cpu="64"), "20Gi"))
        r.api.seed(STORAGECLASSES, wffc_class("local", st.LOCAL_PROVISIONER))
        for i in range(4):
            r.api.seed(PERSISTENTVOLUMECLAIMS, claim(f"data-{i}", "local"))  # 1Gi each
            r.api.seed(PODS, claim_pod(f"p{i}", f"data-{i}"))
        await r.sync()
        await r.drain()
        assert set(r.placement().values()) == {"roomy"}

    run(body())


def test_a_local_claim_bigger_than_every_nodes_free_space_stays_pending() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, with_room(node("a", cpu="64"), "512Mi"))
        r.api.seed(NODES, with_room(node("b", cpu="64"), "900Mi"))
        r.api.seed(STORAGECLASSES, wffc_class("local", st.LOCAL_PROVISIONER))
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("data", "local"))
        r.api.seed(PODS, claim_pod("p", "data"))
        await r.sync()
        key = r.sched.queue.get_nowait()
        assert key is not None
        decision = await r.sched.schedule_one(key)
        assert decision is not None
        assert decision.node is None
        assert decision.message == (
            "0/2 nodes are available: 2 node(s) did not have enough free storage."
        )
        r.sched.queue.done(key)
        stored = r.api.stored(PERSISTENTVOLUMECLAIMS, "default/data")
        assert stored is not None
        assert st.SELECTED_NODE_ANNOTATION not in (stored["metadata"].get("annotations") or {})
        # the node frees space (its agent reports it): the pod goes there
        grown = r.api.stored(NODES, "b")
        assert grown is not None
        await r.api.update(NODES, with_room(grown, "2Gi"))
        await r.sync()
        r.clock.advance(30)
        await r.drain()
        assert r.placement() == {"p": "b"}

    run(body())


def test_nodes_that_report_no_room_and_other_provisioners_are_not_refused() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("silent", cpu="64"))  # a simulated node reports nothing
        r.api.seed(NODES, with_room(node("full", cpu="64"), "0Mi"))
        r.api.seed(STORAGECLASSES, wffc_class("local", st.LOCAL_PROVISIONER))
        r.api.seed(STORAGECLASSES, wffc_class("remote", "example.com/csi"))
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("mine", "local"))
        r.api.seed(PERSISTENTVOLUMECLAIMS, claim("theirs", "remote"))
        r.api.seed(PODS, claim_pod("local-user", "mine"))
        for i in range(4):
            r.api.seed(PERSISTENTVOLUMECLAIMS, claim(f"r{i}", "remote"))
            r.api.seed(PODS, claim_pod(f"remote-user-{i}", f"r{i}"))
        await r.sync()
        await r.drain()
        placed = r.placement()
        assert placed.pop("local-user") == "silent"
        assert set(placed.values()) == {"silent", "full"}  # the room is the local class's

    run(body())
