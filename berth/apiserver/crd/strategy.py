"""Write rules of custom objects and of CustomResourceDefinitions themselves.

Custom objects (their kind strategy, ``berth.apiserver.kinds.customresources``, holds the
status and generation rules): every write is pruned, defaulted and validated against the
version's schema; conversion is the None strategy: only ``apiVersion`` changes between
versions.
"""

from __future__ import annotations

import copy

from berth.api.meta import Obj
from berth.apiserver.errors import FieldError

from . import definition, values
from . import fielderrors as fe
from .defaulting import apply_defaults, prune_nulls
from .pruning import prune
from .scale import validate_replicas_paths
from .served import ServedVersion


def normalize(v: ServedVersion, obj: Obj) -> list[str]:
    """Prune unknown fields, drop non-nullable nulls and apply defaults; returns the pruned
    paths (unknown fields)."""
    dropped = prune(v.schema, obj)
    prune_nulls(v.schema, obj)
    apply_defaults(v.schema, obj)
    return dropped


def validate_object(v: ServedVersion, obj: Obj) -> list[FieldError]:
    errs = _type_meta(v, obj)
    if errs:
        return errs
    errs = values.validate(v.schema, obj)
    if v.scale is not None:
        errs += validate_replicas_paths(obj, v.scale)
    return errs


def _type_meta(v: ServedVersion, obj: Obj) -> list[FieldError]:
    errs = []
    if obj.get("kind") != v.rd.kind:
        errs.append(fe.invalid("kind", obj.get("kind") or "", f"must be {v.rd.kind}"))
    if obj.get("apiVersion") != v.rd.api_version:
        errs.append(
            fe.invalid("apiVersion", obj.get("apiVersion") or "", f"must be {v.rd.api_version}")
        )
    return errs


def convert(obj: Obj, api_version: str) -> Obj:
    """The None conversion strategy: the same object under another apiVersion."""
    if obj.get("apiVersion") == api_version:
        return obj
    out = dict(obj)
    out["apiVersion"] = api_version
    return out


# -- CRDs ------------------------------------------------------------------------------------


def _stored_versions_with(crd: Obj, old_status: Obj | None) -> list[str]:
    stored = list((old_status or {}).get("storedVersions") or [])
    storages = [v for v in definition.versions_of(crd) if v.get("storage") is True]
    # Not exactly one storage version: none is added (validation reports both problems).
    sv = str(storages[0].get("name") or "") if len(storages) == 1 else ""
    if sv and sv not in stored:
        stored.append(sv)
    return stored


def prepare_crd_create(crd: Obj) -> None:
    """Defaults, a fresh status holding the storage version, generation 1."""
    definition.apply_defaults(crd)
    crd["status"] = {
        "conditions": [],
        "acceptedNames": {"plural": "", "kind": ""},
        "storedVersions": _stored_versions_with(crd, None),
    }
    crd.setdefault("metadata", {})["generation"] = 1


def prepare_crd_update(old: Obj, new: Obj) -> None:
    """Spec writes keep the stored status (adding a new storage version to storedVersions)
    and bump generation when the spec changed."""
    definition.apply_defaults(new)
    status = copy.deepcopy(old.get("status") or {})
    status["storedVersions"] = _stored_versions_with(new, status)
    new["status"] = status
    m = new.setdefault("metadata", {})
    gen = int((old.get("metadata") or {}).get("generation") or 1)
    m["generation"] = gen + 1 if new.get("spec") != old.get("spec") else gen


def prepare_crd_status_update(old: Obj, new: Obj) -> Obj:
    result = copy.deepcopy(old)
    result["status"] = new.get("status") or {}
    return result
