"""Persistent storage vocabulary shared by the API server, the binder controller, the scheduler
and the node agent: annotation and finalizer names, access modes, and the pure decisions of
static binding (which PersistentVolume may serve which claim, and which one is the best).

Upstream anchors: the PV binder controller's matching rules (smallest volume that satisfies
the claim's size, access modes, class, selector and volume mode), the DefaultStorageClass
admission plugin, and the scheduler's VolumeBinding plugin (a PV's ``nodeAffinity``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.quantity import QuantityError, parse_quantity
from berth.api.scheduling import RequiredNodeAffinity, _term
from berth.api.selectors import SelectorError, label_selector_from_object

# -- names ------------------------------------------------------------------------------------
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER_ANNOTATION = "volume.beta.kubernetes.io/storage-provisioner"
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"
BOUND_BY_CONTROLLER_ANNOTATION = "pv.kubernetes.io/bound-by-controller"
BIND_COMPLETED_ANNOTATION = "pv.kubernetes.io/bind-completed"
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
PV_PROTECTION_FINALIZER = "kubernetes.io/pv-protection"

LOCAL_PROVISIONER = "berth.io/local"
"""The provisioner name of berth's node-local volumes (the default StorageClass's)."""
LOCAL_STORAGE_CLASS = "berth-local"
LOCAL_VOLUMES_DIR = "/var/lib/berth/volumes"
"""Where a node keeps local volumes (the class parameter ``nodePath`` may name another; the
node agent refuses any volume whose path is not ``<its volumes dir>/<volume name>``)."""
LOCAL_VOLUME_MADE_ANNOTATION = "berth.io/local-volume-made"
"""Set by the node before it makes a local volume's directory: without it no directory exists,
and the binder may drop the cleanup finalizer itself (nothing for the node to remove)."""
LOCAL_CLEANUP_FINALIZER = "berth.io/local-volume-cleanup"
"""Held by every volume the local provisioner makes, until the node that holds its directory
has removed it (only the node can touch its own disk)."""

LOCAL_CAPACITY_ANNOTATION = "berth.io/local-volumes-capacity"
LOCAL_AVAILABLE_ANNOTATION = "berth.io/local-volumes-available"
"""Written by a node's agent on its own Node: the size and the free space (quantities, rounded
down to MiB) of the filesystem that holds its local volumes. A local volume is a plain
directory: it reserves nothing and its size is not enforced (no project quota), so the one
promise kept is that a claim bigger than the space a node has free does not go there (the
scheduler filters such nodes, the binder does not provision on them)."""
NOT_ENOUGH_SPACE = "node(s) did not have enough free storage"

# -- enumerations ---------------------------------------------------------------------------------
RWO, ROX, RWX, RWOP = "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"
ACCESS_MODES = (RWO, ROX, RWX, RWOP)
_SHORT_MODES = ((RWO, "RWO"), (ROX, "ROX"), (RWX, "RWX"), (RWOP, "RWOP"))
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
CLASS_RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
VOLUME_MODES = ("Block", "Filesystem")

PV_PENDING, PV_AVAILABLE, PV_BOUND, PV_RELEASED, PV_FAILED = (
    "Pending",
    "Available",
    "Bound",
    "Released",
    "Failed",
)
CLAIM_PENDING, CLAIM_BOUND, CLAIM_LOST = "Pending", "Bound", "Lost"


def access_modes_text(modes: Iterable[Any]) -> str:
    """``RWO,ROX``: the modes in upstream's fixed order, as ``kubectl get pv/pvc`` prints them."""
    have = set(modes)
    return ",".join(short for mode, short in _SHORT_MODES if mode in have)


def is_default_class(sc: Mapping[str, Any]) -> bool:
    annotations = (sc.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"
        or annotations.get(BETA_DEFAULT_CLASS_ANNOTATION) == "true"
    )


