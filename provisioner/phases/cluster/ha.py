"""An HA control plane (``datastore: {type: etcd}``): what the cluster phases add.

* Each API server reads and writes the etcd cluster, its own member first
  (:func:`apiserver_datastore_for`).
* Every host runs ``berth-lb`` (:mod:`berth.lb`): a TCP load balancer on
  ``127.0.0.1:`` :data:`LB_PORT` in front of every control-plane host's API server, health
  checked over HTTPS (``/readyz``). The API server certificate names ``127.0.0.1``, so TLS
  passes through unchanged.
* The node agent, scheduler and controller manager talk to that balancer
  (:func:`balanced_kubeconfig`): losing one control-plane host costs them one failed
  connection, not the cluster. Scheduler and controller manager run on every control-plane
  host and elect a leader (``berth.machinery.leaderelection``).

* With ``apiServer.vip``, every control-plane host runs ``berth-vip`` (:mod:`berth.vip`): the
  host elected through a Lease holds the VIP and announces it by gratuitous ARP; the admin
  and proxy kubeconfigs dial it (:func:`vip_ops`).

With SQLite (one control-plane host) nothing here applies: :func:`lb_ops` yields nothing and
the components keep dialling the one API server directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from berth.lb.config import Backend, HealthConfig, LBConfig
from berth.vip.config import VipConfig
from provisioner import hostlayout as layout
from provisioner.commands import Command
from provisioner.connectors.base import HostTarget
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.cluster import StateFile
from provisioner.operations.files import Directory, File
from provisioner.operations.systemd import Service, UnitFile
from provisioner.phases.cluster.context import spec_of, state_of
from provisioner.phases.etcd import apiserver_datastore
from provisioner.pki import PkiFiles
from provisioner.spec import ClusterSpec
from provisioner.templating import render
from provisioner.workflow import PhaseData

LB_PORT = 6444
LB_UNIT = layout.LB_UNIT
LB_CONFIG = f"{layout.ETC}/lb.yaml"
BALANCED = f"{layout.KUBECONFIGS}/lb"
"""Kubeconfigs that dial the node's balancer (copies of the state's, server rewritten)."""
LB_URL = f"https://127.0.0.1:{LB_PORT}"


def is_ha(spec: ClusterSpec) -> bool:
    return spec.spec.datastore.type == "etcd"


def apiserver_datastore_for(spec: ClusterSpec, host: HostTarget) -> dict[str, Any]:
    """The ``datastore`` section of ``host``'s API server config."""
    if is_ha(spec):
        return apiserver_datastore(spec, host.name)
    return {"type": "sqlite", "path": f"{layout.DATASTORE_DIR}/state.db"}


def lb_config(spec: ClusterSpec) -> LBConfig:
    """Every control-plane API server behind ``127.0.0.1:LB_PORT``."""
    return LBConfig(
        backends=tuple(Backend(h.address, spec.api_port) for h in spec.control_plane_hosts),
        listen_address="127.0.0.1",
        listen_port=LB_PORT,
        health=HealthConfig(mode="https", ca_file=Path(f"{layout.PKI}/ca.crt")),
    )


def balanced(name: str) -> str:
    """Where the balanced copy of kubeconfig ``name`` (``agent.conf`` …) lives on a host."""
    return f"{BALANCED}/{name}"


def kubeconfig_via_balancer(content: bytes) -> bytes:
    """``content`` (a kubeconfig) with every cluster's server set to the node's balancer."""
    doc = yaml.safe_load(content)
    for entry in doc.get("clusters") or []:
        entry["cluster"]["server"] = LB_URL
    return yaml.safe_dump(doc, sort_keys=False).encode()


@dataclass(frozen=True)
class BalancedKubeconfig(StateFile):
    """A kubeconfig from the cluster state, rewritten to dial ``127.0.0.1:LB_PORT``."""

    def describe(self) -> str:
        return (
            super()
            .describe()
            .replace("from the cluster state", "from the cluster state, via the node's balancer")
        )

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        try:
            content = kubeconfig_via_balancer(self.source.read_bytes())
        except FileNotFoundError:
            yield from super().commands(ctx)  # planning a new cluster (see StateFile)
            return
        changes = list(File(self.path, content, mode=self.mode).commands(ctx))
        yield from changes
        if not changes:
            ctx.noop(f"file {self.path} is up to date")


