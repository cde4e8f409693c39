"""HA wiring of the cluster phases (provisioner.phases.cluster.ha): the API servers' etcd
datastore, berth-lb on every host, component kubeconfigs through the balancer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from berth.apiserver.podsecurity import SECURE_POD_SECURITY, PodSecurityConfig
from berth.lb.config import LBConfig
from provisioner.commands import Upload, sha256_hex
from provisioner.connectors.base import HostName
from provisioner.facts.base import FactSet
from provisioner.facts.files import PathInfo, PathState
from provisioner.operations.cluster import HostCapacity
from provisioner.operations.files import File
from provisioner.operations.systemd import Service, UnitFile
from provisioner.phases.cluster import ha, hostside
from provisioner.phases.cluster.install import cluster_install_phases
from provisioner.spec import ClusterSpec
from provisioner.workflow import Inventory, RemoveHostsFn
from provisioner.workflow.inventory import inventory_from_spec
from tests.harness.op_context import op_context
from tests.unit.etcd_phase.test_etcd_phase import make_spec


@dataclass
class Data:
    spec: ClusterSpec
    inventory: Inventory
    cache_dir: Path
    state_dir: Path
    dry_run: bool = False
    remove_hosts: RemoveHostsFn | None = None

    def host_facts(self, host: HostName, facts: Any) -> FactSet:
        raise AssertionError("the HA wiring reads no facts")


def _data(tmp: Path, spec: ClusterSpec) -> Data:
    return Data(spec, inventory_from_spec(spec), tmp / "cache", tmp / "state")


def test_api_servers_use_etcd_with_their_own_member_first(tmp_path: Path) -> None:
    spec = make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path, datastore="etcd")
    cp2 = inventory_from_spec(spec).host("cp2")
    section = ha.apiserver_datastore_for(spec, cp2)
    assert section["type"] == "etcd"
    assert section["endpoints"][0] == "https://10.0.0.12:2379"
    assert sorted(section["endpoints"]) == [f"https://10.0.0.1{i}:2379" for i in (1, 2, 3)]
    one = make_spec(["cp1", "w1"], tmp_path, datastore="sqlite")
    assert ha.apiserver_datastore_for(one, inventory_from_spec(one).host("cp1"))["type"] == (
        "sqlite"
    )


def test_the_balancer_fronts_every_control_plane_api_server(tmp_path: Path) -> None:
    spec = make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path, datastore="etcd")
    mapping = ha.lb_config(spec).to_mapping()
    parsed = LBConfig.from_mapping(mapping)  # what berth.lb will read on the host
    assert [str(b) for b in parsed.backends] == [f"10.0.0.1{i}:6443" for i in (1, 2, 3)]
    assert (parsed.listen_address, parsed.listen_port) == ("127.0.0.1", ha.LB_PORT)
    assert parsed.health.mode == "https"


def test_kubeconfigs_are_rewritten_to_dial_the_balancer() -> None:
    source = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "ha", "cluster": {"server": "https://10.0.0.11:6443"}}],
            "users": [{"name": "u", "user": {"client-certificate-data": "QQ=="}}],
        }
    ).encode()
    doc = yaml.safe_load(ha.kubeconfig_via_balancer(source))
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6444"
    assert doc["users"][0]["user"]["client-certificate-data"] == "QQ=="


def test_every_host_of_an_ha_cluster_gets_the_balancer(tmp_path: Path) -> None:
    spec = make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path, datastore="etcd")
    data = _data(tmp_path, spec)
    worker = ha.lb_ops(data, data.inventory.host("w1"))
    control = ha.lb_ops(data, data.inventory.host("cp1"))
    config = next(op for op in worker if isinstance(op, File) and op.path == ha.LB_CONFIG)
    assert LBConfig.from_mapping(yaml.safe_load(config.content)).listen_port == ha.LB_PORT
    unit = next(op for op in worker if isinstance(op, UnitFile))
    assert b"python3 -m berth.lb --config /etc/berth/lb.yaml" in unit.content
    assert any(isinstance(op, Service) and op.name == ha.LB_UNIT for op in worker)
    kubeconfigs = {op.path for op in control if isinstance(op, ha.BalancedKubeconfig)}
    # every node: the agent, its NetworkPolicy enforcement, the ingress controller
    node = ("agent.conf", "proxy.conf", "ingress.conf")
    assert kubeconfigs == {
        ha.balanced(n) for n in (*node, "scheduler.conf", "controller-manager.conf")
    }
    assert {op.path for op in worker if isinstance(op, ha.BalancedKubeconfig)} == {
        ha.balanced(n) for n in node
    }
    assert ha.kubeconfig_path(spec, "agent.conf") == ha.balanced("agent.conf")


def test_a_balanced_kubeconfig_uploads_the_rewritten_state_file(tmp_path: Path) -> None:
    source = tmp_path / "agent.conf"
    source.write_text("clusters:\n- name: c\n  cluster: {server: 'https://10.0.0.11:6443'}\n")
    op = ha.BalancedKubeconfig(ha.balanced("agent.conf"), source, 0o600)
    assert "via the node's balancer" in op.describe()
    info = PathInfo((op.path,))
    absent = op_context({info: {op.path: None}})
    (upload,) = list(op.commands(absent))
    assert isinstance(upload, Upload)
    assert b"https://127.0.0.1:6444" in upload.content
    assert upload.mode == 0o600
    same = PathState("file", 0o600, "root", "root", 1, sha256=sha256_hex(upload.content))
    up_to_date = op_context({info: {op.path: same}})
    assert list(op.commands(up_to_date)) == []
    assert up_to_date.noop_reason


def test_a_single_control_plane_cluster_has_no_balancer(tmp_path: Path) -> None:
    spec = make_spec(["cp1", "w1"], tmp_path, datastore="sqlite")
    data = _data(tmp_path, spec)
    assert ha.lb_ops(data, data.inventory.host("w1")) == ()
    assert ha.kubeconfig_path(spec, "agent.conf") == "/etc/berth/kubeconfigs/agent.conf"


def test_apply_runs_etcd_after_pki_and_the_balancer_before_the_components() -> None:
    names = [p.name for p in cluster_install_phases()]
    order = [names.index(n) for n in ("pki", "etcd", "datastore", "lb", "control-plane", "agents")]
    assert order == sorted(order)


def test_the_installed_configs_use_etcd_and_the_balancer(tmp_path: Path) -> None:
    spec = make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path, datastore="etcd")
    inventory = inventory_from_spec(spec)
    api = hostside.apiserver_config(spec, inventory.host("cp3"))
    assert api["datastore"]["endpoints"][0] == "https://10.0.0.13:2379"
    agent = hostside.agent_config(spec, inventory.host("w1"), HostCapacity(2, 1024))
    assert agent["kubeconfig"] == ha.balanced("agent.conf")
    data = _data(tmp_path, spec)
    assert hostside.datastore_ops(data, inventory.host("cp1"))  # etcd is no longer refused


def test_the_api_server_gets_the_specs_pod_security_defaults(tmp_path: Path) -> None:
    """The secure default (baseline enforced, restricted warned and audited, kube-system exempt)
    reaches the API server's configuration, in the shape its loader reads."""
    spec = make_spec(["cp1", "w1"], tmp_path)
    inventory = inventory_from_spec(spec)
    section = hostside.apiserver_config(spec, inventory.host("cp1"))["podSecurity"]
    assert section["enforce"] == "baseline"
    assert section["exemptions"]["namespaces"] == ["kube-system"]
    assert PodSecurityConfig.from_mapping(section) == SECURE_POD_SECURITY
