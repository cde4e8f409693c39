"""OpenAPI documents and field validation as kubectl (1.32 and 1.20) and raw clients use them:
``explain``, 1.20's ``diff`` and client-side validation, ``--validate=strict``, caching."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from .conftest import make_kubectl
from .helpers import Kubectl, Raw, core_api

pytestmark = pytest.mark.timeout(120)

TYPO_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
spec:
  containers:
  - name: c
    image: nginx
    imagePullPolicyy: Always
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: c
        image: nginx:1.25
"""


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl, api: k8s.ApiClient) -> str:
    name = "oa" + kubectl.version.replace(".", "")
    core_api(api).create_namespace({"metadata": {"name": name}})
    return name


def test_explain_a_pod_field(kubectl: Kubectl) -> None:
    out = kubectl("explain", "pods.spec.containers")
    assert "KIND:" in out
    assert "Pod" in out
    assert "A single application container that you want to run within a pod." in out
    for field in ("imagePullPolicy", "livenessProbe", "volumeMounts"):
        assert field in out


def test_explain_a_deployment_field(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.strategy")
    assert "Deployment" in out
    assert "rollingUpdate" in out
    assert 'Can be "Recreate" or "RollingUpdate"' in out


def test_explain_recursive_and_unknown_field(kubectl: Kubectl) -> None:
    out = kubectl("explain", "configmap", "--recursive")
    assert "binaryData" in out
    assert "immutable" in out
    result = kubectl.run("explain", "pods.spec.nosuchfield")
    assert result.returncode != 0
    assert "nosuchfield" in result.stderr


def test_diff_shows_a_change_and_nothing_when_equal(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=2))
    created = kubectl.run("diff", "-f", str(manifest))
    assert created.returncode == 1, created.stderr  # 1: differences found
    assert "+  replicas: 2" in created.stdout
    kubectl("apply", "-f", str(manifest))
    same = kubectl.run("diff", "-f", str(manifest))
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=3))
    changed = kubectl.run("diff", "-f", str(manifest))
    assert changed.returncode == 1, changed.stderr
    assert "-  replicas: 2" in changed.stdout
    assert "+  replicas: 3" in changed.stdout


def test_kubectl_120_client_side_validation_catches_a_typo(
    kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path, api: k8s.ApiClient
) -> None:
    kubectl = make_kubectl(kubectl_binaries, "1.20", admin_kubeconfig, tmp_path)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(TYPO_POD.format(name="typo120", ns="default"))
    result = kubectl.run("apply", "--validate=true", "-f", str(manifest))
    assert result.returncode != 0
    assert 'unknown field "imagePullPolicyy"' in result.stderr
    assert "io.k8s.api.core.v1.Container" in result.stderr
    pods = core_api(api).list_namespaced_pod("default").items
    assert "typo120" not in [p.metadata.name for p in pods]


def test_openapi_v2_json_and_protobuf_with_etags(raw: Raw) -> None:
    status, headers, body = raw.request(
        "GET", "/openapi/v2", headers={"Accept": "application/json"}
    )
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Pod" in doc["definitions"]
    etag = headers["etag"]
    status, _, body = raw.request(
        "GET", "/openapi/v2", headers={"Accept": "application/json", "If-None-Match": etag}
    )
    assert (status, body) == (304, b"")
    accept = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    status, headers, body = raw.request("GET", "/openapi/v2", headers={"Accept": accept})
    assert status == 200
    assert headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert body[:5] == b"\x0a\x032.0"  # field 1 (swagger) = "2.0"
    assert headers["etag"] != etag


def test_openapi_v3_discovery_hashes_and_redirects(raw: Raw) -> None:
    status, listing = raw.json("GET", "/openapi/v3")
    assert status == 200
    url = listing["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    status, headers, body = raw.request("GET", url)
    assert status == 200
    assert headers["cache-control"] == "public, immutable"
    doc = json.loads(body)
    assert "io.k8s.api.apps.v1.Deployment" in doc["components"]["schemas"]
    status, headers, _ = raw.request("GET", "/openapi/v3/apis/apps/v1?hash=stale")
    assert status == 301
    assert headers["location"] == url
    status, body_json = raw.json("GET", "/openapi/v3/apis/nosuch.example.com/v1")
    assert status == 404
    assert body_json["kind"] == "Status"


# -- fieldValidation ---------------------------------------------------------------------------


def _stored_pod(api: k8s.ApiClient, ns: str, name: str) -> dict[str, Any]:
    raw_pod = core_api(api).read_namespaced_pod(name, ns, _preload_content=False)
    return dict(json.loads(raw_pod.data))


def test_kubectl_132_validate_strict_warn_and_false(
    kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path, api: k8s.ApiClient
) -> None:
    kubectl = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(TYPO_POD.format(name="strict132", ns="default"))
    refused = kubectl.run("apply", "-f", str(manifest))  # --validate=strict is the default
    assert refused.returncode != 0
    assert (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error:'
        ' unknown field "spec.containers[0].imagePullPolicyy"'
    ) in refused.stderr
    refused = kubectl.run("create", "--validate=strict", "-f", str(manifest))
    assert refused.returncode != 0
    assert "strict decoding error" in refused.stderr

    warned = kubectl.run("apply", "--validate=warn", "-f", str(manifest))
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: unknown field "spec.containers[0].imagePullPolicyy"' in warned.stderr
    stored = _stored_pod(api, "default", "strict132")
    assert "imagePullPolicyy" not in stored["spec"]["containers"][0]  # never stored

    manifest.write_text(TYPO_POD.format(name="ignored132", ns="default"))
    silent = kubectl.run("apply", "--validate=false", "-f", str(manifest))
    assert silent.returncode == 0, silent.stderr
    assert "unknown field" not in silent.stderr
    assert (
        "imagePullPolicyy" not in _stored_pod(api, "default", "ignored132")["spec"]["containers"][0]
    )


POD_JSON = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "", "namespace": "default"},
    "spec": {"containers": [{"name": "c", "image": "nginx", "imagePullPolicyy": "Always"}]},
}


