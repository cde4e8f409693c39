"""HorizontalPodAutoscaler, served as ``autoscaling/v2`` (stored) and ``autoscaling/v1``.

v1 knows only a CPU utilization target; as upstream, what it cannot hold travels in
annotations so that a v1 client's read-modify-write keeps it: the other metrics
(``autoscaling.alpha.kubernetes.io/metrics``), ``behavior``
(``autoscaling.alpha.kubernetes.io/behavior``), and in reads the status' conditions and
current metrics (``.../conditions``, ``.../current-metrics``). Defaults (v2): ``minReplicas``
1, a CPU 80% utilization metric when none is given, and the behavior defaults when a
behavior is given (upstream's ``SetDefaults_HorizontalPodAutoscaler``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from berth.api.meta import Obj, get_path
from berth.api.quantity import QuantityError, parse_quantity
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError, invalid_value, not_supported, required
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
_ANNOTATIONS = (
    METRICS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    CONDITIONS_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
)
DEFAULT_CPU = 80
MAX_ANNOTATION_JSON = 64 * 1024
_METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
_TARGET_TYPES = ("AverageValue", "Utilization", "Value")
_POLICY_TYPES = ("Percent", "Pods")
_SELECT = ("Disabled", "Max", "Min")


def _json_annotation(annotations: Mapping[str, Any], key: str) -> Any:
    text = annotations.get(key)
    if not isinstance(text, str) or len(text) > MAX_ANNOTATION_JSON:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_cpu_utilization(m: Any) -> bool:
    return (
        isinstance(m, dict)
        and m.get("type") == "Resource"
        and get_path(m, "resource", "name") == "cpu"
        and get_path(m, "resource", "target", "type") == "Utilization"
    )


def v1_to_v2(obj: Obj) -> Obj:
    """An autoscaling/v1 object as autoscaling/v2 (``obj`` is not changed)."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v2"
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    spec = out.get("spec")
    if isinstance(spec, dict):
        metrics = _json_annotation(annotations, METRICS_ANNOTATION)
        metrics = [m for m in metrics if isinstance(m, dict)] if isinstance(metrics, list) else []
        cpu = spec.pop("targetCPUUtilizationPercentage", None)
        if cpu is not None:
            metrics = [m for m in metrics if not _is_cpu_utilization(m)]
            metrics.insert(
                0,
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu},
                    },
                },
            )
        if metrics:
            spec["metrics"] = metrics
        behavior = _json_annotation(annotations, BEHAVIOR_ANNOTATION)
        if isinstance(behavior, dict):
            spec["behavior"] = behavior
    status = out.get("status")
    if isinstance(status, dict):
        current = status.pop("currentCPUUtilizationPercentage", None)
        metrics_now = _json_annotation(annotations, CURRENT_METRICS_ANNOTATION)
        metrics_now = metrics_now if isinstance(metrics_now, list) else []
        if current is not None and not metrics_now:
            metrics_now = [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": current}},
                }
            ]
        if metrics_now:
            status["currentMetrics"] = metrics_now
        conditions = _json_annotation(annotations, CONDITIONS_ANNOTATION)
        if isinstance(conditions, list):
            status["conditions"] = conditions
    for key in _ANNOTATIONS:
        annotations.pop(key, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return out


def v2_to_v1(obj: Obj) -> Obj:
    """An autoscaling/v2 object as autoscaling/v1 (``obj`` is not changed)."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v1"
    meta = out.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    spec = out.get("spec")
    if isinstance(spec, dict):
        metrics = spec.pop("metrics", None) or []
        cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
        if cpu is not None:
            spec["targetCPUUtilizationPercentage"] = get_path(
                cpu, "resource", "target", "averageUtilization"
            )
        others = [m for m in metrics if m is not cpu]
        if others:
            annotations[METRICS_ANNOTATION] = json.dumps(others, separators=(",", ":"))
        behavior = spec.pop("behavior", None)
        if behavior:
            annotations[BEHAVIOR_ANNOTATION] = json.dumps(behavior, separators=(",", ":"))
    status = out.get("status")
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        for m in current:
            value = get_path(m, "resource", "current", "averageUtilization")
            if get_path(m, "resource", "name") == "cpu" and value is not None:
                status["currentCPUUtilizationPercentage"] = value
        if current:
            annotations[CURRENT_METRICS_ANNOTATION] = json.dumps(current, separators=(",", ":"))
        conditions = status.pop("conditions", None)
        if conditions:
            annotations[CONDITIONS_ANNOTATION] = json.dumps(conditions, separators=(",", ":"))
    if annotations:
        meta["annotations"] = annotations
    return out


# -- printing ---------------------------------------------------------------------------------


def _quantity_text(v: Any) -> str:
    try:
        return str(parse_quantity(v))
    except QuantityError:
        return str(v)


def _target_text(metric: Mapping[str, Any], current: Mapping[str, Any] | None) -> str:
    kind = metric.get("type")
    source = metric.get("resource") or metric.get("containerResource") or {}
    if kind not in ("Resource", "ContainerResource"):
        key = {"Pods": "pods", "Object": "object", "External": "external"}.get(str(kind), "")
        source = metric.get(key) or {}
        target = source.get("target") or {}
        value = target.get("averageValue") or target.get("value")
        name = get_path(source, "metric", "name") or ""
        now = "<unknown>"
        if current is not None:
            cur = (current.get(key) or {}).get("current") or {}
            shown = cur.get("averageValue") or cur.get("value")
            now = _quantity_text(shown) if shown is not None else now
        return f"{name}: {now}/{_quantity_text(value)}"
    name = str(source.get("name") or "")
    target = source.get("target") or {}
    cur = {}
    if current is not None:
        cur = (current.get("resource") or current.get("containerResource") or {}).get(
            "current"
        ) or {}
    if target.get("type") == "Utilization":
        util = cur.get("averageUtilization")
        now = f"{util}%" if util is not None else "<unknown>"
        return f"{name}: {now}/{target.get('averageUtilization')}%"
    value = cur.get("averageValue")
    now = _quantity_text(value) if value is not None else "<unknown>"
    return f"{name}: {now}/{_quantity_text(target.get('averageValue') or target.get('value'))}"


def targets_cell(obj: Obj) -> str:
    """The TARGETS column as kubectl 1.32 prints it (``cpu: 20%/50%``; ``<none>``; beyond
    two metrics ``+ N more...``)."""
    metrics = get_path(obj, "spec", "metrics") or []
    if not metrics:
        return "<none>"
    current = get_path(obj, "status", "currentMetrics") or []
    texts = []
    for i, m in enumerate(metrics):
        if not isinstance(m, dict):
            continue
        now = current[i] if i < len(current) and isinstance(current[i], dict) else None
        if now is not None and now.get("type") != m.get("type"):
            now = None
        texts.append(_target_text(m, now))
    shown = ", ".join(texts[:2])
    if len(texts) > 2:
        shown += f" + {len(texts) - 2} more..."
    return shown


def _row(o: Obj) -> list[Cell]:
    v2 = v1_to_v2(o) if o.get("apiVersion") == "autoscaling/v1" else o
    spec = v2.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    low = spec.get("minReplicas")
    return [
        name_of(o),
        f"{ref.get('kind')}/{ref.get('name')}",
        targets_cell(v2),
        "<unset>" if low is None else low,
        spec.get("maxReplicas", 0),
        get_path(v2, "status", "currentReplicas") or 0,
        age(created(o)),
    ]


HPA = Printer(
    (
        NAME,
        Column("Reference", description="Reference to the scaled target."),
        Column("Targets", description="Current and target values of the metrics."),
        Column("MinPods", type="string", description="Lower limit of replicas."),
        Column("MaxPods", type="integer", description="Upper limit of replicas."),
        Column("Replicas", type="integer", description="Current number of replicas."),
        AGE,
    ),
    _row,
)


# -- validation -------------------------------------------------------------------------------


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _metric_errors(i: int, m: Any) -> list[FieldError]:
    path = f"spec.metrics[{i}]"
    if not isinstance(m, dict):
        return [required(path)]
    kind = m.get("type")
    if kind not in _METRIC_TYPES:
        return [not_supported(f"{path}.type", kind, _METRIC_TYPES)]
    if kind not in ("Resource", "ContainerResource"):
        return []
    key = "resource" if kind == "Resource" else "containerResource"
    source = m.get(key)
    if not isinstance(source, dict):
        return [required(f"{path}.{key}")]
    errs: list[FieldError] = []
    if not source.get("name"):
        errs.append(required(f"{path}.{key}.name"))
    if kind == "ContainerResource" and not source.get("container"):
        errs.append(required(f"{path}.{key}.container"))
    target = source.get("target")
    tpath = f"{path}.{key}.target"
    if not isinstance(target, dict):
        return [*errs, required(tpath)]
    ttype = target.get("type")
    if ttype not in _TARGET_TYPES:
        return [*errs, not_supported(f"{tpath}.type", ttype, _TARGET_TYPES)]
    if ttype == "Utilization":
        util = target.get("averageUtilization")
        if util is None:
            errs.append(required(f"{tpath}.averageUtilization"))
        elif not _positive_int(util):
            errs.append(
                invalid_value(f"{tpath}.averageUtilization", util, "must be greater than 0")
            )
    elif ttype == "AverageValue":
        value = target.get("averageValue")
        if value is None:
            errs.append(required(f"{tpath}.averageValue"))
        else:
            try:
                ok = parse_quantity(value).nanos > 0
            except QuantityError:
                ok = False
            if not ok:
                errs.append(invalid_value(f"{tpath}.averageValue", value, "must be positive"))
    else:
        errs.append(not_supported(f"{tpath}.type", ttype, ("AverageValue", "Utilization")))
    return errs


def _rules_errors(path: str, rules: Any) -> list[FieldError]:
    if rules is None:
        return []
    if not isinstance(rules, dict):
        return [required(path)]
    errs: list[FieldError] = []
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and not (isinstance(window, int) and 0 <= window <= 3600):
        errs.append(
            invalid_value(
                f"{path}.stabilizationWindowSeconds", window, "must be less than or equal to 3600"
            )
        )
    select = rules.get("selectPolicy")
    if select is not None and select not in _SELECT:
        errs.append(not_supported(f"{path}.selectPolicy", select, _SELECT))
    for j, p in enumerate(rules.get("policies") or ()):
        ppath = f"{path}.policies[{j}]"
        if not isinstance(p, dict):
            errs.append(required(ppath))
            continue
        if p.get("type") not in _POLICY_TYPES:
            errs.append(not_supported(f"{ppath}.type", p.get("type"), _POLICY_TYPES))
        if not _positive_int(p.get("value")):
            errs.append(
                invalid_value(f"{ppath}.value", p.get("value"), "must be greater than zero")
            )
        period = p.get("periodSeconds")
        if not (isinstance(period, int) and _positive_int(period) and period <= 1800):
            errs.append(
                invalid_value(
                    f"{ppath}.periodSeconds",
                    period,
                    "must be greater than zero and less than or equal to 1800",
                )
            )
    return errs


def hpa_errors(obj: Obj) -> list[FieldError]:
    """Upstream's ValidateHorizontalPodAutoscaler rules, for a v2 object."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict):
        errs.append(required("spec.scaleTargetRef"))
    else:
        for key in ("kind", "name"):
            if not ref.get(key):
                errs.append(required(f"spec.scaleTargetRef.{key}"))
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    if low is not None and not _positive_int(low):
        errs.append(invalid_value("spec.minReplicas", low, "must be greater than or equal to 1"))
    if not _positive_int(high):
        errs.append(invalid_value("spec.maxReplicas", high, "must be greater than 0"))
    elif isinstance(low, int) and isinstance(high, int) and low > high:
        errs.append(
            invalid_value(
                "spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"
            )
        )
    for i, m in enumerate(spec.get("metrics") or ()):
        errs.extend(_metric_errors(i, m))
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        errs.extend(_rules_errors("spec.behavior.scaleUp", behavior.get("scaleUp")))
        errs.extend(_rules_errors("spec.behavior.scaleDown", behavior.get("scaleDown")))
    return errs


def _behavior_defaults(behavior: dict[str, Any]) -> None:
    for direction, window, policies in (
        (
            "scaleUp",
            0,
            [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        ),
        ("scaleDown", None, [{"type": "Percent", "value": 100, "periodSeconds": 15}]),
    ):
        rules = behavior.get(direction)
        if not isinstance(rules, dict):
            rules = behavior[direction] = {}
        if window is not None:
            rules.setdefault("stabilizationWindowSeconds", window)
        rules.setdefault("selectPolicy", "Max")
        if not rules.get("policies"):
            rules["policies"] = policies


class HorizontalPodAutoscalerStrategy(KindStrategy):
    group = "autoscaling"
    kind = "HorizontalPodAutoscaler"
    converts = True
    columns = HPA
    empty_status: Mapping[str, Any] = {"currentReplicas": 0, "desiredReplicas": 0}

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("minReplicas", 1)
        if rd.version == "v1":
            return
        if not spec.get("metrics"):
            spec["metrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU},
                    },
                }
            ]
        if isinstance(spec.get("behavior"), dict):
            _behavior_defaults(spec["behavior"])

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        v2 = v1_to_v2(obj) if rd.version == "v1" else obj
        errs = hpa_errors(v2)
        if rd.version == "v1":
            cpu = get_path(obj, "spec", "targetCPUUtilizationPercentage")
            if cpu is not None and not _positive_int(cpu):
                errs.append(
                    invalid_value(
                        "spec.targetCPUUtilizationPercentage", cpu, "must be greater than 0"
                    )
                )
        return errs

    def to_storage(self, rd: ResourceDef, obj: Obj) -> Obj:
        return v1_to_v2(obj) if rd.version == "v1" else obj

    def to_served(self, rd: ResourceDef, obj: Obj) -> Obj:
        if rd.version == "v1" and obj.get("apiVersion") != "autoscaling/v1":
            return v2_to_v1(obj)
        if rd.version == "v2" and obj.get("apiVersion") == "autoscaling/v1":
            return v1_to_v2(obj)
        return obj
