"""The control plane's own identities hold what their code calls, and nothing that would let
a stolen certificate take the cluster.

The first test ties the controller manager's role to the kinds its garbage collector and
namespace controller monitor (``berth.controllers.kinds.MANAGED``): a kind added there must be added
to the role too, or those controllers' informers would be refused in a cluster. The
control-plane integration tests (tests/integration/controlplane) run every controller and the
scheduler under these roles against a real API server.
"""

from __future__ import annotations

import pytest

from berth.api.resources import EVENTS, ResourceDef
from berth.apiserver.auth import UserInfo
from berth.apiserver.rbac import RbacAuthorizer
from berth.controllers.kinds import MANAGED
from tests.unit.apiserver.rbac_checks import bootstrap_authorizer, can

CONTROLLER_MANAGER = UserInfo("system:kube-controller-manager", ("system:authenticated",))
SCHEDULER = UserInfo("system:kube-scheduler", ("system:authenticated",))
PROXY = UserInfo("system:kube-proxy", ("system:authenticated",))


@pytest.fixture(scope="module")
def authorizer() -> RbacAuthorizer:
    return bootstrap_authorizer()


@pytest.mark.parametrize("res", [r for r in MANAGED if r != EVENTS], ids=lambda r: r.group_resource)
def test_controller_manager_reaches_every_kind_the_gc_monitors(
    authorizer: RbacAuthorizer, res: ResourceDef
) -> None:
    for verb in ("get", "list", "watch", "patch", "delete"):
        assert can(authorizer, CONTROLLER_MANAGER, verb, res.plural, group=res.group), verb
    if res.namespaced:  # namespace controller: list and delete everything in a namespace
        for verb in ("list", "delete"):
            assert can(authorizer, CONTROLLER_MANAGER, verb, res.plural, group=res.group, ns="x")


def test_controller_manager_can_do_its_controllers_work(authorizer: RbacAuthorizer) -> None:
    cm = CONTROLLER_MANAGER
    a = authorizer
    assert can(a, cm, "create", "pods", ns="x")
    assert can(a, cm, "create", "replicasets", group="apps", ns="x")
    for kind in ("deployments", "replicasets", "daemonsets", "statefulsets"):
        assert can(a, cm, "patch", kind, group="apps", sub="status", ns="x")
    # statefulset, daemonset: their ControllerRevisions (created, renumbered, pruned)
    for verb in ("create", "patch", "delete"):
        assert can(a, cm, verb, "controllerrevisions", group="apps", ns="x")
    # statefulset: claims of volumeClaimTemplates
    for verb in ("get", "create", "patch"):
        assert can(a, cm, verb, "persistentvolumeclaims", ns="x")
    assert can(a, cm, "patch", "pods", sub="status", ns="x")
    assert can(a, cm, "patch", "nodes", sub="status")
    assert can(a, cm, "update", "namespaces", sub="finalize", name="gone")
    assert can(a, cm, "create", "endpoints", ns="x")
    assert can(a, cm, "update", "endpoints", ns="x")
    assert can(a, cm, "create", "events", ns="x")
    assert can(a, cm, "list", "events", ns="x")
    assert can(a, cm, "delete", "events", ns="x")
    lease = {"group": "coordination.k8s.io", "ns": "kube-system"}
    assert can(a, cm, "create", "leases", **lease)
    assert can(a, cm, "update", "leases", name="kube-controller-manager", **lease)
    assert not can(a, cm, "update", "leases", name="kube-scheduler", **lease)


def test_controller_manager_cannot_take_the_cluster(authorizer: RbacAuthorizer) -> None:
    cm = CONTROLLER_MANAGER
    a = authorizer
    rbac = "rbac.authorization.k8s.io"
    for kind in ("clusterrolebindings", "rolebindings", "clusterroles", "roles"):
        ns = "x" if kind in ("rolebindings", "roles") else ""
        for verb in ("create", "update", "patch", "delete", "escalate", "bind", "list"):
            assert not can(a, cm, verb, kind, group=rbac, ns=ns), (verb, kind)
    # the quota recount lists built-in groups only: not who may do what, not custom groups
    assert can(a, cm, "list", "jobs", group="batch", ns="x")
    assert not can(a, cm, "list", "widgets", group="example.com", ns="x")
    for kind in ("users", "groups", "serviceaccounts"):
        assert not can(a, cm, "impersonate", kind)
    assert not can(a, cm, "create", "namespaces")
    assert not can(a, cm, "create", "nodes")
    assert not can(a, cm, "update", "nodes")
    assert not can(a, cm, "update", "pods", ns="x")
    assert not can(a, cm, "create", "pods", sub="exec", ns="x")
    assert not can(a, cm, "get", "pods", sub="log", ns="x")
    # the HPA controller scales through /scale (kube's horizontal-pod-autoscaler role), and
    # that is all it may write of a workload
    assert can(a, cm, "update", "deployments", group="apps", sub="scale", ns="x")
    assert not can(a, cm, "update", "deployments", group="apps", ns="x")
    assert not can(a, cm, "update", "statefulsets", group="apps", ns="x")
    assert not can(a, cm, "get", "poddisruptionbudgets", group="policy", ns="x")


