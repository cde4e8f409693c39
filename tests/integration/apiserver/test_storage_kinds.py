"""PersistentVolumes, PersistentVolumeClaims and StorageClasses on a real API server, through
kubectl 1.32 and the Python client: defaults, protection finalizers, the default class,
validation, immutability and the ``kubectl get pv,pvc,sc`` columns."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from .helpers import Kubectl, Raw, core_api, table


@pytest.fixture(scope="module")
def kubectl_version() -> str:
    return "1.32"  # the server's answers are under test here, not the client's


def _apply(kubectl: Kubectl, doc: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps(doc))


def _pv(
    name: str, size: str, *, cls: str = "manual", modes: tuple[str, ...] = ("ReadWriteOnce",)
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": list(modes),
            "storageClassName": cls,
            "hostPath": {"path": f"/srv/{name}"},
        },
    }


def _pvc(name: str, size: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            **spec,
        },
    }


def test_volume_defaults_finalizer_and_columns(kubectl: Kubectl, api: k8s.ApiClient) -> None:
    _apply(kubectl, _pv("pv-cols", "2Gi", modes=("ReadWriteOnce", "ReadOnlyMany")))
    pv = core_api(api).read_persistent_volume("pv-cols")
    assert pv.spec.persistent_volume_reclaim_policy == "Retain"
    assert pv.spec.volume_mode == "Filesystem"
    assert pv.status.phase == "Pending"
    assert pv.metadata.finalizers == ["kubernetes.io/pv-protection"]
    rows = table(kubectl("get", "pv", "pv-cols"))
    assert rows[0] == [
        "NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM",
        "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE",
    ]  # fmt: skip
    assert rows[1][:7] == ["pv-cols", "2Gi", "RWO,ROX", "Retain", "Pending", "manual", "<unset>"]
    assert "VOLUMEMODE" in kubectl("get", "pv", "-o", "wide")


def test_default_class_fills_claims_and_columns(kubectl: Kubectl, api: k8s.ApiClient) -> None:
    # creation times have one-second resolution and a tie goes to the first name (as
    # upstream): make "fast" clearly newer than berth-local, made when the server started
    time.sleep(1.1)
    _apply(
        kubectl,
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "fast",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "berth.io/local",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
    )
    rows = table(kubectl("get", "sc"))
    assert rows[0] == [
        "NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE",
    ]  # fmt: skip
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["fast (default)"][1:5] == [
        "berth.io/local", "Delete", "WaitForFirstConsumer", "false",
    ]  # fmt: skip
    # berth's own default class, made when the cluster was born
    assert by_name["berth-local (default)"][1:4] == [
        "berth.io/local", "Delete", "WaitForFirstConsumer",
    ]  # fmt: skip
    _apply(kubectl, _pvc("data", "1Gi"))
    _apply(kubectl, _pvc("explicit-none", "1Gi", storageClassName=""))
    core = core_api(api)
    claim = core.read_namespaced_persistent_volume_claim("data", "default")
    assert claim.spec.storage_class_name == "fast"  # the newer of the two defaults
    assert claim.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    assert claim.status.phase == "Pending"
    # An explicit "" asks for no class: admission leaves it.
    none = core.read_namespaced_persistent_volume_claim("explicit-none", "default")
    assert none.spec.storage_class_name == ""
    rows = table(kubectl("get", "pvc", "data"))
    assert rows[0] == [
        "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS", "AGE",
    ]  # fmt: skip
    assert rows[1][:4] == ["data", "Pending", "fast", "<unset>"]


def test_class_fields_are_immutable(kubectl: Kubectl) -> None:
    r = kubectl.run("patch", "sc", "fast", "-p", '{"reclaimPolicy":"Retain"}')
    assert r.returncode != 0
    assert "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden." in r.stderr


def test_claim_validation_and_immutability(kubectl: Kubectl, raw: Raw) -> None:
    code, body = raw.json(
        "POST",
        "/api/v1/namespaces/default/persistentvolumeclaims",
        {"metadata": {"name": "bad"}, "spec": {"accessModes": ["Sometimes"]}},
    )
    assert code == 422, body
    causes = {c["field"] for c in body["details"]["causes"]}
    assert {"spec.accessModes", "spec.resources[storage]"} <= causes
    r = kubectl.run(
        "patch", "pvc", "data", "-p", '{"spec":{"resources":{"requests":{"storage":"5Gi"}}}}'
    )
    assert r.returncode != 0
    assert "spec is immutable after creation except resources.requests" in r.stderr


def test_volume_validation(raw: Raw) -> None:
    doc = _pv("pv-bad", "0")
    doc["spec"]["local"] = {"path": "/x"}
    code, body = raw.json("POST", "/api/v1/persistentvolumes", doc)
    assert code == 422, body
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"spec.capacity[storage]", "spec.local", "spec.nodeAffinity"} <= fields
    code, body = raw.json("POST", "/api/v1/persistentvolumes", _pv("pv-ok", "1Gi"))
    assert code == 201


def test_volume_source_is_immutable(kubectl: Kubectl) -> None:
    r = kubectl.run(
        "patch", "pv", "pv-ok", "--type=merge", "-p", '{"spec":{"hostPath":{"path":"/elsewhere"}}}'
    )
    assert r.returncode != 0
    assert "spec.persistentvolumesource is immutable after creation" in r.stderr


def test_get_pv_pvc_sc_together(kubectl: Kubectl) -> None:
    out = kubectl("get", "pv,pvc,sc")
    assert "persistentvolume/pv-cols" in out
    assert "persistentvolumeclaim/data" in out
    assert "storageclass.storage.k8s.io/fast" in out


def _bound(kubectl: Kubectl, name: str, cls: str) -> None:
    _apply(kubectl, _pvc(name, "1Gi", storageClassName=cls))
    kubectl(
        "patch", "pvc", name, "--subresource=status", "--type=merge",
        "-p", '{"status":{"phase":"Bound","capacity":{"storage":"1Gi"}}}',
    )  # fmt: skip


def test_bound_claims_grow_only_when_their_class_allows_expansion(kubectl: Kubectl) -> None:
    grow = '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}'
    _bound(kubectl, "fixed", "fast")
    r = kubectl.run("patch", "pvc", "fixed", "-p", grow)
    assert r.returncode != 0
    assert "only dynamically provisioned pvc can be resized" in r.stderr
    _apply(
        kubectl,
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "elastic"},
            "provisioner": "example.com/elastic",
            "allowVolumeExpansion": True,
        },
    )
    _bound(kubectl, "elastic-claim", "elastic")
    kubectl("patch", "pvc", "elastic-claim", "-p", grow)
    r = kubectl.run(
        "patch",
        "pvc",
        "elastic-claim",
        "-p",
        '{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}',
    )
    assert r.returncode != 0
    assert "field can not be less than previous value" in r.stderr
