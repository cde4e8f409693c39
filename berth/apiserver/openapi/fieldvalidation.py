"""``fieldValidation=Strict|Warn|Ignore``: what a write does with unknown and duplicate fields.

As kube-apiserver (``apiserver/pkg/endpoints/handlers``), for create, update and patch:

- unknown fields (not in the kind's schema) are never stored: they are dropped;
- ``Ignore``: silently; ``Warn`` (the default when the parameter is absent): one
  ``Warning: 299 - "unknown field \\"spec.foo\\""`` header per field (and per duplicate
  field); ``Strict``: the request fails, listing them all (``400 BadRequest``
  ``Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field
  "spec.foo", duplicate field "metadata.name"`` for create/update; ``422 Invalid`` on
  ``patch`` for a patch, with the patched object as the invalid value);
- any other value is a ``422`` on ``CreateOptions``/``UpdateOptions``/``PatchOptions``.

kubectl 1.32 sends ``fieldValidation=Strict`` by default (``--validate=strict``), ``Warn``
for ``--validate=warn`` and ``Ignore`` for ``--validate=false``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from berth.api.resources import ResourceDef
from berth.apiserver.client_warnings import add_warning
from berth.apiserver.errors import ApiError
from berth.apiserver.gostrings import go_quote

from . import duplicates, fieldtree
from .definitions import load_definitions
from .schemas import gvk_index

IGNORE = "Ignore"
WARN = "Warn"
STRICT = "Strict"
DIRECTIVES = ("", IGNORE, STRICT, WARN)  # sorted, as upstream lists them
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH_OP_FIELDS = frozenset({"op", "path", "from", "value"})
_OPTIONS_KIND = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


def directive(value: str | None, verb: str) -> str:
    """The directive of a write (``create``, ``update`` or ``patch``) from the query value;
    ``Warn`` when absent. An unknown value is a 422 naming the options kind."""
    if value is None or value == "":
        return WARN
    if value in DIRECTIVES:
        return value
    kind = _OPTIONS_KIND.get(verb, "CreateOptions")
    supported = ", ".join(f'"{v}"' for v in DIRECTIVES)
    why = f"Unsupported value: {go_quote(value)}: supported values: {supported}"
    raise ApiError(
        422,
        "Invalid",
        f'{kind}.meta.k8s.io "" is invalid: fieldValidation: {why}',
        details={
            "name": "",
            "group": "meta.k8s.io",
            "kind": kind,
            "causes": [
                {"reason": "FieldValueNotSupported", "message": why, "field": "fieldValidation"}
            ],
        },
    )


@functools.cache
def _index() -> dict[tuple[str, str, str], str]:
    return gvk_index(load_definitions())


@functools.cache
def _tree(group: str, version: str, kind: str) -> fieldtree.Node | None:
    name = _index().get((group, version, kind))
    if name is None:
        return None
    return fieldtree.compile_kind(load_definitions(), name)


def tree_for(rd: ResourceDef) -> fieldtree.Node | None:
    """The compiled field tree of ``rd``'s kind (``None``: a kind without a built-in schema,
    whose fields are all kept). Compiled on first use, then shared."""
    return _tree(rd.group, rd.version, rd.kind)


@dataclass
class Findings:
    """What strict decoding found in one request: each problem as it reads in a Strict
    error (``errors``) and as the warnings Warn sends (``warnings``)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.errors.append(text)
        self.warnings.append(text)

    def extend(self, other: Findings) -> None:
        self.errors += other.errors
        self.warnings += other.warnings

    def __bool__(self) -> bool:
        return bool(self.errors)


def body_duplicates(
    raw: bytes, content_type: str, value: Any, *, prefix: str = "", key_ends: int | None = None
) -> Findings:
    """The repeated keys of a request body (JSON: ``duplicate field "a.b"``; YAML: go-yaml's
    line messages, which Strict shows under one ``error converting YAML to JSON`` line).
    ``key_ends``: see :func:`duplicates.json_duplicates`."""
    found = Findings()
    if not raw:
        return found
    text = raw.lstrip()[:1]
    is_yaml = "yaml" in content_type.lower()
    if is_yaml and (text not in (b"{", b"[") or not duplicates.is_json(raw)):
        # YAML proper, or YAML flow style that merely starts like JSON (``{a: 1}``)
        lines = duplicates.yaml_duplicates(raw)
        if lines:
            found.errors.append(
                "error converting YAML to JSON: yaml: unmarshal errors:\n  " + "\n  ".join(lines)
            )
            found.warnings += lines
        return found
    if "protobuf" in content_type.lower():
        return found
    for path in duplicates.json_duplicates(raw, value, key_ends=key_ends):
        found.add(f"{prefix}duplicate field {go_quote(path)}")
    return found


def json_patch_findings(raw: bytes, operations: Any) -> Findings:
    """Duplicate and unknown keys in the operations of a JSON patch, upstream's
    ``json patch unknown field "[0].foo"``."""
    found = body_duplicates(raw, "application/json", operations, prefix="json patch ")
    if isinstance(operations, list):
        for index, op in enumerate(operations):
            if isinstance(op, dict):
                for key in op:
                    if key not in JSON_PATCH_OP_FIELDS:
                        path = go_quote(f"[{index}].{key}")
                        found.add(f"json patch unknown field {path}")
    return found


def drop_unknown(rd: ResourceDef, obj: Any) -> Findings:
    """Remove the fields ``rd``'s schema does not declare from ``obj`` (in place)."""
    return unknown_findings(fieldtree.unknown_fields(tree_for(rd), obj))


def unknown_findings(paths: Iterable[str]) -> Findings:
    """The findings of fields dropped as unknown (``spec.foo``), e.g. by a custom resource's
    schema (its strategy's ``prune_unknown``)."""
    found = Findings()
    for path in paths:
        found.add(f"unknown field {go_quote(path)}")
    return found


def _strict_message(findings: Findings) -> str:
    return "strict decoding error: " + ", ".join(findings.errors)


def enforce(how: str, rd: ResourceDef, findings: Findings) -> None:
    """Report ``findings`` of a create or update as ``how`` says (Strict: 400)."""
    if not findings or how == IGNORE:
        return
    if how == STRICT:
        raise ApiError(
            400,
            "BadRequest",
            f'{rd.kind} in version "{rd.version}" cannot be handled as a {rd.kind}:'
            f" {_strict_message(findings)}",
        )
    for text in findings.warnings:
        add_warning(text)


def enforce_patch(how: str, findings: Findings, patched: Any) -> None:
    """Report ``findings`` of a patch as ``how`` says (Strict: 422 on ``patch``, whose
    invalid value is the patched object, as upstream)."""
    if not findings or how == IGNORE:
        return
    if how == STRICT:
        value = go_quote(orjson.dumps(patched).decode())
        why = f"Invalid value: {value}: {_strict_message(findings)}"
        raise ApiError(
            422,
            "Invalid",
            f' "" is invalid: patch: {why}',
            details={
                "name": "",
                "causes": [{"reason": "FieldValueInvalid", "message": why, "field": "patch"}],
            },
        )
    for text in findings.warnings:
        add_warning(text)


def enforce_apply(how: str, findings: Findings) -> None:
    """Report the duplicate keys of a server-side apply body (Strict: 400 ``error strict
    decoding patch``)."""
    if not findings or how == IGNORE:
        return
    if how == STRICT:
        raise ApiError(
            400, "BadRequest", "error strict decoding patch: " + ", ".join(findings.errors)
        )
    for text in findings.warnings:
        add_warning(text)
