"""Guard rails through the real API server with unmodified kubectl 1.32 and 1.20: eviction
refused by a PodDisruptionBudget (429, so ``kubectl drain`` retries and keeps to its
``--timeout``), ResourceQuota, LimitRange and PriorityClass."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client as k8s

from .helpers import Kubectl, core_api, node, pod

pytestmark = pytest.mark.timeout(120)


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
    policy_api: Any = k8s.PolicyV1Api(api)
    policy_api.create_namespaced_pod_disruption_budget(ns, budget)
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


def test_create_quota_refuses_the_object_over_its_count(kubectl: Kubectl, ns: str) -> None:
    out = kubectl("create", "quota", "small", "-n", ns, "--hard=configmaps=2,pods=5")
    assert out.strip() == "resourcequota/small created"
    for name in ("one", "two"):
        kubectl("create", "configmap", name, "-n", ns)
    r = kubectl.run("create", "configmap", "three", "-n", ns)
    assert r.returncode != 0
    assert (
        'configmaps "three" is forbidden: exceeded quota: small, requested: configmaps=1,'
        " used: configmaps=2, limited: configmaps=2" in r.stderr
    )
    described = kubectl("describe", "quota", "small", "-n", ns)
    assert "configmaps  2     2" in described
    rows = kubectl("get", "quota", "small", "-n", ns)
    assert "configmaps: 2/2, pods: 1/5" in rows  # the drain test's pod was counted


def test_quota_on_cpu_requires_containers_to_declare_it(
    kubectl: Kubectl, ns: str, api: k8s.ApiClient
) -> None:
    core = core_api(api)
    quota_ns = ns + "-cpu"
    core.create_namespace({"metadata": {"name": quota_ns}})
    kubectl("create", "quota", "cpu", "-n", quota_ns, "--hard=requests.cpu=1,limits.memory=1Gi")
    with pytest.raises(k8s.ApiException) as exc:
        core.create_namespaced_pod(quota_ns, pod("bare"))
    assert exc.value.status == 403
    assert "failed quota: cpu: must specify limits.memory for: app; requests.cpu for: app" in str(
        exc.value.body
    )
    sized = pod("sized")
    sized["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "600m"},
        "limits": {"memory": "100Mi"},
    }
    core.create_namespaced_pod(quota_ns, sized)
    sized["metadata"]["name"] = "sized-2"
    with pytest.raises(k8s.ApiException) as exc:
        core.create_namespaced_pod(quota_ns, sized)
    assert (
        "exceeded quota: cpu, requested: requests.cpu=600m, used: requests.cpu=600m,"
        " limited: requests.cpu=1" in str(exc.value.body)
    )


def test_concurrent_creates_never_overshoot_a_quota(
    kubectl: Kubectl, ns: str, api: k8s.ApiClient
) -> None:
    core = core_api(api)
    race_ns = ns + "-race"
    core.create_namespace({"metadata": {"name": race_ns}})
    kubectl("create", "quota", "five", "-n", race_ns, "--hard=count/secrets=5")

    def create(i: int) -> int:
        try:
            core.create_namespaced_secret(race_ns, {"metadata": {"name": f"s{i}"}})
            return 201
        except k8s.ApiException as exc:
            return int(exc.status)

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(create, range(20)))
    assert codes.count(201) == 5, codes
    assert set(codes) == {201, 403}
    assert len(core.list_namespaced_secret(race_ns).items) == 5
    used = core.read_namespaced_resource_quota("five", race_ns).status.used
    assert used == {"count/secrets": "5"}


def test_limit_range_defaults_and_bounds_containers(
    kubectl: Kubectl, ns: str, api: k8s.ApiClient
) -> None:
    core = core_api(api)
    lr_ns = ns + "-lr"
    core.create_namespace({"metadata": {"name": lr_ns}})
    core.create_namespaced_limit_range(
        lr_ns,
        {
            "metadata": {"name": "sizes"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "max": {"cpu": "1"},
                        "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
                        "default": {"memory": "128Mi"},
                    }
                ]
            },
        },
    )
    stored = core.read_namespaced_limit_range("sizes", lr_ns).spec.limits[0]
    assert stored.default == {"cpu": "1", "memory": "128Mi"}  # max became the default limit
    created = core.create_namespaced_pod(lr_ns, pod("small"))
    res = created.spec.containers[0].resources
    assert res.requests == {"cpu": "100m", "memory": "64Mi"}
    assert res.limits == {"cpu": "1", "memory": "128Mi"}
    big = pod("big")
    big["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    r = kubectl.run("create", "-n", lr_ns, "-f", "-", stdin=json.dumps(big))
    assert r.returncode != 0
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in (
        r.stderr
    )


def test_priority_classes_set_pod_priority(kubectl: Kubectl, ns: str, api: k8s.ApiClient) -> None:
    core = core_api(api)
    out = kubectl("get", "priorityclasses")
    assert "system-node-critical" in out
    assert "2000001000" in out
    name = "high-" + kubectl.version.replace(".", "")
    out = kubectl("create", "priorityclass", name, "--value=1000", "--preemption-policy=Never")
    assert out.strip() == f"priorityclass.scheduling.k8s.io/{name} created"
    r = kubectl.run("create", "priorityclass", "system-mine", "--value=5")
    assert r.returncode != 0
    assert "priority class names with 'system-' prefix are reserved" in r.stderr
    p = pod("important")
    p["spec"]["priorityClassName"] = name
    created = core.create_namespaced_pod(ns, p)
    assert (created.spec.priority, created.spec.preemption_policy) == (1000, "Never")
    plain = core.create_namespaced_pod(ns, pod("plain"))
    assert (plain.spec.priority, plain.spec.preemption_policy) == (0, "PreemptLowerPriority")
    missing = pod("orphan")
    missing["spec"]["priorityClassName"] = "nope"
    with pytest.raises(k8s.ApiException) as exc:
        core.create_namespaced_pod(ns, missing)
    assert exc.value.status == 403
    assert "no PriorityClass with name nope was found" in str(exc.value.body)


def test_an_update_that_raises_usage_is_checked_against_the_quota(
    kubectl: Kubectl, ns: str, api: k8s.ApiClient
) -> None:
    core = core_api(api)
    svc_ns = ns + "-svc"
    core.create_namespace({"metadata": {"name": svc_ns}})
    kubectl("create", "quota", "no-nodeports", "-n", svc_ns, "--hard=services.nodeports=0")
    core.create_namespaced_service(
        svc_ns, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )
    with pytest.raises(k8s.ApiException) as exc:
        core.patch_namespaced_service("web", svc_ns, {"spec": {"type": "NodePort"}})
    assert exc.value.status == 403
    assert (
        "exceeded quota: no-nodeports, requested: services.nodeports=1, used:"
        " services.nodeports=0, limited: services.nodeports=0" in str(exc.value.body)
    )
