"""The ``scale`` subresource of custom resources: an ``autoscaling/v1`` Scale read from and
written to the paths the CRD names (``specReplicasPath``, ``statusReplicasPath``,
``labelSelectorPath``), as upstream's CR scale storage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth.api.meta import Obj
from berth.apiserver.errors import FieldError

from . import fielderrors as fe

INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ScalePaths:
    spec_replicas: str  # ".spec.replicas"
    status_replicas: str
    label_selector: str = ""

    @classmethod
    def from_spec(cls, scale: Any) -> ScalePaths | None:
        if not isinstance(scale, dict):
            return None
        return cls(
            spec_replicas=str(scale.get("specReplicasPath") or ""),
            status_replicas=str(scale.get("statusReplicasPath") or ""),
            label_selector=str(scale.get("labelSelectorPath") or ""),
        )


class NotAnInteger(ValueError):
    pass


def _fields(path: str) -> list[str]:
    return path.removeprefix(".").split(".")


def _nested(obj: Obj, path: str) -> tuple[Any, bool]:
    v: Any = obj
    for f in _fields(path):
        if not isinstance(v, dict) or f not in v:
            return None, False
        v = v[f]
    return v, True


def _accessor_error(path: str, v: Any, want: str) -> str:
    go_type = {
        str: "string",
        bool: "bool",
        float: "float64",
        int: "int64",
        list: "[]interface {}",
        dict: "map[string]interface {}",
    }.get(type(v), "interface {}")
    return f"{path} accessor error: {fe.go_value(v)} is of the type {go_type}, expected {want}"


def nested_int(obj: Obj, path: str) -> int:
    """The integer at ``path`` (0 if absent); NotAnInteger if something else is there."""
    v, found = _nested(obj, path)
    if not found:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise NotAnInteger(_accessor_error(path, v, "int64"))
    return v


def scale_of(obj: Obj, paths: ScalePaths) -> Obj:
    """The Scale of ``obj`` (NotAnInteger when a replicas path holds something else)."""
    m = obj.get("metadata") or {}
    selector = ""
    if paths.label_selector:
        v, found = _nested(obj, paths.label_selector)
        if found and isinstance(v, str):
            selector = v
    status: Obj = {"replicas": nested_int(obj, paths.status_replicas)}
    if selector:
        status["selector"] = selector
    meta = {
        k: m[k]
        for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        if k in m
    }
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": nested_int(obj, paths.spec_replicas)},
        "status": status,
    }


def validate_scale(scale: Any) -> list[FieldError]:
    """The Scale a client sent (autoscaling validation: replicas >= 0)."""
    spec = scale.get("spec") if isinstance(scale, dict) else None
    replicas = spec.get("replicas", 0) if isinstance(spec, dict) else 0
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        return [fe.invalid("spec.replicas", replicas, "must be an integer")]
    if replicas < 0:
        return [fe.invalid("spec.replicas", replicas, "must be greater than or equal to 0")]
    if replicas > INT32_MAX:
        return [fe.invalid("spec.replicas", replicas, f"must be less than or equal to {INT32_MAX}")]
    return []


def set_replicas(obj: Obj, paths: ScalePaths, replicas: int) -> None:
    """Write ``replicas`` at the spec replicas path, creating maps on the way."""
    fields = _fields(paths.spec_replicas)
    v: Any = obj
    for f in fields[:-1]:
        nxt = v.get(f)
        if not isinstance(nxt, dict):
            nxt = {}
            v[f] = nxt
        v = nxt
    v[fields[-1]] = replicas


def validate_replicas_paths(obj: Obj, paths: ScalePaths, *, spec: bool = True) -> list[FieldError]:
    """Upstream's scale checks on every write of an object with a scale subresource: the
    replicas paths hold non-negative int32 integers, the selector path a string."""
    out: list[FieldError] = []
    which = [paths.spec_replicas] if spec else []
    which.append(paths.status_replicas)
    for path in which:
        try:
            n = nested_int(obj, path)
        except NotAnInteger as exc:
            out.append(fe.invalid(path, 0, str(exc)))
            continue
        if n < 0:
            out.append(fe.invalid(path, n, "should be a non-negative integer"))
        elif n > INT32_MAX:
            out.append(fe.invalid(path, n, f"should be less than or equal to {INT32_MAX}"))
    if paths.label_selector:
        v, found = _nested(obj, paths.label_selector)
        if found and not isinstance(v, str):
            out.append(
                fe.invalid(
                    paths.label_selector, "", _accessor_error(paths.label_selector, v, "string")
                )
            )
    return out
