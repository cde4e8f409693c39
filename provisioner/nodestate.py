"""The Node objects berth wants, from the spec: each host's roles, labels and taints, and the
merge patch that brings a live Node there (used by the ``nodes`` phase to apply it and by
``berth verify`` to check it).

Which labels and taints berth manages is recorded on each Node (annotations
``berth.dev/managed-labels`` and ``berth.dev/managed-taints``), so a label removed from the spec
is removed from the Node while labels and taints others set are left alone. A control-plane-only
host gets ``node-role.kubernetes.io/control-plane:NoSchedule``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provisioner.spec import ClusterSpec

ROLE_PREFIX = "node-role.kubernetes.io/"
MANAGED_LABELS = "berth.dev/managed-labels"
MANAGED_TAINTS = "berth.dev/managed-taints"
CONTROL_PLANE_TAINT = {"key": f"{ROLE_PREFIX}control-plane", "value": "", "effect": "NoSchedule"}

Obj = dict[str, Any]


@dataclass(frozen=True)
class DesiredNode:
    """What berth wants on one Node."""

    name: str
    labels: dict[str, str]
    taints: tuple[tuple[str, str, str], ...]  # (key, value, effect)


def desired_nodes(spec: ClusterSpec) -> list[DesiredNode]:
    out = []
    for host in spec.hosts:
        labels = {f"{ROLE_PREFIX}{role}": "" for role in host.roles}
        labels.update(host.labels)
        taints = [(t.key, t.value, t.effect) for t in host.taints]
        if host.is_control_plane and not host.is_worker:
            taints.append((CONTROL_PLANE_TAINT["key"], CONTROL_PLANE_TAINT["value"], "NoSchedule"))
        out.append(DesiredNode(host.name, labels, tuple(taints)))
    return out


@dataclass
class NodePatch:
    """The merge patch that brings a Node to :class:`DesiredNode` (empty when it already is)."""

    patch: Obj = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)


def node_patch(node: Obj, want: DesiredNode) -> NodePatch:
    """Pure: the patch and a human line per change."""
    meta = node.get("metadata") or {}
    labels: dict[str, str] = dict(meta.get("labels") or {})
    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    taints: list[Obj] = list((node.get("spec") or {}).get("taints") or [])
    old_labels = {k for k in annotations.get(MANAGED_LABELS, "").split(",") if k}
    old_taints = {k for k in annotations.get(MANAGED_TAINTS, "").split(",") if k}
    result = NodePatch()
    label_patch: dict[str, str | None] = {}
    for key, value in sorted(want.labels.items()):
        if labels.get(key) != value:
            label_patch[key] = value
            result.changes.append(f"label {key}={value}")
    for key in sorted(old_labels - set(want.labels)):
        if key in labels:
            label_patch[key] = None
            result.changes.append(f"remove label {key}")
    wanted_taints = [{"key": k, "value": v, "effect": e} for k, v, e in want.taints]
    managed_keys = old_taints | {k for k, _, _ in want.taints}
    kept = [t for t in taints if t.get("key") not in managed_keys]
    current_managed = sorted(
        (t.get("key", ""), t.get("value", "") or "", t.get("effect", ""))
        for t in taints
        if t.get("key") in managed_keys
    )
    if current_managed != sorted(want.taints):
        result.changes.append(
            "taints "
            + (", ".join(f"{k}={v}:{e}" if v else f"{k}:{e}" for k, v, e in want.taints) or "none")
        )
        result.patch.setdefault("spec", {})["taints"] = kept + wanted_taints
    new_annotations = {
        MANAGED_LABELS: ",".join(sorted(want.labels)),
        MANAGED_TAINTS: ",".join(sorted({k for k, _, _ in want.taints})),
    }
    annotation_patch = {k: v for k, v in new_annotations.items() if annotations.get(k) != v}
    metadata: Obj = {}
    if label_patch:
        metadata["labels"] = label_patch
    if annotation_patch:
        metadata["annotations"] = annotation_patch
    if metadata:
        result.patch["metadata"] = metadata
    return result
