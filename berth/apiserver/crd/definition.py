"""Defaults and validation of CustomResourceDefinition objects (``apiextensions.k8s.io/v1``),
with upstream's field paths and messages (``ValidateCustomResourceDefinition``)."""

from __future__ import annotations

import re
from typing import Any

from berth.api.meta import Obj
from berth.apiserver.dnsnames import SUBDOMAIN_HELP, is_dns_subdomain
from berth.apiserver.errors import FieldError

from . import fielderrors as fe
from . import jsonpath
from .schema_validation import validate_schema

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1035_HELP = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
COLUMN_TYPES = ["boolean", "date", "integer", "number", "string"]
COLUMN_FORMATS = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"]


def dns1035_errors(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _DNS1035.fullmatch(value):
        out.append(DNS1035_HELP)
    return out


def apply_defaults(crd: Obj) -> None:
    """The v1 defaults: singular and listKind from kind, conversion strategy None."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict):
        kind = names.get("kind")
        if isinstance(kind, str) and kind:
            if not names.get("singular"):
                names["singular"] = kind.lower()
            if not names.get("listKind"):
                names["listKind"] = kind + "List"
    conv = spec.get("conversion")
    if not isinstance(conv, dict):
        spec["conversion"] = {"strategy": "None"}
    elif not conv.get("strategy"):
        conv["strategy"] = "None"


def versions_of(crd: Obj) -> list[dict[str, Any]]:
    spec = crd.get("spec") or {}
    vs = spec.get("versions") if isinstance(spec, dict) else None
    return [v for v in vs if isinstance(v, dict)] if isinstance(vs, list) else []


def storage_version(crd: Obj) -> str:
    for v in versions_of(crd):
        if v.get("storage") is True:
            return str(v.get("name") or "")
    return ""


def _mapping(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def validate(crd: Obj, old: Obj | None = None) -> list[FieldError]:
    """Every problem of a CRD to be created (``old`` None) or replacing ``old``."""
    errs: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [fe.required("spec")]
    meta = crd.get("metadata") or {}
    names = _mapping(spec.get("names"))
    group = _str(spec.get("group"))
    name = _str(meta.get("name"))
    plural = _str(names.get("plural"))
    if old is None:
        problems = [] if is_dns_subdomain(name) else [SUBDOMAIN_HELP]
        if name != f"{plural}.{group}":
            problems.append('must be spec.names.plural+"."+spec.group')
        if problems:
            errs.append(fe.invalid("metadata.name", name, ", ".join(problems)))

    if not group:
        errs.append(fe.required("spec.group"))
    elif not is_dns_subdomain(group):
        errs.append(fe.invalid("spec.group", group, SUBDOMAIN_HELP))
    elif "." not in group:
        errs.append(fe.invalid("spec.group", group, "should be a domain with at least one dot"))

    errs += _approval(group, meta)

    scope = spec.get("scope")
    if not scope:
        errs.append(fe.required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(fe.not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))

    if spec.get("preserveUnknownFields") is True:
        errs.append(
            fe.invalid(
                "spec.preserveUnknownFields",
                True,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
                "spec.versions[*].schema instead",
            )
        )

    raw_versions = spec.get("versions")
    versions = versions_of(crd)
    seen: set[str] = set()
    unique = True
    storage = 0
    for i, v in enumerate(versions):
        vpath = f"spec.versions[{i}]"
        vname = _str(v.get("name"))
        if vname in seen:
            unique = False
        seen.add(vname)
        if v.get("storage") is True:
            storage += 1
        for problem in dns1035_errors(vname):
            errs.append(fe.invalid(f"{vpath}.name", vname, problem))
        errs += _validate_version(v, vpath)
    if not unique:
        errs.append(fe.invalid("spec.versions", raw_versions, "must contain unique version names"))
    if storage != 1:
        errs.append(
            fe.invalid(
                "spec.versions",
                raw_versions or [],
                "must have exactly one version marked as storage version",
            )
        )

    for f in ("plural", "singular", "kind", "listKind"):
        if not _str(names.get(f)):
            errs.append(fe.required(f"spec.names.{f}"))
    errs += _validate_names(names, "spec.names")

    conv = spec.get("conversion")
    strategy = conv.get("strategy") if isinstance(conv, dict) else "None"
    if strategy != "None":
        # berth calls no conversion webhooks: only the None strategy can be honoured
        errs.append(fe.not_supported("spec.conversion.strategy", strategy, ["None"]))

    errs += validate_stored_versions(crd)

    if old is not None:
        errs += validate_update(crd, old)
    return errs


def validate_update(crd: Obj, old: Obj) -> list[FieldError]:
    """What an update of ``old`` may not change: group, scope and plural."""
    errs: list[FieldError] = []
    spec = _mapping(crd.get("spec"))
    ospec = _mapping(old.get("spec"))
    for f in ("group", "scope"):
        if spec.get(f) != ospec.get(f):
            errs.append(fe.invalid(f"spec.{f}", spec.get(f), "field is immutable"))
    plural = _mapping(spec.get("names")).get("plural")
    if plural != _mapping(ospec.get("names")).get("plural"):
        errs.append(fe.invalid("spec.names.plural", plural, "field is immutable"))
    return errs


APPROVAL_ANNOTATION = "api-approved.kubernetes.io"


def _protected(group: str) -> bool:
    return any(group == d or group.endswith("." + d) for d in ("k8s.io", "kubernetes.io"))


def _approval(group: str, meta: Obj) -> list[FieldError]:
    """Groups under k8s.io and kubernetes.io belong to Kubernetes: a CRD there must say it
    was approved (or that it is not) in an annotation, as kube-apiserver requires; this also
    keeps custom objects from landing beside built-in ones by accident."""
    if not _protected(group):
        return []
    path = f"metadata.annotations[{APPROVAL_ANNOTATION}]"
    annotations = meta.get("annotations")
    value = annotations.get(APPROVAL_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(value, str) or not value:
        return [
            fe.required(
                path,
                f'protected groups must have approval annotation "{APPROVAL_ANNOTATION}", see'
                " https://github.com/kubernetes/enhancements/pull/1111",
            )
        ]
    if value.startswith("unapproved") or value.startswith(("https://", "http://")):
        return []
    return [
        fe.invalid(
            path,
            value,
            "protected groups must have approval annotation set to a URL or start with"
            ' "unapproved"',
        )
    ]


def _validate_names(names: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in ("plural", "singular"):
        v = _str(names.get(f))
        if v:
            errs += [fe.invalid(f"{path}.{f}", v, p) for p in dns1035_errors(v)]
    for f in ("kind", "listKind"):
        v = _str(names.get(f))
        if v:
            problems = dns1035_errors(v.lower())
            if problems:
                errs.append(
                    fe.invalid(
                        f"{path}.{f}",
                        v,
                        "may have mixed case, but should otherwise match: " + ",".join(problems),
                    )
                )
    for f in ("shortNames", "categories"):
        items = names.get(f)
        if items is None:
            continue
        if not isinstance(items, list):
            errs.append(fe.invalid(f"{path}.{f}", items, "must be a list of strings"))
            continue
        for i, item in enumerate(items):
            s = _str(item)
            errs += [fe.invalid(f"{path}.{f}[{i}]", item, p) for p in dns1035_errors(s)]
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(
            fe.invalid(
                f"{path}.listKind", names.get("listKind"), "kind and listKind may not be the same"
            )
        )
    return errs


def _validate_version(v: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    subresources = v.get("subresources")
    status_enabled = isinstance(subresources, dict) and isinstance(subresources.get("status"), dict)
    schema = v.get("schema")
    openapi = schema.get("openAPIV3Schema") if isinstance(schema, dict) else None
    if openapi is None:
        errs.append(fe.required(f"{path}.schema.openAPIV3Schema"))
    else:
        errs += validate_schema(
            openapi, f"{path}.schema.openAPIV3Schema", status_enabled=status_enabled
        )
    if isinstance(subresources, dict):
        errs += _validate_subresources(subresources, f"{path}.subresources")
    cols = v.get("additionalPrinterColumns")
    if isinstance(cols, list):
        for i, c in enumerate(cols):
            errs += _validate_column(c, f"{path}.additionalPrinterColumns[{i}]")
    elif cols is not None:
        errs.append(fe.invalid(f"{path}.additionalPrinterColumns", cols, "must be a list"))
    return errs


def _simple_path(s: str, path: str) -> list[FieldError]:
    if not s:
        return [fe.invalid(path, s, "must not be empty")]
    if not s.startswith("."):
        return [fe.invalid(path, s, "must be a simple json path starting with .")]
    return []


def _validate_subresources(subs: dict[str, Any], path: str) -> list[FieldError]:
    scale = subs.get("scale")
    if not isinstance(scale, dict):
        return []
    errs: list[FieldError] = []
    for f, prefixes, where in (
        ("specReplicasPath", (".spec.",), "under .spec"),
        ("statusReplicasPath", (".status.",), "under .status"),
    ):
        s = _str(scale.get(f))
        if not s:
            errs.append(fe.required(f"{path}.scale.{f}"))
            continue
        problems = _simple_path(s, f"{path}.scale.{f}")
        if problems:
            errs += problems
        elif not s.startswith(prefixes):
            errs.append(fe.invalid(f"{path}.scale.{f}", s, f"should be a json path {where}"))
    sel = _str(scale.get("labelSelectorPath"))
    if sel:
        problems = _simple_path(sel, f"{path}.scale.labelSelectorPath")
        if problems:
            errs += problems
        elif not sel.startswith((".spec.", ".status.")):
            errs.append(
                fe.invalid(
                    f"{path}.scale.labelSelectorPath",
                    sel,
                    "should be a json path under either .spec or .status",
                )
            )
    return errs


def _validate_column(c: Any, path: str) -> list[FieldError]:
    if not isinstance(c, dict):
        return [fe.invalid(path, c, "must be an object")]
    errs: list[FieldError] = []
    if not _str(c.get("name")):
        errs.append(fe.required(f"{path}.name"))
    t = c.get("type")
    if not t:
        errs.append(fe.required(f"{path}.type", "must be one of " + ",".join(COLUMN_TYPES)))
    elif t not in COLUMN_TYPES:
        errs.append(fe.invalid(f"{path}.type", t, "must be one of " + ",".join(COLUMN_TYPES)))
    f = c.get("format")
    if f and f not in COLUMN_FORMATS:
        errs.append(fe.invalid(f"{path}.format", f, "must be one of " + ",".join(COLUMN_FORMATS)))
    p = _str(c.get("jsonPath"))
    if not p:
        errs.append(fe.required(f"{path}.JSONPath"))
    else:
        problems = _simple_path(p, f"{path}.JSONPath")
        if not problems:
            try:
                jsonpath.parse(p)
            except jsonpath.PathError as exc:
                problems = [fe.invalid(f"{path}.JSONPath", p, str(exc))]
        errs += problems
    return errs


def validate_stored_versions(crd: Obj) -> list[FieldError]:
    status = _mapping(crd.get("status"))
    stored = status.get("storedVersions") or []
    path = "status.storedVersions"
    if not isinstance(stored, list) or not stored:
        return [fe.invalid(path, stored, "must have at least one stored version")]
    errs: list[FieldError] = []
    names = {str(v.get("name")): v for v in versions_of(crd)}
    for vname, v in names.items():
        if v.get("storage") is True and vname not in stored:
            errs.append(fe.invalid(path, stored, f"must have the storage version {vname}"))
    for i, s in enumerate(stored):
        if s not in names:
            errs.append(
                fe.invalid(
                    f"{path}[{i}]",
                    s,
                    f"missing from spec.versions; {s} was previously a storage version, and must "
                    f"remain in spec.versions until a storage migration ensures no data remains "
                    f"persisted in {s} and removes {s} from status.storedVersions",
                )
            )
    return errs
