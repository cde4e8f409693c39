"""Preemption: a pod that fits nowhere evicts the fewest, least important lower-priority
pods of one node (budgets weighed), is nominated there, and is bound once they are gone;
``preemptionPolicy: Never`` waits instead."""

from __future__ import annotations

from typing import Any

from berth.api.resources import EVENTS, NODES, PODDISRUPTIONBUDGETS, PODS
from berth.client.interface import Obj
from berth.scheduler import preemption
from berth.scheduler.nodeinfo import node_info, pod_info

from .test_scheduler import Rig, node, pod, run


def prio(name: str, priority: int, *, cpu: str = "500m", on: str = "", **extra: Any) -> Obj:
    p = pod(name, cpu=cpu)
    p["spec"]["priority"] = priority
    p["metadata"]["uid"] = f"uid-{name}"  # pure tests only: the fake API sets its own
    if on:
        p["spec"]["nodeName"] = on
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    p["spec"].update(extra.get("spec", {}))
    p["metadata"].setdefault("labels", {}).update(extra.get("labels", {}))
    return p


def _node_with(*pods: Obj, cpu: str = "1") -> Any:
    info = node_info(node("n1", cpu=cpu))
    for p in pods:
        info.add_pod(pod_info(p))
    return info


def test_victims_are_the_fewest_least_important_pods() -> None:
    info = _node_with(
        prio("low", 1, cpu="400m", on="n1"),
        prio("mid", 5, cpu="400m", on="n1"),
        prio("peer", 10, cpu="100m", on="n1"),
        cpu="1",
    )
    chosen = preemption.victims_on(pod_info(prio("high", 10, cpu="400m")), info, lambda v: set())
    assert chosen is not None
    assert [v.key for v in chosen.victims] == ["default/low"]  # mid is given back
    none = preemption.victims_on(pod_info(prio("big", 10, cpu="2")), info, lambda v: set())
    assert none is None  # even without every lower pod it would not fit


def test_budget_protected_pods_are_spared_when_another_choice_exists() -> None:
    info = _node_with(
        prio("guarded", 1, cpu="500m", on="n1"), prio("free", 1, cpu="500m", on="n1"), cpu="1"
    )
    chosen = preemption.victims_on(
        pod_info(prio("high", 10, cpu="500m")), info, lambda v: {"uid-guarded"}
    )
    assert chosen is not None
    assert [v.key for v in chosen.victims] == ["default/free"]
    assert chosen.violations == 0


def test_a_higher_priority_pod_preempts_and_is_nominated() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("n1", cpu="1"))
        r.api.seed(PODS, prio("low", 0, cpu="800m", on="n1"))
        r.api.seed(PODS, prio("high", 1000, cpu="500m"))
        await r.sync()
        await r.drain()
        low = r.api.stored(PODS, "default/low")
        assert low is not None
        assert low["metadata"]["deletionTimestamp"]  # deleted gracefully
        assert low["status"]["conditions"][-1]["reason"] == "PreemptionByScheduler"
        high = r.api.stored(PODS, "default/high")
        assert high is not None
        assert high["status"]["nominatedNodeName"] == "n1"
        preempted = [e for e in r.api.objects(EVENTS) if e["reason"] == "Preempted"]
        uid = high["metadata"]["uid"]
        assert preempted[0]["message"] == f"Preempted by pod {uid} on node n1"
        await r.sync()
        r.clock.advance(2)
        await r.drain()
        assert r.sched.preemptions == 1  # waits for its victim: no second preemption
        assert r.placement()["high"] == ""
        await r.api.delete(PODS, "low", namespace="default", grace_period_seconds=0)
        await r.sync()
        r.clock.advance(2)
        await r.drain()
        assert r.placement()["high"] == "n1"

    run(body())


def test_preemption_policy_never_and_equal_priority_preempt_nothing() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("n1", cpu="1"))
        r.api.seed(PODS, prio("low", 0, cpu="800m", on="n1"))
        r.api.seed(PODS, prio("polite", 1000, cpu="500m", spec={"preemptionPolicy": "Never"}))
        r.api.seed(PODS, prio("peer", 0, cpu="500m"))
        await r.sync()
        await r.drain()
        assert r.api.stored(PODS, "default/low") is not None
        assert r.sched.preemptions == 0

    run(body())


def test_the_node_whose_victims_break_no_budget_is_chosen() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("a", cpu="1"))
        r.api.seed(NODES, node("b", cpu="1"))
        r.api.seed(PODS, prio("db", 0, cpu="800m", on="a", labels={"app": "db"}))
        r.api.seed(PODS, prio("batch", 0, cpu="800m", on="b"))
        r.api.seed(
            PODDISRUPTIONBUDGETS,
            {
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
            },
        )
        r.api.seed(PODS, prio("high", 1000, cpu="500m"))
        await r.sync()
        await r.drain()
        db, batch = r.api.stored(PODS, "default/db"), r.api.stored(PODS, "default/batch")
        assert db is not None
        assert batch is not None
        assert "deletionTimestamp" not in db["metadata"]
        assert batch["metadata"]["deletionTimestamp"]

    run(body())


def test_the_room_victims_leave_is_kept_for_the_nominated_pod() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(NODES, node("n1", cpu="1"))
        r.api.seed(PODS, prio("low", 0, cpu="800m", on="n1"))
        r.api.seed(PODS, prio("high", 1000, cpu="600m"))
        await r.sync()
        await r.drain()
        await r.api.delete(PODS, "low", namespace="default", grace_period_seconds=0)
        await r.api.create(PODS, prio("sneaky", 0, cpu="500m"), namespace="default")
        await r.sync()
        r.clock.advance(2)
        await r.drain()
        placed = r.placement()
        assert placed["high"] == "n1"
        assert placed["sneaky"] == ""  # 600m + 500m do not fit in 1 cpu

    run(body())
