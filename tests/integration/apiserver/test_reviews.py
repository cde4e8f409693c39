"""The review APIs with unmodified kubectl: ``auth whoami`` (SelfSubjectReview, 1.32) and
``auth can-i --list`` (SelfSubjectRulesReview, 1.32 and 1.20), and their discovery."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .conftest import make_kubectl
from .helpers import Kubectl, Raw, core_api, rbac_api, table

pytestmark = pytest.mark.timeout(120)
NS = "reviews"
SSRR = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


@pytest.fixture(scope="module", autouse=True)
def setup(api: k8s.ApiClient) -> None:
    core_api(api).create_namespace({"metadata": {"name": NS}})
    rbac = rbac_api(api)
    rbac.create_namespaced_role(
        NS,
        {
            "metadata": {"name": "cm-reader"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["settings"],
                    "verbs": ["get", "watch"],
                },
            ],
        },
    )
    for name, role in (("bob-reads", "cm-reader"), ("bob-dangling", "no-such-role")):
        rbac.create_namespaced_role_binding(
            NS,
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}
                ],
            },
        )


def _rows(out: str) -> dict[str, list[str]]:
    """``auth can-i --list`` rows keyed by their first cell (resource or URL list)."""
    rows = table(out)
    assert rows[0] == ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"]
    return {r[0]: r[1:] for r in rows[1:]}


def test_whoami(kubectl_binaries: dict[str, Path], server: ServerHandle, tmp_path: Path) -> None:
    kc = make_kubectl(
        kubectl_binaries, "1.32", server.kubeconfig("alice", ["devs", "ops"]), tmp_path
    )
    assert table(kc("auth", "whoami")) == [
        ["ATTRIBUTE", "VALUE"],
        ["Username", "alice"],
        ["Groups", "[devs ops system:authenticated]"],
    ]
    doc = yaml.safe_load(kc("auth", "whoami", "-o", "yaml"))
    assert doc["apiVersion"] == "authentication.k8s.io/v1"
    assert doc["kind"] == "SelfSubjectReview"
    assert doc["metadata"]["creationTimestamp"]
    assert doc["status"] == {
        "userInfo": {"username": "alice", "groups": ["devs", "ops", "system:authenticated"]}
    }


def test_whoami_sees_impersonation(
    kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path
) -> None:
    kc = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path)  # 1.20 has none
    rows = table(kc("auth", "whoami", "--as=bob", "--as-group=devs"))
    assert rows[1:] == [["Username", "bob"], ["Groups", "[devs system:authenticated]"]]


def test_can_i_list_as_admin(kubectl: Kubectl) -> None:
    rows = _rows(kubectl("auth", "can-i", "--list"))
    assert rows["*.*"] == ["[]", "[]", "[*]"]
    assert rows["selfsubjectreviews.authentication.k8s.io"] == ["[]", "[]", "[create]"]
    assert rows["selfsubjectrulesreviews.authorization.k8s.io"] == ["[]", "[]", "[create]"]


def test_can_i_list_follows_the_namespace(kubectl: Kubectl) -> None:
    out = kubectl("auth", "can-i", "--list", "--as=bob", "--namespace", NS)
    rows = _rows(out)
    assert rows["configmaps"] == ["[]", "[settings]", "[get watch]"]
    assert "*.*" not in rows
    elsewhere = _rows(kubectl("auth", "can-i", "--list", "--as=bob", "--namespace", "default"))
    assert "configmaps" not in elsewhere
    assert "selfsubjectaccessreviews.authorization.k8s.io" in elsewhere


def test_can_i_list_for_a_node_is_incomplete(kubectl: Kubectl) -> None:
    r = kubectl.run("auth", "can-i", "--list", "--as=system:node:n1", "--as-group=system:nodes")
    assert r.returncode == 0, r.stderr
    assert (  # "Warning" on 1.32, "warning" on 1.20
        "arning: the list may be incomplete: node authorizer does not support user rule"
        " resolution" in r.stderr
    )
    assert "selfsubjectrulesreviews.authorization.k8s.io" in _rows(r.stdout)


def test_api_resources_list_the_reviews(kubectl: Kubectl) -> None:
    rows = table(kubectl("api-resources", "--api-group=authentication.k8s.io"))
    assert [r[0] for r in rows[1:]] == ["selfsubjectreviews"]
    rows = table(kubectl("api-resources", "--api-group=authorization.k8s.io"))
    assert [r[0] for r in rows[1:]] == [
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "subjectaccessreviews",
    ]


def test_rules_review_over_http(raw: Raw, server: ServerHandle) -> None:
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview"}
    status, doc = raw.json("POST", SSRR, {**body, "spec": {}})
    assert (status, doc["reason"], doc["message"]) == (400, "BadRequest", "no namespace on request")
    status, doc = raw.json("POST", SSRR, {**body, "spec": {"namespace": NS}})
    assert status == 201
    assert (doc["kind"], doc["spec"], doc["status"]["incomplete"]) == (
        "SelfSubjectRulesReview",
        {},
        False,
    )
    assert {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]} in doc["status"][
        "resourceRules"
    ]
    assert {"verbs": ["*"], "nonResourceURLs": ["*"]} in doc["status"]["nonResourceRules"]
    assert "evaluationError" not in doc["status"]
    # bob's binding to a missing Role is reported (kubectl shows it only when incomplete)
    status, doc = raw.json(
        "POST", SSRR, {**body, "spec": {"namespace": NS}}, headers={"Impersonate-User": "bob"}
    )
    assert status == 201
    assert doc["status"]["evaluationError"] == (
        'role.rbac.authorization.k8s.io "no-such-role" not found'
    )
    assert doc["status"]["incomplete"] is False
    assert {
        "verbs": ["get", "watch"],
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["settings"],
    } in doc["status"]["resourceRules"]
    assert raw.json("GET", SSRR)[0] == 405
    assert raw.json("GET", SSR)[0] == 405
    assert raw.json("POST", SSR + "/x", {})[0] == 404
    status, doc = raw.json("POST", SSR, {"kind": "SelfSubjectAccessReview"})
    assert status == 400


def test_reviews_need_the_create_right(server: ServerHandle, raw: Raw) -> None:
    # A user whose basic-user binding is gone (here: an identity outside system:authenticated
    # cannot exist, so remove the right from a role-less impersonated user instead).
    status, doc = raw.json(
        "POST",
        SSR,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Impersonate-User": "system:anonymous"},
    )
    assert (status, doc["reason"]) == (403, "Forbidden")
    assert doc["details"] == {"group": "authentication.k8s.io", "kind": "selfsubjectreviews"}
    assert doc["message"] == (
        'selfsubjectreviews.authentication.k8s.io is forbidden: User "system:anonymous" cannot'
        ' create resource "selfsubjectreviews" in API group "authentication.k8s.io" at the'
        " cluster scope"
    )
