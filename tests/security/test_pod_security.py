"""Pod Security Admission: a tenant who may create pods cannot take the node with them.

Before, any identity allowed to create pods in a namespace could mount the host's ``/`` (and
with it the node's and, on a control-plane host, the cluster's certificates), run privileged,
join the host's network or PID namespace, or add SYS_ADMIN. Now the cluster default enforces
``baseline`` (warns and audits ``restricted``) in every namespace but ``kube-system``, with
upstream's messages, namespace labels and versions.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.harness.apiserver import ServerHandle
from tests.integration.apiserver.helpers import Kubectl

KUBECTL_132 = Path("/usr/bin/kubectl")
LABEL = "pod-security.kubernetes.io/"


class Client:
    """HTTPS as a tenant with pod rights everywhere (here: a cluster admin; PSA applies to
    every user but the exempt ones), keeping every ``Warning`` header."""

    def __init__(self, srv: ServerHandle) -> None:
        cert, key = srv.client_cert("tenant", ["system:masters"])
        self.ctx = ssl.create_default_context(cafile=str(srv.pki.ca_cert))
        self.ctx.load_cert_chain(str(cert), str(key))
        self.port = srv.server.port

    def send(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any, list[str]]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            conn.request(
                method, path, body=json.dumps(body) if body is not None else None, headers=headers
            )
            resp = conn.getresponse()
            data = resp.read()
            return (
                resp.status,
                json.loads(data) if data else None,
                resp.msg.get_all("Warning") or [],
            )
        finally:
            conn.close()

    def create_pod(self, ns: str, pod: dict[str, Any]) -> tuple[int, Any, list[str]]:
        return self.send("POST", f"/api/v1/namespaces/{ns}/pods", pod)

    def create_namespace(self, name: str, labels: dict[str, str]) -> None:
        status, body, _ = self.send(
            "POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}}
        )
        assert status == 201, body


def pod(name: str, spec_extra: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "image": "busybox", **container}],
            **(spec_extra or {}),
        },
    }


ROOT_MOUNT = {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}

RESTRICTED_OK_CONTAINER = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
}


@pytest.fixture(scope="module")
def client(server: ServerHandle) -> Client:
    return Client(server)


def test_host_root_mount_is_refused_in_default_namespace_with_upstream_message(
    client: Client,
) -> None:
    status, body, warnings = client.create_pod("default", pod("steal", ROOT_MOUNT))
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'pods "steal" is forbidden: violates PodSecurity "baseline:latest":'
        ' hostPath volumes (volume "root")'
    )
    assert warnings == []  # a refused request carries no restricted-level warning
    status, _, _ = client.send("GET", "/api/v1/namespaces/default/pods/steal")
    assert status == 404


@pytest.mark.parametrize(
    ("name", "spec_extra", "container", "expected"),
    [
        (
            "priv",
            {},
            {"securityContext": {"privileged": True}},
            'privileged (container "app" must not set securityContext.privileged=true)',
        ),
        ("hostnet", {"hostNetwork": True}, {}, "host namespaces (hostNetwork=true)"),
        (
            "hostpid",
            {"hostPID": True, "hostIPC": True},
            {},
            "host namespaces (hostPID=true, hostIPC=true)",
        ),
        (
            "sysadmin",
            {},
            {"securityContext": {"capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}}},
            'non-default capabilities (container "app" must not include "SYS_ADMIN" in'
            " securityContext.capabilities.add)",
        ),
        (
            "hostport",
            {},
            {"ports": [{"containerPort": 80, "hostPort": 80}]},
            'hostPort (container "app" uses hostPort 80)',
        ),
        (
            "unconfined",
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {},
            'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")',
        ),
        (
            "sysctl",
            {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
            {},
            "forbidden sysctls (kernel.msgmax)",
        ),
    ],
)
def test_baseline_violations_are_refused(
    client: Client, name: str, spec_extra: dict[str, Any], container: dict[str, Any], expected: str
) -> None:
    status, body, _ = client.create_pod("default", pod(name, spec_extra, **container))
    assert status == 403, body
    assert body["message"] == (
        f'pods "{name}" is forbidden: violates PodSecurity "baseline:latest": {expected}'
    )


def test_restricted_violations_come_back_as_warning_headers(client: Client) -> None:
    status, body, warnings = client.create_pod("default", pod("plain"))
    assert status == 201, body
    assert warnings == [
        '299 - "would violate PodSecurity \\"restricted:latest\\":'
        ' allowPrivilegeEscalation != false (container \\"app\\" must set'
        " securityContext.allowPrivilegeEscalation=false), unrestricted capabilities"
        ' (container \\"app\\" must set securityContext.capabilities.drop=[\\"ALL\\"]),'
        ' runAsNonRoot != true (pod or container \\"app\\" must set'
        ' securityContext.runAsNonRoot=true), seccompProfile (pod or container \\"app\\" must'
        ' set securityContext.seccompProfile.type to \\"RuntimeDefault\\" or \\"Localhost\\")"'
    ]
    status, body, warnings = client.create_pod("default", pod("tidy", **RESTRICTED_OK_CONTAINER))
    assert (status, warnings) == (201, []), body


def test_violations_are_written_to_the_audit_log(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    status, _, _ = client.create_pod("default", pod("audited"))
    assert status == 201
    lines = [
        json.loads(line.removeprefix("AUDIT "))
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("AUDIT ")
    ]
    assert len(lines) == 1
    annotations = lines[0]["annotations"]
    assert annotations[LABEL + "enforce-policy"] == "baseline:latest"
    assert annotations[LABEL + "audit-violations"].startswith(
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
    )
    assert (lines[0]["user"], lines[0]["name"]) == ("tenant", "audited")


def test_a_namespace_labelled_privileged_admits_host_access(client: Client) -> None:
    status, _, _ = client.create_pod(
        "default", pod("node-agent", {**ROOT_MOUNT, "hostNetwork": True})
    )
    assert status == 403
    client.create_namespace(
        "infra", {LABEL + "enforce": "privileged", LABEL + "warn": "privileged"}
    )
    status, body, warnings = client.create_pod(
        "infra", pod("node-agent", {**ROOT_MOUNT, "hostNetwork": True})
    )
    assert (status, warnings) == (201, []), body


def test_a_namespace_enforcing_restricted_refuses_root(client: Client) -> None:
    client.create_namespace("strict", {LABEL + "enforce": "restricted"})
    container = {"securityContext": {**RESTRICTED_OK_CONTAINER["securityContext"], "runAsUser": 0}}
    status, body, _ = client.create_pod("strict", pod("root", **container))
    assert status == 403, body
    assert body["message"] == (
        'pods "root" is forbidden: violates PodSecurity "restricted:latest":'
        ' runAsUser=0 (container "app" must not set runAsUser=0)'
    )
    status, body, warnings = client.create_pod("strict", pod("ok", **RESTRICTED_OK_CONTAINER))
    assert (status, warnings) == (201, []), body


def test_versions_pin_the_rules_of_that_release(client: Client) -> None:
    """runAsUser=0 is a restricted violation from v1.23 on; seccomp is required from v1.19."""
    container = {"securityContext": {**RESTRICTED_OK_CONTAINER["securityContext"], "runAsUser": 0}}
    client.create_namespace(
        "pinned-122", {LABEL + "enforce": "restricted", LABEL + "enforce-version": "v1.22"}
    )
    status, body, _ = client.create_pod("pinned-122", pod("root", **container))
    assert status == 201, body
    client.create_namespace(
        "pinned-123", {LABEL + "enforce": "restricted", LABEL + "enforce-version": "v1.23"}
    )
    status, body, _ = client.create_pod("pinned-123", pod("root", **container))
    assert status == 403, body
    assert 'violates PodSecurity "restricted:v1.23": runAsUser=0' in body["message"]
    no_seccomp = {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
    }
    client.create_namespace(
        "pinned-118", {LABEL + "enforce": "restricted", LABEL + "enforce-version": "v1.18"}
    )
    status, body, _ = client.create_pod("pinned-118", pod("noseccomp", **no_seccomp))
    assert status == 201, body
    status, body, _ = client.create_pod("strict", pod("noseccomp", **no_seccomp))
    assert status == 403, body
    assert "seccompProfile (pod or container" in body["message"]


def test_invalid_namespace_labels_are_refused(
    client: Client,
) -> None:
    status, body, _ = client.send(
        "POST",
        "/api/v1/namespaces",
        {"metadata": {"name": "typo", "labels": {LABEL + "enforce": "basline"}}},
    )
    assert status == 422, body
    assert body["message"] == (
        f'Namespace "typo" is invalid: metadata.labels[{LABEL}enforce]: Invalid value:'
        ' "basline": must be one of privileged, baseline, restricted'
    )
    status, body, _ = client.send(
        "POST",
        "/api/v1/namespaces",
        {"metadata": {"name": "typo", "labels": {LABEL + "enforce-version": "1.30"}}},
    )
    assert status == 422, body
    assert 'must be "latest" or "v1.x"' in body["message"]


def test_workload_templates_warn_but_are_created(client: Client) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "rooted"},
        "spec": {
            "selector": {"matchLabels": {"app": "rooted"}},
            "template": {
                "metadata": {"labels": {"app": "rooted"}},
                "spec": {
                    "containers": [{"name": "app", "image": "busybox", **RESTRICTED_OK_CONTAINER}],
                    **ROOT_MOUNT,
                },
            },
        },
    }
    status, body, warnings = client.send(
        "POST", "/apis/apps/v1/namespaces/default/deployments", deployment
    )
    assert status == 201, body
    assert warnings == [
        '299 - "would violate PodSecurity \\"restricted:latest\\": restricted volume types'
        ' (volume \\"root\\" uses restricted volume type \\"hostPath\\")"'
    ]


def test_kube_system_is_exempt_by_default(client: Client) -> None:
    status, _, _ = client.create_pod("default", pod("certs", ROOT_MOUNT))
    assert status == 403
    status, body, warnings = client.create_pod("kube-system", pod("certs", ROOT_MOUNT))
    assert (status, warnings) == (201, []), body


def test_tightening_a_namespace_warns_about_its_existing_pods(client: Client) -> None:
    client.create_namespace("legacy", {LABEL + "enforce": "privileged"})
    for name in ("old-b", "old-a", "old-c"):
        status, body, _ = client.create_pod("legacy", pod(name, ROOT_MOUNT))
        assert status == 201, body
    status, body, _ = client.create_pod("legacy", pod("net", {"hostNetwork": True}))
    assert status == 201, body
    status, body, warnings = client.send(
        "PATCH",
        "/api/v1/namespaces/legacy",
        {"metadata": {"labels": {LABEL + "enforce": "baseline"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    assert warnings == [
        '299 - "existing pods in namespace \\"legacy\\" violate the new PodSecurity enforce'
        ' level \\"baseline:latest\\""',
        '299 - "net: host namespaces"',
        '299 - "old-a (and 2 other pods): hostPath volumes"',
    ]
    # A pod admitted before keeps its metadata writable; a new image is judged afresh.
    status, body, _ = client.send(
        "PATCH",
        "/api/v1/namespaces/legacy/pods/old-a",
        {"metadata": {"labels": {"seen": "yes"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    status, body, _ = client.send(
        "PATCH",
        "/api/v1/namespaces/legacy/pods/old-a",
        {"spec": {"containers": [{"name": "app", "image": "busybox:2"}]}},
        content_type="application/strategic-merge-patch+json",
    )
    assert status == 403, body
    assert 'pods "old-a" is forbidden: violates PodSecurity "baseline:latest"' in body["message"]


def test_kubectl_132_shows_the_refusal_and_the_warning(
    server: ServerHandle, tmp_path: Path
) -> None:
    kubectl = Kubectl(
        KUBECTL_132, server.kubeconfig("tenant", ["system:masters"]), tmp_path, "1.32"
    )
    refused = kubectl.run("apply", "-f", "-", stdin=json.dumps(pod("kubectl-root", ROOT_MOUNT)))
    assert refused.returncode != 0
    assert (
        'Error from server (Forbidden): error when creating "STDIN": pods "kubectl-root" is'
        ' forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "root")'
    ) in refused.stderr
    admitted = kubectl.run("run", "kubectl-plain", "--image=busybox", "--restart=Never")
    assert admitted.returncode == 0, admitted.stderr
    assert (
        'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
        ' (container "kubectl-plain" must set securityContext.allowPrivilegeEscalation=false)'
    ) in admitted.stderr
