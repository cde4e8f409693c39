"""Set-up and a kubectl scenario shared by the ephemeral container tests (``kubectl debug``
1.32 through the Pod form of ``pods/ephemeralcontainers``, 1.20 through the legacy kind)."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from .helpers import Kubectl, Raw, core_api, pod


def create_targets(api: k8s.ApiClient, namespace: str, baseline: str) -> None:
    """A pod ``target`` (container ``app``, never scheduled) in ``namespace`` and in
    ``baseline``, a namespace enforcing the baseline Pod Security level."""
    core = core_api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    labels = {"pod-security.kubernetes.io/enforce": "baseline"}
    core.create_namespace({"metadata": {"name": baseline, "labels": labels}})
    for ns in (namespace, baseline):
        core.create_namespaced_pod(ns, pod("target", node_name="nowhere"))


def debugger(name: str, **extra: Any) -> dict[str, Any]:
    """An ephemeral container named ``name`` (``extra``: more of its fields)."""
    return {"name": name, "image": "busybox:1.36", "command": ["sh"], **extra}


def assert_kubectl_debug_adds_containers(kubectl: Kubectl, raw: Raw, namespace: str) -> None:
    """``kubectl debug`` adds a container targeting ``app``, defaulted like a container; a
    second one (kubectl's generated name) comes after it, those before staying as they were."""
    out = kubectl.run(
        "debug", "target", "-n", namespace, "--image=busybox:1.36", "--target=app", "-c", "dbg1",
        "--", "sleep", "1000",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    status, got = raw.json("GET", f"/api/v1/namespaces/{namespace}/pods/target")
    assert status == 200, got
    before = got["spec"]["ephemeralContainers"]
    (dbg,) = [c for c in before if c["name"] == "dbg1"]
    assert dbg["targetContainerName"] == "app"
    assert dbg["command"] == ["sleep", "1000"]
    assert dbg["imagePullPolicy"] == "IfNotPresent"
    out = kubectl.run("debug", "target", "-n", namespace, "--image=busybox:1.36", "--", "true")
    assert out.returncode == 0, out.stderr
    status, got = raw.json("GET", f"/api/v1/namespaces/{namespace}/pods/target")
    assert status == 200, got
    after = got["spec"]["ephemeralContainers"]
    assert after[: len(before)] == before
    assert len(after) == len(before) + 1
