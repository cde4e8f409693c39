"""Checks of a CRD version's ``openAPIV3Schema``: the keywords CRDs allow and the rules of a
structural schema, with upstream's field paths (``...openAPIV3Schema.properties[spec].type``)
and messages."""

from __future__ import annotations

import json
from typing import Any

from berth.apiserver.errors import FieldError

from . import fielderrors as fe
from . import values
from .regex import PatternError, compile_pattern
from .schema import MAX_SCHEMA_DEPTH, compile_schema

OPENAPI_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
_UNSUPPORTED = (
    ("id", "id is not supported"),
    ("additionalItems", "additionalItems is not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("definitions", "definitions is not supported"),
    ("dependencies", "dependencies is not supported"),
    ("$ref", "$ref is not supported"),
)
# What a value validation (inside allOf/anyOf/oneOf/not) may not carry to be structural.
_JUNCTOR_FORBIDDEN = (
    ("type", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
)
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]

ROOT, FIELD, ITEM = "root", "field", "item"


def validate_schema(schema: Any, path: str, *, status_enabled: bool) -> list[FieldError]:
    """Problems of one version's openAPIV3Schema (``path`` names it)."""
    if not isinstance(schema, dict):
        return [fe.invalid(path, "", "must be an object")]
    errs: list[FieldError] = []
    if schema.get("nullable") is True:
        errs.append(fe.forbidden(f"{path}.nullable", "nullable cannot be true at the root"))
    _node(schema, path, ROOT, errs, 0, embedded_meta=False)
    if not errs:
        _defaults(schema, path, errs)
    del status_enabled  # the root-only keyword restriction is covered by the structural rules
    return errs


def _node(
    s: dict[str, Any],
    path: str,
    level: str,
    errs: list[FieldError],
    depth: int,
    *,
    embedded_meta: bool,
) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        errs.append(fe.forbidden(path, f"must not be nested deeper than {MAX_SCHEMA_DEPTH} levels"))
        return
    t = s.get("type")
    if t is not None and not isinstance(t, str):
        errs.append(fe.invalid(f"{path}.type", t, "must be a string"))
        t = ""
    t = t or ""
    if t == "null":
        errs.append(
            fe.forbidden(
                f"{path}.type", "type cannot be set to null, use nullable as an alternative"
            )
        )
    elif t and t not in OPENAPI_TYPES:
        errs.append(fe.not_supported(f"{path}.type", t, OPENAPI_TYPES))
    for k, why in _UNSUPPORTED:
        if k in s:
            errs.append(fe.forbidden(f"{path}.{k}", why))
    if s.get("uniqueItems") is True:
        errs.append(
            fe.forbidden(
                f"{path}.uniqueItems",
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    preserve = s.get("x-kubernetes-preserve-unknown-fields")
    if preserve is not None and preserve is not True:
        errs.append(
            fe.invalid(
                f"{path}.x-kubernetes-preserve-unknown-fields",
                preserve,
                "must be true or undefined",
            )
        )
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    embedded = s.get("x-kubernetes-embedded-resource") is True
    if embedded and embedded_meta:
        errs.append(
            fe.forbidden(
                f"{path}.x-kubernetes-embedded-resource", "must not be used inside of resource meta"
            )
        )
    if int_or_string and preserve is True:
        errs.append(
            fe.invalid(
                f"{path}.x-kubernetes-preserve-unknown-fields",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if int_or_string and embedded:
        errs.append(
            fe.invalid(
                f"{path}.x-kubernetes-embedded-resource",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    pattern = s.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            errs.append(fe.invalid(f"{path}.pattern", pattern, "must be a string"))
        else:
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                errs.append(
                    fe.invalid(
                        f"{path}.pattern",
                        pattern,
                        f"must be a valid regular expression, but isn't: {exc}",
                    )
                )
    if "enum" in s and not isinstance(s["enum"], list):
        errs.append(fe.invalid(f"{path}.enum", s["enum"], "must be a list"))
    if "required" in s and not (
        isinstance(s["required"], list) and all(isinstance(r, str) for r in s["required"])
    ):
        errs.append(fe.invalid(f"{path}.required", s["required"], "must be a list of strings"))

    props = s.get("properties")
    if props is not None and not isinstance(props, dict):
        errs.append(fe.invalid(f"{path}.properties", props, "must be an object"))
        props = None
    ap = s.get("additionalProperties")
    if ap is not None and not isinstance(ap, dict | bool):
        errs.append(fe.invalid(f"{path}.additionalProperties", ap, "must be a schema or a boolean"))
        ap = None
    if ap is not None and props and (ap is False or isinstance(ap, dict)):
        errs.append(
            fe.forbidden(
                f"{path}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    if ap is not None:
        if level == ROOT:
            errs.append(
                fe.forbidden(f"{path}.additionalProperties", "must not be used at the root")
            )
        if embedded:
            errs.append(
                fe.forbidden(
                    f"{path}.additionalProperties",
                    "must not be used if x-kubernetes-embedded-resource is set",
                )
            )
        if isinstance(ap, dict):
            _node(ap, f"{path}.additionalProperties", FIELD, errs, depth + 1, embedded_meta=False)

    items = s.get("items")
    if isinstance(items, list):
        errs.append(fe.forbidden(f"{path}.items", "items must be a schema object and not an array"))
    elif isinstance(items, dict):
        _node(items, f"{path}.items", ITEM, errs, depth + 1, embedded_meta=False)
    elif items is not None:
        errs.append(fe.invalid(f"{path}.items", items, "must be a schema"))
    elif t == "array":
        errs.append(fe.required(f"{path}.items", "must be specified"))

    for name, sub in (props or {}).items():
        sub_path = f"{path}.properties[{name}]"
        if not isinstance(sub, dict):
            errs.append(fe.invalid(sub_path, sub, "must be a schema"))
            continue
        in_meta = embedded_meta or ((level == ROOT or embedded) and name == "metadata")
        _node(sub, sub_path, FIELD, errs, depth + 1, embedded_meta=in_meta)

    # structural invariants
    if embedded and t != "object":
        if not t:
            errs.append(
                fe.required(
                    f"{path}.type", "must be object if x-kubernetes-embedded-resource is true"
                )
            )
        else:
            errs.append(
                fe.invalid(
                    f"{path}.type", t, "must be object if x-kubernetes-embedded-resource is true"
                )
            )
    elif not t and not int_or_string and preserve is not True:
        why = {
            ROOT: "must not be empty at the root",
            ITEM: "must not be empty for specified array items",
            FIELD: "must not be empty for specified object fields",
        }[level]
        errs.append(fe.required(f"{path}.type", why))
    if level == ROOT and t and t != "object":
        errs.append(fe.invalid(f"{path}.type", t, "must be object at the root"))
    check_meta = level == ROOT or embedded
    if check_meta and props:
        for name in ("kind", "apiVersion"):
            sub = props.get(name)
            if isinstance(sub, dict) and sub.get("type") != "string":
                errs.append(
                    fe.invalid(
                        f"{path}.properties[{name}].type", sub.get("type") or "", "must be string"
                    )
                )
    meta = (props or {}).get("metadata")
    if isinstance(meta, dict):
        meta_path = f"{path}.properties[metadata]"
        if check_meta and meta.get("type") != "object":
            errs.append(fe.invalid(f"{meta_path}.type", meta.get("type") or "", "must be object"))
        if level == ROOT:
            rest = {k: v for k, v in meta.items() if k not in ("type", "default", "description")}
            names = rest.pop("properties", None) or {}
            extra = set(names) - {"name", "generateName"}
            if rest or extra:
                errs.append(
                    fe.forbidden(
                        meta_path,
                        "must not specify anything other than name and generateName, but "
                        "metadata is implicitly specified",
                    )
                )
    if embedded and preserve is not True and not props:
        errs.append(
            fe.required(
                f"{path}.properties",
                "must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields",
            )
        )
    _junctors(s, path, errs, depth)
    _list_type(s, path, errs)


def _junctors(s: dict[str, Any], path: str, errs: list[FieldError], depth: int) -> None:
    for key in ("allOf", "anyOf", "oneOf"):
        subs = s.get(key)
        if subs is None:
            continue
        if not isinstance(subs, list):
            errs.append(fe.invalid(f"{path}.{key}", subs, "must be a list of schemas"))
            continue
        if key == "anyOf" and subs == _INT_OR_STRING_ANY_OF and s.get("x-kubernetes-int-or-string"):
            continue
        for i, sub in enumerate(subs):
            if (
                key == "allOf"
                and i == 0
                and isinstance(sub, dict)
                and sub.get("anyOf") == _INT_OR_STRING_ANY_OF
            ):
                continue
            _value_validation(sub, f"{path}.{key}[{i}]", errs, depth + 1)
    if "not" in s:
        _value_validation(s["not"], f"{path}.not", errs, depth + 1)


def _value_validation(s: Any, path: str, errs: list[FieldError], depth: int) -> None:
    if not isinstance(s, dict):
        errs.append(fe.invalid(path, s, "must be a schema"))
        return
    if depth > MAX_SCHEMA_DEPTH:
        errs.append(fe.forbidden(path, f"must not be nested deeper than {MAX_SCHEMA_DEPTH} levels"))
        return
    for k, why in _JUNCTOR_FORBIDDEN:
        v = s.get(k)
        if v not in (None, False, "", [], {}):
            errs.append(fe.forbidden(f"{path}.{k}", why))
    for name, sub in (s.get("properties") or {}).items():
        _value_validation(sub, f"{path}.properties[{name}]", errs, depth + 1)
    if isinstance(s.get("items"), dict):
        _value_validation(s["items"], f"{path}.items", errs, depth + 1)
    _junctors(s, path, errs, depth)


def _list_type(s: dict[str, Any], path: str, errs: list[FieldError]) -> None:
    lt = s.get("x-kubernetes-list-type")
    keys = s.get("x-kubernetes-list-map-keys")
    t = s.get("type") or ""
    if lt is not None:
        if t != "array":
            if not t:
                errs.append(
                    fe.required(
                        f"{path}.type", "must be array if x-kubernetes-list-type is specified"
                    )
                )
            else:
                errs.append(
                    fe.invalid(
                        f"{path}.type", t, "must be array if x-kubernetes-list-type is specified"
                    )
                )
        elif lt not in ("atomic", "set", "map"):
            errs.append(
                fe.not_supported(f"{path}.x-kubernetes-list-type", lt, ["atomic", "set", "map"])
            )
    if keys and lt != "map":
        if lt is None:
            errs.append(
                fe.required(
                    f"{path}.x-kubernetes-list-type",
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                )
            )
        else:
            errs.append(
                fe.invalid(
                    f"{path}.x-kubernetes-list-type",
                    lt,
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                )
            )
    if lt == "map":
        if not keys:
            errs.append(
                fe.required(
                    f"{path}.x-kubernetes-list-map-keys",
                    "must not be empty if x-kubernetes-list-type is map",
                )
            )
        items = s.get("items")
        if not isinstance(items, dict):
            errs.append(
                fe.required(f"{path}.items", "must have a schema if x-kubernetes-list-type is map")
            )
        elif items.get("type") != "object":
            errs.append(
                fe.invalid(
                    f"{path}.items.type",
                    items.get("type") or "",
                    "must be object if parent array's x-kubernetes-list-type is map",
                )
            )
        elif isinstance(keys, list):
            item_props = items.get("properties") or {}
            if any(k not in item_props for k in keys):
                errs.append(
                    fe.invalid(
                        f"{path}.x-kubernetes-list-map-keys",
                        keys,
                        "entries must all be names of item properties",
                    )
                )
            elif len(set(map(json.dumps, keys))) != len(keys):
                errs.append(
                    fe.invalid(
                        f"{path}.x-kubernetes-list-map-keys",
                        keys,
                        "must not contain duplicate entries",
                    )
                )


def _defaults(schema: dict[str, Any], path: str, errs: list[FieldError]) -> None:
    """Each default must be valid against its own schema (upstream validates and prunes them)."""

    def walk(s: Any, p: str, depth: int) -> None:
        if not isinstance(s, dict) or depth > MAX_SCHEMA_DEPTH:
            return
        if "default" in s and s["default"] is not None:
            if p.endswith(".properties[metadata]"):
                errs.append(fe.forbidden(f"{p}.default", "must not be set for metadata"))
            else:
                node = compile_schema(s, depth)
                for e in values.validate(node, s["default"]):
                    field = f"{p}.default" + (f".{e.field}" if e.field else "")
                    errs.append(FieldError(e.reason, field, e.message))
        for name, sub in (s.get("properties") or {}).items():
            walk(sub, f"{p}.properties[{name}]", depth + 1)
        if isinstance(s.get("items"), dict):
            walk(s["items"], f"{p}.items", depth + 1)
        if isinstance(s.get("additionalProperties"), dict):
            walk(s["additionalProperties"], f"{p}.additionalProperties", depth + 1)

    walk(schema, path, 0)
