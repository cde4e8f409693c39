"""Pruning of unknown fields from custom objects, as upstream's structural pruning.

A field is kept when the schema names it (``properties``), gives a schema for any key
(``additionalProperties``) or preserves unknown fields (``x-kubernetes-preserve-unknown-fields``);
everything else is dropped before the object is validated and stored. At the root and in
``x-kubernetes-embedded-resource`` objects ``apiVersion``, ``kind`` and ``metadata`` are always
kept, and metadata keeps only ObjectMeta's fields.
"""

from __future__ import annotations

from typing import Any

from .schema import Schema

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def prune(schema: Schema, obj: dict[str, Any]) -> list[str]:
    """Prune ``obj`` (a whole custom object) in place; returns the dropped fields' paths
    (``spec.foo``), for ``fieldValidation`` warnings and errors."""
    dropped: list[str] = []
    _prune_object(schema, obj, "", dropped, resource_root=True)
    return dropped


def _prune_meta(meta: Any, path: str, dropped: list[str]) -> None:
    if isinstance(meta, dict):
        for k in [k for k in meta if k not in OBJECT_META_FIELDS]:
            del meta[k]
            dropped.append(f"{path}.{k}")


def _prune_object(
    s: Schema, obj: dict[str, Any], path: str, dropped: list[str], *, resource_root: bool
) -> None:
    prefix = f"{path}." if path else ""
    extra = s.additional if isinstance(s.additional, Schema) else None
    keep_all = s.preserve_unknown or s.additional is True
    for k in list(obj):
        if resource_root and k in ("apiVersion", "kind"):
            continue
        if resource_root and k == "metadata":
            _prune_meta(obj[k], f"{prefix}metadata", dropped)
            continue
        sub = s.properties.get(k, extra)
        if sub is None:
            if not keep_all:
                del obj[k]
                dropped.append(f"{prefix}{k}")
            continue
        _prune_value(sub, obj[k], f"{prefix}{k}", dropped)


def _prune_value(s: Schema, v: Any, path: str, dropped: list[str]) -> None:
    if s.int_or_string:
        return
    if isinstance(v, dict):
        if s.properties or s.additional is not None or not s.preserve_unknown or s.embedded:
            _prune_object(s, v, path, dropped, resource_root=s.embedded)
    elif isinstance(v, list) and s.items is not None:
        for i, item in enumerate(v):
            _prune_value(s.items, item, f"{path}[{i}]", dropped)
