"""The per-template memo of pod validation and Pod Security verdicts cannot be abused.

Pods of one template are checked once (``berth.apiserver.podtemplate``); a pod that differs
from an admitted one only in what one check reads (a hostPath, ``privileged``, an AppArmor
annotation, its ServiceAccount, a mount, the namespace's policy, the namespace itself) must
still get its own verdict, with its own name in every message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from berth.apiserver import podsecurity_policy, validation
from tests.harness.apiserver import ServerHandle
from tests.security.test_pod_security import LABEL, ROOT_MOUNT, Client, pod


@pytest.fixture(scope="module")
def client(server: ServerHandle) -> Client:
    return Client(server)


def _status(client: Client, ns: str, body: dict[str, Any]) -> tuple[int, str]:
    status, answer, _ = client.create_pod(ns, body)
    return status, str(answer.get("message", "")) if isinstance(answer, dict) else ""


def _relabel(client: Client, ns: str, labels: dict[str, str | None]) -> None:
    conn_status, body, _ = client.send(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        {"metadata": {"labels": labels}},
        content_type="application/merge-patch+json",
    )
    assert conn_status == 200, body


def test_a_template_is_checked_once(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo works: the second and third pods of a template run neither the pod spec's
    validation nor a Pod Security check (a server without the memo runs both thrice)."""
    client.create_namespace("once", {})
    specs = 0
    checks = 0
    validate_spec = validation._containers
    run_checks = podsecurity_policy.Evaluator._run

    def counted_spec(spec: Any, field: str) -> Any:
        nonlocal specs
        specs += 1
        return validate_spec(spec, field)

    def counted_checks(self: Any, *args: Any) -> Any:
        nonlocal checks
        checks += 1
        return run_checks(self, *args)

    monkeypatch.setattr(validation, "_containers", counted_spec)
    monkeypatch.setattr(podsecurity_policy.Evaluator, "_run", counted_checks)
    template = {"containers": [{"name": "app", "image": "busybox", "args": ["once"]}]}
    for i in range(3):
        status, body, _ = client.create_pod(
            "once", {"metadata": {"name": f"r-{i}"}, "spec": json.loads(json.dumps(template))}
        )
        assert status == 201, body
    assert specs == 1
    assert checks == 2  # baseline (enforce) and restricted (audit and warn): once each


def test_a_host_path_or_privileged_twin_is_refused(client: Client) -> None:
    client.create_namespace("twins", {})
    assert _status(client, "twins", pod("plain-1"))[0] == 201
    assert _status(client, "twins", pod("plain-2"))[0] == 201
    assert _status(client, "twins", pod("root-1", ROOT_MOUNT)) == (
        403,
        'pods "root-1" is forbidden: violates PodSecurity "baseline:latest":'
        ' hostPath volumes (volume "root")',
    )
    # The refusal is remembered per template; every pod still gets its own name.
    assert _status(client, "twins", pod("root-2", ROOT_MOUNT)) == (
        403,
        'pods "root-2" is forbidden: violates PodSecurity "baseline:latest":'
        ' hostPath volumes (volume "root")',
    )
    status, message = _status(client, "twins", pod("priv", securityContext={"privileged": True}))
    assert (status, message) == (
        403,
        'pods "priv" is forbidden: violates PodSecurity "baseline:latest":'
        ' privileged (container "app" must not set securityContext.privileged=true)',
    )
    assert _status(client, "twins", pod("plain-3"))[0] == 201


def test_an_annotation_the_checks_read_is_part_of_the_template(client: Client) -> None:
    client.create_namespace("annotated", {})
    assert _status(client, "annotated", pod("quiet"))[0] == 201
    loud = pod("loud")
    loud["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"
    }
    status, message = _status(client, "annotated", loud)
    assert status == 403
    assert message == (
        'pods "loud" is forbidden: violates PodSecurity "baseline:latest": forbidden AppArmor'
        " profile (annotation must not set AppArmor profile type to"
        ' "container.apparmor.security.beta.kubernetes.io/app="unconfined"")'
    )
    # Annotations no check reads do not split the template (and do not open a door).
    other = pod("other")
    other["metadata"]["annotations"] = {"team": "a"}
    assert _status(client, "annotated", other)[0] == 201


def test_the_namespace_policy_is_part_of_every_verdict(client: Client) -> None:
    client.create_namespace("moving", {LABEL + "enforce": "privileged"})
    assert _status(client, "moving", pod("host-1", ROOT_MOUNT))[0] == 201
    _relabel(client, "moving", {LABEL + "enforce": "baseline"})
    assert _status(client, "moving", pod("host-2", ROOT_MOUNT))[0] == 403
    assert _status(client, "moving", pod("root-1"))[0] == 201
    _relabel(client, "moving", {LABEL + "enforce": "restricted"})
    status, message = _status(client, "moving", pod("root-2"))
    assert status == 403
    assert message.startswith(
        'pods "root-2" is forbidden: violates PodSecurity "restricted:latest":'
        " allowPrivilegeEscalation != false"
    )
    _relabel(client, "moving", {LABEL + "enforce": "privileged"})
    assert _status(client, "moving", pod("host-3", ROOT_MOUNT))[0] == 201
    # The same template in a namespace of another policy gets that namespace's verdict.
    assert _status(client, "default", pod("host-4", ROOT_MOUNT))[0] == 403


def test_the_service_account_is_read_for_every_pod(client: Client) -> None:
    client.create_namespace("accounts", {})
    assert _status(client, "accounts", pod("with-default"))[0] == 201
    status, message = _status(
        client, "accounts", pod("with-ghost", {"serviceAccountName": "ghost"})
    )
    assert (status, message) == (
        403,
        'pods "with-ghost" is forbidden: error looking up service account accounts/ghost:'
        ' serviceaccount "ghost" not found',
    )
    status, body, _ = client.send(
        "POST",
        "/api/v1/namespaces/accounts/serviceaccounts",
        {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False},
    )
    assert status == 201, body
    for name in ("q-1", "q-2"):
        status, created, _ = client.create_pod(
            "accounts", pod(name, {"serviceAccountName": "quiet"})
        )
        assert status == 201, created
        assert "volumes" not in created["spec"]  # no token for an account that opts out
    status, created, _ = client.create_pod("accounts", pod("with-default-2"))
    assert status == 201
    assert created["spec"]["volumes"][0]["name"].startswith("kube-api-access-")


def test_an_invalid_twin_of_a_valid_template_is_refused(client: Client) -> None:
    client.create_namespace("mounts", {})
    valid = pod("valid", {"volumes": [{"name": "data", "emptyDir": {}}]})
    valid["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    assert _status(client, "mounts", valid)[0] == 201
    for i, mount in enumerate(
        (
            {"name": "data", "mountPath": "/data/../../etc"},
            {"name": "missing", "mountPath": "/data"},
            # Names the server's own token volume could get: never trusted from the memo.
            {"name": "kube-api-access-bcdfg", "mountPath": "/data"},
        )
    ):
        twin = pod(f"twin-{i}", {"volumes": [{"name": "data", "emptyDir": {}}]})
        twin["spec"]["containers"][0]["volumeMounts"] = [mount]
        for attempt in range(2):
            status, body, _ = client.create_pod("mounts", twin)
            assert status == 422, (i, attempt, body)
            assert body["details"]["name"] == f"twin-{i}"
            assert [c["field"] for c in body["details"]["causes"]] == [
                "spec.containers[0].volumeMounts[0]." + ("mountPath" if i == 0 else "name")
            ]
