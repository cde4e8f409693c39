"""The named phase sets ``berth plan/apply --phases NAME`` can run.

``cluster`` is the real install: preflight, then the install phases of
:mod:`provisioner.phases.cluster` in the order that package lists them (written out there, not
registered by importing anything);
``demo`` installs a small service and a shipped .deb to demonstrate and benchmark the engine.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner import hostlayout as layout
from provisioner.connectors.base import HostTarget
from provisioner.phases.demo import demo_phases
from provisioner.phases.preflight import preflight_phase
from provisioner.workflow import Phase, PhaseData


def cluster_ports(data: PhaseData, host: HostTarget) -> tuple[int, ...]:
    """Ports berth's components listen on, by role and spec (checked free and reachable in
    preflight): the API server's port on control-plane hosts, etcd's with the etcd datastore,
    the agent's on workers."""
    spec = data.spec
    ports: list[int] = []
    if "control-plane" in host.roles:
        ports.append(spec.api_port if spec else layout.API_PORT)
        if spec is None or spec.uses_etcd:
            ports += layout.ETCD_PORTS
    if "worker" in host.roles:
        ports.append(layout.AGENT_PORT)
    return tuple(ports)


def local_cluster_ports(data: PhaseData, host: HostTarget) -> tuple[int, ...]:
    """:func:`cluster_ports` plus those bound on loopback only (free, but not reachable from
    peers): ``berth-lb`` on every host of an etcd cluster."""
    from provisioner.phases.cluster.ha import LB_PORT  # noqa: PLC0415 - see cluster_phases

    spec = data.spec
    lb = (LB_PORT,) if spec is not None and spec.uses_etcd else ()
    return (*cluster_ports(data, host), *lb)


def cluster_phases() -> list[Phase]:
    """preflight (with the VIP, load-balancer pool and etcd release checks), then the install
    phases.

    The cluster phases are imported here, not at the top: they pull in most of berth (the load
    balancer, ingress and etcd modules, the PKI), which ``--phases demo`` and the commands that
    only list the sets do not need."""
    from provisioner.phases.cluster.install import cluster_install_phases  # noqa: PLC0415
    from provisioner.phases.cluster.lb_pool_check import with_lb_pool_check  # noqa: PLC0415
    from provisioner.phases.cluster.vip_check import with_vip_check  # noqa: PLC0415
    from provisioner.phases.etcd_release_check import with_etcd_release_check  # noqa: PLC0415

    preflight = preflight_phase(ports=local_cluster_ports, peer_ports=cluster_ports)
    checked = with_etcd_release_check(with_lb_pool_check(with_vip_check(preflight)))
    return [checked, *cluster_install_phases()]


PHASE_SETS: dict[str, Callable[[], list[Phase]]] = {
    "cluster": cluster_phases,
    "demo": demo_phases,
}
