"""core/v1 ReplicationControllers: the ReplicaSet's predecessor, with a plain label map as
its selector (``spec.selector: {app: web}``) instead of a ``metav1.LabelSelector``.

Defaults as upstream's: an empty selector and empty object labels are taken from the pod
template's labels, ``replicas`` is 1. Validation is a ReplicaSet's once the map is read as
``matchLabels`` (a selector is required and must match the template's labels); the template's
pods must restart ``Always``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.api.selectors import selector_from_set
from berth.apiserver.errors import FieldError, invalid_value, not_supported
from berth.apiserver.selectors import path_getter
from berth.apiserver.strategy import template_defaults
from berth.apiserver.tables import (
    AGE,
    NAME,
    WIDE_TEMPLATE,
    Cell,
    Column,
    Printer,
    age,
    created,
    int_or_zero,
    name_of,
)
from berth.apiserver.validation import workload_fields

from .base import KindStrategy


def map_selector_string(sel: Any) -> str:
    """``app=web,tier=db`` for a map selector; ``""`` for none or one that is not a map."""
    if not isinstance(sel, Mapping) or not sel:
        return ""
    return str(selector_from_set({str(k): str(v) for k, v in sel.items()}))


def _rc_row(o: Obj) -> list[Cell]:
    st = o.get("status") or {}
    desired = get_path(o, "spec", "replicas")
    containers = get_path(o, "spec", "template", "spec", "containers") or []
    return [
        name_of(o),
        1 if desired is None else int_or_zero(desired),
        int_or_zero(st.get("replicas")),
        int_or_zero(st.get("readyReplicas")),
        age(created(o)),
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        map_selector_string(get_path(o, "spec", "selector")) or "<none>",
    ]


REPLICATIONCONTROLLER = Printer(
    (
        NAME,
        Column("Desired", type="integer"),
        Column("Current", type="integer"),
        Column("Ready", type="integer"),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _rc_row,
)


def _template_labels(obj: Obj) -> Any:
    return get_path(obj, "spec", "template", "metadata", "labels")


class ReplicationControllerStrategy(KindStrategy):
    group = ""
    kind = "ReplicationController"
    empty_status: Mapping[str, Any] = {"replicas": 0}
    field_selectors = {"status.replicas": path_getter("status", "replicas")}
    columns = REPLICATIONCONTROLLER

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        labels = _template_labels(obj)
        if isinstance(labels, dict) and labels:
            if not spec.get("selector"):
                spec["selector"] = dict(labels)
            m = obj.get("metadata")
            if isinstance(m, dict) and not m.get("labels"):
                m["labels"] = dict(labels)
        spec.setdefault("replicas", 1)
        template_defaults(obj)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = {}  # as upstream: each required field of the spec is reported
        sel = spec.get("selector")
        if sel is not None and not isinstance(sel, dict):
            return [invalid_value("spec.selector", sel, "must be a map of labels")]
        # A ReplicaSet's rules with the map as matchLabels: required, matches the template.
        as_rs = {**obj, "spec": {**spec, "selector": {"matchLabels": sel} if sel else None}}
        errs = workload_fields(as_rs, needs_replicas=True)
        policy = get_path(obj, "spec", "template", "spec", "restartPolicy")
        if policy is not None and policy != "Always":
            errs.append(not_supported("spec.template.spec.restartPolicy", policy, ("Always",)))
        return errs

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return []  # unlike a ReplicaSet's, an RC's selector may change (upstream too)

    def scale_selector(self, obj: Obj) -> str:
        return map_selector_string(get_path(obj, "spec", "selector"))
