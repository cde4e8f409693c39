"""ResourceQuota arithmetic, shared by the API server's quota admission and the controller
that keeps each quota's ``status.used`` current.

What an object costs against a quota, as upstream's quota evaluators count it:

- every object of a resource: ``count/<resource>[.<group>]``, plus the legacy names
  ``pods``, ``services``, ``configmaps``, ``secrets``, ``replicationcontrollers``,
  ``resourcequotas``, ``persistentvolumeclaims``;
- a Service: ``services.nodeports`` (its ports with a node port, for NodePort and
  LoadBalancer Services) and ``services.loadbalancers``;
- a pod that is not finished: ``pods``, and its compute resources: ``requests.<r>`` (also
  named bare ``cpu``, ``memory``, ``ephemeral-storage``) and ``limits.<r>``, where a pod's
  figure is the sum over its containers, at least the largest init container's, plus its
  ``overhead``.

A quota tracks only the resources in its ``spec.hard``; with scopes (``Terminating``,
``NotTerminating``, ``BestEffort``, ``NotBestEffort``, ``PriorityClass`` in a
``scopeSelector``) it tracks only the pods the scopes select, and no other kind.
Quantities are exact (:mod:`berth.api.quantity`), never floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from berth.api.meta import Obj, get_path
from berth.api.quantity import Quantity, QuantityError, parse_quantity
from berth.api.resources import ResourceDef

Usage = dict[str, Quantity]

ONE = Quantity(10**9)
"""One object."""

LEGACY_COUNTS = frozenset(
    {
        "pods",
        "services",
        "configmaps",
        "secrets",
        "replicationcontrollers",
        "resourcequotas",
        "persistentvolumeclaims",
    }
)
"""Resources whose object count a quota may name without ``count/``."""

COMPUTE = ("cpu", "memory", "ephemeral-storage")
"""Resources a quota may name bare (``cpu``), meaning their requests."""

DECLARED = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)
"""Quota resources every container must declare when a quota tracks them (upstream keeps
this rule for compatibility: quota on cpu or memory forces explicit requests/limits)."""

SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass")


def count_names(rd: ResourceDef) -> tuple[str, ...]:
    """The quota names of one object of ``rd``."""
    generic = f"count/{rd.plural}.{rd.group}" if rd.group else f"count/{rd.plural}"
    if not rd.group and rd.plural in LEGACY_COUNTS:
        return (rd.plural, generic)
    return (generic,)


def tracks(rd: ResourceDef, name: str) -> bool:
    """Whether quota resource ``name`` can be spent by objects of ``rd``."""
    if name in count_names(rd):
        return True
    if rd.group == "" and rd.plural == "pods":
        return name in COMPUTE or name.startswith(("requests.", "limits.", "hugepages-"))
    if rd.group == "" and rd.plural == "services":
        return name in ("services.nodeports", "services.loadbalancers")
    return False


def quantity(value: Any) -> Quantity | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def parse_list(values: Any) -> Usage:
    """A ``ResourceList`` (name -> quantity string) as quantities; what does not parse is
    left out (validation refuses it where it is written)."""
    out: Usage = {}
    if isinstance(values, Mapping):
        for k, v in values.items():
            q = quantity(v)
            if isinstance(k, str) and q is not None:
                out[k] = q
    return out


def add(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> Usage:
    out = dict(a)
    for k, v in b.items():
        have = out.get(k)
        out[k] = v if have is None else Quantity(have.nanos + v.nanos, have.format)
    return out


def subtract(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> Usage:
    out = dict(a)
    for k, v in b.items():
        have = out.get(k)
        out[k] = (
            Quantity(-v.nanos, v.format)
            if have is None
            else Quantity(have.nanos - v.nanos, have.format)
        )
    return out


def _max(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> Usage:
    out = dict(a)
    for k, v in b.items():
        if k not in out or v.nanos > out[k].nanos:
            out[k] = v
    return out


def render(usage: Mapping[str, Quantity]) -> dict[str, str]:
    return {k: v.canonical() for k, v in sorted(usage.items())}


def pretty(usage: Mapping[str, Quantity]) -> str:
    """``a=1,b=2`` sorted by name, as upstream prints quota figures in its messages."""
    return ",".join(f"{k}={v.canonical()}" for k, v in sorted(usage.items()))


# -- pods ----------------------------------------------------------------------------------


def _containers(spec: Obj, field: str) -> list[Obj]:
    items = spec.get(field)
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def container_resources(c: Obj) -> tuple[Usage, Usage]:
    """(requests, limits) of one container; a limit without a request stands for the request,
    as API defaulting makes it."""
    res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
    assert isinstance(res, dict)
    requests = parse_list(res.get("requests"))
    limits = parse_list(res.get("limits"))
    for k, v in limits.items():
        requests.setdefault(k, v)
    return requests, limits


def pod_resources(pod: Obj) -> tuple[Usage, Usage]:
    """The pod's (requests, limits): the sum over its containers, at least each init
    container's, plus the pod's overhead."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    req: Usage = {}
    lim: Usage = {}
    for c in _containers(spec, "containers"):
        r, li = container_resources(c)
        req, lim = add(req, r), add(lim, li)
    for c in _containers(spec, "initContainers"):
        r, li = container_resources(c)
        req, lim = _max(req, r), _max(lim, li)
    overhead = parse_list(spec.get("overhead"))
    if overhead:
        req = add(req, overhead)
        lim = add(lim, {k: v for k, v in overhead.items() if k in lim})
    return req, lim


def pod_counts(pod: Obj) -> bool:
    """Whether a pod still holds quota: not finished, and not past its deletion."""
    return get_path(pod, "status", "phase") not in ("Succeeded", "Failed")


