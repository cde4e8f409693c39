"""Node lifecycle reconcile(node): Unknown after the grace period without heartbeats, taints,
pods marked not ready, eviction after tolerationSeconds (or at once without toleration)."""

from __future__ import annotations

import pytest

from berth.api.meta import format_micro_time, format_time
from berth.api.resources import LEASES, NODES, PODS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.nodelifecycle import (
    UNREACHABLE,
    NodeLifecycleConfig,
    NodeLifecycleController,
)
from berth.machinery.controller import Retry

from .harness import Harness, run

NODE = ObjectKey("n1")


def seed(h: Harness) -> None:
    stamp = format_time(h.clock.now())
    h.api.seed(
        NODES,
        {
            "metadata": {"name": "n1"},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                ]
            },
        },
    )
    h.api.seed(
        LEASES,
        {
            "metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "renewTime": format_micro_time(h.clock.now())},
        },
    )


def pod(name: str, tolerations: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "tolerations": tolerations or []},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


async def reconcile(h: Harness, c: NodeLifecycleController) -> None:
    await h.sync()
    delay = 0.0
    try:
        await c.reconcile(NODE)
    except Retry as r:
        delay = r.delay
    assert delay <= c.config.monitor_period


async def post_ready(h: Harness) -> None:
    """The node's agent posts Ready again (a heartbeat now)."""
    stamp = format_time(h.clock.now())
    await h.api.patch(
        NODES,
        "n1",
        {
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": stamp}]
            }
        },
        subresource="status",
    )


def ready_status(h: Harness) -> str:
    node = h.api.stored(NODES, "n1")
    assert node is not None
    return str(next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"])


def test_heartbeating_node_stays_ready_and_silent_node_goes_unknown_after_grace() -> None:
    async def body() -> None:
        h = Harness()
        seed(h)
        c = NodeLifecycleController(h.ctx, NodeLifecycleConfig(grace_period=40))
        await reconcile(h, c)
        for _ in range(6):  # lease renewed every 10s
            h.clock.advance(10)
            await h.api.patch(
                LEASES,
                "n1",
                {"spec": {"renewTime": format_micro_time(h.clock.now())}},
                namespace="kube-node-lease",
            )
            await reconcile(h, c)
        assert ready_status(h) == "True"
        h.clock.advance(39)
        await reconcile(h, c)
        assert ready_status(h) == "True"
        h.clock.advance(1)
        await reconcile(h, c)
        assert ready_status(h) == "Unknown"
        node = h.api.stored(NODES, "n1")
        assert node is not None
        keys = {(t["key"], t["effect"]) for t in node["spec"]["taints"]}
        assert keys == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}

    run(body)


def test_pods_marked_not_ready_and_evicted_after_toleration_seconds() -> None:
    async def body() -> None:
        h = Harness()
        seed(h)
        h.api.seed(PODS, pod("default-toleration"))
        h.api.seed(
            PODS,
            pod(
                "short",
                [
                    {
                        "key": UNREACHABLE,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 5,
                    }
                ],
            ),
        )
        h.api.seed(PODS, pod("forever", [{"operator": "Exists"}]))
        c = NodeLifecycleController(
            h.ctx, NodeLifecycleConfig(grace_period=40, default_toleration_seconds=20)
        )
        await reconcile(h, c)
        h.clock.advance(40)
        await reconcile(h, c)
        p = h.api.stored(PODS, "default/short")
        assert p is not None
        assert p["status"]["conditions"][0]["status"] == "False"
        assert h.api.writes("delete", PODS) == []
        h.clock.advance(5)
        await reconcile(h, c)
        assert [a.name for a in h.api.writes("delete", PODS)] == ["short"]
        h.clock.advance(15)
        await reconcile(h, c)
        assert [a.name for a in h.api.writes("delete", PODS)] == ["short", "default-toleration"]
        h.clock.advance(600)
        await reconcile(h, c)
        assert "forever" not in [a.name for a in h.api.writes("delete", PODS)]

    run(body)


async def gone_unknown(h: Harness) -> NodeLifecycleController:
    """A seeded node that stopped posting for the whole grace period: marked Unknown."""
    seed(h)
    c = NodeLifecycleController(h.ctx, NodeLifecycleConfig(grace_period=40))
    await reconcile(h, c)
    h.clock.advance(40)
    await reconcile(h, c)
    assert ready_status(h) == "Unknown"
    return c


