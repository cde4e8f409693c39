"""Preflight reports every problem of every host at once, from facts alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.connectors.base import HostName, HostTarget
from provisioner.facts.base import Fact, FactSet
from provisioner.facts.files import PathInfo, PathState
from provisioner.facts.network import Listener, ListeningPorts
from provisioner.facts.reach import TcpReachability
from provisioner.facts.system import (
    Clock,
    DiskFree,
    OsInfo,
    OsRelease,
    PythonInfo,
    PythonVersion,
    Systemd,
    SystemdInfo,
)
from provisioner.phases.preflight import MANAGED_MARKER, preflight_phase
from provisioner.phases.sets import cluster_ports, local_cluster_ports
from provisioner.phases.workflow import Inventory
from provisioner.spec import parse_spec
from tests.harness.fake_connector import FakeConnector

N1 = HostTarget(HostName("n1"), "10.0.0.1", roles=("control-plane",))
N2 = HostTarget(HostName("n2"), "10.0.0.2", roles=("worker",))


@dataclass
class Data:
    inventory: Inventory
    facts: dict[str, FactSet] = field(default_factory=dict)
    spec: Any = None
    cache_dir: Path = Path("/nonexistent")
    dry_run: bool = True

    def host_facts(self, host: HostName, facts: Sequence[Fact[Any]]) -> FactSet:
        return self.facts[host]


def _healthy(name: str, *, clock: float, targets: tuple[tuple[str, int], ...]) -> FactSet:
    facts = FactSet(name)
    facts.put(OsRelease(), OsInfo("debian", "12", "Debian GNU/Linux 12 (bookworm)"))
    facts.put(PythonVersion(), PythonInfo("/usr/bin/python3", (3, 11, 2)))
    facts.put(Systemd(), SystemdInfo(running=True, version=252))
    free: dict[str, int | None] = {"/": 10 << 30}
    facts.put(DiskFree(("/",)), free)
    facts.put(Clock(), clock)
    facts.times[Clock().key()] = (clock - 0.01, clock + 0.01)
    facts.put(ListeningPorts(), frozenset({Listener("tcp", "0.0.0.0", 22)}))
    marker: dict[str, PathState | None] = {MANAGED_MARKER: None}
    facts.put(PathInfo((MANAGED_MARKER,)), marker)
    facts.put(TcpReachability(targets), dict.fromkeys(targets, "refused"))
    return facts


def _phase_and_data() -> tuple[Any, Data]:
    phase = preflight_phase(
        ports=lambda d, h: (6443,) if "control-plane" in h.roles else (10250,),
        peer_ports=lambda d, h: (6443,) if "control-plane" in h.roles else (10250,),
    )
    data = Data(Inventory("c", (N1, N2)))
    data.facts["n1"] = _healthy("n1", clock=1000.0, targets=(("10.0.0.2", 10250),))
    data.facts["n2"] = _healthy("n2", clock=1000.0, targets=(("10.0.0.1", 6443),))
    return phase, data


def _live() -> dict[HostName, Any]:
    return {N1.name: FakeConnector("n1"), N2.name: FakeConnector("n2")}


def test_healthy_hosts_pass() -> None:
    phase, data = _phase_and_data()
    assert phase.check(data, _live()) == []


def test_every_problem_on_every_host_is_reported_together() -> None:
    phase, data = _phase_and_data()
    n1, n2 = data.facts["n1"], data.facts["n2"]
    n1.put(PythonVersion(), PythonInfo("/usr/bin/python3", (3, 9, 2)))
    n1.put(ListeningPorts(), frozenset({Listener("tcp", "0.0.0.0", 6443)}))
    n2.put(OsRelease(), OsInfo("centos", "7", "CentOS Linux 7"))
    n2.put(Systemd(), SystemdInfo(running=False, version=None))
    low: dict[str, int | None] = {"/": 100 << 20}
    n2.put(DiskFree(("/",)), low)
    n2.put(TcpReachability((("10.0.0.1", 6443),)), {("10.0.0.1", 6443): "timeout"})
    problems = phase.check(data, _live())
    assert problems == [
        "n1: python3 is 3.9.2, need 3.11+",
        "n1: port 6443/tcp is already in use",
        "n2: unsupported OS CentOS Linux 7: need Debian 12+ or Ubuntu 22.04+",
        "n2: systemd is not running as PID 1",
        "n2: only 100 MiB free on /, need 1024 MiB",
        "n2: cannot reach n1 (10.0.0.1) on 6443/tcp: timeout",
    ]


def test_ports_in_use_on_a_managed_host_are_berths_own() -> None:
    phase, data = _phase_and_data()
    n1 = data.facts["n1"]
    n1.put(ListeningPorts(), frozenset({Listener("tcp", "0.0.0.0", 6443)}))
    marker: dict[str, PathState | None] = {
        MANAGED_MARKER: PathState("file", 0o644, "root", "root", 0, sha256="0" * 64)
    }
    n1.put(PathInfo((MANAGED_MARKER,)), marker)
    assert phase.check(data, _live()) == []


def test_clock_skew_between_hosts_and_against_this_machine() -> None:
    phase, data = _phase_and_data()
    data.facts["n2"].put(Clock(), 1005.0)
    problems = phase.check(data, _live())
    assert problems == [
        "n2: clock is +5.0s off this machine's (max 2.0s); new certificates would not be valid "
        "there",
        "clock skew between hosts exceeds 2.0s: n1 +0.0s, n2 +5.0s",
    ]


def _spec(datastore: str, control_planes: int, port: int) -> Any:
    hosts = "".join(
        f"    - {{name: c{i}, address: 10.0.0.{i + 1}, roles: [control-plane]}}\n"
        for i in range(control_planes)
    )
    return parse_spec(
        "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n"
        f"  hosts:\n{hosts}    - {{name: w1, address: 10.0.0.9, roles: [worker]}}\n"
        f"  datastore: {{type: {datastore}}}\n  apiServer: {{port: {port}}}\n"
    )


def test_cluster_ports_follow_the_spec() -> None:
    worker = HostTarget(HostName("w1"), "10.0.0.9", roles=("worker",))
    single = Data(Inventory("t", (N1, worker)), spec=_spec("sqlite", 1, 7443))
    # sqlite: no etcd, no balancer; the API server on the spec's port
    assert cluster_ports(single, N1) == (7443,)
    assert local_cluster_ports(single, N1) == (7443,)
    assert cluster_ports(single, worker) == (10250,)
    ha = Data(Inventory("t", (N1, worker)), spec=_spec("etcd", 3, 6443))
    assert cluster_ports(ha, N1) == (6443, 2379, 2380)
    # berth-lb listens on loopback on every host: checked free, not reachable from peers
    assert local_cluster_ports(ha, N1) == (6443, 2379, 2380, 6444)
    assert local_cluster_ports(ha, worker) == (10250, 6444)
    assert cluster_ports(ha, worker) == (10250,)
