"""The install phases of a cluster, in the order ``berth apply`` runs them (see the package
docstring for what each does)."""

from __future__ import annotations

from typing import Any

from provisioner import hostlayout as layout
from provisioner.connectors.base import HostTarget
from provisioner.facts.base import Fact
from provisioner.operations.cluster import DirEntries
from provisioner.phases.cluster import ha, hostside
from provisioner.phases.cluster.finish import verify_after
from provisioner.phases.cluster.nodes import nodes_after
from provisioner.phases.etcd import etcd_phase
from provisioner.workflow import Phase, PhaseData


def _versions_fact(data: PhaseData, host: HostTarget) -> tuple[Fact[Any], ...]:
    return (DirEntries(layout.VERSIONS),)


def cluster_install_phases() -> tuple[Phase, ...]:
    """The install phases in order (without preflight, which the phase set puts first)."""
    return (
        Phase("artifacts", "Ship the berth bundle", operations=hostside.artifact_ops,
              prepare=hostside.prepare_bundle),
        Phase("pki", "Distribute certificates, keys and kubeconfigs",
              operations=hostside.pki_ops, prepare=hostside.prepare_pki),
        etcd_phase(),  # nothing to do unless datastore: etcd
        Phase("datastore", "Prepare the datastore", operations=hostside.datastore_ops,
              applies_to=hostside.is_control_plane),
        Phase("lb", "API load balancer on every host (etcd clusters only)",
              operations=ha.lb_ops),
        Phase("control-plane", "API server, controller manager and scheduler",
              operations=hostside.control_plane_ops, applies_to=hostside.is_control_plane),
        Phase("agents", "Node agents on every host", operations=hostside.agent_ops,
              facts=hostside.agent_facts),
        Phase("nodes", "Roles, labels and taints of every Node; hosts that left",
              after=nodes_after),
        Phase("cleanup", "Remove other berth versions", operations=hostside.prune_ops,
              facts=_versions_fact),
        Phase("verify", "Check the hosts and the cluster", after=verify_after),
    )  # fmt: skip
