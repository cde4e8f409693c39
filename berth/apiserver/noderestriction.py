"""NodeRestriction admission: what a node agent may write, checked on the object itself.

The node authorizer lets a node create, update and delete Nodes, Leases and pods at all;
this decides which ones (kube-apiserver's NodeRestriction plugin, and stricter where berth
can afford it):

* Node: only its own. On registration it may set only the labels a kubelet sets (upstream's
  list: hostname, os/arch, zone/region, instance type, and the ``kubelet.kubernetes.io`` and
  ``node.kubernetes.io`` namespaces) and no ``spec.podCIDR(s)`` (the node IPAM controller
  assigns those). Afterwards it may change neither those labels nor anything in ``spec``
  (upstream forbids taints and config source; berth has no spec field a node may own:
  podCIDR, taints and unschedulable steer other nodes' traffic and the scheduler).
* Lease: only its own, in ``kube-node-lease``.
* Pod: never create one (berth has no static pods, hence no mirror pods); update only the
  status of, delete and evict only, pods bound to it.
"""

from __future__ import annotations

from typing import Any

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.api.storage import LOCAL_CLEANUP_FINALIZER, LOCAL_VOLUME_MADE_ANNOTATION

from .errors import ApiError, forbidden

NODE_LEASE_NAMESPACE = "kube-node-lease"

# Labels a kubelet sets on its Node (upstream k8s.io/kubelet/pkg/apis.IsKubeletLabel).
KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
    }
)
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
NODE_RESTRICTION_NAMESPACE = "node-restriction.kubernetes.io"


def _label_namespace(key: str) -> str:
    prefix, slash, _ = key.partition("/")
    return prefix if slash else ""


def _within(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def forbidden_node_label(key: str) -> bool:
    """Whether a node may not add, change or remove label ``key`` on its own Node:
    ``node-restriction.kubernetes.io`` labels, and every ``kubernetes.io``/``k8s.io`` label a
    kubelet does not set itself (``node-role.kubernetes.io/*`` among them)."""
    ns = _label_namespace(key)
    if _within(ns, NODE_RESTRICTION_NAMESPACE):
        return True
    if not (_within(ns, "kubernetes.io") or _within(ns, "k8s.io")):
        return False
    if key in KUBELET_LABELS:
        return False
    return not any(_within(ns, allowed) for allowed in KUBELET_LABEL_NAMESPACES)


def _labels(obj: Obj | None) -> dict[str, Any]:
    labels = get_path(obj, "metadata", "labels")
    return labels if isinstance(labels, dict) else {}


_ABSENT = object()


def _modified_labels(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """Keys added, removed or given another value."""
    return {k for k in old.keys() | new.keys() if old.get(k, _ABSENT) != new.get(k, _ABSENT)}


def admit(
    node: str,
    verb: str,
    rd: ResourceDef,
    *,
    subresource: str,
    namespace: str,
    name: str,
    old: Obj | None,
    new: Obj | None,
) -> None:
    """Raise 403 when node ``node`` may not make this write (its details name the object,
    as upstream's admission errors do)."""
    try:
        _admit(node, verb, rd, subresource=subresource, namespace=namespace, name=name, old=old)
        if rd.kind == "Node":
            _admit_node(node, verb, subresource=subresource, name=name, old=old, new=new)
        elif rd.kind == "PersistentVolume":
            _admit_volume(node, old=old, new=new)
    except ApiError as exc:
        target = name or str(get_path(new, "metadata", "name") or "")
        exc.details = {**_object_details(rd, target), **(exc.details or {})}
        raise


def _object_details(rd: ResourceDef, name: str) -> dict[str, Any]:
    return {
        **({"name": name} if name else {}),
        **({"group": rd.group} if rd.group else {}),
        "kind": rd.plural,
    }


def _admit(
    node: str,
    verb: str,
    rd: ResourceDef,
    *,
    subresource: str,
    namespace: str,
    name: str,
    old: Obj | None,
) -> None:
    who = f'node "{node}"'
    if rd.kind == "Lease":
        if namespace != NODE_LEASE_NAMESPACE or name != node:
            raise forbidden(f"{who} may only write its own lease in {NODE_LEASE_NAMESPACE}")
    elif rd.kind == "Pod":
        if verb == "create" and not subresource:
            raise forbidden(
                f"{who} can not create pods (berth runs no static pods, so no mirror pods)"
            )
        bound = str(get_path(old, "spec", "nodeName") or "")
        if bound != node:
            raise forbidden(
                f'{who} can only {verb} pods with spec.nodeName set to itself (pod "{name}" is not)'
            )
        if verb in ("update", "patch") and subresource != "status":
            raise forbidden(f"{who} can only update the status of pods")


def _admit_volume(node: str, *, old: Obj | None, new: Obj | None) -> None:
    """A node writes a PersistentVolume only to say its local directory is gone: the one
    change allowed is dropping the local provisioner's cleanup finalizer."""
    why = (
        f'node "{node}" may only remove the {LOCAL_CLEANUP_FINALIZER} finalizer of its volumes'
        f" or mark them {LOCAL_VOLUME_MADE_ANNOTATION}"
    )
    if old is None or new is None:
        raise forbidden(why)
    old_fins = list(get_path(old, "metadata", "finalizers") or [])
    new_fins = list(get_path(new, "metadata", "finalizers") or [])
    if new_fins not in (old_fins, [f for f in old_fins if f != LOCAL_CLEANUP_FINALIZER]):
        raise forbidden(why)
    skip = ("finalizers", "resourceVersion", "managedFields", "generation", "annotations")
    for part in ("spec", "status", "metadata"):
        a, b = old.get(part) or {}, new.get(part) or {}
        if part == "metadata":
            a = {k: v for k, v in a.items() if k not in skip}
            b = {k: v for k, v in b.items() if k not in skip}
        if a != b:
            raise forbidden(why)
    # ... and marking it made (before the node makes its directory)
    old_notes = dict(get_path(old, "metadata", "annotations") or {})
    new_notes = dict(get_path(new, "metadata", "annotations") or {})
    if new_notes.get(LOCAL_VOLUME_MADE_ANNOTATION) == "true":
        old_notes.setdefault(LOCAL_VOLUME_MADE_ANNOTATION, "true")
    if old_notes != new_notes:
        raise forbidden(why)


def _admit_node(
    node: str,
    verb: str,
    *,
    subresource: str,
    name: str,
    old: Obj | None,
    new: Obj | None,
) -> None:
    who = f'node "{node}"'
    target = name or str(get_path(new, "metadata", "name") or "")
    if target != node:
        raise forbidden(f'{who} is not allowed to modify node "{target}"')
    if verb == "delete" or subresource == "status":
        return  # status writes keep the stored metadata and spec (strategy.py)
    changed = _modified_labels(_labels(old), _labels(new))
    refused = sorted(k for k in changed if forbidden_node_label(k))
    if refused:
        raise forbidden(
            f"{who} is not allowed to set or modify the labels {', '.join(refused)}: role and"
            " node-restriction labels are set by the cluster administrator"
        )
    if old is None:
        spec = get_path(new, "spec") or {}
        if isinstance(spec, dict) and (spec.get("podCIDR") or spec.get("podCIDRs")):
            raise forbidden(
                f"{who} is not allowed to set spec.podCIDR: the node IPAM controller assigns it"
            )
        return
    if (get_path(new, "spec") or {}) != (get_path(old, "spec") or {}):
        raise forbidden(
            f"{who} is not allowed to modify its spec (taints, podCIDR, unschedulable, ...):"
            " only the cluster's controllers and administrators change a Node's spec"
        )
