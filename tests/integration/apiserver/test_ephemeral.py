"""``pods/ephemeralcontainers`` and ``kubectl debug``: only ephemeral containers may change
through it, existing ones are immutable, they are validated like containers without the
serving fields, and Pod Security reviews them like any container (a privileged debug
container is refused where a privileged container would be). The agent's part (starting
them, sharing the target's processes) is exercised by the lab (tests/lab/test_streams.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .conftest import make_kubectl
from .debug_targets import assert_kubectl_debug_adds_containers, create_targets, debugger
from .helpers import Raw, grant

pytestmark = pytest.mark.timeout(120)
NS = "debugging"
STRICT = "debugging-baseline"


@pytest.fixture(scope="module")
def pods(api: k8s.ApiClient) -> None:
    create_targets(api, NS, STRICT)


def _path(ns: str = NS) -> str:
    return f"/api/v1/namespaces/{ns}/pods/target/ephemeralcontainers"


def _set(raw: Raw, containers: list[dict[str, Any]], ns: str = NS) -> tuple[int, Any]:
    status, current = raw.json("GET", _path(ns))
    assert status == 200
    current["spec"]["ephemeralContainers"] = containers
    return raw.json("PUT", _path(ns), current)


@pytest.mark.usefixtures("pods")
def test_kubectl_debug_adds_an_ephemeral_container_targeting_a_container(
    kubectl_binaries: dict[str, Path], admin_kubeconfig: Path, tmp_path: Path, raw: Raw
) -> None:
    kubectl = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path)
    assert_kubectl_debug_adds_containers(kubectl, raw, NS)


@pytest.mark.usefixtures("pods")
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda cs: [], "may not be removed"),
        (lambda cs: [{**cs[0], "image": "busybox:1.37"}, *cs[1:]], "may not be changed"),
        (lambda cs: [*cs, debugger("app")], "Duplicate value"),
        (lambda cs: [*cs, debugger("x", ports=[{"containerPort": 80}])], "ports"),
        (lambda cs: [*cs, debugger("y", readinessProbe={"exec": {"command": ["true"]}})], "Probe"),
        (lambda cs: [*cs, debugger("z", resources={"limits": {"cpu": "1"}})], "resources"),
        (lambda cs: [*cs, debugger("w", targetContainerName="nope")], "targetContainerName"),
        (lambda cs: [*cs, debugger("Bad_Name")], "name"),
        (lambda cs: [*cs, {"name": "noimage"}], "image"),
    ],
)
def test_invalid_ephemeral_writes_are_refused(raw: Raw, change: Any, message: str) -> None:
    _, current = raw.json("GET", _path())
    existing = current["spec"].get("ephemeralContainers", [])
    if "base" not in [c["name"] for c in existing]:
        status, current = _set(raw, [*existing, debugger("base")])
        assert status == 200, current
    status, body = _set(raw, change(current["spec"]["ephemeralContainers"]))
    assert status == 422, body
    assert body["reason"] == "Invalid"
    assert message in json.dumps(body)


@pytest.mark.usefixtures("pods")
def test_only_ephemeral_containers_change_through_the_subresource(raw: Raw) -> None:
    _, current = raw.json("GET", _path())
    current["metadata"]["labels"] = {"sneaky": "yes"}
    current["spec"]["containers"][0]["image"] = "evil:1"
    current["spec"]["ephemeralContainers"] = [
        *current["spec"].get("ephemeralContainers", []),
        debugger("only-this"),
    ]
    status, got = raw.json("PUT", _path(), current)
    assert status == 200, got
    assert got["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert "sneaky" not in (got["metadata"].get("labels") or {})
    assert "only-this" in [c["name"] for c in got["spec"]["ephemeralContainers"]]
    # and an update of the pod itself cannot add or drop them
    _, whole = raw.json("GET", f"/api/v1/namespaces/{NS}/pods/target")
    whole["spec"]["ephemeralContainers"] = []
    status, got = raw.json("PUT", f"/api/v1/namespaces/{NS}/pods/target", whole)
    assert status == 200, got
    assert "only-this" in [c["name"] for c in got["spec"]["ephemeralContainers"]]


@pytest.mark.usefixtures("pods")
def test_pod_security_refuses_a_privileged_ephemeral_container(
    server: ServerHandle,
    api: k8s.ApiClient,
    raw: Raw,
    kubectl_binaries: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A tenant allowed to debug pods in a baseline namespace tries to get a privileged
    container into one, by kubectl's sysadmin profile and by hand."""
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["pods/ephemeralcontainers"],
            "verbs": ["get", "patch", "update"],
        },
    ]
    grant(api, "tenant", "debugger", rules, namespace=STRICT)
    kubectl = make_kubectl(
        kubectl_binaries, "1.32", server.kubeconfig("tenant", groups=[]), tmp_path
    )
    out = kubectl.run(
        "debug", "target", "-n", STRICT, "--image=busybox:1.36", "--profile=sysadmin", "-c", "root",
        "--", "true",
    )  # fmt: skip
    assert out.returncode != 0
    assert "violates PodSecurity" in out.stderr
    assert "privileged" in out.stderr
    tenant = Raw(server, server.client_cert("tenant", []))
    hostile = [
        debugger("p1", securityContext={"privileged": True}),
        debugger("p2", securityContext={"capabilities": {"add": ["SYS_ADMIN"]}}),
    ]
    for container in hostile:  # by hand, past kubectl
        _, current = raw.json("GET", _path(STRICT))
        current["spec"]["ephemeralContainers"] = [container]
        status, body = tenant.json("PUT", _path(STRICT), current)
        assert status == 403, body
        assert "violates PodSecurity" in body["message"]
    tenant.close()
    # an unprivileged one is fine
    out = kubectl.run("debug", "target", "-n", STRICT, "--image=busybox:1.36", "--", "true")
    assert out.returncode == 0, out.stderr
