"""StatefulSets and ControllerRevisions (apps/v1): defaults, validation, immutable fields,
``kubectl get`` columns.

A StatefulSet's spec may change only in ``replicas``, ``ordinals``, ``template``,
``updateStrategy``, ``revisionHistoryLimit``, ``persistentVolumeClaimRetentionPolicy`` and
``minReadySeconds`` (as kube-apiserver); a ControllerRevision's ``data`` never changes, only its
``revision`` number (a rollback renumbers an old revision).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver.errors import (
    FieldError,
    forbidden_field,
    invalid_value,
    not_supported,
    required,
)
from berth.apiserver.strategy import template_defaults
from berth.apiserver.tables import (
    AGE,
    NAME,
    WIDE_TEMPLATE,
    Cell,
    Column,
    Printer,
    age,
    created,
    int_or_zero,
    name_of,
    template_cells,
)
from berth.apiserver.validation import LABEL, selector_update, validate_name, workload_fields

from .base import KindStrategy

POD_MANAGEMENT = ("OrderedReady", "Parallel")
UPDATE_STRATEGIES = ("RollingUpdate", "OnDelete")
RETENTION = ("Retain", "Delete")
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
MUTABLE_SPEC = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def _sts_row(o: Obj) -> list[Cell]:
    desired = get_path(o, "spec", "replicas")
    desired = 1 if desired is None else int_or_zero(desired)
    ready = int_or_zero(get_path(o, "status", "readyReplicas"))
    return [name_of(o), f"{ready}/{desired}", age(created(o)), *template_cells(o)]


STATEFULSET = Printer(
    (
        NAME,
        Column("Ready", description="Number of the pod with ready state"),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _sts_row,
)


def _revision_row(o: Obj) -> list[Cell]:
    owner = "<none>"
    for ref in get_path(o, "metadata", "ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller"):
            group = str(ref.get("apiVersion") or "").rpartition("/")[0]
            kind = str(ref.get("kind") or "").lower()
            owner = f"{kind}.{group}/{ref.get('name')}" if group else f"{kind}/{ref.get('name')}"
    return [name_of(o), owner, int_or_zero(o.get("revision")), age(created(o))]


CONTROLLERREVISION = Printer(
    (
        NAME,
        Column("Controller", description="Controller of the object"),
        Column("Revision", type="integer", description="Revision of the ControllerRevision"),
        AGE,
    ),
    _revision_row,
)


def _non_negative(value: Any, field: str) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return [invalid_value(field, value, "must be greater than or equal to 0")]
    return []


def _claim_template(claim: Any, where: str) -> list[FieldError]:
    """A ``volumeClaimTemplates`` entry, checked as a PersistentVolumeClaim."""
    if not isinstance(claim, dict):
        return [invalid_value(where, claim, "must be an object")]
    errs: list[FieldError] = []
    claim_name = get_path(claim, "metadata", "name")
    if not isinstance(claim_name, str) or not claim_name:
        errs.append(required(f"{where}.metadata.name"))
    else:
        errs += validate_name(LABEL, claim_name, f"{where}.metadata.name")
    spec = claim.get("spec")
    if not isinstance(spec, dict):
        return [*errs, required(f"{where}.spec")]
    modes = spec.get("accessModes")
    if not isinstance(modes, list) or not modes:
        errs.append(required(f"{where}.spec.accessModes"))
    else:
        errs += [
            not_supported(f"{where}.spec.accessModes", m, ACCESS_MODES)
            for m in modes
            if m not in ACCESS_MODES
        ]
    if get_path(spec, "resources", "requests", "storage") is None and not spec.get("dataSourceRef"):
        errs.append(required(f"{where}.spec.resources[storage]"))
    return errs


def _claim_template_names(obj: Obj) -> frozenset[str]:
    """The names of the ``volumeClaimTemplates``: the controller gives every pod a volume of
    that name (its claim), so the template's containers may mount it."""
    claims = get_path(obj, "spec", "volumeClaimTemplates")
    return frozenset(
        n
        for c in (claims if isinstance(claims, list) else ())
        if isinstance(n := get_path(c, "metadata", "name"), str) and n
    )


