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
from provisioner.phases.etcd_release_check import with_etcd_release_check
from provisioner.phases.preflight import MANAGED_MARKER, preflight_phase
from provisioner.phases.sets import cluster_ports, local_cluster_ports
from provisioner.spec import parse_spec
from provisioner.workflow import Inventory, Phase, RemoveHostsFn
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
    state_dir: Path | None = None
    remove_hosts: RemoveHostsFn | None = None

    def host_facts(self, host: HostName, facts: Sequence[Fact[Any]]) -> FactSet:
        return self.facts[host]


def _healthy(name: str, *, clock: float, targets: tuple[tuple[str, int], ...]) -> FactSet:
    facts = FactSet(name)
    facts.put(OsRelease(), OsInfo("debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm"))
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
        "n1: python3 is 3.9.2, but Debian 12 (bookworm) ships 3.11: berth's bundle for this"
        " host is built for CPython 3.11; use the release's own python3",
        "n1: port 6443/tcp is already in use",
        "n2: unsupported OS CentOS Linux 7: berth supports Debian 12 (bookworm), Debian 13"
        " (trixie)",
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


def test_a_debian_13_host_with_its_python_313_passes() -> None:
    phase, data = _phase_and_data()
    n2 = data.facts["n2"]
    n2.put(OsRelease(), OsInfo("debian", "13", "Debian GNU/Linux 13 (trixie)", "trixie"))
    n2.put(PythonVersion(), PythonInfo("/usr/bin/python3", (3, 13, 5)))
    assert phase.check(data, _live()) == []


def test_a_host_without_python_or_with_another_release_python_is_refused() -> None:
    phase, data = _phase_and_data()
    n1, n2 = data.facts["n1"], data.facts["n2"]
    n1.put(PythonVersion(), None)
    # Debian 13 with a python3 3.11 (say, built by hand): the 3.13 wheels would not import
    n2.put(OsRelease(), OsInfo("debian", "13", "Debian GNU/Linux 13 (trixie)", "trixie"))
    problems = phase.check(data, _live())
    assert problems == [
        "n1: python3 is not installed: Debian 12 (bookworm) needs its python3 3.11 (apt install"
        " python3)",
        "n2: python3 is 3.11.2, but Debian 13 (trixie) ships 3.13: berth's bundle for this"
        " host is built for CPython 3.13; use the release's own python3",
    ]


def test_an_unknown_release_and_ubuntu_are_refused_by_name() -> None:
    phase, data = _phase_and_data()
    n1, n2 = data.facts["n1"], data.facts["n2"]
    n1.put(OsRelease(), OsInfo("debian", "", "Debian GNU/Linux forky/sid", "forky"))
    n2.put(OsRelease(), OsInfo("ubuntu", "24.04", "Ubuntu 24.04.1 LTS", "noble"))
    problems = phase.check(data, _live())
    assert problems == [
        "n1: unsupported OS Debian GNU/Linux forky/sid: berth supports Debian 12 (bookworm),"
        " Debian 13 (trixie)",
        "n2: unsupported OS Ubuntu 24.04.1 LTS: berth supports Debian 12 (bookworm), Debian 13"
        " (trixie)",
    ]


def _release(facts: FactSet, codename: str) -> None:
    version, python = {"bookworm": ("12", (3, 11, 2)), "trixie": ("13", (3, 13, 5))}[codename]
    facts.put(OsRelease(), OsInfo("debian", version, f"Debian {version}", codename))
    facts.put(PythonVersion(), PythonInfo("/usr/bin/python3", python))


def test_etcd_members_on_releases_with_different_etcd_fail_preflight() -> None:
    """One etcd release per cluster: refused before anything changes; workers may mix."""
    others = Phase("preflight", "the other checks", check=lambda data, live: [])
    checked = with_etcd_release_check(others)
    assert checked.check is not None
    spec = _spec("etcd", 3, 6443)
    hosts = tuple(HostTarget(HostName(h.name), h.address, roles=tuple(h.roles)) for h in spec.hosts)
    data = Data(Inventory("t", hosts), spec=spec)
    for host, codename in (("c0", "bookworm"), ("c1", "bookworm"), ("c2", "bookworm")):
        data.facts[host] = _healthy(host, clock=1000.0, targets=())
        _release(data.facts[host], codename)
    data.facts["w1"] = _healthy("w1", clock=1000.0, targets=())
    _release(data.facts["w1"], "trixie")
    live = {h.name: FakeConnector(h.name) for h in hosts}
    assert checked.check(data, live) == []  # a Debian 13 worker beside Debian 12 members
    _release(data.facts["c2"], "trixie")
    assert checked.check(data, live) == [
        "the etcd members run different etcd releases: c0 (Debian 12 (bookworm): etcd 3.4), c1"
        " (Debian 12 (bookworm): etcd 3.4), c2 (Debian 13 (trixie): etcd 3.5); berth keeps one"
        " etcd release per cluster: put every control-plane host on the same Debian release"
    ]
