"""What the API server serves for one stored CRD: a :class:`ServedVersion` per served version,
with its resource definition, compiled schema, printer columns and subresources. Built once
when a CRD is created, changed or seen through the watch, never per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from berth.api.meta import Obj
from berth.api.resources import ResourceDef

from . import names as crd_names
from .printers import PrinterColumn, columns_for
from .scale import ScalePaths
from .schema import Schema, compile_schema


def _mapping(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


@dataclass(frozen=True, slots=True)
class ServedVersion:
    rd: ResourceDef
    schema: Schema
    raw_schema: dict[str, Any]
    columns: tuple[PrinterColumn, ...]
    status: bool
    scale: ScalePaths | None
    storage: bool
    deprecated: bool = False
    deprecation_warning: str = ""


@dataclass(frozen=True, slots=True)
class ServedCRD:
    name: str
    uid: str
    group: str
    plural: str
    versions: tuple[ServedVersion, ...]
    storage_version: str
    terminating: bool = False
    """Being deleted: still served (so its objects can be read and their finalizers
    removed) but refusing creates, as kube-apiserver."""
    # all versions share one storage key (``/registry/<group>/<plural>/``)
    by_version: dict[str, ServedVersion] = field(default_factory=dict)

    def version(self, v: str) -> ServedVersion | None:
        return self.by_version.get(v)


def served_from(crd: Obj) -> ServedCRD | None:
    """The served form of ``crd``, or None while it is not established (names not
    accepted)."""
    meta = crd.get("metadata") or {}
    if not crd_names.is_true(crd, "Established"):
        return None
    spec = crd.get("spec") or {}
    accepted = (crd.get("status") or {}).get("acceptedNames") or {}
    plural = str(accepted.get("plural") or "")
    kind = str(accepted.get("kind") or "")
    if not plural or not kind:
        return None
    group = str(spec.get("group") or "")
    versions = []
    storage = ""
    for v in spec.get("versions") or []:
        if not isinstance(v, dict):
            continue
        vname = str(v.get("name") or "")
        if v.get("storage") is True:
            storage = vname
        if v.get("served") is not True:
            continue
        subs = _mapping(v.get("subresources"))
        has_status = isinstance(subs.get("status"), dict)
        scale = ScalePaths.from_spec(subs.get("scale"))
        raw = (v.get("schema") or {}).get("openAPIV3Schema") or {}
        rd = ResourceDef(
            group=group,
            version=vname,
            plural=plural,
            singular=str(accepted.get("singular") or kind.lower()),
            kind=kind,
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(str(s) for s in accepted.get("shortNames") or []),
            categories=tuple(str(c) for c in accepted.get("categories") or []),
            subresources=(("status",) if has_status else ()) + (("scale",) if scale else ()),
            list_kind=str(accepted.get("listKind") or f"{kind}List"),
        )
        versions.append(
            ServedVersion(
                rd=rd,
                schema=compile_schema(raw),
                raw_schema=raw,
                columns=columns_for(v.get("additionalPrinterColumns")),
                status=has_status,
                scale=scale,
                storage=v.get("storage") is True,
                deprecated=v.get("deprecated") is True,
                deprecation_warning=str(v.get("deprecationWarning") or ""),
            )
        )
    if not versions:
        return None
    return ServedCRD(
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        group=group,
        plural=plural,
        versions=tuple(versions),
        storage_version=storage,
        terminating=bool(meta.get("deletionTimestamp")),
        by_version={v.rd.version: v for v in versions},
    )
