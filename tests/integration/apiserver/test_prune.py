"""``kubectl apply --prune`` (1.32 and 1.20).

kubectl maps every kind of its prune allow-list through discovery before it prunes anything,
and stops with ``invalid resource ...: no matches for kind`` at the first kind the server
does not serve — against kube-apiserver too, when a group is switched off. berth serves every
kind of kubectl 1.32's list (networking.k8s.io/v1 Ingress included), so its default allow-list
prunes; an explicit allow-list of served kinds prunes too. kubectl 1.20's list names
batch/v1beta1 CronJob and extensions/v1beta1 Ingress,
versions kube-apiserver stopped serving (1.25, 1.22): its default allow-list fails against a
1.32 kube-apiserver too, and against berth for the same reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from berth.api.resources import TABLE

from .helpers import Kubectl, core_api

pytestmark = pytest.mark.timeout(120)

# kubectl's default prune allow-list, in its order: (group, version, kind, namespaced)
DEFAULT_ALLOWLIST: dict[str, list[tuple[str, str, str, bool]]] = {
    "1.32": [
        ("", "v1", "ConfigMap", True),
        ("", "v1", "Endpoints", True),
        ("", "v1", "PersistentVolumeClaim", True),
        ("", "v1", "Pod", True),
        ("", "v1", "ReplicationController", True),
        ("", "v1", "Secret", True),
        ("", "v1", "Service", True),
        ("batch", "v1", "Job", True),
        ("batch", "v1", "CronJob", True),
        ("networking.k8s.io", "v1", "Ingress", True),
        ("apps", "v1", "DaemonSet", True),
        ("apps", "v1", "Deployment", True),
        ("apps", "v1", "ReplicaSet", True),
        ("apps", "v1", "StatefulSet", True),
        ("", "v1", "Namespace", False),
        ("", "v1", "PersistentVolume", False),
    ],
    "1.20": [
        ("", "v1", "ConfigMap", True),
        ("", "v1", "Endpoints", True),
        ("", "v1", "Namespace", False),
        ("", "v1", "PersistentVolumeClaim", True),
        ("", "v1", "PersistentVolume", False),
        ("", "v1", "Pod", True),
        ("", "v1", "ReplicationController", True),
        ("", "v1", "Secret", True),
        ("", "v1", "Service", True),
        ("batch", "v1", "Job", True),
        ("batch", "v1beta1", "CronJob", True),
        ("extensions", "v1beta1", "Ingress", True),
        ("apps", "v1", "DaemonSet", True),
        ("apps", "v1", "Deployment", True),
        ("apps", "v1", "ReplicaSet", True),
        ("apps", "v1", "StatefulSet", True),
    ],
}


def _served(group: str, version: str, kind: str) -> bool:
    rd = TABLE.by_kind(group, kind)
    return rd is not None and rd.version == version


def _configmap(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "pruned"}},
        "data": {"k": "v"},
    }


@pytest.fixture
def namespace(kubectl: Kubectl, api: k8s.ApiClient, request: pytest.FixtureRequest) -> str:
    which = "default" if "default" in request.node.name else "allow"
    name = f"prune{kubectl.version.replace('.', '')}-{which}"
    core_api(api).create_namespace({"metadata": {"name": name}})
    return name


def _apply_both_then_only_a(kubectl: Kubectl, ns: str, tmp_path: Path) -> Path:
    both, only_a = tmp_path / "both", tmp_path / "only-a"
    for d, names in ((both, ("a", "b")), (only_a, ("a",))):
        d.mkdir()
        for n in names:
            (d / f"{n}.yaml").write_text(yaml.safe_dump(_configmap(n)))
    kubectl("apply", "-n", ns, "-f", str(both))
    return only_a


def test_prune_with_an_allowlist_of_served_kinds(
    kubectl: Kubectl, namespace: str, tmp_path: Path, api: k8s.ApiClient
) -> None:
    only_a = _apply_both_then_only_a(kubectl, namespace, tmp_path)
    flag = "--prune-allowlist" if kubectl.version == "1.32" else "--prune-whitelist"
    served = [
        f"{g or 'core'}/{v}/{k}"
        for g, v, k, _ in DEFAULT_ALLOWLIST[kubectl.version]
        if _served(g, v, k)
    ]
    assert "core/v1/ConfigMap" in served
    out = kubectl(
        "apply", "-n", namespace, "--prune", "-l", "app=pruned", "-f", str(only_a),
        *(f"{flag}={s}" for s in served),
    )  # fmt: skip
    assert "configmap/a unchanged" in out
    assert "configmap/b pruned" in out
    names = {c.metadata.name for c in core_api(api).list_namespaced_config_map(namespace).items}
    assert "a" in names
    assert "b" not in names


def test_prune_with_the_default_allowlist(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    only_a = _apply_both_then_only_a(kubectl, namespace, tmp_path)
    absent = [r for r in DEFAULT_ALLOWLIST[kubectl.version] if not _served(*r[:3])]
    r = kubectl.run("apply", "-n", namespace, "--prune", "-l", "app=pruned", "-f", str(only_a))
    if kubectl.version == "1.32":  # every kind of the list is served: kubectl prunes
        assert absent == []
        assert r.returncode == 0, r.stderr
        assert "configmap/a unchanged" in r.stdout
        assert "configmap/b pruned" in r.stdout
        return
    # 1.20's list names versions kube-apiserver 1.32 no longer serves either
    assert [(g, v, k) for g, v, k, _ in absent] == [
        ("batch", "v1beta1", "CronJob"),
        ("extensions", "v1beta1", "Ingress"),
    ]
    group, version, kind, namespaced = absent[0]
    gv = f"{group}/{version}" if group else version
    assert r.returncode == 1
    assert (
        f"error: error retrieving RESTMappings to prune: invalid resource {group}/{version},"
        f' Kind={kind}, Namespaced={str(namespaced).lower()}: no matches for kind "{kind}" in'
        f' version "{gv}"'
    ) in r.stderr
    assert "configmap/a" in r.stdout  # applied before kubectl looked at what to prune