def statefulset_fields(obj: Obj) -> list[FieldError]:
    errs = workload_fields(obj, needs_replicas=True, claim_volumes=_claim_template_names(obj))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs
    policy = spec.get("podManagementPolicy")
    if policy not in POD_MANAGEMENT:
        errs.append(not_supported("spec.podManagementPolicy", policy, POD_MANAGEMENT))
    us = spec.get("updateStrategy")
    if isinstance(us, dict):
        kind = us.get("type")
        if kind not in UPDATE_STRATEGIES:
            errs.append(not_supported("spec.updateStrategy.type", kind, UPDATE_STRATEGIES))
        ru = us.get("rollingUpdate")
        if ru is not None and kind != "RollingUpdate":
            errs.append(
                invalid_value(
                    "spec.updateStrategy.rollingUpdate",
                    ru,
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
        if isinstance(ru, dict):
            errs += _non_negative(
                ru.get("partition"), "spec.updateStrategy.rollingUpdate.partition"
            )
    for field in ("minReadySeconds", "revisionHistoryLimit"):
        errs += _non_negative(spec.get(field), f"spec.{field}")
    ordinals = spec.get("ordinals")
    if isinstance(ordinals, dict):
        errs += _non_negative(ordinals.get("start"), "spec.ordinals.start")
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(retention, dict):
        for field in ("whenDeleted", "whenScaled"):
            if retention.get(field) not in RETENTION:
                errs.append(
                    not_supported(
                        f"spec.persistentVolumeClaimRetentionPolicy.{field}",
                        retention.get(field),
                        RETENTION,
                    )
                )
    claims = spec.get("volumeClaimTemplates")
    if claims is not None:
        if not isinstance(claims, list):
            errs.append(invalid_value("spec.volumeClaimTemplates", claims, "must be a list"))
        else:
            for i, claim in enumerate(claims):
                errs += _claim_template(claim, f"spec.volumeClaimTemplates[{i}]")
    pod_spec = get_path(spec, "template", "spec")
    if isinstance(pod_spec, dict):
        restart = pod_spec.get("restartPolicy", "Always")
        if restart != "Always":
            errs.append(not_supported("spec.template.spec.restartPolicy", restart, ("Always",)))
        if pod_spec.get("activeDeadlineSeconds") is not None:
            errs.append(
                forbidden_field(
                    "spec.template.spec.activeDeadlineSeconds",
                    "activeDeadlineSeconds in StatefulSet is not Supported",
                )
            )
    return errs


class StatefulSetStrategy(KindStrategy):
    group = "apps"
    kind = "StatefulSet"
    # StatefulSetStatus: replicas and availableReplicas are not omitempty
    empty_status: Mapping[str, Any] = {"replicas": 0, "availableReplicas": 0}
    columns = STATEFULSET

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("minReadySeconds", 0)
        us = spec.setdefault("updateStrategy", {})
        if isinstance(us, dict):
            us.setdefault("type", "RollingUpdate")
            if us["type"] == "RollingUpdate":
                ru = us.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("partition", 0)
        retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        if isinstance(retention, dict):
            retention.setdefault("whenDeleted", "Retain")
            retention.setdefault("whenScaled", "Retain")
        claims = spec.get("volumeClaimTemplates")
        for claim in claims if isinstance(claims, list) else ():
            if isinstance(claim, dict):
                claim.setdefault("apiVersion", "v1")
                claim.setdefault("kind", "PersistentVolumeClaim")
                if isinstance(claim.setdefault("metadata", {}), dict):
                    claim["metadata"].setdefault("creationTimestamp", None)
                if isinstance(claim.get("spec"), dict):
                    claim["spec"].setdefault("volumeMode", "Filesystem")
                claim.setdefault("status", {"phase": "Pending"})
        template_defaults(obj)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return statefulset_fields(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        old_spec, new_spec = old.get("spec"), new.get("spec")
        if not isinstance(old_spec, dict) or not isinstance(new_spec, dict):
            return []  # validate_fields reports a spec that is not an object
        errs = selector_update(old, new)
        if errs:
            return errs
        fixed_old = {k: v for k, v in old_spec.items() if k not in MUTABLE_SPEC}
        fixed_new = {k: v for k, v in new_spec.items() if k not in MUTABLE_SPEC}
        if fixed_old != fixed_new:
            return [
                forbidden_field(
                    "spec",
                    "updates to statefulset spec for fields other than "
                    + ", ".join(f"'{f}'" for f in MUTABLE_SPEC[:-1])
                    + f" and '{MUTABLE_SPEC[-1]}' are forbidden",
                )
            ]
        return []


class ControllerRevisionStrategy(KindStrategy):
    group = "apps"
    kind = "ControllerRevision"
    specless = True
    columns = CONTROLLERREVISION

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        if obj.get("data") is None:
            errs.append(required("data"))
        rev = obj.get("revision")
        if rev is None:
            errs.append(required("revision"))
        else:
            errs += _non_negative(rev, "revision")
        return errs

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        if new.get("data") != old.get("data"):
            return [invalid_value("data", new.get("data"), "field is immutable")]
        return []
