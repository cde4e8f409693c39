"""verify's smoke workload on an API server that drops requests (an HA control plane under
load, the VIP moving): unanswered writes are sent again, a write that committed without an
answer is not an error, and what still fails is a failed check, not a traceback. Smoke pods
are waited for while the agent that would run them runs."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from berth.client import errors as api_errors
from berth.client.http import HttpClient
from provisioner import clusterapi
from provisioner import hostlayout as layout
from provisioner.verify import cluster as verify_cluster
from provisioner.verify.units import UnitStates
from tests.harness.verify_clock import FakeClock

Obj = dict[str, Any]


class DroppingApi:
    """Commits every create but leaves the first answer for each name unsent (Unreachable);
    the first read of each pod goes unanswered too. Pods run on the node they name."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.objects: dict[str, Obj] = {}
        self.creates: list[str] = []
        self.dropped: set[str] = set()

    def _drop_once(self, key: str) -> None:
        if self.down:
            raise api_errors.Unreachable("connection refused")
        if key not in self.dropped:
            self.dropped.add(key)
            raise api_errors.Unreachable(f"no answer for {key}")

    async def create(self, resource: Any, body: Obj, namespace: str | None = None) -> Obj:
        name = body["metadata"]["name"]
        self.creates.append(name)
        if self.down:
            raise api_errors.Unreachable("connection refused")
        if name in self.objects:
            raise api_errors.AlreadyExists(409, "AlreadyExists", f"{name} exists")
        self.objects[name] = body
        self._drop_once(f"create {name}")
        return body

    async def get(self, resource: Any, name: str, namespace: str | None = None) -> Obj:
        self._drop_once(f"get {name}")
        pod = self.objects[name]
        node = name.split("-")[1]  # smoke-NODE-RUN: the scheduler's part, done here
        return {**pod, "spec": {**pod["spec"], "nodeName": node}, "status": {"phase": "Succeeded"}}

    async def delete(self, resource: Any, name: str, **_: Any) -> None:
        self.objects.pop(name, None)


def _nodes() -> dict[str, Obj]:
    ready = {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {}}
    return {n: {"metadata": {"name": n}, "spec": {}, "status": ready} for n in ("n1", "n2")}


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_cluster, "SMOKE_RETRY", clusterapi.Retry(within=2.0, pause=0.01))


def test_smoke_writes_are_resent_and_a_committed_unanswered_create_is_fine() -> None:
    api = DroppingApi()
    results = asyncio.run(
        verify_cluster._smoke(cast(HttpClient, api), _nodes(), image=None, probe=None)
    )
    assert [r.ok for r in results] == [True, True], results
    # every create was sent twice (the first answer lost), the second met AlreadyExists
    assert sorted(set(api.creates)) == sorted(api.creates[::2])
    assert len(api.creates) == 2 * len(set(api.creates)) == 6


def test_an_api_server_that_stays_away_is_a_failed_check_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = DroppingApi(down=True)
    with pytest.raises(api_errors.Unreachable):
        asyncio.run(verify_cluster._smoke(cast(HttpClient, api), _nodes(), image=None, probe=None))

    async def node_checks(*_: Any, **__: Any) -> tuple[list[Any], dict[str, Obj]]:
        return [], _nodes()

    async def nothing(*_: Any, **__: Any) -> list[Any]:
        return []

    monkeypatch.setattr(verify_cluster, "_node_checks", node_checks)
    monkeypatch.setattr(verify_cluster, "_leader_checks", nothing)
    monkeypatch.setattr(verify_cluster, "_readyz", lambda *_: [])
    monkeypatch.setattr(verify_cluster, "_metrics", lambda *_, **__: [])
    monkeypatch.setattr(verify_cluster, "ingress_checks", lambda *_, **__: [])
    monkeypatch.setattr(verify_cluster, "admin_client", lambda *_, **__: _Closing(api))
    spec = cast(Any, type("Spec", (), {"api_server_url": "https://vip:6443", "spec": None})())
    spec.spec = type("S", (), {"runtime": "simulated"})()
    results = asyncio.run(verify_cluster._all(cast(Any, None), spec, smoke=True, probe=None))
    failed = [r for r in results if not r.ok]
    assert [r.name for r in failed] == ["smoke workload"]
    assert "Unreachable" in failed[0].detail


class _Closing:
    def __init__(self, api: DroppingApi) -> None:
        self.api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    async def close(self) -> None:
        pass


class PendingOn:
    """Pods run on their node after ``runs_after`` reads of each, except on ``stuck`` nodes
    (their agent is stopped: the pod stays Pending)."""

    def __init__(self, stuck: set[str], runs_after: int) -> None:
        self.stuck = stuck
        self.runs_after = runs_after
        self.reads: dict[str, int] = {}

    async def get(self, resource: Any, name: str, namespace: str | None = None) -> Obj:
        self.reads[name] = self.reads.get(name, 0) + 1
        node = name.split("-")[1]
        running = node not in self.stuck and self.reads[name] > self.runs_after
        return {
            "spec": {"nodeName": node},
            "status": {"phase": "Running" if running else "Pending"},
        }


def test_a_pod_on_a_node_whose_agent_is_stopped_is_not_waited_for() -> None:
    api = PendingOn(stuck={"n2"}, runs_after=0)
    units = UnitStates()
    units.found("n1", layout.AGENT, running=True)
    units.found("n2", layout.AGENT, running=False)
    clock = FakeClock()
    pods = {"smoke-n1-abc": "n1", "smoke-n2-abc": "n2"}
    phases, _placed = asyncio.run(
        verify_cluster._wait_pods(
            cast(HttpClient, api), pods, serving=False, units=units, clock=clock
        )
    )
    assert phases == {"smoke-n1-abc": "Running", "smoke-n2-abc": "Pending"}
    assert api.reads == {"smoke-n1-abc": 1, "smoke-n2-abc": 1}
    assert clock.now == 0.0


def test_pods_on_running_agents_are_waited_for() -> None:
    api = PendingOn(stuck=set(), runs_after=3)  # the agents are still pulling and starting
    units = UnitStates()
    units.found("n1", layout.AGENT, running=True)
    clock = FakeClock()
    pods = {"smoke-n1-abc": "n1", "smoke-n2-abc": "n2"}  # n2: not looked at yet
    phases, _placed = asyncio.run(
        verify_cluster._wait_pods(
            cast(HttpClient, api), pods, serving=False, units=units, clock=clock
        )
    )
    assert phases == {"smoke-n1-abc": "Running", "smoke-n2-abc": "Running"}
    assert clock.now == 3 * verify_cluster.SMOKE_RETRY_EVERY


def test_a_smoke_pod_that_failed_on_a_stopped_agent_names_the_unit() -> None:
    class StuckApi(DroppingApi):
        async def get(self, resource: Any, name: str, namespace: str | None = None) -> Obj:
            pod = self.objects[name]
            node = name.split("-")[1]
            phase = "Pending" if node == "n2" else "Running"
            return {**pod, "spec": {**pod["spec"], "nodeName": node}, "status": {"phase": phase}}

    units = UnitStates()
    units.found("n2", layout.AGENT, running=False)
    results = asyncio.run(
        verify_cluster._smoke(
            cast(HttpClient, StuckApi()), _nodes(), image=None, probe=None, units=units
        )
    )
    by_name = {r.name: r for r in results}
    assert by_name["smoke pod on n1"].ok
    assert not by_name["smoke pod on n2"].ok
    assert "berth-agent.service is not running on n2" in by_name["smoke pod on n2"].detail
