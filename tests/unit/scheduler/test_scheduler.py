"""Scheduler.schedule_one against the fake API: binds, assumes (incremental accounting),
spreads, reports FailedScheduling, retries when the cluster changes, samples nodes."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from berth.api.resources import EVENTS, NODES, PODS
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.machinery.clock import FakeClock
from berth.machinery.events import EventRecorder
from berth.machinery.informer import InformerFactory
from berth.scheduler.scheduler import Scheduler, SchedulerConfig
from tests.harness.fake_client import FakeClient


def node(name: str, *, cpu: str = "2", taints: list[dict[str, str]] | None = None) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints or []},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(name: str, *, cpu: str = "500m", owner: str = "") -> Obj:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": owner,
                "controller": True,
            }
        ]
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
    }


class Rig:
    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.clock = FakeClock()
        self.api = FakeClient(now=self.clock.now)
        self.informers = InformerFactory(self.api, clock=self.clock)
        self.sched = Scheduler(
            self.api,
            self.informers,
            self.clock,
            recorder=EventRecorder(self.api, self.clock, component="default-scheduler"),
            config=config,
        )

    async def sync(self) -> None:
        for inf in self.informers.all():
            await inf.relist()

    async def drain(self) -> None:
        while (key := self.sched.queue.get_nowait()) is not None:
            await self.sched.schedule_one(key)
            self.sched.queue.done(key)
        await self.sched.wait_binds()

    def placement(self) -> dict[str, str]:
        return {
            p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in self.api.objects(PODS)
        }


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_binds_pods_and_accounts_for_them_before_the_cache_catches_up() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("n1", cpu="1"))
        r.api.seed(NODES, node("n2", cpu="1"))
        for i in range(4):
            r.api.seed(PODS, pod(f"p{i}"))
        await r.sync()
        await r.drain()  # no relist in between: assumed pods must be counted
        placed = Counter(r.placement().values())
        assert placed == {"n1": 2, "n2": 2}
        bindings = r.api.writes("bind", PODS)
        assert len(bindings) == 4
        stored = r.api.stored(PODS, "default/p0")
        assert stored is not None
        assert stored["status"]["conditions"][0]["type"] == "PodScheduled"
        reasons = [e["reason"] for e in r.api.objects(EVENTS)]
        assert reasons == ["Scheduled"] * 4

    run(body())


def test_unschedulable_pod_gets_event_condition_and_is_retried_when_a_node_appears() -> None:
    async def body() -> None:
        r = Rig()
        taint = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
        r.api.seed(NODES, node("n1", taints=taint))
        r.api.seed(NODES, node("n2", cpu="100m"))
        r.api.seed(NODES, node("n3", cpu="100m"))
        r.api.seed(PODS, pod("big"))
        await r.sync()
        await r.drain()
        (event,) = r.api.objects(EVENTS)
        assert event["reason"] == "FailedScheduling"
        assert event["message"] == (
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, "
            "2 Insufficient cpu."
        )
        stored = r.api.stored(PODS, "default/big")
        assert stored is not None
        (cond,) = stored["status"]["conditions"]
        assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
        assert ObjectKey("default/big") in r.sched.unschedulable
        await r.api.create(NODES, node("n4"))
        await r.sync()  # node added -> pod moves back after its backoff
        r.clock.advance(1)
        await r.drain()
        assert r.placement() == {"big": "n4"}

    run(body())


def test_pods_of_one_owner_spread_across_nodes() -> None:
    async def body() -> None:
        r = Rig()
        for n in ("a", "b", "c"):
            r.api.seed(NODES, node(n, cpu="16"))
        for i in range(6):
            r.api.seed(PODS, pod(f"w{i}", cpu="10m", owner="rs-uid"))
        await r.sync()
        await r.drain()
        assert Counter(r.placement().values()) == {"a": 2, "b": 2, "c": 2}

    run(body())


def test_failed_bind_unassumes_and_requeues() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("n1", cpu="1"))
        r.api.seed(PODS, pod("p", cpu="800m"))
        await r.sync()
        r.api.fail_next("binding", PODS, errors.ApiError(500, "InternalError", "boom"))
        await r.drain()
        assert r.sched.node_infos["n1"].req_cpu == 0, "failed bind must release resources"
        r.clock.advance(2)
        await r.drain()
        assert r.placement() == {"p": "n1"}

    run(body())


def test_feasible_node_sampling_follows_percentage_of_nodes_to_score() -> None:
    r = Rig()
    assert r.sched.feasible_target(50) == 50
    assert r.sched.feasible_target(1000) == 420
    assert r.sched.feasible_target(5000) == 500
    r2 = Rig(SchedulerConfig(percentage_of_nodes_to_score=100))
    assert r2.sched.feasible_target(1000) == 1000


def test_sampling_rotates_the_starting_node() -> None:
    async def body() -> None:
        r = Rig(SchedulerConfig(min_feasible_nodes=1, percentage_of_nodes_to_score=1))
        for i in range(4):
            r.api.seed(NODES, node(f"n{i}", cpu="64"))
        for i in range(4):
            r.api.seed(PODS, pod(f"p{i}", cpu="1"))
        await r.sync()
        await r.drain()
        assert sorted(r.placement().values()) == ["n0", "n1", "n2", "n3"]

    run(body())


def test_pods_for_other_schedulers_and_bound_pods_are_ignored() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("n1"))
        other = pod("other")
        other["spec"]["schedulerName"] = "custom"
        r.api.seed(PODS, other)
        bound = pod("bound")
        bound["spec"]["nodeName"] = "n1"
        r.api.seed(PODS, bound)
        await r.sync()
        await r.drain()
        assert r.api.writes("bind") == []
        assert r.sched.node_infos["n1"].req_cpu == 500

    run(body())


def test_unschedulable_condition_keeps_a_condition_written_since_the_cache_read() -> None:
    """The condition list is written whole: computed from a cached pod that predates another
    writer's condition, it would drop that condition."""

    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("n1", cpu="100m"))
        r.api.seed(PODS, pod("big"))
        await r.sync()
        gate = {"type": "example.com/gate", "status": "True"}
        patch = {"status": {"conditions": [gate]}}  # not in the scheduler's cache yet
        await r.api.patch(PODS, "big", patch, namespace="default", subresource="status")
        await r.drain()
        stored = r.api.stored(PODS, "default/big")
        assert stored is not None
        by_type = {c["type"]: c for c in stored["status"]["conditions"]}
        assert by_type["example.com/gate"] == gate
        assert (by_type["PodScheduled"]["status"], by_type["PodScheduled"]["reason"]) == (
            "False",
            "Unschedulable",
        )

    run(body())
