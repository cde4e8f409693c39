"""``network.loadBalancerPool`` reaches the two processes that use it: the controller
manager's unit (``--load-balancer-pool``, which the service-lb controller allocates from) and
every runc node's agent config (the speaker announces and the proxy forwards only those)."""

from __future__ import annotations

import json
from pathlib import Path

from berth.agent.config import load_config
from provisioner.connectors.base import HostName, HostTarget
from provisioner.operations.cluster import HostCapacity
from provisioner.phases.cluster.hostside import agent_config
from provisioner.spec import load_spec
from provisioner.templating import render

SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: unit}
spec:
  hosts:
    - {name: n1, address: 10.0.0.1, roles: [control-plane, worker]}
"""
HOST = HostTarget(name=HostName("n1"), address="10.0.0.1", roles=("control-plane",))


def _context(pool: str) -> dict[str, object]:
    return {
        "cluster": "unit",
        "host": "n1",
        "site": "/opt/berth/site",
        "kubeconfig": "k",
        "pod_cidr": "10.244.0.0/16",
        "node_cidr_mask_size": 24,
        "pki": "/etc/berth/pki",
        "pod_eviction_timeout": 300,
        "controller_manager_metrics_port": 10257,
        "load_balancer_pool": pool,
    }


def test_the_pool_reaches_the_agent_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        SPEC + "  network: {loadBalancerPool: [10.0.0.240/30, '10.0.0.250-10.0.0.251']}\n"
    )
    config = agent_config(load_spec(tmp_path / "c.yaml"), HOST, HostCapacity(2, 1024))
    (tmp_path / "agent.yaml").write_text(json.dumps({**config, "kubeconfig": "k"}))
    loaded = load_config(tmp_path / "agent.yaml")
    assert loaded.network.load_balancer_pool == ("10.0.0.241-10.0.0.242", "10.0.0.250-10.0.0.251")
    (tmp_path / "plain.yaml").write_text(SPEC)
    plain = agent_config(load_spec(tmp_path / "plain.yaml"), HOST, HostCapacity(2, 1024))
    assert "loadBalancerPool" not in plain["network"]


def test_the_pool_reaches_the_controller_manager_unit() -> None:
    unit = render("berth-controller-manager.service.j2", _context("10.0.0.241-10.0.0.242"))
    assert " --load-balancer-pool 10.0.0.241-10.0.0.242\n" in unit
    assert "--load-balancer-pool" not in render("berth-controller-manager.service.j2", _context(""))
