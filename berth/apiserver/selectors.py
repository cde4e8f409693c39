"""Selectors as the API server reads them from query strings.

Parsing and matching live in :mod:`berth.api.selectors` (shared with the clients); this
module turns their errors into 400 Status answers and holds the fields each kind supports in
``fieldSelector`` (``metadata.name``, ``spec.nodeName`` ...).
"""

from __future__ import annotations

from collections.abc import Callable

from berth.api import selectors as api_selectors
from berth.api.meta import Obj, get_path
from berth.api.selectors import (
    EVERYTHING,
    NO_FIELDS,
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    Requirement,
    SelectorError,
    pinned_field_value,
    selector_to_string,
)

from .errors import bad_request

__all__ = [
    "EVERYTHING",
    "FIELDS_BY_KIND",
    "NO_FIELDS",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "parse_field_selector",
    "parse_label_selector",
    "pinned_field_value",
    "selector_from_label_selector_object",
    "selector_to_string",
]


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


# --- the fields each kind supports in field selectors ------------------------------------------

_str = api_selectors.field_value


def _path_getter(*path: str) -> Callable[[Obj], str]:
    return api_selectors.path_getter(*path)


_COMMON: dict[str, Callable[[Obj], str]] = {
    "metadata.name": _path_getter("metadata", "name"),
    "metadata.namespace": _path_getter("metadata", "namespace"),
}

FIELDS_BY_KIND: dict[str, dict[str, Callable[[Obj], str]]] = {
    "Pod": {
        "spec.nodeName": _path_getter("spec", "nodeName"),
        "spec.restartPolicy": _path_getter("spec", "restartPolicy"),
        "spec.schedulerName": _path_getter("spec", "schedulerName"),
        "spec.serviceAccountName": _path_getter("spec", "serviceAccountName"),
        "status.phase": _path_getter("status", "phase"),
        "status.podIP": _path_getter("status", "podIP"),
        "status.nominatedNodeName": _path_getter("status", "nominatedNodeName"),
    },
    "Node": {"spec.unschedulable": lambda o: _str(bool(get_path(o, "spec", "unschedulable")))},
    "Event": {
        f"involvedObject.{f}": _path_getter("involvedObject", f)
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    }
    | {
        "reason": _path_getter("reason"),
        "source": _path_getter("source", "component"),
        "type": _path_getter("type"),
    },
    "Namespace": {"status.phase": _path_getter("status", "phase")},
    "Secret": {"type": _path_getter("type")},
    "ReplicaSet": {"status.replicas": _path_getter("status", "replicas")},
}


def parse_field_selector(s: str | None, kind: str) -> FieldSelector:
    """Parse ``fieldSelector`` for objects of ``kind``; unknown fields are a 400."""
    try:
        return api_selectors.parse_field_selector(s, _COMMON | FIELDS_BY_KIND.get(kind, {}))
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
