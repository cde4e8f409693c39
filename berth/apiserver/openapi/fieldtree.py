"""Unknown fields of an object, found (and dropped) with a tree compiled from its schema.

kube-apiserver decodes a body into Go structs: a field the struct does not declare is
dropped, and reported as ``unknown field "spec.containers[0].imagePullPolicyy"`` (a warning,
or an error with ``fieldValidation=Strict``). Our objects stay JSON, so this module plays
that part: :func:`compile_kind` turns a kind's definition into a tree of the declared
fields, once per kind, and :func:`unknown_fields` walks an object along it, reporting each
undeclared field in upstream's path syntax and removing it.

The tree holds only what can hold an unknown field: objects with declared properties, and
the lists and maps leading to them. Strings, numbers, free-form maps (labels) and
free-form objects (``RawExtension``, ``FieldsV1``, ``JSON``) compile to ``None`` and are
never visited, so the walk costs a dictionary lookup per declared field present.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .schemas import JSON_SCHEMA_REF

MAX_REPORTED = 100
"""Unknown fields reported per object at most (upstream's bound); all are dropped."""

OBJECT = 0
LIST = 1
MAP = 2


class Node:
    """A compiled schema node: an object's declared ``fields`` (name -> child, ``None`` for
    a field never walked), or the ``child`` of a list's items or a map's values."""

    __slots__ = ("child", "fields", "kind")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.fields: dict[str, Node | None] = {}
        self.child: Node | None = None


class _Compiler:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.named: dict[str, Node | None] = {}

    def definition(self, name: str) -> Node | None:
        if name in self.named:
            return self.named[name]
        schema = self.defs.get(name)
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            node = self.compile(schema) if isinstance(schema, dict) else None
            self.named[name] = node
            return node
        # Objects are entered before their fields are compiled: definitions may recurse
        # (JSONSchemaProps holds JSONSchemaProps).
        node = Node(OBJECT)
        self.named[name] = node
        self._fill(node, schema["properties"])
        return node

    def _fill(self, node: Node, properties: Mapping[str, Any]) -> None:
        for field, sub in properties.items():
            node.fields[field] = self.compile(sub) if isinstance(sub, dict) else None

    def compile(self, schema: Mapping[str, Any]) -> Node | None:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.definition(ref.removeprefix(JSON_SCHEMA_REF))
        if schema.get("x-kubernetes-preserve-unknown-fields") is True:
            return None
        properties = schema.get("properties")
        if isinstance(properties, dict):
            node = Node(OBJECT)
            self._fill(node, properties)
            return node
        items = schema.get("items")
        extra = schema.get("additionalProperties")
        inner = items if isinstance(items, dict) else extra if isinstance(extra, dict) else None
        if inner is None:
            return None
        child = self.compile(inner)
        if child is None:
            return None
        node = Node(LIST if inner is items else MAP)
        node.child = child
        return node


def compile_kind(defs: Mapping[str, Any], name: str) -> Node | None:
    """The field tree of definition ``name`` (``None``: nothing in it can be unknown)."""
    return _Compiler(defs).definition(name)


def compile_schema(defs: Mapping[str, Any], schema: Mapping[str, Any]) -> Node | None:
    """The field tree of a schema given inline (references resolve into ``defs``)."""
    return _Compiler(defs).compile(schema)


def _walk(node: Node, value: Any, path: str, found: list[str]) -> None:
    kind = node.kind
    if kind == OBJECT:
        if type(value) is not dict:
            return
        fields = node.fields
        unknown: list[str] | None = None
        for key, child_value in value.items():
            if key in fields:
                child = fields[key]
                if child is not None and child_value is not None:
                    _walk(child, child_value, f"{path}.{key}" if path else key, found)
            else:
                if unknown is None:
                    unknown = []
                unknown.append(key)
                found.append(f"{path}.{key}" if path else key)
        if unknown is not None:
            for key in unknown:
                del value[key]
    elif kind == LIST:
        if type(value) is list:
            child = node.child
            assert child is not None
            for index, item in enumerate(value):
                if item is not None:
                    _walk(child, item, f"{path}[{index}]", found)
    elif type(value) is dict:
        child = node.child
        assert child is not None
        for key, item in value.items():
            if item is not None:
                _walk(child, item, f"{path}.{key}" if path else key, found)


def unknown_fields(tree: Node | None, obj: Any) -> list[str]:
    """Remove from ``obj`` (in place) every field ``tree`` does not declare; return their
    paths in document order (``spec.containers[0].imagePullPolicyy``), at most
    :data:`MAX_REPORTED`."""
    if tree is None:
        return []
    found: list[str] = []
    _walk(tree, obj, "", found)
    return found[:MAX_REPORTED]