def test_recovered_node_loses_its_taints() -> None:
    async def body() -> None:
        h = Harness()
        c = await gone_unknown(h)
        await post_ready(h)
        await reconcile(h, c)
        node = h.api.stored(NODES, "n1")
        assert node is not None
        assert not (node.get("spec") or {}).get("taints")

    run(body)


def test_retry_is_requested_for_the_next_check() -> None:
    async def body() -> None:
        h = Harness()
        seed(h)
        c = NodeLifecycleController(h.ctx)
        await h.sync()
        with pytest.raises(Retry):
            await c.reconcile(NODE)

    run(body)


def test_a_stale_cached_node_never_drops_a_taint_written_meanwhile() -> None:
    """The taint list is written whole: computed from a Node the watch has not caught up with,
    it would drop the control-plane taint `berth apply` had just added (seen on a slow VM)."""

    async def body() -> None:
        h = Harness()
        c = await gone_unknown(h)  # tainted unreachable
        stored = h.api.stored(NODES, "n1")
        assert stored is not None
        taints = [*stored["spec"]["taints"], CONTROL_PLANE_TAINT]
        await h.api.patch(NODES, "n1", {"spec": {"taints": taints}})  # not in the cache yet
        await post_ready(h)
        cached = h.api.stored(NODES, "n1")  # Ready again, but without the new taint
        assert cached is not None
        cached["spec"]["taints"] = [t for t in cached["spec"]["taints"] if t != CONTROL_PLANE_TAINT]
        cached["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
        c.nodes.replace([cached], str(cached["metadata"]["resourceVersion"]))
        with pytest.raises(Retry):
            await c.reconcile(NODE)
        after = h.api.stored(NODES, "n1")
        assert after is not None
        assert CONTROL_PLANE_TAINT in after["spec"]["taints"]
        await reconcile(h, c)  # the watch caught up: the unreachable taints go, the other stays
        after = h.api.stored(NODES, "n1")
        assert after is not None
        assert after["spec"]["taints"] == [CONTROL_PLANE_TAINT]

    run(body)


CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def test_a_status_posted_since_the_cache_read_is_not_marked_unknown() -> None:
    """The Node's conditions are written whole: computed from a cached Node that predates the
    agent's last post, marking it Unknown would overwrite a fresh Ready (and taint a live
    node)."""

    async def body() -> None:
        h = Harness()
        seed(h)
        c = NodeLifecycleController(h.ctx, NodeLifecycleConfig(grace_period=40))
        await reconcile(h, c)
        h.clock.advance(40)
        await post_ready(h)  # the agent is back; the cache has not seen it yet
        with pytest.raises(Retry):
            await c.reconcile(NODE)
        assert ready_status(h) == "True"
        await reconcile(h, c)  # the cache caught up: a fresh heartbeat, Ready stays
        assert ready_status(h) == "True"
        node = h.api.stored(NODES, "n1")
        assert node is not None
        assert not (node.get("spec") or {}).get("taints")

    run(body)


def test_marking_a_pod_not_ready_keeps_a_condition_written_since_the_cache_read() -> None:
    async def body() -> None:
        h = Harness()
        seed(h)
        h.api.seed(PODS, pod("p"))
        c = NodeLifecycleController(h.ctx, NodeLifecycleConfig(grace_period=40))
        await reconcile(h, c)
        h.clock.advance(40)
        stored = h.api.stored(PODS, "default/p")
        assert stored is not None
        disruption = {"type": "DisruptionTarget", "status": "True", "reason": "Tested"}
        conditions = [*stored["status"]["conditions"], disruption]
        patch = {"status": {"conditions": conditions}}  # not in the controller's cache yet
        await h.api.patch(PODS, "p", patch, namespace="default", subresource="status")
        with pytest.raises(Retry):  # the node is Unknown now: the eviction timers run
            await c.reconcile(NODE)
        assert ready_status(h) == "Unknown"
        after = h.api.stored(PODS, "default/p")
        assert after is not None
        by_type = {c["type"]: c for c in after["status"]["conditions"]}
        assert by_type["Ready"]["status"] == "False"
        assert by_type["DisruptionTarget"] == disruption

    run(body)
