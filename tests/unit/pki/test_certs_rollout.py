"""``berth certs renew``'s rollout: host order, one engine run per host, health gating."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli import certs_rollout
from provisioner.cli.certs_rollout import Rollout, rollout_order
from provisioner.connectors.base import HostName, HostTarget
from provisioner.errors import OperationError
from provisioner.phases.cluster.install import cluster_install_phases
from provisioner.reporting import CollectingReporter, Event
from provisioner.state import ClusterState
from provisioner.workflow import Inventory, SelectedPhase, select
from tests.unit.pki.conftest import HA, ha_spec
from tests.unit.pki.test_certs_cli import run

CP = HostTarget(HostName("cp1"), "10.0.0.1", roles=("control-plane",))
W1 = HostTarget(HostName("w1"), "10.0.0.2", roles=("worker",))
W2 = HostTarget(HostName("w2"), "10.0.0.3", roles=("worker",))
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_control_plane_hosts_go_first_then_spec_order() -> None:
    assert [h.name for h in rollout_order((W2, CP, W1))] == ["cp1", "w2", "w1"]


def test_each_host_step_runs_only_the_credential_phases_on_that_host() -> None:
    phases = select(cluster_install_phases(), only=certs_rollout.CREDENTIAL_PHASES)
    inventory = Inventory("c", (CP, W1, W2))
    narrowed = certs_rollout._only_host(phases, "w1")
    paths = [p.path for p in narrowed]
    assert paths[0] == "pki"
    assert "artifacts" not in paths
    assert "nodes" not in paths
    assert "verify" not in paths
    by_path = {p.path: p.phase for p in narrowed}
    assert by_path["agents"].hosts(inventory) == (W1,)
    # a phase meant for control-plane hosts keeps that restriction on a worker's step
    assert by_path["control-plane"].hosts(inventory) == ()
    assert certs_rollout._only_host(phases, "cp1")[0].phase.hosts(inventory) == (CP,)


@dataclass
class FakeConnection:
    host: str
    closed: int = 0

    def close(self) -> None:
        self.closed += 1


class FakeEngine:
    """Stands in for the engine: reports a ``done`` event per operation it is told to make."""

    runs: list[tuple[str, list[str]]] = []
    changes: dict[str, list[str]] = {}

    def __init__(
        self,
        ctx: Any,
        phases: list[SelectedPhase],
        *,
        connect: Any,
        reporter: Any,
        parallel: int,
    ) -> None:
        assert parallel == 1
        self.ctx, self.phases, self.reporter, self.connect = ctx, phases, reporter, connect
        self.connectors: list[Any] = []

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        for connector in self.connectors:
            connector.close()

    def connect_all(self) -> None:
        self.connectors = [self.connect(host) for host in self.ctx.inventory.hosts]

    def apply(self) -> None:
        agents = next(p.phase for p in self.phases if p.path == "agents")
        (host,) = agents.hosts(self.ctx.inventory)
        FakeEngine.runs.append((host.name, [p.path for p in self.phases]))
        for op in FakeEngine.changes.get(host.name, []):
            self.reporter.emit(Event("done", "agents", host.name, op, data={"op": op}))


def test_rollout_goes_host_by_host_and_waits_only_after_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ha_spec()
    FakeEngine.runs = []
    FakeEngine.changes = {
        "cp1": ["file:/etc/berth/pki/apiserver.crt", "service:berth-apiserver.service"],
        "cp2": ["file:/etc/berth/pki/apiserver.crt"],
    }
    monkeypatch.setattr(certs_rollout, "Engine", FakeEngine)
    waited: list[str] = []
    said: list[str] = []
    connections: list[FakeConnection] = []

    def connect(target: HostTarget) -> FakeConnection:
        connections.append(FakeConnection(target.name))
        return connections[-1]

    rollout = Rollout(
        spec=spec, state=ClusterState.open("ha", state_dir=tmp_path), state_dir=tmp_path,
        cache_dir=tmp_path, reporter=CollectingReporter(), say=said.append,
        connect=connect,  # type: ignore[arg-type]
    )  # fmt: skip

    def wait_healthy(host: HostTarget, since: dt.datetime) -> float:
        waited.append(host.name)
        return 1.5

    monkeypatch.setattr(rollout, "wait_healthy", wait_healthy)
    outcomes = rollout.run()
    assert [name for name, _ in FakeEngine.runs] == ["cp1", "cp2", "cp3", "w1"]
    assert FakeEngine.runs[0][1][0] == "pki"
    assert waited == ["cp1"]
    assert outcomes[0].restarted == ["berth-apiserver.service"]
    assert outcomes[1].restarted == []
    assert said[0] == "cp1: 2 change(s); restarted: berth-apiserver.service; healthy after 1.5s"
    assert said[1] == "cp2: 1 change(s); restarted: none"
    assert said[3] == "w1: nothing to change"
    # one connection per host for the whole rollout, closed once at the end
    assert sorted(c.host for c in connections) == ["cp1", "cp2", "cp3", "w1"]
    assert all(c.closed == 1 for c in connections)


def _node(status: str, beat: dt.datetime) -> dict[str, Any]:
    stamp = beat.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": {"conditions": [{"type": "Ready", "status": status, "lastHeartbeatTime": stamp}]}
    }


@pytest.mark.parametrize(
    ("readyz", "node", "problem"),
    [
        (None, _node("True", NOW), "API server /readyz answered nothing"),
        (503, _node("True", NOW), "API server /readyz answered 503"),
        (200, None, "its Node could not be read"),
        (200, _node("False", NOW), "its Node is not Ready"),
        (200, _node("True", NOW - dt.timedelta(seconds=30)), "no heartbeat since the restart"),
        (200, _node("True", NOW + dt.timedelta(seconds=1)), ""),
    ],
)
def test_health_of_a_control_plane_host(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    readyz: int | None,
    node: dict[str, Any] | None,
    problem: str,
) -> None:
    rollout = Rollout(
        spec=ha_spec(), state=ClusterState.open("ha", state_dir=tmp_path), state_dir=tmp_path,
        cache_dir=tmp_path, reporter=CollectingReporter(),
    )  # fmt: skip
    monkeypatch.setattr(rollout, "_readyz", lambda address: readyz)
    monkeypatch.setattr(rollout, "_node", lambda name: node)
    found = rollout._problem(CP, since=NOW)
    assert (problem in found) if problem else found == ""


def test_a_worker_is_not_asked_for_readyz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rollout = Rollout(
        spec=ha_spec(), state=ClusterState.open("ha", state_dir=tmp_path), state_dir=tmp_path,
        cache_dir=tmp_path, reporter=CollectingReporter(),
    )  # fmt: skip
    monkeypatch.setattr(rollout, "_readyz", lambda address: pytest.fail("readyz asked"))
    monkeypatch.setattr(rollout, "_node", lambda name: _node("True", NOW))
    assert rollout._problem(W1, since=NOW) == ""


def test_an_unhealthy_host_stops_the_rollout_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollout = Rollout(
        spec=ha_spec(), state=ClusterState.open("ha", state_dir=tmp_path), state_dir=tmp_path,
        cache_dir=tmp_path, reporter=CollectingReporter(), health_timeout=0.05,
    )  # fmt: skip
    monkeypatch.setattr(rollout, "_problem", lambda host, since: "its Node is not Ready")
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    with pytest.raises(OperationError) as raised:
        rollout.wait_healthy(W1, since=NOW)
    assert "w1: not healthy" in raised.value.message
    assert "its Node is not Ready" in raised.value.message


def test_renew_asks_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BERTH_STATE_PASSPHRASE", raising=False)
    spec = tmp_path / "ha.yaml"
    spec.write_text(HA)
    common = ["-i", str(spec), "--state-dir", str(tmp_path / "states")]
    assert run(monkeypatch, capsys, "certs", "ensure", *common)[0] == 0
    admin = tmp_path / "states" / "ha" / "pki" / "admin.crt"
    before = admin.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, out, _ = run(monkeypatch, capsys, "certs", "renew", *common)
    assert code != 0
    assert "one host at a time (cp1, cp2, cp3, w1)" in out
    assert admin.read_bytes() == before

    code, _, err = run(monkeypatch, capsys, "certs", "renew", "--local-only", *common)
    assert code == 0
    assert "not distributed" in err
    assert admin.read_bytes() != before
