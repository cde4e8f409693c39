"""Preflight for ``network.loadBalancerPool``: a host whose interfaces have no subnet holding
a pool block is reported before anything changes (the spec has no prefixes to tell)."""

from __future__ import annotations

from pathlib import Path

from provisioner.phases.cluster.lb_pool_check import pool_problems
from provisioner.phases.cluster.vip_check import Ipv4Addresses
from provisioner.phases.sets import cluster_phases
from provisioner.spec import parse_spec
from tests.unit.cluster.test_ha_wiring import _data
from tests.unit.etcd_phase.test_etcd_phase import make_spec

ON_LINK = (("lo", "127.0.0.1/8"), ("eth0", "10.0.0.11/24"), ("eth0", "10.0.0.241/32"))


def test_a_pool_inside_the_hosts_subnet_passes() -> None:
    assert pool_problems(["10.0.0.240-10.0.0.243", "10.0.0.250-10.0.0.250"], ON_LINK) == []


def test_a_pool_outside_or_across_the_subnet_is_refused_naming_the_entry() -> None:
    (outside, across) = pool_problems(["192.168.7.1-192.168.7.9", "10.0.0.250-10.0.1.5"], ON_LINK)
    assert outside.startswith(
        "network.loadBalancerPool[0] 192.168.7.1-192.168.7.9 is not inside the subnet of one of "
        "this host's interfaces (lo 127.0.0.1/8, eth0 10.0.0.11/24)"
    )
    assert across.startswith("network.loadBalancerPool[1] 10.0.0.250-10.0.1.5 is not inside")


def test_the_cluster_preflight_reads_addresses_only_with_a_pool(tmp_path: Path) -> None:
    (preflight, *_) = cluster_phases()
    assert preflight.facts is not None
    plain = _data(tmp_path, make_spec(["cp1", "w1"], tmp_path, datastore="sqlite"))
    assert Ipv4Addresses() not in preflight.facts(plain, plain.inventory.host("w1"))
    spec = parse_spec(
        "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: lb}\nspec:\n"
        "  ssh: {user: root, identityFile: id}\n"
        "  hosts:\n"
        "    - {name: cp1, address: 10.0.0.11, roles: [control-plane, worker]}\n"
        "    - {name: w1, address: 10.0.0.21, roles: [worker]}\n"
        "  network: {loadBalancerPool: [10.0.0.240/30]}\n",
        source=tmp_path / "cluster.yaml",
    )
    pooled = _data(tmp_path, spec)
    for host in ("cp1", "w1"):
        assert Ipv4Addresses() in preflight.facts(pooled, pooled.inventory.host(host))
