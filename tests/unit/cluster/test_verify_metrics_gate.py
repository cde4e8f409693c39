"""``berth verify``'s /metrics and node checks wait for a component that is still starting (right
after an apply an agent has registered its Node, and runs pods, before its own server listens),
but only while the unit behind it runs: one the host checks found stopped fails at once, naming
the unit (test_e2e's stopped-agent verify took a minute more for each such wait)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from berth.client.http import HttpClient
from provisioner import hostlayout as layout
from provisioner.spec.load import parse_spec
from provisioner.verify import cluster
from provisioner.verify.units import UnitStates
from tests.harness.verify_clock import FakeClock

SPEC = (
    "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: v}\nspec:\n"
    "  ssh: {user: root, identityFile: id}\n"
    "  hosts:\n    - {name: n1, address: 10.0.0.11, roles: [control-plane, worker]}\n"
)
NODE = {
    "n1": {
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }
    }
}


@pytest.fixture
def asked() -> list[int]:
    """The port of every /metrics request, in order."""
    return []


@pytest.fixture
def endpoints(monkeypatch: pytest.MonkeyPatch, asked: list[int]) -> dict[int, int]:
    """Each port refuses this many more connections before it answers with every figure."""
    refusals: dict[int, int] = {}

    def get_text(_ctx: ssl.SSLContext, _address: str, port: int, _path: str, _name: str) -> str:
        asked.append(port)
        if refusals.get(port, 0) > 0:
            refusals[port] -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        figures = [f for names in cluster.METRIC_FIGURES.values() for f in names]
        return "".join(f"# TYPE {f} counter\n" for f in figures)

    monkeypatch.setattr(cluster, "_get_text", get_text)
    monkeypatch.setattr(
        cluster, "load_kubeconfig", lambda _path: SimpleNamespace(ssl_context=lambda: None)
    )
    return refusals


def _run(tmp_path: Path, **kwargs: Any) -> dict[str, tuple[bool, str]]:
    (tmp_path / "id").write_text("key")
    spec = parse_spec(SPEC, source=tmp_path / "cluster.yaml")
    results = cluster._metrics(tmp_path / "admin.conf", spec, NODE, **kwargs)
    return {r.name: (r.ok, r.detail) for r in results}


def test_an_agent_still_starting_passes_once_it_listens(
    tmp_path: Path, endpoints: dict[int, int]
) -> None:
    endpoints[10250] = 5
    clock = FakeClock()
    units = UnitStates()
    units.found("n1", layout.AGENT, running=True)  # started, not listening yet
    assert _run(tmp_path, clock=clock, units=units) == {
        "API server on n1 /metrics answers": (True, ""),
        "agent on n1 /metrics answers": (True, ""),
    }
    assert endpoints[10250] == 0
    assert clock.now == 5 * cluster.METRICS_RETRY_EVERY


def test_an_endpoint_that_never_answers_fails_at_the_deadline(
    tmp_path: Path, endpoints: dict[int, int]
) -> None:
    endpoints[10250] = 10**9
    clock = FakeClock()
    results = _run(tmp_path, clock=clock)  # nothing known of the units: the wait runs its course
    assert results["API server on n1 /metrics answers"] == (True, "")
    ok, detail = results["agent on n1 /metrics answers"]
    assert not ok
    assert "ConnectionRefusedError" in detail
    assert clock.now == cluster.METRICS_WITHIN


@pytest.mark.parametrize(
    ("unit", "port", "check"),
    [
        (layout.AGENT, 10250, "agent on n1 /metrics answers"),
        (layout.APISERVER, 6443, "API server on n1 /metrics answers"),
    ],
)
def test_a_stopped_units_metrics_fail_at_once_naming_the_unit(
    tmp_path: Path,
    endpoints: dict[int, int],
    asked: list[int],
    unit: str,
    port: int,
    check: str,
) -> None:
    endpoints[port] = 10**9
    clock = FakeClock()
    units = UnitStates()
    for each in (layout.AGENT, layout.APISERVER):
        units.found("n1", each, running=each != unit)  # what the host checks found
    ok, detail = _run(tmp_path, clock=clock, units=units)[check]
    assert not ok
    assert "ConnectionRefusedError" in detail
    assert f"{unit} is not running on n1" in detail
    assert asked.count(port) == 1
    assert clock.now == 0.0  # no wait


def test_the_wait_ends_when_the_host_check_finds_the_unit_stopped(
    tmp_path: Path, endpoints: dict[int, int], asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host checks run beside the cluster checks: a wait that began before they looked at
    the unit ends at the first ask after they found it stopped."""
    endpoints[10250] = 10**9
    clock = FakeClock()
    units = UnitStates()
    refuse = cluster._get_text

    def get_text(*args: Any) -> str:
        if asked.count(10250) == 3:
            units.found("n1", layout.AGENT, running=False)
        return refuse(*args)

    monkeypatch.setattr(cluster, "_get_text", get_text)
    ok, detail = _run(tmp_path, clock=clock, units=units)["agent on n1 /metrics answers"]
    assert not ok
    assert "berth-agent.service is not running on n1" in detail
    assert asked.count(10250) == 4
    assert clock.now == 3 * cluster.METRICS_RETRY_EVERY


