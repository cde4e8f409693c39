"""Graceful node shutdown (issue 19.9): on a clean poweroff the agent marks its node NotReady
("node is shutting down"), stops its pods within min(their grace period, the cap) and reports
them Failed/Terminated with a DisruptionTarget condition; a plain agent stop is no shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from berth.agent.config import NodeConfig
from berth.agent.fleet import Fleet
from berth.agent.pods import SHUTDOWN_POD_MESSAGE
from berth.agent.shutdown import Run, host_shutting_down, shut_down_gracefully
from berth.agent.simulated import SimulatedRuntime
from berth.api.resources import NODES, PODS
from berth.client.keys import make_key
from berth.machinery.clock import FakeClock
from tests.harness.fake_client import FakeClient


def _systemd(state: str, jobs: str = "") -> Run:
    def run(argv: Sequence[str]) -> str:
        return f"{state}\n" if argv[0] == "is-system-running" else jobs

    return run


def test_only_a_system_going_down_is_a_shutdown() -> None:
    assert host_shutting_down(_systemd("stopping")) is True
    assert host_shutting_down(_systemd("running")) is False
    assert host_shutting_down(_systemd("degraded")) is False
    queued = "1234 poweroff.target start waiting\n"
    assert host_shutting_down(_systemd("running", queued)) is True
    other = "77 berth-agent.service restart running\n"
    assert host_shutting_down(_systemd("running", other)) is False
    assert host_shutting_down(_systemd("")) is False, "no systemctl: no shutdown"


class RecordingRuntime(SimulatedRuntime):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.stops: list[float] = []

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None:
        self.stops.append(grace_seconds)
        await super().stop_container(container_id, grace_seconds=grace_seconds)


def test_shutdown_marks_the_node_not_ready_and_stops_pods_within_the_cap() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        runtime = RecordingRuntime(clock)
        fleet = Fleet(api, clock, runtime, nodes=[NodeConfig(name="n1")], events=False)
        await fleet.agents["n1"].register()
        for pod, grace in (("short", 3), ("long", 600)):
            api.seed(
                PODS,
                {
                    "metadata": {"name": pod, "namespace": "default"},
                    "spec": {
                        "nodeName": "n1",
                        "terminationGracePeriodSeconds": grace,
                        "containers": [{"name": "app", "image": "web:1"}],
                    },
                },
            )
        await fleet.pods.relist()
        for pod in ("short", "long"):
            await fleet.manager.reconcile(make_key("default", pod))
        assert runtime.running() == 2

        await shut_down_gracefully(fleet, grace_cap=20.0)

        assert sorted(runtime.stops) == [3.0, 20.0], "each pod's grace, capped"
        assert runtime.running() == 0
        node = api.stored(NODES, "n1")
        assert node is not None
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"], ready["message"]) == (
            "False",
            "KubeletNotReady",
            "node is shutting down",
        )
        for pod in ("short", "long"):
            stored = api.stored(PODS, f"default/{pod}")
            assert stored is not None
            status = stored["status"]
            assert (status["phase"], status["reason"], status["message"]) == (
                "Failed",
                "Terminated",
                SHUTDOWN_POD_MESSAGE,
            )
            target = next(c for c in status["conditions"] if c["type"] == "DisruptionTarget")
            assert (target["status"], target["reason"]) == ("True", "TerminationByKubelet")
            assert "terminated" in status["containerStatuses"][0]["state"]

    asyncio.run(body())