def balanced_kubeconfigs(data: PhaseData, host: HostTarget) -> tuple[Operation, ...]:
    """The agent's two (every host) and the scheduler's and controller manager's (control-plane
    hosts) kubeconfigs, dialling the balancer."""
    files = PkiFiles(state_of(data))
    out: list[Operation] = [
        BalancedKubeconfig(
            balanced("agent.conf"), files.kubeconfig(f"nodes/{host.name}.conf"), 0o600
        ),
        # the agent's NetworkPolicy enforcement (the cluster network's identity)
        BalancedKubeconfig(balanced("proxy.conf"), files.kubeconfig("proxy.conf"), 0o600),
        BalancedKubeconfig(balanced("ingress.conf"), files.kubeconfig("ingress.conf"), 0o600),
    ]
    if "control-plane" in host.roles:
        out += [
            BalancedKubeconfig(balanced(f"{c}.conf"), files.kubeconfig(f"{c}.conf"), 0o600)
            for c in ("scheduler", "controller-manager")
        ]
    return tuple(out)


def kubeconfig_path(spec: ClusterSpec, name: str) -> str:
    """The kubeconfig a component should use: the balanced copy in an HA cluster."""
    return balanced(name) if is_ha(spec) else f"{layout.KUBECONFIGS}/{name}"


def lb_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    """``berth-lb`` and the balanced kubeconfigs on every host of an HA cluster (before the
    components that use them start)."""
    spec = spec_of(data, "lb")
    if not is_ha(spec):
        return ()
    config = yaml.safe_dump(lb_config(spec).to_mapping(), sort_keys=False).encode()
    context = {
        "cluster": data.inventory.cluster,
        "host": host.name,
        "site": layout.SITE,
        "config": LB_CONFIG,
    }
    return (
        File(LB_CONFIG, config, mode=0o644),
        UnitFile(LB_UNIT, render(f"{LB_UNIT}.j2", context).encode()),
        Service(LB_UNIT, restart_on=(f"file:{LB_CONFIG}", f"symlink:{layout.CURRENT}")),
        Directory(BALANCED, mode=0o700),
        *balanced_kubeconfigs(data, host),
    )


VIP_UNIT = layout.VIP_UNIT
VIP_CONFIG = f"{layout.ETC}/vip.yaml"
VIP_KUBECONFIG = f"{layout.KUBECONFIGS}/vip.conf"
"""Dials the host's own API server (distributed by the pki phase)."""


def vip_config(spec: ClusterSpec, host: HostTarget) -> VipConfig:
    vip = spec.api_vip
    assert vip is not None
    return VipConfig(
        address=vip,
        interface=spec.spec.api_server.vip_interface,
        kubeconfig=Path(VIP_KUBECONFIG),
        identity=host.name,
    )


def vip_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    """``berth-vip`` on a control-plane host when the spec sets ``apiServer.vip`` (after the
    API server it campaigns through)."""
    spec = spec_of(data, "control-plane")
    if spec.api_vip is None or "control-plane" not in host.roles:
        return ()
    config = yaml.safe_dump(vip_config(spec, host).to_mapping(), sort_keys=False).encode()
    context = {
        "cluster": data.inventory.cluster,
        "host": host.name,
        "site": layout.SITE,
        "config": VIP_CONFIG,
        "vip": spec.api_vip,
    }
    return (
        File(VIP_CONFIG, config, mode=0o644),
        UnitFile(VIP_UNIT, render(f"{VIP_UNIT}.j2", context).encode()),
        Service(
            VIP_UNIT,
            restart_on=(
                f"file:{VIP_CONFIG}",
                f"file:{VIP_KUBECONFIG}",
                f"symlink:{layout.CURRENT}",
            ),
        ),
    )
