"""SelfSubjectRulesReview's status from the RBAC cache (reviews.rules_review) and the
SelfSubjectReview body."""

from __future__ import annotations

from berth.api.meta import Obj
from berth.apiserver.auth import UserInfo
from berth.apiserver.nodeauthz import NodeAndRbacAuthorizer
from berth.apiserver.nodegraph import NodeGraph
from berth.apiserver.reviews import (
    NODE_RULES_UNKNOWN,
    discovery_resources,
    rules_review,
    self_subject_review,
)

RBAC = "rbac.authorization.k8s.io"
BOB = UserInfo("bob", ("devs", "system:authenticated"))


def _binding(kind: str, name: str, role_kind: str, role: str, subject: Obj, ns: str = "") -> Obj:
    meta: Obj = {"name": name, **({"namespace": ns} if ns else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role},
        "subjects": [subject],
    }


def _authorizer() -> NodeAndRbacAuthorizer:
    a = NodeAndRbacAuthorizer(NodeGraph())
    a.apply(
        "ClusterRole",
        {
            "metadata": {"name": "reader"},
            "rules": [
                {"apiGroups": ["", "apps"], "resources": ["pods", "deployments"], "verbs": ["get"]},
                {"nonResourceURLs": ["/healthz", "/metrics"], "verbs": ["get"]},
            ],
        },
        deleted=False,
    )
    a.apply(
        "Role",
        {
            "metadata": {"name": "cm", "namespace": "team"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["one"],
                    "verbs": ["update"],
                }
            ],
        },
        deleted=False,
    )
    group = {"kind": "Group", "name": "devs"}
    user = {"kind": "User", "name": "bob"}
    a.apply(
        "ClusterRoleBinding",
        _binding("ClusterRoleBinding", "r", "ClusterRole", "reader", group),
        deleted=False,
    )
    a.apply(
        "ClusterRoleBinding",
        _binding("ClusterRoleBinding", "x", "ClusterRole", "gone", user),
        deleted=False,
    )
    a.apply("RoleBinding", _binding("RoleBinding", "cm", "Role", "cm", user, "team"), deleted=False)
    a.apply("RoleBinding", _binding("RoleBinding", "o", "Role", "cm", user, "other"), deleted=False)
    return a


def test_rules_of_cluster_and_namespace_bindings() -> None:
    status = rules_review(_authorizer(), BOB, "team")
    assert status["resourceRules"] == [
        {"verbs": ["get"], "apiGroups": ["", "apps"], "resources": ["pods", "deployments"]},
        {
            "verbs": ["update"],
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["one"],
        },
    ]
    assert status["nonResourceRules"] == [
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/metrics"]}
    ]
    assert status["incomplete"] is False
    assert status["evaluationError"] == 'clusterrole.rbac.authorization.k8s.io "gone" not found'


def test_other_namespaces_and_other_users_see_less() -> None:
    a = _authorizer()
    assert len(rules_review(a, BOB, "default")["resourceRules"]) == 1
    carol = rules_review(a, UserInfo("carol", ("system:authenticated",)), "team")
    assert carol == {"resourceRules": [], "nonResourceRules": [], "incomplete": False}


def test_a_node_is_incomplete_and_errors_aggregate() -> None:
    a = _authorizer()
    node = UserInfo("system:node:n1", ("system:nodes", "devs"))
    a.apply(
        "ClusterRoleBinding",
        _binding(
            "ClusterRoleBinding", "y", "ClusterRole", "absent", {"kind": "Group", "name": "devs"}
        ),
        deleted=False,
    )
    status = rules_review(a, node, "team")
    assert status["incomplete"] is True
    assert status["evaluationError"] == (
        f'[{NODE_RULES_UNKNOWN}, clusterrole.rbac.authorization.k8s.io "absent" not found]'
    )
    assert status["resourceRules"][0]["resources"] == ["pods", "deployments"]


def test_self_subject_review_and_discovery() -> None:
    doc = self_subject_review(UserInfo("sa", ("g",), "uid-1"), {}, _authorizer())
    assert doc["status"] == {"userInfo": {"username": "sa", "uid": "uid-1", "groups": ["g"]}}
    assert doc["apiVersion"] == "authentication.k8s.io/v1"
    assert [r["name"] for r in discovery_resources("authentication.k8s.io", "v1")] == [
        "selfsubjectreviews"
    ]
    assert discovery_resources("authentication.k8s.io", "v1beta1") == []
