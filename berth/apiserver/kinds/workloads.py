"""Deployments, ReplicaSets and DaemonSets: defaults, pod templates, immutable selectors."""

from __future__ import annotations

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError
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
    template_cells,
)
from berth.apiserver.validation import selector_update, workload_fields

from .base import KindStrategy


def _deploy_row(o: Obj) -> list[Cell]:
    st = o.get("status") or {}
    desired = get_path(o, "spec", "replicas")
    desired = 1 if desired is None else int_or_zero(desired)
    return [
        name_of(o),
        f"{int_or_zero(st.get('readyReplicas'))}/{desired}",
        int_or_zero(st.get("updatedReplicas")),
        int_or_zero(st.get("availableReplicas")),
        age(created(o)),
        *template_cells(o),
    ]


DEPLOYMENT = Printer(
    (
        NAME,
        Column("Ready", description="Number of the pod with ready state"),
        Column(
            "Up-to-date",
            type="integer",
            description="Pods that have the desired template spec.",
        ),
        Column(
            "Available",
            type="integer",
            description="Pods ready for at least minReadySeconds.",
        ),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _deploy_row,
)


def _rs_row(o: Obj) -> list[Cell]:
    st = o.get("status") or {}
    desired = get_path(o, "spec", "replicas")
    return [
        name_of(o),
        1 if desired is None else int_or_zero(desired),
        int_or_zero(st.get("replicas")),
        int_or_zero(st.get("readyReplicas")),
        age(created(o)),
        *template_cells(o),
    ]


REPLICASET = Printer(
    (
        NAME,
        Column("Desired", type="integer"),
        Column("Current", type="integer"),
        Column("Ready", type="integer"),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _rs_row,
)


def _ds_row(o: Obj) -> list[Cell]:
    st = o.get("status") or {}
    node_sel = get_path(o, "spec", "template", "spec", "nodeSelector") or {}
    return [
        name_of(o),
        int_or_zero(st.get("desiredNumberScheduled")),
        int_or_zero(st.get("currentNumberScheduled")),
        int_or_zero(st.get("numberReady")),
        int_or_zero(st.get("updatedNumberScheduled")),
        int_or_zero(st.get("numberAvailable")),
        ",".join(f"{k}={v}" for k, v in sorted(node_sel.items())) or "<none>",
        age(created(o)),
        *template_cells(o),
    ]


DAEMONSET = Printer(
    (
        NAME,
        Column("Desired", type="integer"),
        Column("Current", type="integer"),
        Column("Ready", type="integer"),
        Column("Up-to-date", type="integer"),
        Column("Available", type="integer"),
        Column("Node Selector"),
        AGE,
        *WIDE_TEMPLATE,
    ),
    _ds_row,
)


class _Workload(KindStrategy):
    group = "apps"
    needs_replicas = True

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return workload_fields(obj, needs_replicas=self.needs_replicas)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return selector_update(old, new)


class DeploymentStrategy(_Workload):
    kind = "Deployment"
    columns = DEPLOYMENT

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        template_defaults(obj)


class ReplicaSetStrategy(_Workload):
    kind = "ReplicaSet"
    field_selectors = {"status.replicas": path_getter("status", "replicas")}
    columns = REPLICASET

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            template_defaults(obj)


class DaemonSetStrategy(_Workload):
    kind = "DaemonSet"
    needs_replicas = False
    columns = DAEMONSET

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("revisionHistoryLimit", 10)
        us = spec.setdefault("updateStrategy", {})
        if us.get("type", "RollingUpdate") == "RollingUpdate":
            us.setdefault("type", "RollingUpdate")
            ru = us.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        template_defaults(obj)
