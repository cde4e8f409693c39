"""Preflight for ``apiServer.vip``: a control-plane host without the VIP's subnet, without
the named interface, or already carrying the VIP is reported before anything changes."""

from __future__ import annotations

from pathlib import Path

from provisioner.phases.cluster.vip_check import Ipv4Addresses, vip_problems, with_vip_check
from provisioner.phases.preflight import preflight_phase
from provisioner.phases.sets import cluster_phases
from tests.unit.cluster.test_ha_wiring import _data
from tests.unit.cluster.test_vip_wiring import vip_spec
from tests.unit.etcd_phase.test_etcd_phase import make_spec

ON_LINK = (("lo", "127.0.0.1/8"), ("eth0", "10.0.0.11/24"))


def test_a_host_on_the_vips_subnet_passes(tmp_path: Path) -> None:
    assert vip_problems(vip_spec(tmp_path), ON_LINK, managed=False) == []


def test_a_host_off_the_vips_subnet_is_refused_naming_its_interfaces(tmp_path: Path) -> None:
    (problem,) = vip_problems(vip_spec(tmp_path), (("eth0", "192.168.1.5/24"),), managed=False)
    assert problem.startswith("the VIP 10.0.0.200 lies in no subnet of this host's interfaces")
    assert "eth0 192.168.1.5/24" in problem


def test_a_named_interface_must_exist(tmp_path: Path) -> None:
    spec = vip_spec(tmp_path, extra="bond0")
    (problem,) = vip_problems(spec, ON_LINK, managed=False)
    assert problem == (
        "apiServer.vipInterface bond0 has no IPv4 address on this host "
        "(interfaces with one: eth0, lo)"
    )
    assert vip_problems(vip_spec(tmp_path, extra="eth0"), ON_LINK, managed=False) == []


def test_a_vip_in_use_is_refused_unless_berth_holds_it(tmp_path: Path) -> None:
    taken = (*ON_LINK, ("eth0", "10.0.0.200/32"))
    (problem,) = vip_problems(vip_spec(tmp_path), taken, managed=False)
    assert "already has the VIP 10.0.0.200" in problem
    assert vip_problems(vip_spec(tmp_path), taken, managed=True) == []


def test_the_cluster_preflight_reads_addresses_of_control_plane_hosts_only(
    tmp_path: Path,
) -> None:
    (preflight, *_) = cluster_phases()
    data = _data(tmp_path, vip_spec(tmp_path))
    assert preflight.facts is not None
    assert Ipv4Addresses() in preflight.facts(data, data.inventory.host("cp1"))
    assert Ipv4Addresses() not in preflight.facts(data, data.inventory.host("w1"))
    plain = _data(tmp_path, make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path))
    base = preflight_phase()
    wrapped = with_vip_check(base)
    assert wrapped.facts is not None
    assert base.facts is not None
    assert wrapped.facts(plain, plain.inventory.host("cp1")) == base.facts(
        plain, plain.inventory.host("cp1")
    )