class Nodes:
    """The API's node list: n1, Ready as ``ready`` says at each listing (the last holds on)."""

    def __init__(self, ready: list[bool]) -> None:
        self.ready = ready
        self.listings: list[bool] = []

    async def list(self, _resource: Any) -> SimpleNamespace:
        now = self.ready[min(len(self.listings), len(self.ready) - 1)]
        self.listings.append(now)
        node = {
            "metadata": {
                "name": "n1",
                "labels": {
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/worker": "",
                },
            },
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if now else "False"}]},
        }
        return SimpleNamespace(items=[node])


def _node_checks(
    tmp_path: Path, nodes: Nodes, units: UnitStates, clock: FakeClock
) -> dict[str, tuple[bool, str]]:
    (tmp_path / "id").write_text("key")
    spec = parse_spec(SPEC, source=tmp_path / "cluster.yaml")
    client = cast(HttpClient, nodes)
    results, _nodes = asyncio.run(cluster._node_checks(client, spec, units, clock))
    return {r.name: (r.ok, r.detail) for r in results}


def test_a_node_that_just_registered_passes_once_it_is_ready(tmp_path: Path) -> None:
    """verify follows the apply at once: a node that is not Ready at the first listing passes
    once it is (it used to fail on that first listing), while its agent runs."""
    nodes = Nodes([False, False, True])
    clock = FakeClock()
    units = UnitStates()
    units.found("n1", layout.AGENT, running=True)
    assert _node_checks(tmp_path, nodes, units, clock)["node n1 Ready"] == (True, "")
    assert nodes.listings == [False, False, True]
    assert clock.now == 2 * cluster.NODES_RETRY_EVERY


def test_a_node_whose_agent_is_stopped_fails_at_once_naming_the_unit(tmp_path: Path) -> None:
    nodes = Nodes([False, True])  # it would be Ready at the second listing: never taken
    clock = FakeClock()
    units = UnitStates()
    units.found("n1", layout.AGENT, running=False)
    assert _node_checks(tmp_path, nodes, units, clock)["node n1 Ready"] == (
        False,
        "berth-agent.service is not running on n1",
    )
    assert nodes.listings == [False]
    assert clock.now == 0.0


def test_a_node_that_never_gets_ready_fails_at_the_deadline(tmp_path: Path) -> None:
    nodes = Nodes([False])
    clock = FakeClock()
    units = UnitStates()
    units.found("n1", layout.AGENT, running=True)  # runs, but its node stays NotReady
    assert _node_checks(tmp_path, nodes, units, clock)["node n1 Ready"] == (False, "")
    assert clock.now == cluster.NODES_WITHIN
    assert len(nodes.listings) == 1 + cluster.NODES_WITHIN / cluster.NODES_RETRY_EVERY
