"""Which objects each node may read: the graph behind the node authorizer.

A pod bound to a node (``spec.nodeName``) links the node to everything the pod references:
Secrets and ConfigMaps (volumes, projected sources, ``env``/``envFrom``, imagePullSecrets and
the secret refs of other volume types), PersistentVolumeClaims (and the PersistentVolumes
bound to them), its ServiceAccount, and the pod itself. kube-apiserver keeps the same graph
for its Node authorizer.

The graph is fed from the API server's watch hub (every write, in order) and answers
:meth:`NodeGraph.links` in O(1): each referenced object maps to a count of referencing pods
per node, so a decision never walks the graph or reads the store. A pod's references are
computed once, when it is bound; the pod spec is immutable afterwards (only the image,
tolerations and a few scalars may change), so later updates of a bound pod cost a dict
lookup.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from berth.api.meta import Obj
from berth.api.storage import LOCAL_PROVISIONER, PROVISIONED_BY_ANNOTATION, pinned_node

SECRET = "secrets"  # noqa: S105 (a resource name)
CONFIGMAP = "configmaps"
PVC = "persistentvolumeclaims"
PV = "persistentvolumes"
SERVICEACCOUNT = "serviceaccounts"
POD = "pods"

PODS_PREFIX = "/registry/core/pods/"
PVS_PREFIX = "/registry/core/persistentvolumes/"

Ref = tuple[str, str, str]
"""(resource plural, namespace, name) of a referenced object."""

# Volume types whose credentials are a ``secretRef: {name}`` in the pod's namespace.
_SECRET_REF_VOLUMES = ("cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi", "storageos")


def _name(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _container_refs(container: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for item in _list(container.get("envFrom")):
        src = _dict(item)
        yield CONFIGMAP, _name(_dict(src.get("configMapRef")).get("name"))
        yield SECRET, _name(_dict(src.get("secretRef")).get("name"))
    for env in _list(container.get("env")):
        frm = _dict(_dict(env).get("valueFrom"))
        yield CONFIGMAP, _name(_dict(frm.get("configMapKeyRef")).get("name"))
        yield SECRET, _name(_dict(frm.get("secretKeyRef")).get("name"))


def _volume_refs(pod_name: str, volume: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield SECRET, _name(_dict(volume.get("secret")).get("secretName"))
    yield CONFIGMAP, _name(_dict(volume.get("configMap")).get("name"))
    for item in _list(_dict(volume.get("projected")).get("sources")):
        source = _dict(item)
        yield SECRET, _name(_dict(source.get("secret")).get("name"))
        yield CONFIGMAP, _name(_dict(source.get("configMap")).get("name"))
    yield PVC, _name(_dict(volume.get("persistentVolumeClaim")).get("claimName"))
    if "ephemeral" in volume and _name(volume.get("name")):
        # a generic ephemeral volume's claim is named <pod>-<volume>
        yield PVC, f"{pod_name}-{volume['name']}"
    for kind in _SECRET_REF_VOLUMES:
        yield SECRET, _name(_dict(_dict(volume.get(kind)).get("secretRef")).get("name"))
    yield SECRET, _name(_dict(volume.get("azureFile")).get("secretName"))
    yield SECRET, _name(_dict(_dict(volume.get("csi")).get("nodePublishSecretRef")).get("name"))


def pod_references(pod: Obj) -> frozenset[Ref]:
    """Every object a node running ``pod`` needs to read, the pod itself included."""
    meta = _dict(pod.get("metadata"))
    ns = _name(meta.get("namespace"))
    pod_name = _name(meta.get("name"))
    spec = _dict(pod.get("spec"))
    found: list[tuple[str, str]] = [(POD, pod_name)]
    account = spec.get("serviceAccountName") or spec.get("serviceAccount")
    found.append((SERVICEACCOUNT, _name(account)))
    for secret in _list(spec.get("imagePullSecrets")):
        found.append((SECRET, _name(_dict(secret).get("name"))))
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(spec.get(field)):
            found.extend(_container_refs(_dict(container)))
    for volume in _list(spec.get("volumes")):
        found.extend(_volume_refs(pod_name, _dict(volume)))
    return frozenset((kind, ns, name) for kind, name in found if name)


@dataclass(frozen=True, slots=True)
class _BoundPod:
    node: str
    uid: str
    refs: frozenset[Ref]


class NodeGraph:
    """Objects reachable from each node through the pods bound to it."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], _BoundPod] = {}
        # referenced object -> {node: how many of that node's pods reference it}
        self._nodes_of: dict[Ref, dict[str, int]] = {}
        self._claim_of_pv: dict[str, tuple[str, str]] = {}
        self._local_pv_node: dict[str, str] = {}

    # -- feeding -----------------------------------------------------------------------------

    def observe(self, key: str, obj: Obj, *, deleted: bool) -> None:
        """Apply one watch-hub event (any kind; the irrelevant ones cost a prefix test)."""
        if key.startswith(PODS_PREFIX):
            self.apply_pod(obj, deleted=deleted)
        elif key.startswith(PVS_PREFIX):
            self.apply_pv(obj, deleted=deleted)

    def apply_pod(self, pod: Obj, *, deleted: bool) -> None:
        meta = _dict(pod.get("metadata"))
        key = (_name(meta.get("namespace")), _name(meta.get("name")))
        node = "" if deleted else _name(_dict(pod.get("spec")).get("nodeName"))
        uid = _name(meta.get("uid"))
        old = self._pods.get(key)
        if old is not None:
            if old.node == node and old.uid == uid:
                return  # a bound pod's references never change
            self._unlink(old)
            del self._pods[key]
        if not node:
            return
        bound = _BoundPod(node, uid, pod_references(pod))
        self._pods[key] = bound
        for ref in bound.refs:
            counts = self._nodes_of.setdefault(ref, {})
            counts[node] = counts.get(node, 0) + 1

    def _unlink(self, bound: _BoundPod) -> None:
        for ref in bound.refs:
            counts = self._nodes_of.get(ref)
            if counts is None:
                continue
            left = counts.get(bound.node, 0) - 1
            if left > 0:
                counts[bound.node] = left
            else:
                counts.pop(bound.node, None)
                if not counts:
                    del self._nodes_of[ref]

    def apply_pv(self, pv: Obj, *, deleted: bool) -> None:
        """A PersistentVolume is reachable through the claim it is bound to (claimRef)."""
        name = _name(_dict(pv.get("metadata")).get("name"))
        claim = _dict(_dict(pv.get("spec")).get("claimRef"))
        if deleted or not _name(claim.get("name")):
            self._claim_of_pv.pop(name, None)
        else:
            self._claim_of_pv[name] = (_name(claim.get("namespace")), _name(claim.get("name")))
        # A volume of berth's local provisioner belongs to the node its directory is on: that
        # node reads it and removes its cleanup finalizer, even once no pod uses it.
        annotations = _dict(_dict(pv.get("metadata")).get("annotations"))
        node = (
            pinned_node(pv)
            if annotations.get(PROVISIONED_BY_ANNOTATION) == LOCAL_PROVISIONER
            else None
        )
        if deleted or not node:
            self._local_pv_node.pop(name, None)
        else:
            self._local_pv_node[name] = node

    def holds_local_volume(self, node: str, name: str) -> bool:
        """Whether ``name`` is a local volume whose directory is on ``node``."""
        return self._local_pv_node.get(name) == node

    # -- queries -----------------------------------------------------------------------------

    def links(self, node: str, resource: str, namespace: str, name: str) -> bool:
        """Whether a pod bound to ``node`` references this object (O(1))."""
        if resource == PV:
            claim = self._claim_of_pv.get(name)
            return claim is not None and self.links(node, PVC, claim[0], claim[1])
        counts = self._nodes_of.get((resource, namespace, name))
        return counts is not None and node in counts

    def __len__(self) -> int:
        """Bound pods in the graph."""
        return len(self._pods)
