"""kubectl 1.20's ``debug``: it writes ``pods/ephemeralcontainers`` as the pre-1.22
``EphemeralContainers`` kind (after a GET it cannot read, since the subresource answers with
the Pod as upstream does since 1.22). The server takes that kind as "add these containers",
with the same validation, Pod Security and preconditions as a Pod write, and answers in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .conftest import make_kubectl
from .debug_targets import assert_kubectl_debug_adds_containers, create_targets, debugger
from .helpers import Raw, grant

pytestmark = pytest.mark.timeout(120)
NS = "legacy-debug"
BASELINE = "legacy-debug-baseline"


def _path(ns: str = NS) -> str:
    return f"/api/v1/namespaces/{ns}/pods/target/ephemeralcontainers"


def _legacy(*containers: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "kind": "EphemeralContainers",
        "apiVersion": "v1",
        "metadata": metadata,
        "ephemeralContainers": list(containers),
    }


@pytest.fixture(scope="module")
def pods(api: k8s.ApiClient) -> None:
    create_targets(api, NS, BASELINE)


def _names(raw: Raw, ns: str = NS) -> list[str]:
    status, got = raw.json("GET", f"/api/v1/namespaces/{ns}/pods/target")
    assert status == 200, got
    return [c["name"] for c in got["spec"].get("ephemeralContainers") or []]


@pytest.mark.usefixtures("pods")
def test_kubectl_120_debug_adds_ephemeral_containers(
    kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path, raw: Raw
) -> None:
    kubectl = make_kubectl(kubectl_binaries, "1.20", admin_kubeconfig, tmp_path)
    assert_kubectl_debug_adds_containers(kubectl, raw, NS)


@pytest.mark.usefixtures("pods")
def test_the_legacy_kind_is_answered_in_kind_and_checked_like_a_pod_write(raw: Raw) -> None:
    status, body = raw.json("PUT", _path(), _legacy(debugger("legacy-a")))
    assert status == 200, body
    assert body["kind"] == "EphemeralContainers"
    assert body["metadata"]["name"] == "target"
    assert "legacy-a" in [c["name"] for c in body["ephemeralContainers"]]
    before = _names(raw)
    for containers, message in (
        ([{**debugger("legacy-a"), "image": "busybox:1.37"}], "may not be changed"),
        ([debugger("app")], "Duplicate value"),
        ([debugger("p", ports=[{"containerPort": 80}])], "ports"),
        ([{"name": "noimage"}], "image"),
    ):
        status, body = raw.json("PUT", _path(), _legacy(*containers))
        assert status == 422, body
        assert message in str(body), body
    # a stale precondition is a conflict, as for a Pod
    status, body = raw.json(
        "PUT", _path(), _legacy(debugger("late"), name="target", resourceVersion="1")
    )
    assert status == 409, body
    status, body = raw.json("PUT", _path(), {**_legacy(), "ephemeralContainers": "nope"})
    assert status == 400, body
    assert body["kind"] == "Status"
    assert _names(raw) == before


@pytest.mark.usefixtures("pods")
def test_pod_security_applies_to_the_legacy_kind(
    server: ServerHandle, api: k8s.ApiClient, raw: Raw
) -> None:
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["get", "update"]},
    ]
    grant(api, "tenant", "debugger", rules, namespace=BASELINE)
    tenant = Raw(server, server.client_cert("tenant", []))
    try:
        privileged = debugger("root", securityContext={"privileged": True})
        status, body = tenant.json("PUT", _path(BASELINE), _legacy(privileged))
        assert status == 403, body
        assert "violates PodSecurity" in body["message"]
        status, body = tenant.json("PUT", _path(BASELINE), _legacy(debugger("plain")))
        assert status == 200, body
        # and without the subresource in another namespace: forbidden
        status, body = tenant.json("PUT", _path(NS), _legacy(debugger("sneaky")))
        assert status == 403, body
        assert "pods/ephemeralcontainers" in body["message"]
    finally:
        tenant.close()
    assert _names(raw, BASELINE) == ["plain"]
