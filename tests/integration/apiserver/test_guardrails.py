"""Guard rails through the real API server with unmodified kubectl 1.32 and 1.20: eviction
refused by a PodDisruptionBudget (429, so ``kubectl drain`` retries and keeps to its
``--timeout``), ResourceQuota, LimitRange and PriorityClass."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from .conftest import make_kubectl
from .helpers import Kubectl, core_api, node, pod

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["1.32", "1.20"])
def kubectl(
    request: pytest.FixtureRequest,
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Kubectl:
    version = str(request.param)
    home = tmp_path_factory.mktemp(f"home-{version}")
    return make_kubectl(kubectl_binaries, version, admin_kubeconfig, home)


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl, api: k8s.ApiClient) -> str:
    name = "guard" + kubectl.version.replace(".", "")
    core_api(api).create_namespace({"metadata": {"name": name}})
    return name


def _running(core: Any, name: str, ns: str) -> None:
    core.patch_namespaced_pod_status(
        name,
        ns,
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )


def test_drain_blocked_by_a_budget_ends_at_its_timeout_with_the_retry_message(
    kubectl: Kubectl, ns: str, api: k8s.ApiClient
) -> None:
    core = core_api(api)
    worker = "guarded-" + kubectl.version.replace(".", "")
    core.create_node(node(worker, ready=True, ip="10.0.0.9"))
    core.create_namespaced_pod(ns, pod("only", labels={"app": "only"}, node_name=worker))
    _running(core, "only", ns)
    budget = {
        "metadata": {"name": "keep-one"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "only"}}},
    }
    k8s.PolicyV1Api(api).create_namespaced_pod_disruption_budget(ns, budget)
    started = time.monotonic()
    r = kubectl.run("drain", worker, "--force", "--ignore-daemonsets", "--timeout=5s")
    took = time.monotonic() - started
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert (
        f'error when evicting pods/"only" -n "{ns}" (will retry after 5s): Cannot evict pod as'
        " it would violate the pod's disruption budget." in out
    )
    assert "global timeout reached: 5s" in out
    assert took < 15, f"drain took {took:.1f}s for a 5s timeout"
    assert core.read_namespaced_pod("only", ns).metadata.deletion_timestamp is None
