"""Preflight reports every problem of every host at once, from facts alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provisioner import platforms
from provisioner.connectors.base import HostName, HostTarget
from provisioner.facts.base import Fact, FactSet
from provisioner.facts.files import PathInfo, PathState
from provisioner.facts.network import Listener, ListeningPorts
from provisioner.facts.packages import Packages
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
from provisioner.phases.etcd_release_check import (
    cluster_etcd,
    etcd_release_problems,
    with_etcd_release_check,
)
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


def _release(facts: FactSet, codename: str, etcd_server: str | None = None) -> None:
    version, python = {"bookworm": ("12", (3, 11, 2)), "trixie": ("13", (3, 13, 5))}[codename]
    facts.put(OsRelease(), OsInfo("debian", version, f"Debian {version}", codename))
    facts.put(PythonVersion(), PythonInfo("/usr/bin/python3", python))
    installed: dict[str, str | None] = {"libc6": "2.36-9+deb12u14", "etcd-server": etcd_server}
    facts.put(Packages(), installed)


def _etcd_checked(releases: Mapping[str, tuple[str, str | None]]) -> list[str]:
    """Preflight's etcd policy check of a spec with control-plane hosts c0, c1, c2 and a
    worker w1; ``releases``: each host's codename and installed etcd-server version."""
    others = Phase("preflight", "the other checks", check=lambda data, live: [])
    checked = with_etcd_release_check(others)
    assert checked.check is not None
    spec = _spec("etcd", 3, 6443)
    hosts = tuple(HostTarget(HostName(h.name), h.address, roles=tuple(h.roles)) for h in spec.hosts)
    data = Data(Inventory("t", hosts), spec=spec)
    for host, (codename, etcd_server) in releases.items():
        data.facts[host] = _healthy(host, clock=1000.0, targets=())
        _release(data.facts[host], codename, etcd_server)
    return checked.check(data, {h.name: FakeConnector(h.name) for h in hosts})


def test_etcd_members_on_debian_12_and_13_pass_preflight_all_on_debian_13s_etcd() -> None:
    """One etcd release shipped to every member: Debian 13's etcd 3.5 runs on Debian 12."""
    fresh = {"c0": ("bookworm", None), "c1": ("bookworm", None), "c2": ("trixie", None)}
    assert _etcd_checked({**fresh, "w1": ("trixie", None)}) == []
    # a running mixed cluster re-applied: every member already on 3.5
    running = {name: (codename, "3.5.16-4") for name, (codename, _) in fresh.items()}
    assert _etcd_checked(running) == []
    # Debian 12 members only: their own etcd 3.4, whatever the workers run
    debian_12 = {"c0": ("bookworm", "3.4.23-4+b4"), "c1": ("bookworm", None)}
    assert _etcd_checked({**debian_12, "c2": ("bookworm", None), "w1": ("trixie", None)}) == []


def test_etcd_members_whose_release_cannot_run_the_newest_etcd_fail_preflight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A combination the platforms table does not know to work is refused, naming hosts."""
    bookworm, trixie = platforms.SUPPORTED
    only_own = dataclasses.replace(trixie, etcd_runs_on=("trixie",))
    monkeypatch.setattr(platforms, "SUPPORTED", (bookworm, only_own))
    problems = _etcd_checked(
        {"c0": ("bookworm", None), "c1": ("bookworm", None), "c2": ("trixie", None)}
    )
    assert problems == [
        "every etcd member runs the newest etcd of the members' releases, Debian 13 (trixie)'s"
        " etcd 3.5, but its packages are not known to install on c0 (Debian 12 (bookworm)),"
        " c1 (Debian 12 (bookworm)): put the control-plane hosts on releases that run it"
        " (Debian 13 (trixie)), or move c0, c1 off the control plane"
    ]


def test_an_etcd_34_cluster_gaining_a_debian_13_member_fails_preflight() -> None:
    """An in-place etcd minor upgrade (3.4 -> 3.5) is out of scope: refused before changes."""
    problems = _etcd_checked(
        {
            "c0": ("bookworm", "3.4.23-4+b4"),
            "c1": ("bookworm", "3.4.23-4+b4"),
            "c2": ("trixie", None),
        }
    )
    assert problems == [
        "etcd members already run another etcd minor than the etcd 3.5 of Debian 13 (trixie)"
        " (c2) that every member now needs: c0 (etcd-server 3.4.23-4+b4), c1 (etcd-server"
        " 3.4.23-4+b4); berth does not upgrade or downgrade etcd's minor version in place: keep"
        " the control plane on releases whose etcd is the one running (move c2 off the control"
        " plane), or build a new cluster"
    ]


def test_cluster_etcd_is_the_newest_etcd_of_the_members_releases() -> None:
    bookworm, trixie = platforms.SUPPORTED
    forky = dataclasses.replace(
        trixie, version_id="14", codename="forky", name="Debian 14 (forky)", etcd="3.10",
        etcd_runs_on=("forky",),
    )  # fmt: skip
    assert cluster_etcd({"a": bookworm, "b": trixie, "c": bookworm}) is trixie
    assert cluster_etcd({"a": bookworm}) is bookworm
    # versions compare as numbers: 3.10 is newer than 3.5
    assert cluster_etcd({"a": trixie, "b": forky}) is forky
    assert etcd_release_problems({"a": trixie, "b": forky}) == [
        "every etcd member runs the newest etcd of the members' releases, Debian 14 (forky)'s"
        " etcd 3.10, but its packages are not known to install on a (Debian 13 (trixie)): put"
        " the control-plane hosts on releases that run it (forky), or move a off the control plane"
    ]
