"""``apiServer.vip`` on the hosts: ``berth-vip`` on every control-plane host (after its API
server), none on workers or without a VIP, its config readable by :mod:`berth.vip`, its
credentials distributed, its Lease authorized and nothing more, destroy removing its unit."""

from __future__ import annotations

from pathlib import Path

import yaml

from berth.apiserver.auth import UserInfo
from berth.apiserver.rbac import Attributes, RbacAuthorizer, bootstrap_policy
from berth.vip.config import VipConfig
from provisioner import hostlayout as layout
from provisioner.operations.files import File
from provisioner.operations.systemd import Service, UnitFile
from provisioner.phases.cluster import ha, hostside
from provisioner.pki.distribution import files_for_host
from provisioner.spec import ClusterSpec, parse_spec
from provisioner.state import ClusterState
from tests.unit.cluster.test_ha_wiring import _data
from tests.unit.etcd_phase.test_etcd_phase import make_spec


def vip_spec(tmp: Path, extra: str = "") -> ClusterSpec:
    base = make_spec(["cp1", "cp2", "cp3", "w1"], tmp, datastore="etcd")
    document = base.model_dump(by_alias=True, exclude_none=True, mode="json")
    document["spec"]["apiServer"]["vip"] = "10.0.0.200"
    if extra:
        document["spec"]["apiServer"]["vipInterface"] = extra
    return parse_spec(yaml.safe_dump(document), source=tmp / "cluster.yaml")


def test_every_control_plane_host_runs_the_vip_holder_after_its_api_server(
    tmp_path: Path,
) -> None:
    spec = vip_spec(tmp_path, extra="eth1")
    data = _data(tmp_path, spec)
    ops = ha.vip_ops(data, data.inventory.host("cp2"))
    config = next(op for op in ops if isinstance(op, File) and op.path == ha.VIP_CONFIG)
    parsed = VipConfig.from_mapping(yaml.safe_load(config.content))
    assert (parsed.address, parsed.interface, parsed.identity) == ("10.0.0.200", "eth1", "cp2")
    assert str(parsed.kubeconfig) == ha.VIP_KUBECONFIG
    unit = next(op for op in ops if isinstance(op, UnitFile))
    assert b"python3 -m berth.vip --config /etc/berth/vip.yaml" in unit.content
    assert b"After=network-online.target berth-apiserver.service" in unit.content
    service = next(op for op in ops if isinstance(op, Service))
    assert f"file:{ha.VIP_KUBECONFIG}" in service.restart_on
    control_plane = list(hostside.control_plane_ops(data, data.inventory.host("cp2")))
    names = [op.name for op in control_plane if isinstance(op, Service)]
    assert names.index(layout.VIP_UNIT) > names.index(layout.APISERVER)
    assert ha.vip_ops(data, data.inventory.host("w1")) == ()
    assert layout.VIP_UNIT in layout.TEARDOWN_UNITS


def test_without_a_vip_no_holder_runs(tmp_path: Path) -> None:
    spec = make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path, datastore="etcd")
    data = _data(tmp_path, spec)
    assert ha.vip_ops(data, data.inventory.host("cp1")) == ()


def test_control_plane_hosts_get_the_holders_kubeconfig(tmp_path: Path) -> None:
    spec = vip_spec(tmp_path)
    state = ClusterState.for_spec(spec, state_dir=tmp_path / "state")
    on_cp = {f.remote_path for f in files_for_host(spec, state, "cp1")}
    on_worker = {f.remote_path for f in files_for_host(spec, state, "w1")}
    assert ha.VIP_KUBECONFIG in on_cp
    assert ha.VIP_KUBECONFIG not in on_worker


def test_the_holder_identity_may_campaign_for_its_lease_and_nothing_else() -> None:
    authorizer = RbacAuthorizer()
    for obj in bootstrap_policy():
        authorizer.apply(str(obj["kind"]), obj, deleted=False)
    user = UserInfo("system:berth-vip", ("system:authenticated",))

    def can(verb: str, resource: str, name: str = "", group: str = "coordination.k8s.io") -> bool:
        return authorizer.allowed(
            Attributes(user=user, verb=verb, resource_request=True, api_group=group,
                       resource=resource, subresource="", namespace="kube-system", name=name)
        )  # fmt: skip

    assert can("create", "leases")
    assert can("get", "leases", "berth-vip")
    assert can("update", "leases", "berth-vip")
    assert not can("update", "leases", "kube-controller-manager")
    assert not can("get", "secrets", "x", group="")
    assert not can("list", "pods", group="")
