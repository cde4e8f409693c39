"""The named phase sets ``berth plan/apply --phases NAME`` can run.

``cluster`` is the real install (the cluster phases register themselves here as they land);
``demo`` installs a small service and a shipped .deb to demonstrate and benchmark the engine.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner.connectors.base import HostTarget
from provisioner.phases.demo import demo_phases
from provisioner.phases.preflight import preflight_phase
from provisioner.phases.workflow import Phase

API_PORT = 6443
AGENT_PORT = 10250
ETCD_PORTS = (2379, 2380)


def cluster_ports(host: HostTarget) -> tuple[int, ...]:
    """Ports berth's components listen on, by role (checked free and reachable in preflight)."""
    ports: list[int] = []
    if "control-plane" in host.roles:
        ports += [API_PORT, *ETCD_PORTS]
    if "worker" in host.roles:
        ports.append(AGENT_PORT)
    return tuple(ports)


def cluster_phases() -> list[Phase]:
    """preflight (the later phases append themselves: artifacts, pki, datastore, ...)."""
    return [preflight_phase(ports=cluster_ports, peer_ports=cluster_ports), *_CLUSTER_EXTRA]


_CLUSTER_EXTRA: list[Phase] = []


def extend_cluster_phases(*phases: Phase) -> None:
    """Append phases to the ``cluster`` set (called by the modules that define them)."""
    _CLUSTER_EXTRA.extend(phases)


PHASE_SETS: dict[str, Callable[[], list[Phase]]] = {
    "cluster": cluster_phases,
    "demo": demo_phases,
}
