"""The ``verify`` phase: run ``berth verify`` at the end of an apply, and print how to reach
the cluster."""

from __future__ import annotations

from collections.abc import Callable

from provisioner.phases.cluster.nodes import admin_kubeconfig
from provisioner.phases.workflow import PhaseData


def verify_after(data: PhaseData, report: Callable[[str], None]) -> int:
    if data.dry_run:
        return 0
    path = admin_kubeconfig(data)
    report(f"admin kubeconfig: {path}")
    report(f"kubectl --kubeconfig {path} get nodes")
    return 0
