"""Ingress and IngressClass on a real API server through kubectl 1.32 and the Python client:
the default class filled on create, validation errors kubectl prints, the ``kubectl get``
columns, ``kubectl create ingress`` and the status subresource."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from .conftest import make_kubectl
from .helpers import Kubectl, table


@pytest.fixture(scope="module")
def kubectl(
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Kubectl:
    return make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path_factory.mktemp("i"))


def _apply(kubectl: Kubectl, doc: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps(doc))


def _class(name: str, *, default: bool) -> dict[str, Any]:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": "berth.dev/ingress-haproxy"},
    }


def _ingress(name: str, path: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"rules": [{"host": "a.example.com", "http": {"paths": [path]}}], **spec},
    }


GOOD_PATH = {
    "path": "/app",
    "pathType": "Prefix",
    "backend": {"service": {"name": "web", "port": {"number": 80}}},
}


def test_default_class_columns_and_status(kubectl: Kubectl, api: k8s.ApiClient) -> None:
    _apply(kubectl, _class("plain", default=False))
    _apply(kubectl, _ingress("before-default", GOOD_PATH))
    time.sleep(1.1)  # creation times have one-second resolution: the default is the newest
    _apply(kubectl, _class("berth", default=True))
    _apply(
        kubectl, _ingress("web", GOOD_PATH, tls=[{"hosts": ["a.example.com"], "secretName": "t"}])
    )
    net: Any = k8s.NetworkingV1Api(api)
    assert net.read_namespaced_ingress("web", "default").spec.ingress_class_name == "berth"
    assert net.read_namespaced_ingress("before-default", "default").spec.ingress_class_name is None
    rows = table(kubectl("get", "ingressclass", "berth"))
    assert rows[0] == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert rows[1][:3] == ["berth", "berth.dev/ingress-haproxy", "<none>"]
    body = {"status": {"loadBalancer": {"ingress": [{"ip": "10.231.0.11"}, {"ip": "10.231.0.12"}]}}}
    net.patch_namespaced_ingress_status("web", "default", body)
    rows = table(kubectl("get", "ing", "web"))
    assert rows[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert rows[1][:5] == ["web", "berth", "a.example.com", "10.231.0.11,10.231.0.12", "80, 443"]
    # a write of the object itself leaves the status alone
    _apply(kubectl, _ingress("web", {**GOOD_PATH, "path": "/other"}))
    got = net.read_namespaced_ingress("web", "default")
    assert got.status.load_balancer.ingress[0].ip == "10.231.0.11"
    assert got.spec.rules[0].http.paths[0].path == "/other"
    described = kubectl("describe", "ingress", "web")
    assert "a.example.com" in described
    assert "/other" in described


def test_kubectl_create_ingress(kubectl: Kubectl, api: k8s.ApiClient) -> None:
    # kubectl's typed client sends protobuf: every field must survive the decoding
    kubectl(
        "create", "ingress", "made", "--class=plain", "--default-backend=web:http",
        "--rule=b.example.com/api*=api:8080,tls=b-tls",
    )  # fmt: skip
    got: Any = k8s.NetworkingV1Api(api).read_namespaced_ingress("made", "default")
    path = got.spec.rules[0].http.paths[0]
    assert (got.spec.ingress_class_name, path.path, path.path_type) == ("plain", "/api", "Prefix")
    assert (path.backend.service.name, path.backend.service.port.number) == ("api", 8080)
    assert got.spec.rules[0].host == "b.example.com"
    assert (got.spec.tls[0].hosts, got.spec.tls[0].secret_name) == (["b.example.com"], "b-tls")
    assert got.spec.default_backend.service.port.name == "http"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ({**GOOD_PATH, "pathType": None}, "spec.rules[0].http.paths[0].pathType: Required value"),
        ({**GOOD_PATH, "path": "/a//b"}, "spec.rules[0].http.paths[0].path: Invalid value"),
        (
            {**GOOD_PATH, "backend": {"service": {"name": "web", "port": {}}}},
            "spec.rules[0].http.paths[0].backend.service.port.name: Required value",
        ),
    ],
)
def test_invalid_ingresses_are_refused(
    kubectl: Kubectl, path: dict[str, Any], message: str
) -> None:
    doc = _ingress("bad", {k: v for k, v in path.items() if v is not None})
    r = kubectl.run("apply", "-f", "-", stdin=json.dumps(doc))
    assert r.returncode == 1
    assert message in r.stderr, r.stderr


def test_a_host_that_would_inject_proxy_config_is_refused(kubectl: Kubectl) -> None:
    doc = _ingress("inject", GOOD_PATH)
    doc["spec"]["rules"][0]["host"] = "a.example.com\n  server evil 10.0.0.1:80"
    r = kubectl.run("apply", "-f", "-", stdin=json.dumps(doc))
    assert r.returncode == 1
    assert "spec.rules[0].host: Invalid value" in r.stderr
