"""The replica count a Resource metric asks for (the upstream HPA replica calculator's rules,
re-stated here):

* Pods being deleted or Failed are ignored. Pods without a metric are *missing*. For CPU,
  a pod is *unready* while Pending, and within ``CPU_INITIALIZATION_PERIOD`` of its start
  while it is not Ready or its sample began before it became Ready; after that period, only
  while it is not Ready and has never been Ready (its Ready condition last changed within
  ``INITIAL_READINESS_DELAY`` of the start). Unready pods' samples are left out.
* ``usage ratio`` = measured / target (utilization: summed usage over summed requests of the
  measured pods, in percent; average value: the mean usage). Within ``TOLERANCE`` of 1 and
  with no missing or unready pods to account for, nothing changes; else
  ``ceil(ratio * measured pods)``.
* Missing pods count as using 100% of the target when scaling down and 0% when scaling up;
  unready pods count as 0% only when scaling up. The ratio is recomputed with them; if that
  is within tolerance, or flips the direction, or the new count moves against it, nothing
  changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from berth.api.meta import parse_time
from berth.api.quantity import parse_quantity

TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = timedelta(minutes=5)
INITIAL_READINESS_DELAY = timedelta(seconds=30)


class MetricsError(Exception):
    """The metric cannot be computed (no metrics, missing requests); the message says why."""


@dataclass(frozen=True, slots=True)
class PodSample:
    """One pod's usage of the resource (cores for cpu, bytes for memory) over ``window``
    ending at ``timestamp``."""

    value: float
    timestamp: datetime
    window: timedelta


@dataclass(frozen=True, slots=True)
class Proposal:
    replicas: int
    utilization: int | None  # percent of requests (utilization targets only)
    average: float  # mean usage of the measured pods
    timestamp: datetime | None


def quantity_value(text: object) -> float:
    """A quantity in base units (cores, bytes) as a float."""
    return parse_quantity(text).nanos / 1e9


def _name(pod: Mapping[str, object]) -> str:
    meta = pod.get("metadata")
    return str(meta.get("name")) if isinstance(meta, Mapping) else ""


def _ready_condition(pod: Mapping[str, object]) -> Mapping[str, object] | None:
    status = pod.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for c in conditions if isinstance(conditions, list | tuple) else ():
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            return c
    return None


def _phase(pod: Mapping[str, object]) -> str:
    status = pod.get("status")
    return str(status.get("phase") or "") if isinstance(status, Mapping) else ""


def _ignored(pod: Mapping[str, object]) -> bool:
    meta = pod.get("metadata")
    deleting = isinstance(meta, Mapping) and bool(meta.get("deletionTimestamp"))
    return deleting or _phase(pod) == "Failed"


def is_unready(pod: Mapping[str, object], resource: str, sample: PodSample | None) -> bool:
    """Whether the pod's sample is left out (see the module doc); only CPU cares."""
    if _phase(pod) == "Pending":
        return True
    if resource != "cpu" or sample is None:
        return False
    status = pod.get("status")
    start = parse_time(status.get("startTime")) if isinstance(status, Mapping) else None
    cond = _ready_condition(pod)
    if start is None or cond is None:
        return True
    ready = cond.get("status") == "True"
    changed = parse_time(cond.get("lastTransitionTime"))
    if changed is None:
        return not ready
    if sample.timestamp - start < CPU_INITIALIZATION_PERIOD:
        return not ready or sample.timestamp < changed + sample.window
    return not ready and changed < start + INITIAL_READINESS_DELAY


def pod_request(pod: Mapping[str, object], resource: str) -> float:
    """The pod's request of ``resource`` (sum over its containers); MetricsError when a
    container has none."""
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    total = 0.0
    for c in containers if isinstance(containers, list | tuple) else ():
        requests = (c.get("resources") or {}).get("requests") or {}
        if resource not in requests:
            raise MetricsError(
                f"missing request for {resource} in container {c.get('name')} of Pod {_name(pod)}"
            )
        total += quantity_value(requests[resource])
    return total


def _within(ratio: float) -> bool:
    return abs(1.0 - ratio) <= TOLERANCE


def propose(
    current: int,
    pods: Sequence[Mapping[str, object]],
    samples: Mapping[str, PodSample],
    resource: str,
    *,
    target_utilization: int | None = None,
    target_average: float | None = None,
) -> Proposal:
    """The replicas a Resource metric proposes for a target at ``current`` replicas.
    ``samples`` by pod name; exactly one of the two targets is given."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    measured: dict[str, PodSample] = {}
    missing: list[Mapping[str, object]] = []
    unready: list[Mapping[str, object]] = []
    for pod in pods:
        if _ignored(pod):
            continue
        name = _name(pod)
        sample = samples.get(name)
        if _phase(pod) == "Pending":
            unready.append(pod)
        elif sample is None:
            missing.append(pod)
        elif is_unready(pod, resource, sample):
            unready.append(pod)
        else:
            measured[name] = sample
    if not measured:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    by_name = {_name(p): p for p in pods}
    requests: dict[str, float] = {}
    if target_utilization is not None:
        for name in measured:
            requests[name] = pod_request(by_name[name], resource)
        for pod in missing + unready:  # they may be counted at the target below
            requests[_name(pod)] = pod_request(pod, resource)

    def ratio_of(values: Mapping[str, float]) -> tuple[float, float]:
        """(usage ratio, utilization or mean) over ``values``."""
        if target_utilization is not None:
            asked = sum(requests[n] for n in values)
            if asked <= 0:
                raise MetricsError(f"no {resource} requests of the measured pods")
            utilization = sum(values.values()) * 100.0 / asked
            return utilization / target_utilization, utilization
        assert target_average is not None
        mean = sum(values.values()) / len(values)
        return mean / target_average, mean

    values = {n: s.value for n, s in measured.items()}
    ratio, figure = ratio_of(values)
    newest = max(s.timestamp for s in measured.values())
    utilization = int(figure) if target_utilization is not None else None
    average = sum(values.values()) / len(values)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if _within(ratio):
            return Proposal(current, utilization, average, newest)
        return Proposal(math.ceil(ratio * len(values)), utilization, average, newest)
    if missing:
        for pod in missing:
            name = _name(pod)
            if ratio < 1.0:  # scaling down: assume they use exactly the target
                values[name] = (
                    requests[name] * target_utilization / 100.0
                    if target_utilization is not None
                    else float(target_average or 0.0)
                )
            else:
                values[name] = 0.0
    if scale_up_with_unready:
        for pod in unready:
            values[_name(pod)] = 0.0
    new_ratio, _ = ratio_of(values)
    flipped = (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio)
    if _within(new_ratio) or flipped:
        return Proposal(current, utilization, average, newest)
    replicas = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return Proposal(current, utilization, average, newest)
    return Proposal(replicas, utilization, average, newest)
