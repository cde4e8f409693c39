"""Every error Status carries ``details`` shaped as kube-apiserver's: the object's name,
group and kind when the error is about one, ``{}`` for a route the server does not serve or a
method a path does not take (kubectl 1.32 ``debug`` reads ``details.name`` of a 404 without
checking ``details`` is there, and panicked on berth's route 404)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .conftest import make_kubectl
from .helpers import Raw, core_api, deployment, pod

pytestmark = pytest.mark.timeout(120)
NS = "errdetails"
PODS = f"/api/v1/namespaces/{NS}/pods"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"


@pytest.fixture(scope="module", autouse=True)
def setup(api: k8s.ApiClient) -> None:
    core_api(api).create_namespace({"metadata": {"name": NS}})
    core_api(api).create_namespaced_pod(NS, pod("present"))


def _status(raw: Raw, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    code, doc = raw.json(method, path, body)
    assert (doc["kind"], doc["status"]) == ("Status", "Failure"), doc
    assert doc["code"] == code
    assert isinstance(doc.get("details"), dict), doc  # always there
    return code, doc


def test_not_found_names_the_object(raw: Raw) -> None:
    code, doc = _status(raw, "GET", f"{PODS}/missing")
    assert (code, doc["reason"], doc["details"]) == (
        404,
        "NotFound",
        {"name": "missing", "kind": "pods"},
    )
    code, doc = _status(raw, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/missing")
    assert doc["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}
    assert doc["message"] == 'deployments.apps "missing" not found'


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nosuchresources",
        "/apis/nosuch.example.com/v1",
        "/apis/apps/v1/namespaces/x/nosuch/y",
        f"{PODS}/present/nosuchsubresource",
        "/nosuchpath",
    ],
)
def test_unknown_routes_have_empty_details(raw: Raw, path: str) -> None:
    code, doc = _status(raw, "GET", path)
    assert (code, doc["reason"], doc["details"]) == (404, "NotFound", {})
    assert doc["message"] == "the server could not find the requested resource"


def test_method_not_allowed(raw: Raw) -> None:
    code, doc = _status(raw, "POST", f"{PODS}/present", pod("present"))
    assert (code, doc["reason"], doc["details"]) == (405, "MethodNotAllowed", {})
    assert doc["message"] == "the server does not allow this method on the requested resource"
    code, doc = _status(raw, "DELETE", f"{PODS}/present/status")
    assert (code, doc["details"]) == (405, {})


def test_already_exists_and_conflict(raw: Raw) -> None:
    cm = {"metadata": {"name": "dup"}, "data": {"a": "1"}}
    assert raw.json("POST", CONFIGMAPS, cm)[0] == 201
    code, doc = _status(raw, "POST", CONFIGMAPS, cm)
    assert (code, doc["reason"], doc["details"]) == (
        409,
        "AlreadyExists",
        {"name": "dup", "kind": "configmaps"},
    )
    stale = {**cm, "metadata": {"name": "dup", "resourceVersion": "1"}}
    code, doc = _status(raw, "PUT", f"{CONFIGMAPS}/dup", stale)
    assert (code, doc["reason"], doc["details"]) == (
        409,
        "Conflict",
        {"name": "dup", "kind": "configmaps"},
    )
    dep = deployment("dup-dep")
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    assert raw.json("POST", path, dep)[0] == 201
    code, doc = _status(raw, "POST", path, dep)
    assert doc["details"] == {"name": "dup-dep", "group": "apps", "kind": "deployments"}


def test_invalid_lists_causes(raw: Raw) -> None:
    bad = pod("bad")
    bad["spec"]["containers"][0]["image"] = ""
    code, doc = _status(raw, "POST", PODS, bad)
    assert (code, doc["reason"]) == (422, "Invalid")
    details = doc["details"]
    assert (details["name"], details["kind"]) == ("bad", "Pod")
    assert details["causes"][0]["field"] == "spec.containers[0].image"
    assert details["causes"][0]["reason"] == "FieldValueRequired"
    code, doc = _status(
        raw,
        "PUT",
        f"/apis/apps/v1/namespaces/{NS}/deployments/dup-dep/scale",
        {"metadata": {"name": "dup-dep"}, "spec": {"replicas": -1}},
    )
    assert (code, doc["details"]["kind"], doc["details"]["group"]) == (422, "Scale", "autoscaling")
    assert doc["details"]["causes"][0]["field"] == "spec.replicas"


def test_bad_request_has_details(raw: Raw) -> None:
    code, doc = _status(raw, "GET", f"{PODS}?limit=x")
    assert (code, doc["reason"], doc["details"]) == (400, "BadRequest", {})


def test_forbidden_names_the_resource(server: ServerHandle) -> None:
    nobody = Raw(server, server.client_cert("nobody", []))
    try:
        code, doc = _status(nobody, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/x")
        assert (code, doc["reason"], doc["details"]) == (
            403,
            "Forbidden",
            {"name": "x", "group": "apps", "kind": "deployments"},
        )
        code, doc = _status(nobody, "GET", f"{PODS}")
        assert doc["details"] == {"kind": "pods"}
        code, doc = _status(nobody, "GET", "/metrics")  # a non-resource path
        assert (code, doc["details"]) == (403, {})
    finally:
        nobody.close()


def test_node_restriction_refusal_names_the_object(server: ServerHandle) -> None:
    node = Raw(server, server.client_cert("system:node:n-x", ["system:nodes"]))
    try:
        code, doc = _status(node, "DELETE", "/api/v1/nodes/other-node")
        assert code == 403
        assert doc["details"] == {"name": "other-node", "kind": "nodes"}
    finally:
        node.close()


def test_kubectl_debug_reports_errors_instead_of_panicking(
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path: Path,
) -> None:
    kubectl = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path)
    r = kubectl.run("debug", "-n", NS, "missing", "--image=busybox")
    assert r.returncode == 1, r.stderr
    assert 'Error from server (NotFound): pods "missing" not found' in r.stderr
    assert "panic" not in r.stderr
    # the ephemeralcontainers subresource is served: the debug container is added
    r = kubectl.run("debug", "-n", NS, "present", "--image=busybox")
    assert r.returncode == 0, r.stderr
    assert "panic" not in r.stderr
    r = kubectl.run(
        "get", "pod", "-n", NS, "present", "-o", "jsonpath={.spec.ephemeralContainers[*].image}"
    )
    assert r.stdout == "busybox", r.stderr
