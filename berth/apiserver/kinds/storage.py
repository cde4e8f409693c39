"""PersistentVolumes, PersistentVolumeClaims (core/v1) and StorageClasses (storage.k8s.io/v1).

Upstream rules kept here: defaults (reclaim policy ``Retain`` for a PV, ``Delete`` for a class,
``Filesystem`` volume mode, ``Immediate`` binding), new objects start ``Pending``, the
StorageObjectInUseProtection admission (every claim gets ``kubernetes.io/pvc-protection``, every
volume ``kubernetes.io/pv-protection``), the DefaultStorageClass admission (a claim without
``storageClassName`` gets the default class), the validation of access modes, capacity and
volume sources, what an update may change (a claim's spec is fixed but for ``volumeName`` and
``storageClassName`` being filled in once, and a bound claim's storage request growing when
its class allows expansion), a class's immutable fields, and the ``kubectl get`` columns.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from berth.api import storage as st
from berth.api.meta import Obj, format_time, get_path, now
from berth.api.quantity import quantity_errors
from berth.api.resources import PERSISTENTVOLUMECLAIMS, STORAGECLASSES, ResourceDef
from berth.apiserver.dnsnames import SUBDOMAIN_HELP, is_dns_subdomain
from berth.apiserver.errors import (
    FieldError,
    forbidden,
    forbidden_field,
    invalid_value,
    not_supported,
    required,
)
from berth.apiserver.options import ListOptions
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.registry import Registry

# Every volume source a PersistentVolume may name (exactly one); berth's nodes mount
# ``hostPath`` and ``local`` ones, the others are kept for clients that manage them.
VOLUME_SOURCES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
MAX_CLASS_PARAMETERS = 512
UNSET = "<unset>"


def _stamp_phase(obj: Obj, phase: str) -> None:
    status = obj.setdefault("status", {})
    status["phase"] = phase
    status["lastPhaseTransitionTime"] = format_time(now())


def _add_finalizer(obj: Obj, finalizer: str) -> None:
    m = obj.setdefault("metadata", {})
    fins = m.get("finalizers")
    if not isinstance(fins, list):
        fins = []
    if finalizer not in fins:
        m["finalizers"] = [*fins, finalizer]


def _access_modes(spec: dict[str, Any], field: str) -> list[FieldError]:
    modes = spec.get("accessModes")
    if not modes:
        return [required(f"{field}.accessModes")]
    if not isinstance(modes, list):
        return [invalid_value(f"{field}.accessModes", modes, "must be a list")]
    errs = [
        not_supported(f"{field}.accessModes", m, st.ACCESS_MODES)
        for m in modes
        if m not in st.ACCESS_MODES
    ]
    if st.RWOP in modes and len(modes) > 1:
        errs.append(
            forbidden_field(
                f"{field}.accessModes", "may not use ReadWriteOncePod with other access modes"
            )
        )
    return errs


def _class_name(value: Any, field: str) -> list[FieldError]:
    if value is None or value == "":
        return []
    if not isinstance(value, str) or not is_dns_subdomain(value):
        return [invalid_value(field, value, SUBDOMAIN_HELP)]
    return []


def _volume_mode(value: Any, field: str) -> list[FieldError]:
    if value is not None and value not in st.VOLUME_MODES:
        return [not_supported(field, value, st.VOLUME_MODES)]
    return []


def _positive_storage(resources: Any, field: str, *, only_storage: bool) -> list[FieldError]:
    if not isinstance(resources, dict) or "storage" not in resources:
        return [required(f"{field}[storage]")]
    errs: list[FieldError] = []
    if only_storage:
        errs += [
            not_supported(f"{field}[{k}]", k, ("storage",)) for k in resources if k != "storage"
        ]
    bad = quantity_errors(resources["storage"])
    if bad:
        errs.append(invalid_value(f"{field}[storage]", resources["storage"], bad[0]))
    elif (st.storage_bytes(resources) or 0) <= 0:
        errs.append(
            invalid_value(f"{field}[storage]", resources["storage"], "must be greater than zero")
        )
    return errs


def _node_affinity(value: Any, field: str) -> list[FieldError]:
    if value is None:
        return []
    terms = get_path(value, "required", "nodeSelectorTerms") if isinstance(value, dict) else None
    if not isinstance(terms, list) or not terms:
        return [required(f"{field}.required.nodeSelectorTerms")]
    return []


def pv_fields(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs = _access_modes(spec, "spec")
    errs += _positive_storage(spec.get("capacity"), "spec.capacity", only_storage=True)
    sources = [k for k in VOLUME_SOURCES if spec.get(k) is not None]
    if not sources:
        errs.append(
            FieldError("FieldValueRequired", "spec", "Required value: must specify a volume type")
        )
    elif len(sources) > 1:
        errs.append(
            forbidden_field(f"spec.{sources[1]}", "may not specify more than 1 volume type")
        )
    for kind in ("hostPath", "local"):
        src = spec.get(kind)
        if src is None:
            continue
        path = src.get("path") if isinstance(src, dict) else None
        if not isinstance(path, str) or not path:
            errs.append(required(f"spec.{kind}.path"))
        elif ".." in path.split("/"):
            errs.append(invalid_value(f"spec.{kind}.path", path, "must not contain '..'"))
        elif kind == "local" and not path.startswith("/"):
            errs.append(invalid_value("spec.local.path", path, "must be an absolute path"))
    if spec.get("local") is not None and spec.get("nodeAffinity") is None:
        errs.append(
            FieldError(
                "FieldValueRequired",
                "spec.nodeAffinity",
                "Required value: Local volume requires node affinity",
            )
        )
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy is not None and policy not in st.RECLAIM_POLICIES:
        errs.append(
            not_supported("spec.persistentVolumeReclaimPolicy", policy, st.RECLAIM_POLICIES)
        )
    errs += _class_name(spec.get("storageClassName"), "spec.storageClassName")
    errs += _volume_mode(spec.get("volumeMode"), "spec.volumeMode")
    errs += _node_affinity(spec.get("nodeAffinity"), "spec.nodeAffinity")
    ref = spec.get("claimRef")
    if ref is not None:
        if not isinstance(ref, dict) or not ref.get("name"):
            errs.append(required("spec.claimRef.name"))
        if not isinstance(ref, dict) or not ref.get("namespace"):
            errs.append(required("spec.claimRef.namespace"))
    return errs


def pv_update(old: Obj, new: Obj) -> list[FieldError]:
    o, n = old.get("spec") or {}, new.get("spec") or {}
    errs: list[FieldError] = []
    if any(o.get(k) != n.get(k) for k in VOLUME_SOURCES):
        errs.append(
            forbidden_field(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            )
        )
    if o.get("volumeMode") != n.get("volumeMode"):
        errs.append(invalid_value("spec.volumeMode", n.get("volumeMode"), "field is immutable"))
    if o.get("nodeAffinity") is not None and o.get("nodeAffinity") != n.get("nodeAffinity"):
        errs.append(forbidden_field("spec.nodeAffinity", "field is immutable once set"))
    return errs


def pvc_fields(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs = _access_modes(spec, "spec")
    requests = get_path(spec, "resources", "requests")
    errs += _positive_storage(requests, "spec.resources", only_storage=False)
    errs += _class_name(spec.get("storageClassName"), "spec.storageClassName")
    errs += _volume_mode(spec.get("volumeMode"), "spec.volumeMode")
    return errs


IMMUTABLE_CLAIM = (
    "spec is immutable after creation except resources.requests and volumeAttributesClassName"
    " for bound claims"
)


def pvc_update(old: Obj, new: Obj) -> list[FieldError]:
    o = copy.deepcopy(old.get("spec") or {})
    n = copy.deepcopy(new.get("spec") or {})
    # Filled in once: the binder's volumeName, a class given to a claim that had none.
    if not o.get("volumeName") and "volumeName" in n:
        o["volumeName"] = n["volumeName"]
    if o.get("storageClassName") is None and "storageClassName" in n:
        o["storageClassName"] = n["storageClassName"]
    errs: list[FieldError] = []
    bound = get_path(old, "status", "phase") == st.CLAIM_BOUND
    if bound:
        before = st.storage_bytes(get_path(o, "resources", "requests")) or 0
        after = st.storage_bytes(get_path(n, "resources", "requests")) or 0
        if after < before:
            errs.append(
                forbidden_field(
                    "spec.resources.requests.storage", "field can not be less than previous value"
                )
            )
        o.setdefault("resources", {})["requests"] = get_path(n, "resources", "requests")
    o.pop("volumeAttributesClassName", None)
    n.pop("volumeAttributesClassName", None)
    if o != n:
        errs.append(forbidden_field("spec", IMMUTABLE_CLAIM))
    return errs


def _pv_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace')}/{ref.get('name')}" if ref.get("name") else ""
    phase = str(get_path(o, "status", "phase") or "")
    if get_path(o, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    return [
        name_of(o),
        str((spec.get("capacity") or {}).get("storage") or ""),
        st.access_modes_text(spec.get("accessModes") or ()),
        str(spec.get("persistentVolumeReclaimPolicy") or ""),
        phase,
        claim,
        st.volume_class(o),
        str(spec.get("volumeAttributesClassName") or UNSET),
        str(get_path(o, "status", "reason") or ""),
        age(created(o)),
        st.volume_mode(o),
    ]


PV_COLUMNS = Printer(
    (
        NAME,
        Column("Capacity"),
        Column("Access Modes"),
        Column("Reclaim Policy"),
        Column("Status"),
        Column("Claim"),
        Column("StorageClass"),
        Column("VolumeAttributesClass"),
        Column("Reason"),
        AGE,
        Column("VolumeMode", priority=1),
    ),
    _pv_row,
)


def _pvc_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    status = o.get("status") or {}
    phase = str(status.get("phase") or "")
    if get_path(o, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    capacity = modes = ""
    if spec.get("volumeName"):
        capacity = str((status.get("capacity") or {}).get("storage") or "")
        modes = st.access_modes_text(status.get("accessModes") or ())
    return [
        name_of(o),
        phase,
        str(spec.get("volumeName") or ""),
        capacity,
        modes,
        st.claim_class(o),
        str(spec.get("volumeAttributesClassName") or UNSET),
        age(created(o)),
        st.volume_mode(o),
    ]


PVC_COLUMNS = Printer(
    (
        NAME,
        Column("Status"),
        Column("Volume"),
        Column("Capacity"),
        Column("Access Modes"),
        Column("StorageClass"),
        Column("VolumeAttributesClass"),
        AGE,
        Column("VolumeMode", priority=1),
    ),
    _pvc_row,
)


def _sc_row(o: Obj) -> list[Cell]:
    label = name_of(o) + (" (default)" if st.is_default_class(o) else "")
    return [
        label,
        str(o.get("provisioner") or ""),
        str(o.get("reclaimPolicy") or ""),
        str(o.get("volumeBindingMode") or ""),
        bool(o.get("allowVolumeExpansion") or False),
        age(created(o)),
    ]


SC_COLUMNS = Printer(
    (
        NAME,
        Column("Provisioner"),
        Column("ReclaimPolicy"),
        Column("VolumeBindingMode"),
        Column("AllowVolumeExpansion"),
        AGE,
    ),
    _sc_row,
)


class PersistentVolumeStrategy(KindStrategy):
    kind = "PersistentVolume"
    columns = PV_COLUMNS

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            spec.setdefault("volumeMode", "Filesystem")

    def reset_status(self, rd: ResourceDef, obj: Obj) -> None:
        obj.pop("status", None)
        _stamp_phase(obj, st.PV_PENDING)

    def prepare_for_update(self, rd: ResourceDef, old: Obj, new: Obj, subresource: str) -> Obj:
        merged = super().prepare_for_update(rd, old, new, subresource)
        before = get_path(old, "status", "phase")
        after = get_path(merged, "status", "phase")
        if subresource == "status" and after != before and after:
            merged["status"]["lastPhaseTransitionTime"] = format_time(now())
        return merged

    async def admit_create(
        self, reg: Registry, rd: ResourceDef, ns: str, obj: Obj
    ) -> Hashable | None:
        _add_finalizer(obj, st.PV_PROTECTION_FINALIZER)
        return None

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return pv_fields(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return pv_update(old, new)


async def _classes(reg: Registry) -> list[Obj]:
    page = await reg.list_objects(STORAGECLASSES, "", ListOptions())
    return page.items


class PersistentVolumeClaimStrategy(KindStrategy):
    kind = "PersistentVolumeClaim"
    columns = PVC_COLUMNS

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("volumeMode", "Filesystem")

    def reset_status(self, rd: ResourceDef, obj: Obj) -> None:
        obj["status"] = {"phase": st.CLAIM_PENDING}

    async def admit_create(
        self, reg: Registry, rd: ResourceDef, ns: str, obj: Obj
    ) -> Hashable | None:
        _add_finalizer(obj, st.PVC_PROTECTION_FINALIZER)
        spec = obj.get("spec")
        annotations = get_path(obj, "metadata", "annotations") or {}
        if (
            isinstance(spec, dict)
            and spec.get("storageClassName") is None
            and "volume.beta.kubernetes.io/storage-class" not in annotations
        ):
            default = st.default_class(await _classes(reg))
            if default is not None:
                spec["storageClassName"] = default
        return None

    async def reserve(self, reg: Registry, new: Obj, old: Obj | None, *, dry_run: bool) -> Any:
        # PersistentVolumeClaimResize admission: only a claim whose class allows expansion
        # may ask for more storage once bound.
        if old is None or get_path(old, "status", "phase") != st.CLAIM_BOUND:
            return None
        before = st.storage_bytes(get_path(old, "spec", "resources", "requests")) or 0
        after = st.storage_bytes(get_path(new, "spec", "resources", "requests")) or 0
        if after <= before:
            return None
        name = st.claim_class(new)
        sc = next((c for c in await _classes(reg) if name_of(c) == name), None)
        if sc is None or not sc.get("allowVolumeExpansion"):
            raise forbidden(
                "only dynamically provisioned pvc can be resized and the storageclass that"
                " provisions the pvc must support resize",
                PERSISTENTVOLUMECLAIMS,
                name_of(new),
            )
        return None

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return pvc_fields(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return pvc_update(old, new)


class StorageClassStrategy(KindStrategy):
    group = "storage.k8s.io"
    kind = "StorageClass"
    specless = True
    columns = SC_COLUMNS

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        prov = obj.get("provisioner")
        if not prov:
            errs.append(required("provisioner"))
        elif not isinstance(prov, str) or len(prov) > 253 or not _qualified(prov):
            errs.append(invalid_value("provisioner", prov, "must be a qualified name"))
        policy = obj.get("reclaimPolicy")
        if policy not in st.CLASS_RECLAIM_POLICIES:
            errs.append(not_supported("reclaimPolicy", policy, st.CLASS_RECLAIM_POLICIES))
        mode = obj.get("volumeBindingMode")
        if mode not in st.BINDING_MODES:
            errs.append(not_supported("volumeBindingMode", mode, st.BINDING_MODES))
        params = obj.get("parameters")
        if params is not None and (
            not isinstance(params, dict) or len(params) > MAX_CLASS_PARAMETERS
        ):
            errs.append(
                invalid_value(
                    "parameters", "...", f"must be a map of at most {MAX_CLASS_PARAMETERS} entries"
                )
            )
        return errs

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return [
            forbidden_field(f, f"updates to {f} are forbidden.")
            for f in ("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode")
            if old.get(f) != new.get(f)
        ]


def _qualified(name: str) -> bool:
    """A qualified name: an optional DNS subdomain prefix and ``/``, then a name of
    alphanumerics, ``-``, ``_`` and ``.`` (at most 63 characters)."""
    prefix, _, rest = name.rpartition("/")
    if prefix and not is_dns_subdomain(prefix):
        return False
    if not rest or len(rest) > 63:
        return False
    ok = all(c.isascii() and (c.isalnum() or c in "-_.") for c in rest)
    return ok and rest[0].isalnum() and rest[-1].isalnum()