def default_class(classes: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of the default StorageClass: when several are marked, the newest (then the
    first by name), as the DefaultStorageClass admission plugin picks since 1.28."""
    marked = [c for c in classes if is_default_class(c)]
    if not marked:
        return None

    def key(c: Mapping[str, Any]) -> tuple[str, str]:
        m = c.get("metadata") or {}
        return (str(m.get("creationTimestamp") or ""), _invert(str(m.get("name") or "")))

    return str((max(marked, key=key).get("metadata") or {}).get("name"))


def _invert(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


# -- sizes ----------------------------------------------------------------------------------------
def storage_bytes(resources: Mapping[str, Any] | None) -> int | None:
    """The ``storage`` quantity of a capacity/requests map in bytes (None: absent or bad)."""
    raw = (resources or {}).get("storage")
    if raw is None:
        return None
    try:
        return parse_quantity(raw).value()
    except (QuantityError, ValueError, TypeError):
        return None


def claim_request(claim: Mapping[str, Any]) -> int:
    spec = claim.get("spec") or {}
    return storage_bytes((spec.get("resources") or {}).get("requests")) or 0


def volume_capacity(pv: Mapping[str, Any]) -> int:
    return storage_bytes((pv.get("spec") or {}).get("capacity")) or 0


def local_available(node: Mapping[str, Any]) -> int | None:
    """The free bytes a node reports for its local volumes (None: not reported, or bad)."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(LOCAL_AVAILABLE_ANNOTATION)
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    try:
        value = parse_quantity(raw).value()
    except (QuantityError, ValueError, TypeError):
        return None
    return value if value >= 0 else None


def room_text(size: int) -> str:
    """``size`` bytes as a quantity rounded down to MiB (what a node reports)."""
    return f"{max(size, 0) // (1 << 20)}Mi"


# -- classes ----------------------------------------------------------------------------------
def claim_class(claim: Mapping[str, Any]) -> str:
    """A claim's class name (``""`` for none); the beta annotation still counts, as upstream."""
    spec = claim.get("spec") or {}
    name = spec.get("storageClassName")
    if name is None:
        annotations = (claim.get("metadata") or {}).get("annotations") or {}
        name = annotations.get("volume.beta.kubernetes.io/storage-class", "")
    return str(name or "")


def volume_class(pv: Mapping[str, Any]) -> str:
    spec = pv.get("spec") or {}
    name = spec.get("storageClassName")
    if name is None:
        annotations = (pv.get("metadata") or {}).get("annotations") or {}
        name = annotations.get("volume.beta.kubernetes.io/storage-class", "")
    return str(name or "")


def volume_mode(obj: Mapping[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("volumeMode") or "Filesystem")


# -- node affinity ------------------------------------------------------------------------------
def volume_node_affinity(pv: Mapping[str, Any]) -> RequiredNodeAffinity:
    """The nodes a PersistentVolume can be reached from (empty: any node)."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    terms = required.get("nodeSelectorTerms") or ()
    return RequiredNodeAffinity(terms=tuple(_term(t) for t in terms))


def volume_reachable_from(pv: Mapping[str, Any], labels: Mapping[str, str], node: str) -> bool:
    return volume_node_affinity(pv).matches(labels, node)


def pinned_to(node: str) -> dict[str, Any]:
    """A volume ``nodeAffinity`` naming one node by ``kubernetes.io/hostname`` (what the local
    provisioner writes; :func:`pinned_node` reads it back)."""
    expr = {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}


def pinned_node(pv: Mapping[str, Any]) -> str | None:
    """The one node a local volume's nodeAffinity names by ``kubernetes.io/hostname`` (the shape
    the local provisioner writes), else None."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    terms = list(required.get("nodeSelectorTerms") or [])
    if len(terms) != 1:
        return None
    exprs = terms[0].get("matchExpressions") or ()
    for e in exprs:
        if (
            e.get("key") == "kubernetes.io/hostname"
            and e.get("operator") == "In"
            and len(e.get("values") or ()) == 1
        ):
            return str(e["values"][0])
    return None


# -- static binding ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why a volume cannot serve a claim (for events and tests)."""

    reason: str


def claim_ref_matches(pv: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    """The volume's ``claimRef`` names this claim (by namespace/name, and uid when set)."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    m = claim.get("metadata") or {}
    if ref.get("name") != m.get("name") or ref.get("namespace") != m.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == m.get("uid")


def volume_unfit(pv: Mapping[str, Any], claim: Mapping[str, Any]) -> str | None:
    """Why ``pv`` cannot be bound to ``claim`` (None: it can). Checks what the binder checks:
    a free (or pre-bound to this claim) volume that is not being deleted, the class, volume
    mode, access modes, capacity and the claim's label selector."""
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef")
    if ref and not claim_ref_matches(pv, claim):
        return "volume is bound or reserved for another claim"
    if (pv.get("metadata") or {}).get("deletionTimestamp"):
        return "volume is being deleted"
    phase = (pv.get("status") or {}).get("phase")
    if not ref and phase not in (None, PV_AVAILABLE, PV_PENDING):
        return f"volume is {phase}"
    if volume_class(pv) != claim_class(claim):
        return "storage class does not match"
    if volume_mode(pv) != volume_mode(claim):
        return "volume mode does not match"
    wanted = set((claim.get("spec") or {}).get("accessModes") or ())
    if not wanted <= set(spec.get("accessModes") or ()):
        return "access modes do not match"
    if volume_capacity(pv) < claim_request(claim):
        return "capacity is too small"
    selector = (claim.get("spec") or {}).get("selector")
    if selector is not None and not ref:
        try:
            sel = label_selector_from_object(selector)
        except SelectorError:
            return "claim selector is invalid"
        labels = (pv.get("metadata") or {}).get("labels") or {}
        if not sel.matches(labels):
            return "labels do not match the claim's selector"
    return None


def best_volume(
    volumes: Iterable[Mapping[str, Any]],
    claim: Mapping[str, Any],
    *,
    node: tuple[Mapping[str, str], str] | None = None,
) -> Mapping[str, Any] | None:
    """The volume to bind ``claim`` to: one pre-bound to it if any fits, else the smallest that
    fits (ties broken by name, so the choice is stable). ``node`` (labels, name): only volumes
    reachable from that node (WaitForFirstConsumer, the scheduler's check)."""
    best: Mapping[str, Any] | None = None
    best_key: tuple[int, int, str] | None = None
    for pv in volumes:
        if volume_unfit(pv, claim) is not None:
            continue
        if node is not None and not volume_reachable_from(pv, node[0], node[1]):
            continue
        prebound = 0 if (pv.get("spec") or {}).get("claimRef") else 1
        key = (prebound, volume_capacity(pv), str((pv.get("metadata") or {}).get("name")))
        if best_key is None or key < best_key:
            best, best_key = pv, key
    return best


def claim_names_of_pod(pod: Mapping[str, Any]) -> list[str]:
    """The claims a pod's volumes name (``persistentVolumeClaim.claimName``)."""
    out = []
    for vol in (pod.get("spec") or {}).get("volumes") or ():
        src = vol.get("persistentVolumeClaim") if isinstance(vol, Mapping) else None
        if isinstance(src, Mapping) and src.get("claimName"):
            out.append(str(src["claimName"]))
    return out


def default_storage_class() -> dict[str, Any]:
    """berth's default StorageClass: node-local directories, made where the pod is scheduled."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": LOCAL_STORAGE_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": LOCAL_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": WAIT_FOR_FIRST_CONSUMER,
        "allowVolumeExpansion": False,
    }