def _pod_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(POD_JSON))
    body["metadata"]["name"] = name
    return body


def _warnings(raw: Raw, method: str, path: str, body: Any) -> tuple[int, list[str], Any]:
    """Status, every Warning header (the helper's dict keeps one), decoded body."""
    conn = http.client.HTTPSConnection("127.0.0.1", raw.port, context=raw.ctx, timeout=30)
    try:
        conn.request(method, path, json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.headers.get_all("Warning") or [], json.loads(resp.read())
    finally:
        conn.close()


def test_the_default_is_warn_with_one_header_per_field(raw: Raw) -> None:
    body = _pod_body("warned")
    body["metadata"]["bogus"] = True
    status, warnings, created = _warnings(raw, "POST", "/api/v1/namespaces/default/pods", body)
    assert status == 201, created
    assert "bogus" not in created["metadata"]
    assert "imagePullPolicyy" not in created["spec"]["containers"][0]
    assert warnings[:2] == [
        '299 - "unknown field \\"metadata.bogus\\""',
        '299 - "unknown field \\"spec.containers[0].imagePullPolicyy\\""',
    ]


def test_strict_lists_unknown_and_duplicate_fields(raw: Raw) -> None:
    text = (
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup", "name": "dup"},'
        ' "data": {"a": "1"}, "status": {"x": 1}}'
    )
    status, body = raw.json(
        "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", text
    )
    assert status == 400
    assert body["reason"] == "BadRequest"
    assert body["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error:'
        ' duplicate field "metadata.name", unknown field "status"'
    )
    status, created = raw.json(
        "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Ignore", text
    )
    assert status == 201
    assert "status" not in created  # a ConfigMap keeps no status


def test_yaml_duplicates_are_reported_by_line(raw: Raw) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dupyaml\n  name: dupyaml\n"
    status, headers, _ = raw.request(
        "POST", "/api/v1/namespaces/default/configmaps", text, content_type="application/yaml"
    )
    assert status == 201
    assert headers["warning"] == '299 - "line 5: key \\"name\\" already set in map"'


def test_patches_are_checked_on_the_patched_object(raw: Raw, api: k8s.ApiClient) -> None:
    status, _ = raw.json("POST", "/api/v1/namespaces/default/pods", _pod_body("patched"))
    assert status == 201
    path = "/api/v1/namespaces/default/pods/patched"
    merge = {"metadata": {"labels": {"a": "b"}}, "spec": {"nodeNamee": "x"}}
    status, body = raw.json(
        "PATCH",
        f"{path}?fieldValidation=Strict",
        merge,
        content_type="application/merge-patch+json",
    )
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["message"].startswith(' "" is invalid: patch: Invalid value: "{')
    assert body["message"].endswith('strict decoding error: unknown field "spec.nodeNamee"')
    assert body["details"]["causes"][0]["field"] == "patch"
    status, headers, _ = raw.request(
        "PATCH", path, merge, content_type="application/strategic-merge-patch+json"
    )
    assert status == 200
    assert headers["warning"] == '299 - "unknown field \\"spec.nodeNamee\\""'
    stored = _stored_pod(api, "default", "patched")
    assert stored["metadata"]["labels"] == {"a": "b"}
    assert "nodeNamee" not in stored["spec"]
    ops = '[{"op": "add", "path": "/metadata/labels/c", "value": "d", "valu": 1}]'
    status, headers, _ = raw.request("PATCH", path, ops, content_type="application/json-patch+json")
    assert status == 200
    assert headers["warning"] == '299 - "json patch unknown field \\"[0].valu\\""'


def test_an_unknown_directive_is_refused(raw: Raw) -> None:
    status, body = raw.json(
        "POST", "/api/v1/namespaces/default/pods?fieldValidation=strict", _pod_body("bad")
    )
    assert status == 422
    assert body["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict":'
        ' supported values: "", "Ignore", "Strict", "Warn"'
    )
