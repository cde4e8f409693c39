"""The named phase sets ``berth plan/apply --phases NAME`` can run.

``cluster`` is the real install (the cluster phases register themselves here as they land);
``demo`` installs a small service and a shipped .deb to demonstrate and benchmark the engine.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner.connectors.base import HostTarget
from provisioner.phases.demo import demo_phases
from provisioner.phases.preflight import preflight_phase
from provisioner.phases.workflow import Phase, PhaseData
from provisioner.spec.model import ClusterSpec


def cluster_ports(data: PhaseData, host: HostTarget) -> tuple[int, ...]:
    """Ports berth's components listen on, by role and spec (checked free and reachable in
    preflight): the API server's port on control-plane hosts, etcd's with the etcd datastore,
    the agent's on workers."""
    # Imported here: the cluster package registers its phases with this module on import.
    from provisioner.phases.cluster import layout  # noqa: PLC0415

    spec = data.spec if isinstance(data.spec, ClusterSpec) else None
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
    from provisioner.phases.cluster.ha import LB_PORT  # noqa: PLC0415

    spec = data.spec if isinstance(data.spec, ClusterSpec) else None
    lb = (LB_PORT,) if spec is not None and spec.uses_etcd else ()
    return (*cluster_ports(data, host), *lb)


def cluster_phases() -> list[Phase]:
    """preflight (the later phases append themselves: artifacts, pki, datastore, ...)."""
    from provisioner.phases.cluster.lb_pool_check import with_lb_pool_check  # noqa: PLC0415
    from provisioner.phases.cluster.vip_check import with_vip_check  # noqa: PLC0415
    from provisioner.phases.etcd_release_check import (  # noqa: PLC0415
        with_etcd_release_check,
    )

    preflight = preflight_phase(ports=local_cluster_ports, peer_ports=cluster_ports)
    checked = with_etcd_release_check(with_lb_pool_check(with_vip_check(preflight)))
    return [checked, *_CLUSTER_EXTRA]


_CLUSTER_EXTRA: list[Phase] = []


def extend_cluster_phases(*phases: Phase) -> None:
    """Append phases to the ``cluster`` set (called by the modules that define them)."""
    _CLUSTER_EXTRA.extend(phases)


PHASE_SETS: dict[str, Callable[[], list[Phase]]] = {
    "cluster": cluster_phases,
    "demo": demo_phases,
}
