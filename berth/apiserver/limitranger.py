"""LimitRanger admission: a namespace's LimitRanges fill in containers' default requests and
limits, then bound them (``min``, ``max``, ``maxLimitRequestRatio`` per Container and per
Pod), as kube-apiserver's ``LimitRanger`` plugin does, with its messages.

The namespaces' LimitRanges are kept from the watch hub (and this server's own writes), so a
pod created where none exists costs one dict lookup.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from berth.api import quota as q
from berth.api.meta import Obj, get_path
from berth.api.quantity import Quantity
from berth.api.resources import ResourceDef

from .errors import forbidden

PREFIX = "/registry/core/limitranges/"


class LimitRanger:
    def __init__(self) -> None:
        self.ranges: dict[str, dict[str, Obj]] = {}
        """Namespace -> its LimitRanges by name."""

    def remember(self, key: str, obj: Obj | None) -> None:
        """A LimitRange stored at ``key`` (``None``: deleted)."""
        rest = key[len(PREFIX) :].split("/")
        if len(rest) != 2:
            return
        ns, name = rest
        if obj is None:
            found = self.ranges.get(ns)
            if found is not None:
                found.pop(name, None)
                if not found:
                    del self.ranges[ns]
        else:
            self.ranges.setdefault(ns, {})[name] = obj

    def admit_pod(self, rd: ResourceDef, ns: str, pod: Obj) -> None:
        """Default the pod's containers' resources, then check the bounds (403 when out)."""
        ranges = self.ranges.get(ns)
        if not ranges:
            return
        items = [
            item
            for _name, lr in sorted(ranges.items())
            for item in get_path(lr, "spec", "limits") or []
            if isinstance(item, dict)
        ]
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return
        containers = [
            c
            for field in ("initContainers", "containers")
            for c in spec.get(field) or []
            if isinstance(c, dict)
        ]
        default_requests: dict[str, object] = {}
        default_limits: dict[str, object] = {}
        for item in items:
            if item.get("type") == "Container":
                default_requests.update(item.get("defaultRequest") or {})
                default_limits.update(item.get("default") or {})
        for c in containers:
            res = c.get("resources")
            if not isinstance(res, dict):
                res = c["resources"] = {}
            for field, defaults in (("limits", default_limits), ("requests", default_requests)):
                if not defaults:
                    continue
                have = res.get(field)
                if not isinstance(have, dict):
                    have = res[field] = {}
                for k, v in defaults.items():
                    have.setdefault(k, copy.deepcopy(v))
        errors: list[str] = []
        for item in items:
            kind = item.get("type")
            if kind == "Container":
                for c in containers:
                    requests, limits = q.container_resources(c)
                    errors += _bounds("Container", item, requests, limits)
            elif kind == "Pod":
                requests, limits = q.pod_resources(pod)
                errors += _bounds("Pod", item, requests, limits)
        if errors:
            name = str(get_path(pod, "metadata", "name") or "")
            why = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
            raise forbidden(f'pods "{name}" is forbidden: {why}', rd, name)


def _bounds(
    kind: str,
    item: Obj,
    requests: Mapping[str, Quantity],
    limits: Mapping[str, Quantity],
) -> list[str]:
    """Upstream's min/max/ratio checks of one LimitRange item on one container (or pod)."""
    errs: list[str] = []
    for r, bound in sorted(q.parse_list(item.get("min")).items()):
        req, lim = requests.get(r), limits.get(r)
        if req is None:
            errs.append(f"minimum {r} usage per {kind} is {bound}.  No request is specified")
        elif req.nanos < bound.nanos:
            errs.append(f"minimum {r} usage per {kind} is {bound}, but request is {req}")
        if lim is not None and lim.nanos < bound.nanos:
            errs.append(f"minimum {r} usage per {kind} is {bound}, but limit is {lim}")
    for r, bound in sorted(q.parse_list(item.get("max")).items()):
        req, lim = requests.get(r), limits.get(r)
        if lim is None:
            errs.append(f"maximum {r} usage per {kind} is {bound}.  No limit is specified")
        elif lim.nanos > bound.nanos:
            errs.append(f"maximum {r} usage per {kind} is {bound}, but limit is {lim}")
        if req is not None and req.nanos > bound.nanos:
            errs.append(f"maximum {r} usage per {kind} is {bound}, but request is {req}")
    for r, ratio in sorted(q.parse_list(item.get("maxLimitRequestRatio")).items()):
        req, lim = requests.get(r), limits.get(r)
        if req is None or req.nanos == 0:
            errs.append(
                f"{r} max limit to request ratio per {kind} is {ratio}, but no request is"
                " specified or request is 0"
            )
        elif lim is None or lim.nanos == 0:
            errs.append(
                f"{r} max limit to request ratio per {kind} is {ratio}, but no limit is"
                " specified or limit is 0"
            )
        elif lim.nanos * 10**9 > ratio.nanos * req.nanos:
            errs.append(
                f"{r} max limit to request ratio per {kind} is {ratio}, but provided ratio"
                f" is {lim.nanos / req.nanos:f}"
            )
    return errs
