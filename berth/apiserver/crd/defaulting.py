"""Schema defaults (``default:``) applied to custom objects, as upstream's structural defaulter.

A property absent from an object, or null while its schema is not nullable, takes a copy of
its default; the walk then goes on into the value (so nested defaults of a defaulted object
apply too). Upstream applies this when a request body is decoded and when stored data is read,
so objects stored before a default was added come back with it.
"""

from __future__ import annotations

import copy
from typing import Any

from .schema import Schema


def apply_defaults(schema: Schema, value: Any) -> None:
    """Fill defaults into ``value`` in place."""
    if not (schema.defaults_below or schema.has_default):
        return
    _default(schema, value)


def _default(s: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for name, prop in s.properties.items():
            if prop.has_default and prop.default is not None:
                current = value.get(name, _MISSING)
                if current is _MISSING or (current is None and not prop.nullable):
                    value[name] = copy.deepcopy(prop.default)
        if not s.defaults_below:
            return
        extra = s.additional if isinstance(s.additional, Schema) else None
        for k, v in value.items():
            sub = s.properties.get(k, extra)
            if sub is not None and (sub.defaults_below or sub.has_default):
                _default(sub, v)
    elif isinstance(value, list) and s.items is not None:
        items = s.items
        for i, v in enumerate(value):
            if v is None and items.has_default and items.default is not None and not items.nullable:
                value[i] = copy.deepcopy(items.default)
            _default(items, value[i])


_MISSING = object()


def prune_nulls(schema: Schema, value: Any) -> None:
    """Drop null values of non-nullable properties that have no default (upstream's
    ``PruneNonNullableNullsWithoutDefaults``): a client sending ``field: null`` means absent."""
    if isinstance(value, dict):
        for name in [k for k, v in value.items() if v is None]:
            prop = schema.child(name)
            if prop is not None and not prop.nullable and not prop.has_default:
                del value[name]
        extra = schema.additional if isinstance(schema.additional, Schema) else None
        for k, v in value.items():
            if isinstance(v, dict | list):
                sub = schema.properties.get(k, extra)
                if sub is not None:
                    prune_nulls(sub, v)
    elif isinstance(value, list) and schema.items is not None:
        for v in value:
            if isinstance(v, dict | list):
                prune_nulls(schema.items, v)
