"""A version's ``openAPIV3Schema`` compiled once into a tree the value walkers use.

Compiling happens when a CRD is (re)loaded, never per request: validating, defaulting and
pruning a custom object then walk only the object, looking children up in dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .regex import Pattern, compile_pattern

MAX_SCHEMA_DEPTH = 64
"""Deepest schema nesting compiled (deeper parts are treated as preserving unknown fields);
definition validation refuses such schemas before they are stored."""


@dataclass(slots=True)
class Schema:
    type: str = ""
    nullable: bool = False
    format: str = ""
    properties: dict[str, Schema] = field(default_factory=dict)
    # None: no additionalProperties; True/False: the boolean form; Schema: the schema form
    additional: Schema | bool | None = None
    items: Schema | None = None
    required: tuple[str, ...] = ()
    enum: list[Any] | None = None
    pattern: str = ""
    regex: Pattern | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    multiple_of: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_properties: int | None = None
    max_properties: int | None = None
    unique_items: bool = False
    has_default: bool = False
    default: Any = None
    preserve_unknown: bool = False
    int_or_string: bool = False
    embedded: bool = False
    all_of: tuple[Schema, ...] = ()
    any_of: tuple[Schema, ...] = ()
    one_of: tuple[Schema, ...] = ()
    not_: Schema | None = None
    # any property in the tree has a default (lets defaulting skip whole subtrees)
    defaults_below: bool = False

    def child(self, name: str) -> Schema | None:
        """The schema of property ``name`` (or of additionalProperties)."""
        s = self.properties.get(name)
        if s is not None:
            return s
        return self.additional if isinstance(self.additional, Schema) else None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return int(v)


def _schemas(v: Any, depth: int) -> tuple[Schema, ...]:
    if not isinstance(v, list):
        return ()
    return tuple(compile_schema(x, depth + 1) for x in v if isinstance(x, dict))


def compile_schema(props: Any, depth: int = 0) -> Schema:
    """Compile a JSONSchemaProps mapping (already validated as a CRD schema)."""
    if not isinstance(props, dict) or depth > MAX_SCHEMA_DEPTH:
        return Schema(preserve_unknown=True)
    s = Schema()
    s.type = str(props.get("type") or "")
    s.nullable = props.get("nullable") is True
    s.format = str(props.get("format") or "")
    for name, sub in (props.get("properties") or {}).items():
        if isinstance(sub, dict):
            s.properties[str(name)] = compile_schema(sub, depth + 1)
    ap = props.get("additionalProperties")
    if isinstance(ap, bool):
        s.additional = ap
    elif isinstance(ap, dict):
        s.additional = compile_schema(ap, depth + 1)
    items = props.get("items")
    if isinstance(items, dict):
        s.items = compile_schema(items, depth + 1)
    req = props.get("required")
    if isinstance(req, list):
        s.required = tuple(str(r) for r in req)
    if isinstance(props.get("enum"), list):
        s.enum = list(props["enum"])
    pattern = props.get("pattern")
    if isinstance(pattern, str) and pattern:
        s.pattern = pattern
        s.regex = compile_pattern(pattern)
    s.minimum = _num(props.get("minimum"))
    s.maximum = _num(props.get("maximum"))
    s.exclusive_minimum = props.get("exclusiveMinimum") is True
    s.exclusive_maximum = props.get("exclusiveMaximum") is True
    s.multiple_of = _num(props.get("multipleOf"))
    s.min_length = _int(props.get("minLength"))
    s.max_length = _int(props.get("maxLength"))
    s.min_items = _int(props.get("minItems"))
    s.max_items = _int(props.get("maxItems"))
    s.min_properties = _int(props.get("minProperties"))
    s.max_properties = _int(props.get("maxProperties"))
    s.unique_items = props.get("uniqueItems") is True
    if "default" in props:
        s.has_default = True
        s.default = props["default"]
    s.preserve_unknown = props.get("x-kubernetes-preserve-unknown-fields") is True
    s.int_or_string = props.get("x-kubernetes-int-or-string") is True
    s.embedded = props.get("x-kubernetes-embedded-resource") is True
    s.all_of = _schemas(props.get("allOf"), depth)
    s.any_of = _schemas(props.get("anyOf"), depth)
    s.one_of = _schemas(props.get("oneOf"), depth)
    if isinstance(props.get("not"), dict):
        s.not_ = compile_schema(props["not"], depth + 1)
    below = [*s.properties.values()]
    if isinstance(s.additional, Schema):
        below.append(s.additional)
    if s.items is not None:
        below.append(s.items)
    s.defaults_below = any(c.has_default or c.defaults_below for c in below)
    return s
