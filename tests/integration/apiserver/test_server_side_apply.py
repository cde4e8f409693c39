"""Server-side apply through real clients: kubectl 1.32 ``apply --server-side``, the
``kubernetes`` Python client's apply patch and lightkube's ``apply``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from lightkube import Client as LightClient
from lightkube import KubeConfig
from lightkube.core.exceptions import ApiError as LightApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from .helpers import Kubectl, core_api

pytestmark = pytest.mark.timeout(120)

NS = "ssa"


@pytest.fixture(scope="module")
def kubectl_version() -> str:
    return "1.32"  # the server's answers are under test here, not the client's


@pytest.fixture(scope="module")
def ns(api: k8s.ApiClient) -> str:
    core_api(api).create_namespace({"metadata": {"name": NS}})
    return NS


def configmap(name: str, data: dict[str, str], **labels: str) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": data,
    }
    if labels:
        doc["metadata"]["labels"] = labels
    return json.dumps(doc)


def managed(kubectl: Kubectl, name: str) -> dict[tuple[str, str], Any]:
    out = kubectl("get", "cm", name, "-n", NS, "--show-managed-fields", "-o", "json")
    entries = json.loads(out)["metadata"]["managedFields"]
    return {(e["manager"], e["operation"]): e for e in entries}


def test_kubectl_ownership_conflict_force_and_removal(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    path = tmp_path / "cm.json"
    path.write_text(configmap("owned", {"a": "1", "b": "2"}, app="x"))
    out = kubectl("apply", "--server-side", "--field-manager", "alice", "-f", str(path))
    assert out.strip() == "configmap/owned serverside-applied"
    entries = managed(kubectl, "owned")
    alice = entries[("alice", "Apply")]
    assert alice["apiVersion"] == "v1"
    assert alice["fieldsType"] == "FieldsV1"
    assert alice["fieldsV1"] == {
        "f:data": {"f:a": {}, "f:b": {}},
        "f:metadata": {"f:labels": {"f:app": {}}},
    }
    # kubectl hides managedFields unless asked; the server sends them
    assert "managedFields" not in kubectl("get", "cm", "owned", "-n", ns, "-o", "yaml")

    # bob applies another value for a: a conflict naming the field and its owner
    path.write_text(configmap("owned", {"a": "bob"}))
    r = kubectl.run("apply", "--server-side", "--field-manager", "bob", "-f", str(path))
    assert r.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "alice": .data.a' in r.stderr
    assert "--force-conflicts" in r.stderr  # kubectl's advice for this 409
    # forced, bob takes a over
    kubectl(
        "apply", "--server-side", "--field-manager", "bob", "--force-conflicts", "-f", str(path)
    )
    got = json.loads(kubectl("get", "cm", "owned", "-n", ns, "-o", "json"))
    assert got["data"] == {"a": "bob", "b": "2"}
    entries = managed(kubectl, "owned")
    assert entries[("bob", "Apply")]["fieldsV1"] == {"f:data": {"f:a": {}}}
    assert entries[("alice", "Apply")]["fieldsV1"]["f:data"] == {"f:b": {}}

    # alice drops b and the label from her file: nobody else owns them, they go
    path.write_text(configmap("owned", {}))
    kubectl("apply", "--server-side", "--field-manager", "alice", "-f", str(path))
    got = json.loads(kubectl("get", "cm", "owned", "-n", ns, "-o", "json"))
    assert got["data"] == {"a": "bob"}
    assert "labels" not in got["metadata"]


def test_kubectl_create_then_edit_records_update_managers(kubectl: Kubectl, ns: str) -> None:
    kubectl("create", "configmap", "upd", "-n", ns, "--from-literal=k=v")
    kubectl("label", "cm", "upd", "-n", ns, "tier=web")
    entries = managed(kubectl, "upd")
    assert entries[("kubectl-create", "Update")]["fieldsV1"] == {"f:data": {".": {}, "f:k": {}}}
    assert entries[("kubectl-label", "Update")]["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:tier": {}}}
    }


def test_kubectl_client_side_apply_upgrades_to_server_side(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    path = tmp_path / "csa.json"
    path.write_text(configmap("csa", {"a": "1", "b": "2"}))
    kubectl("apply", "-f", str(path))  # client-side apply: the last-applied annotation
    assert ("kubectl-client-side-apply", "Update") in managed(kubectl, "csa")
    # the same file changed, applied server-side by kubectl: no conflict with the
    # client-side applier, whose ownership kubectl migrates to its own Apply entry
    path.write_text(configmap("csa", {"a": "changed", "b": "2"}))
    out = kubectl("apply", "--server-side", "-f", str(path))
    assert out.strip() == "configmap/csa serverside-applied"
    entries = managed(kubectl, "csa")
    assert ("kubectl-client-side-apply", "Update") not in entries
    assert entries[("kubectl", "Apply")]["fieldsV1"]["f:data"] == {"f:a": {}, "f:b": {}}
    got = json.loads(kubectl("get", "cm", "csa", "-n", ns, "-o", "json"))
    assert got["data"] == {"a": "changed", "b": "2"}
    last = json.loads(
        got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert last["data"] == {"a": "changed", "b": "2"}
    # now a field dropped from the file goes
    path.write_text(configmap("csa", {"a": "changed"}))
    kubectl("apply", "--server-side", "-f", str(path))
    got = json.loads(kubectl("get", "cm", "csa", "-n", ns, "-o", "json"))
    assert got["data"] == {"a": "changed"}


def test_python_client_apply_patch(api: k8s.ApiClient, ns: str) -> None:
    core = core_api(api)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "py", "namespace": ns},
        "data": {"x": "1"},
    }
    created = core.patch_namespaced_config_map(
        "py", ns, body, field_manager="py-one", _content_type="application/apply-patch+yaml"
    )
    assert created.data == {"x": "1"}
    (entry,) = created.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.fields_v1) == (
        "py-one",
        "Apply",
        {"f:data": {"f:x": {}}},
    )
    with pytest.raises(k8s.ApiException) as err:
        core.patch_namespaced_config_map(
            "py",
            ns,
            {**body, "data": {"x": "2"}},
            field_manager="py-two",
            _content_type="application/apply-patch+yaml",
        )
    assert err.value.status == 409
    status = json.loads(str(err.value.body))
    assert status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "py-one": .data.x'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "py-one"', "field": ".data.x"}
    ]
    forced = core.patch_namespaced_config_map(
        "py",
        ns,
        {**body, "data": {"x": "2"}},
        field_manager="py-two",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert forced.data == {"x": "2"}
    assert [e.manager for e in forced.metadata.managed_fields] == ["py-two"]
    # an apply patch without a field manager is invalid
    with pytest.raises(k8s.ApiException) as err:
        core.patch_namespaced_config_map(
            "py", ns, body, _content_type="application/apply-patch+yaml"
        )
    assert err.value.status == 422
    assert "fieldManager: Required value: is required for apply patch" in str(err.value.body)
    # an update without one is managed by the User-Agent's product name
    cm = core.read_namespaced_config_map("py", ns)
    cm.data["y"] = "3"
    updated = core.replace_namespaced_config_map("py", ns, cm)
    managers = {(e.manager, e.operation) for e in updated.metadata.managed_fields}
    assert ("OpenAPI-Generator", "Update") in managers


def test_lightkube_apply(admin_kubeconfig: Path, ns: str) -> None:
    with LightClient(KubeConfig.from_file(admin_kubeconfig), field_manager="lk") as client:
        _lightkube_apply(client, ns)


def _lightkube_apply(client: LightClient, ns: str) -> None:

    def cm(value: str) -> ConfigMap:
        return ConfigMap(metadata=ObjectMeta(name="light", namespace=ns), data={"v": value})

    first = client.apply(cm("1"))
    assert first.data == {"v": "1"}
    assert first.metadata is not None
    assert [(e.manager, e.operation) for e in first.metadata.managedFields or []] == [
        ("lk", "Apply")
    ]
    again = client.apply(cm("2"))
    assert again.data == {"v": "2"}
    with pytest.raises(LightApiError) as err:
        client.apply(cm("3"), field_manager="other")
    assert err.value.status.code == 409
    assert client.apply(cm("3"), field_manager="other", force=True).data == {"v": "3"}
