"""OpenAPI documents and field validation as kubectl (1.32 and 1.20) and raw clients use them:
``explain``, 1.20's ``diff`` and client-side validation, ``--validate=strict``, caching."""

from __future__ import annotations

import json
from pathlib import Path

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
