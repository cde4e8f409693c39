"""The JSON Schema definitions of :mod:`.definitions` turned back into OpenAPI schemas.

The ``kubernetes-validate`` file is upstream's OpenAPI v2 with JSON Schema spellings: every
optional field's ``type`` also admits ``"null"`` (``["string", "null"]``), references point
into ``#/$defs/``, ``apiVersion`` and ``kind`` carry an ``enum`` of their one value, and the
two scalar unions (IntOrString, Quantity) are ``oneOf`` lists. OpenAPI clients (kubectl's
explain, its client-side validation and strategic-merge patch metadata) read upstream's own
form, so :func:`convert` undoes those spellings: one ``type``, references into
``#/definitions/`` (v2) or ``#/components/schemas/`` (v3), no ``enum`` on the type fields,
``type: string`` (``format: int-or-string`` for IntOrString) for the unions. In v3 a
reference with siblings (a description) is wrapped in ``allOf`` as upstream does, since an
OpenAPI 3.0 ``$ref`` ignores its siblings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

JSON_SCHEMA_REF = "#/$defs/"
V2_REF = "#/definitions/"
V3_REF = "#/components/schemas/"
GVK_EXTENSION = "x-kubernetes-group-version-kind"
TYPE_FIELDS = ("apiVersion", "kind")

_SCALAR_UNIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "An integer or a string (a port number or name, a count or a percentage).",
        "type": "string",
        "format": "int-or-string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "A fixed-point quantity such as 100m, 1.5, 128Mi or 1e3, written as"
        " a string (a plain number is accepted).",
        "type": "string",
    },
}

GVK = tuple[str, str, str]


def _ref_name(ref: str) -> str:
    return ref.removeprefix(JSON_SCHEMA_REF)


def _convert(node: Any, prefix: str, v3: bool) -> Any:
    if isinstance(node, list):
        return [_convert(item, prefix, v3) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    ref: str | None = None
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            ref = prefix + _ref_name(value)
        elif key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
            elif kinds:
                out["type"] = kinds
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _convert(sub, prefix, v3) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") or key in (
            "allOf",
            "anyOf",
            "oneOf",
        ):
            out[key] = _convert(value, prefix, v3)
        else:
            out[key] = value
    if ref is not None:
        if v3 and out:
            out["allOf"] = [{"$ref": ref}]
        else:
            out = {"$ref": ref, **out}
    return out


def convert(name: str, schema: Mapping[str, Any], *, v3: bool) -> dict[str, Any]:
    """The OpenAPI form (v2, or v3 when ``v3``) of definition ``name``."""
    union = _SCALAR_UNIONS.get(name)
    if union is not None:
        return dict(union)
    out: dict[str, Any] = _convert(dict(schema), V3_REF if v3 else V2_REF, v3)
    properties = out.get("properties")
    if GVK_EXTENSION in out and isinstance(properties, dict):
        for field in TYPE_FIELDS:
            prop = properties.get(field)
            if isinstance(prop, dict) and "enum" in prop:
                properties[field] = {k: v for k, v in prop.items() if k != "enum"}
    return out


def references(schema: Any) -> Iterable[str]:
    """The definition names ``schema`` refers to (JSON Schema form), directly."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(JSON_SCHEMA_REF):
                yield _ref_name(ref)
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    stack.extend(value.values())
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def closure(defs: Mapping[str, Any], roots: Iterable[str]) -> list[str]:
    """``roots`` and every definition they reach, sorted (unknown names are skipped)."""
    seen: set[str] = set()
    stack = [r for r in roots if r in defs]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(r for r in references(defs[name]) if r in defs and r not in seen)
    return sorted(seen)


def gvk_index(defs: Mapping[str, Any]) -> dict[GVK, str]:
    """(group, version, kind) -> definition name, from ``x-kubernetes-group-version-kind``."""
    index: dict[GVK, str] = {}
    for name, schema in defs.items():
        for gvk in schema.get(GVK_EXTENSION, ()) if isinstance(schema, dict) else ():
            key = (str(gvk.get("group", "")), str(gvk.get("version", "")), str(gvk.get("kind")))
            # meta types (Status, DeleteOptions, WatchEvent) list one GVK per group: the
            # first definition naming a GVK keeps it
            index.setdefault(key, name)
    return index