def test_scheduler_and_proxy_hold_only_their_work(authorizer: RbacAuthorizer) -> None:
    a = authorizer
    assert can(a, SCHEDULER, "create", "pods", sub="binding", ns="x")
    assert can(a, SCHEDULER, "patch", "pods", sub="status", ns="x")
    assert can(a, SCHEDULER, "watch", "pods")
    assert can(a, SCHEDULER, "watch", "nodes")
    assert can(a, SCHEDULER, "delete", "pods", ns="x")  # preemption victims
    assert can(a, SCHEDULER, "watch", "poddisruptionbudgets", group="policy")
    for verb, resource in (("list", "configmaps"), ("get", "secrets"), ("update", "pods")):
        assert not can(a, SCHEDULER, verb, resource, ns="x"), resource
    assert not can(a, SCHEDULER, "create", "pods", ns="x")
    assert can(a, PROXY, "watch", "services")
    assert can(a, PROXY, "list", "endpointslices", group="discovery.k8s.io")
    assert not can(a, PROXY, "get", "secrets", ns="x")
    assert not can(a, PROXY, "get", "services", ns="x")  # list/watch only, as upstream
    assert not can(a, PROXY, "create", "pods", ns="x")


def test_network_identity_reads_what_network_policies_need_and_writes_nothing(
    authorizer: RbacAuthorizer,
) -> None:
    # berth.agent.netpolicy runs with system:kube-proxy's credentials on every node
    for verb in ("list", "watch"):
        assert can(authorizer, PROXY, verb, "pods")
        assert can(authorizer, PROXY, verb, "namespaces")
        assert can(authorizer, PROXY, verb, "networkpolicies", group="networking.k8s.io")
    for verb in ("create", "update", "patch", "delete"):
        assert not can(authorizer, PROXY, verb, "pods", ns="x")
        assert not can(authorizer, PROXY, verb, "networkpolicies", group="networking.k8s.io")
    assert not can(authorizer, PROXY, "get", "secrets", ns="x")
    assert not can(authorizer, PROXY, "create", "pods", sub="exec", ns="x")


def test_only_the_controller_manager_writes_load_balancer_status(
    authorizer: RbacAuthorizer,
) -> None:
    # the service-lb controller fills status.loadBalancer.ingress; nobody else of the
    # control plane (nor the proxy, which forwards those addresses) may
    a = authorizer
    assert can(a, CONTROLLER_MANAGER, "update", "services", sub="status", ns="x")
    for who in (SCHEDULER, PROXY):
        for verb in ("update", "patch"):
            assert not can(a, who, verb, "services", sub="status", ns="x")
    assert not can(a, CONTROLLER_MANAGER, "update", "services", ns="x")


INGRESS = UserInfo("system:berth-ingress", ("system:authenticated",))


def test_the_ingress_controller_reads_what_it_routes_and_writes_only_ingress_status(
    authorizer: RbacAuthorizer,
) -> None:
    a, ing = authorizer, INGRESS
    net = "networking.k8s.io"
    for verb in ("get", "list", "watch"):
        assert can(a, ing, verb, "ingresses", group=net)
        assert can(a, ing, verb, "ingressclasses", group=net)
        assert can(a, ing, verb, "services")
        assert can(a, ing, verb, "endpointslices", group="discovery.k8s.io")
        # no Secret through RBAC: the ingress authorizer grants the TLS Secrets Ingresses name
        assert not can(a, ing, verb, "secrets", ns="x")
        assert not can(a, ing, verb, "secrets")
        assert can(a, ing, verb, "nodes")
    assert can(a, ing, "patch", "ingresses", group=net, sub="status", ns="x", name="i")
    for verb in ("create", "update", "patch", "delete"):
        assert not can(a, ing, verb, "ingresses", group=net, ns="x")
        assert not can(a, ing, verb, "secrets", ns="x")
        assert not can(a, ing, verb, "services", ns="x")
    assert not can(a, ing, "create", "pods", ns="x")
    assert not can(a, ing, "get", "configmaps", ns="x")
