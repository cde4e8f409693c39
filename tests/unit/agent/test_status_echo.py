"""The watch bringing back the agent's own status write enqueues nothing (each echo was a
full reconcile: every container's state read back from the runtime, the status rebuilt and
compared, per pod and per write); every other change to a pod of the node still does."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from berth.agent.config import NodeConfig
from berth.agent.fleet import Fleet
from berth.agent.pods import PodRecord
from berth.agent.simulated import SimulatedRuntime
from berth.client.keys import make_key
from berth.machinery.clock import FakeClock
from berth.machinery.objects import cache_view
from tests.harness.fake_client import FakeClient

REPORT: dict[str, Any] = {
    "phase": "Running",
    "conditions": [
        {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": "t1"},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None},
    ],
    "podIP": "10.244.1.5",
    "podIPs": [{"ip": "10.244.1.5"}],
    "containerStatuses": [{"name": "app", "ready": True, "state": {"running": {}}}],
}


def _pod(rv: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": rv,
            "labels": {"app": "web"},
            "managedFields": [{"manager": "berth-agent", "rv": rv}],
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox"}]},
        "status": status,
    }


def _fleet() -> Fleet:
    clock = FakeClock()
    fleet = Fleet(
        FakeClient(now=clock.now),
        clock,
        SimulatedRuntime(clock),
        nodes=[NodeConfig(name="n1")],
        events=False,
    )
    rec = PodRecord(uid="u1", key=make_key("ns", "p"), node="n1")
    rec.last_report = copy.deepcopy(REPORT)
    fleet.manager.records[rec.key] = rec
    return fleet


def _queued(fleet: Fleet, old: dict[str, Any], new: dict[str, Any]) -> int:
    queue = fleet.manager.queue
    before = len(queue)
    fleet.pods._dispatch("update", cache_view(old), cache_view(new))
    return len(queue) - before


def test_the_echo_of_the_agents_own_status_write_enqueues_nothing() -> None:
    fleet = _fleet()
    old = _pod("5", {"phase": "Pending"})
    # other writers' conditions stay in the status (a strategic merge): still the echo
    shown = copy.deepcopy(REPORT)
    shown["conditions"].insert(0, {"type": "DisruptionTarget", "status": "False"})
    assert _queued(fleet, old, _pod("6", shown)) == 0


def _changed(what: str) -> dict[str, Any]:
    new = _pod("6", copy.deepcopy(REPORT))
    if what == "phase":
        new["status"]["phase"] = "Failed"
    elif what == "condition":
        new["status"]["conditions"][0]["status"] = "False"
    elif what == "deletion":
        new["metadata"]["deletionTimestamp"] = "2026-12-07T18:00:00Z"
    elif what == "labels":
        new["metadata"]["labels"] = {"app": "db"}
    elif what == "spec":
        new["spec"]["activeDeadlineSeconds"] = 5
    elif what == "uid":
        new["metadata"]["uid"] = "u2"
    return new


@pytest.mark.parametrize("what", ["phase", "condition", "deletion", "labels", "spec", "uid"])
def test_any_other_change_enqueues_the_pod(what: str) -> None:
    fleet = _fleet()
    assert _queued(fleet, _pod("5", {"phase": "Pending"}), _changed(what)) == 1


def test_a_pod_not_reported_yet_is_enqueued() -> None:
    fleet = _fleet()
    fleet.manager.records[make_key("ns", "p")].last_report = None
    assert _queued(fleet, _pod("5", {}), _pod("6", copy.deepcopy(REPORT))) == 1