def pod_usage(pod: Obj) -> Usage:
    if not pod_counts(pod):
        return {}
    usage: Usage = {"pods": ONE, "count/pods": ONE}
    requests, limits = pod_resources(pod)
    for k, v in requests.items():
        usage[f"requests.{k}"] = v
        if k in COMPUTE:
            usage[k] = v
    for k, v in limits.items():
        usage[f"limits.{k}"] = v
    return usage


def missing_declarations(tracked: Iterable[str], pod: Obj) -> str | None:
    """Upstream's rule for quota on cpu/memory: each container must declare what the quota
    tracks. ``None`` when they do, else ``must specify <r> for: <containers>; ...``."""
    required = sorted(set(tracked) & DECLARED)
    if not required:
        return None
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    missing: dict[str, set[str]] = {}
    for c in _containers(spec, "containers") + _containers(spec, "initContainers"):
        requests, limits = container_resources(c)
        have = set(requests) | {f"requests.{k}" for k in requests}
        have |= {f"limits.{k}" for k in limits}
        for r in required:
            if r not in have:
                missing.setdefault(r, set()).add(str(c.get("name") or ""))
    if not missing:
        return None
    parts = [f"{r} for: {','.join(sorted(names))}" for r, names in sorted(missing.items())]
    return "must specify " + "; ".join(parts)


def _best_effort(pod: Obj) -> bool:
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    for c in _containers(spec, "containers") + _containers(spec, "initContainers"):
        requests, limits = container_resources(c)
        if any(k in ("cpu", "memory") for k in list(requests) + list(limits)):
            return False
    return True


def _scope_matches(scope: str, pod: Obj, operator: str = "Exists", values: Any = ()) -> bool:
    terminating = get_path(pod, "spec", "activeDeadlineSeconds") is not None
    if scope == "Terminating":
        return terminating
    if scope == "NotTerminating":
        return not terminating
    if scope == "BestEffort":
        return _best_effort(pod)
    if scope == "NotBestEffort":
        return not _best_effort(pod)
    if scope == "PriorityClass":
        name = get_path(pod, "spec", "priorityClassName") or ""
        vals = [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
        if operator == "Exists":
            return bool(name)
        if operator == "DoesNotExist":
            return not name
        if operator == "In":
            return name in vals
        if operator == "NotIn":
            return name not in vals
        return False
    return False  # a scope this server does not know selects nothing


def scoped(quota: Obj) -> bool:
    spec = quota.get("spec") if isinstance(quota.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    return bool(spec.get("scopes")) or bool(get_path(spec, "scopeSelector", "matchExpressions"))


def selects(quota: Obj, rd: ResourceDef, obj: Obj) -> bool:
    """Whether the quota's scopes select ``obj`` (unscoped quotas select everything; scoped
    ones only pods)."""
    if not scoped(quota):
        return True
    if rd.group != "" or rd.plural != "pods":
        return False
    spec = quota.get("spec") or {}
    for scope in spec.get("scopes") or []:
        if not _scope_matches(str(scope), obj):
            return False
    for expr in get_path(spec, "scopeSelector", "matchExpressions") or []:
        if not isinstance(expr, dict):
            return False
        if not _scope_matches(
            str(expr.get("scopeName")), obj, str(expr.get("operator")), expr.get("values")
        ):
            return False
    return True


# -- any object -----------------------------------------------------------------------------


def service_usage(svc: Obj) -> Usage:
    spec = svc.get("spec") if isinstance(svc.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    usage: Usage = {}
    kind = spec.get("type") or "ClusterIP"
    if kind in ("NodePort", "LoadBalancer"):
        ports = spec.get("ports") if isinstance(spec.get("ports"), list) else []
        assert isinstance(ports, list)
        usage["services.nodeports"] = Quantity(len(ports) * 10**9)
    if kind == "LoadBalancer":
        usage["services.loadbalancers"] = ONE
    return usage


def usage_of(rd: ResourceDef, obj: Obj) -> Usage:
    """Everything ``obj`` costs (filter with :func:`tracks` / the quota's hard names)."""
    if rd.group == "" and rd.plural == "pods":
        return pod_usage(obj)
    usage: Usage = dict.fromkeys(count_names(rd), ONE)
    if rd.group == "" and rd.plural == "services":
        usage.update(service_usage(obj))
    return usage


def charged(quota: Obj, rd: ResourceDef, obj: Obj | None) -> Usage:
    """What ``obj`` costs against ``quota`` (its hard names only; nothing if unselected)."""
    if obj is None or not selects(quota, rd, obj):
        return {}
    hard = get_path(quota, "spec", "hard") or {}
    return {k: v for k, v in usage_of(rd, obj).items() if k in hard}


def exceeded(used: Mapping[str, Quantity], hard: Mapping[str, Quantity]) -> list[str]:
    """The names whose ``used`` is above ``hard``."""
    return sorted(k for k, v in used.items() if k in hard and v.nanos > hard[k].nanos)


def total(quota: Obj, objects: Iterable[tuple[ResourceDef, Obj]]) -> Usage:
    """What ``objects`` cost against ``quota`` together: every hard name, zero included."""
    hard = parse_list(get_path(quota, "spec", "hard"))
    used: Usage = {k: Quantity(0, v.format) for k, v in hard.items()}
    for rd, obj in objects:
        used = add(used, charged(quota, rd, obj))
    return used


def status_for(quota: Obj, used: Mapping[str, Quantity]) -> dict[str, Any]:
    """The ``status`` of ``quota`` with ``used`` (its hard names only)."""
    hard = get_path(quota, "spec", "hard") or {}
    return {
        "hard": dict(hard),
        "used": render({k: used.get(k, Quantity(0)) for k in hard if isinstance(k, str)}),
    }
