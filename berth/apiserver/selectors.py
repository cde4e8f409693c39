"""Selectors as the API server reads them from query strings.

Parsing and matching live in :mod:`berth.api.selectors` (shared with the clients); this
module turns their errors into 400 Status answers. The fields a kind supports in
``fieldSelector`` beyond ``metadata.name`` and ``metadata.namespace`` come from its strategy
(``KindStrategy.field_selectors``).
"""

from __future__ import annotations

from collections.abc import Mapping

from berth.api import selectors as api_selectors
from berth.api.selectors import (
    EVERYTHING,
    NO_FIELDS,
    FieldGetter,
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    Requirement,
    SelectorError,
    path_getter,
    pinned_field_value,
    selector_to_string,
)
from berth.api.selectors import field_value as field_string

from .errors import bad_request

__all__ = [
    "COMMON_FIELDS",
    "EVERYTHING",
    "NO_FIELDS",
    "FieldGetter",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "field_string",
    "parse_field_selector",
    "parse_label_selector",
    "path_getter",
    "pinned_field_value",
    "selector_from_label_selector_object",
    "selector_to_string",
]

COMMON_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": path_getter("metadata", "name"),
    "metadata.namespace": path_getter("metadata", "namespace"),
}


def parse_label_selector(s: str | None) -> LabelSelector:
    """Parse ``labelSelector``; raises a 400 :class:`ApiError` on bad syntax."""
    try:
        return api_selectors.parse_label_selector(s)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None


def selector_from_label_selector_object(sel: object) -> LabelSelector:
    """A ``metav1.LabelSelector`` as a selector; an invalid one is a 400."""
    try:
        return api_selectors.label_selector_from_object(sel)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None


def parse_field_selector(s: str | None, fields: Mapping[str, FieldGetter]) -> FieldSelector:
    """Parse ``fieldSelector`` over ``metadata.name``, ``metadata.namespace`` and ``fields``
    (the kind's own selectable fields, from its strategy); bad syntax or an unknown field is
    a 400."""
    try:
        return api_selectors.parse_field_selector(s, {**COMMON_FIELDS, **fields})
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
