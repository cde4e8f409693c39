"""The ``verify`` phase: ``berth verify`` at the end of an apply, then how to reach the cluster."""

from __future__ import annotations

from collections.abc import Callable

from provisioner.phases.cluster.context import local_bundle_id, release, spec_of, state_of
from provisioner.phases.cluster.nodes import admin_kubeconfig
from provisioner.verify.run import verify
from provisioner.workflow import PhaseData


def verify_after(data: PhaseData, report: Callable[[str], None]) -> int:
    """Verify hosts and cluster (failures raise ``VerifyError``, exit 7); print the kubectl
    line. Skip it with ``--skip verify``."""
    if data.dry_run:
        return 0
    spec = spec_of(data, "verify")
    result = verify(spec, state_of(data), bundle_id=local_bundle_id(release(spec)))
    for check in result.results:
        if not check.ok or check.name.startswith("smoke"):
            report(check.line())
    report(result.lines(verbose=False)[-1])
    result.raise_if_failed()
    path = admin_kubeconfig(data)
    report(f"admin kubeconfig: {path}")
    report(f"kubectl --kubeconfig {path} get nodes")
    return 0
