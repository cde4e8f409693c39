"""HorizontalPodAutoscaler controller (autoscaling/v2 objects).

Every ``sync_period`` seconds (upstream: 15 s) and on each change of an HPA, reconcile reads
the target's ``/scale`` (any resource serving it: Deployments, ReplicaSets, StatefulSets,
custom resources with a scale subresource), lists the pods its ``status.selector`` picks
(from the shared pod informer), asks each Resource / ContainerResource metric for a replica
count (:mod:`.replicas`), takes the highest, normalizes it (:mod:`.behavior`: stabilization
windows, rate policies, min/max), writes the new ``spec.replicas`` through ``/scale`` when
it differs, and writes the HPA's status: currentMetrics, current/desired replicas,
lastScaleTime and the AbleToScale / ScalingActive / ScalingLimited conditions, with the
events upstream records (SuccessfulRescale, FailedGetScale, FailedGetResourceMetric,
FailedComputeMetricsReplicas, FailedRescale).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.meta import format_time
from berth.api.resources import HORIZONTALPODAUTOSCALERS
from berth.api.selectors import SelectorError, parse_label_selector
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, key_of, labels, namespace, thaw
from berth.machinery.queue import WorkQueue

from .behavior import ABOVE_MAX, BELOW_MIN, History, longest_period, normalize
from .metrics import MetricsSource, ResourceMetricsClient
from .replicas import MetricsError, Proposal, propose, quantity_value
from .targets import TargetResolver

log = logging.getLogger(__name__)

SYNC_PERIOD = 15.0


@dataclass(frozen=True, slots=True)
class _MetricResult:
    proposal: Proposal
    name: str  # how upstream names it in events ("cpu resource utilization (...)")
    status: Obj  # the currentMetrics entry


def _condition(type_: str, ok: bool, reason: str, message: str) -> Obj:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


class HorizontalPodAutoscalerController:
    def __init__(
        self,
        ctx: Context,
        *,
        metrics: MetricsSource | None = None,
        sync_period: float = SYNC_PERIOD,
        workers: int = 2,
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics or ResourceMetricsClient(ctx.client)
        self.sync_period = sync_period
        self.hpas = ctx.informers.informer(HORIZONTALPODAUTOSCALERS)
        self.pods = ctx.pods()
        self.targets = TargetResolver(ctx.client, ctx.clock)
        self.history: dict[ObjectKey, History] = {}
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="horizontalpodautoscaler")
        self.controller = Controller("horizontalpodautoscaler", self, self.queue, workers=workers)
        self.hpas.add_handlers(
            Handlers(
                on_add=self._enqueue,
                on_update=lambda old, new: (
                    self._enqueue(new) if old.get("spec") != new.get("spec") else None
                ),
                on_delete=self._enqueue,
            )
        )

    def _enqueue(self, obj: Frozen) -> None:
        self.queue.add(key_of(obj))

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            self.history.pop(key, None)
            return
        await self._reconcile(key, thaw(hpa))
        raise Retry(self.sync_period)

    async def _reconcile(self, key: ObjectKey, hpa: Obj) -> None:
        spec = hpa.get("spec") or {}
        ns = namespace(hpa) or ""
        ref = spec.get("scaleTargetRef") or {}
        status = dict(hpa.get("status") or {})
        conditions: dict[str, Obj] = {}
        reference = f"{ref.get('kind')}/{ref.get('name')}"
        try:
            rd = await self.targets.resolve(str(ref.get("apiVersion") or ""), str(ref.get("kind")))
            scale = await self.ctx.client.get(
                rd, str(ref.get("name")), namespace=ns, subresource="scale"
            )
        except (errors.ApiError, LookupError, OSError) as exc:
            message = f"the HPA controller was unable to get the target's current scale: {exc}"
            await self.ctx.recorder.warning(hpa, "FailedGetScale", str(exc))
            conditions["AbleToScale"] = _condition("AbleToScale", False, "FailedGetScale", message)
            await self._write_status(hpa, status, conditions)
            return
        now_s = self.ctx.clock.monotonic()
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        history = self.history.get(key)
        if history is None:  # upstream's initial recommendation: what runs now
            history = self.history[key] = History(recommendations=[(now_s, current)])
        min_replicas = spec.get("minReplicas")
        low = int(min_replicas) if min_replicas is not None else 1
        high = int(spec.get("maxReplicas") or 1)
        metric_statuses: list[Obj] = []
        rescale_reason = ""
        desired = current
        if current == 0 and low != 0:
            conditions["ScalingActive"] = _condition(
                "ScalingActive",
                False,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )
        elif current > high:
            desired, rescale_reason = high, "Current number of replicas above Spec.MaxReplicas"
            conditions["ScalingLimited"] = _condition(
                "ScalingLimited", True, "TooManyReplicas", ABOVE_MAX
            )
        elif current < low:
            desired, rescale_reason = low, "Current number of replicas below Spec.MinReplicas"
            conditions["ScalingLimited"] = _condition(
                "ScalingLimited", True, "TooFewReplicas", BELOW_MIN
            )
        else:
            computed = await self._compute(hpa, ns, scale, current, conditions)
            if computed is None:
                status.pop("currentMetrics", None)
                status["currentReplicas"] = current
                await self._write_status(hpa, status, conditions)
                return
            proposed, metric_statuses, rescale_reason = computed
            outcome = normalize(
                history,
                now_s,
                current=current,
                proposed=proposed,
                min_replicas=low,
                max_replicas=high,
                behavior=spec.get("behavior"),
            )
            desired = outcome.replicas
            conditions["AbleToScale"] = _condition(
                "AbleToScale", True, outcome.able_reason, outcome.able_message
            )
            conditions["ScalingLimited"] = _condition(
                "ScalingLimited", outcome.limited, outcome.limit_reason, outcome.limit_message
            )
        if desired != current:
            body = {**scale, "spec": {**(scale.get("spec") or {}), "replicas": desired}}
            try:
                await self.ctx.client.update(rd, body, subresource="scale")
            except (errors.ApiError, OSError) as exc:
                conditions["AbleToScale"] = _condition(
                    "AbleToScale",
                    False,
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {exc}",
                )
                await self.ctx.recorder.warning(
                    hpa,
                    "FailedRescale",
                    f"New size: {desired}; reason: {rescale_reason}; error: {exc}",
                )
                await self._write_status(hpa, status, conditions)
                return
            conditions["AbleToScale"] = _condition(
                "AbleToScale",
                True,
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
            )
            await self.ctx.recorder.normal(
                hpa, "SuccessfulRescale", f"New size: {desired}; reason: {rescale_reason}"
            )
            log.info("%s: %s %d -> %d (%s)", key, reference, current, desired, rescale_reason)
            history.record_scale(now_s, current, desired, longest_period(spec.get("behavior")))
            status["lastScaleTime"] = format_time(self.ctx.clock.now())
        status["currentReplicas"] = current
        status["desiredReplicas"] = desired
        if metric_statuses:
            status["currentMetrics"] = metric_statuses
        else:
            status.pop("currentMetrics", None)
        await self._write_status(hpa, status, conditions)

    async def _compute(
        self, hpa: Obj, ns: str, scale: Obj, current: int, conditions: dict[str, Obj]
    ) -> tuple[int, list[Obj], str] | None:
        """The metrics' proposal, their statuses and the rescale reason; None (conditions and
        events recorded) when no metric could be computed."""
        selector_text = str((scale.get("status") or {}).get("selector") or "")
        try:
            if not selector_text:
                raise SelectorError("the HPA target's scale is missing a selector")
            selector = parse_label_selector(selector_text)
        except SelectorError as exc:
            conditions["ScalingActive"] = _condition(
                "ScalingActive", False, "InvalidSelector", str(exc)
            )
            await self.ctx.recorder.warning(hpa, "SelectorRequired", str(exc))
            return None
        pods = [p for p in self.pods.list(ns) if selector.matches(labels(p))]
        metrics = (hpa.get("spec") or {}).get("metrics") or []
        results: list[_MetricResult] = []
        failures: list[tuple[str, str]] = []
        for metric in metrics:
            try:
                results.append(await self._one(metric, ns, selector_text, pods, current))
            except MetricsError as exc:
                failures.append(self._failure(metric, exc))
        if failures:
            reason, message = failures[0]
            await self.ctx.recorder.warning(hpa, reason, message)
            await self.ctx.recorder.warning(
                hpa,
                "FailedComputeMetricsReplicas",
                f"invalid metrics ({len(failures)} invalid out of {len(metrics)}), first error "
                f"is: {message}",
            )
        if not results:
            reason, message = failures[0] if failures else ("InvalidMetricSourceType", "no metrics")
            conditions["ScalingActive"] = _condition(
                "ScalingActive",
                False,
                reason,
                f"the HPA was unable to compute the replica count: {message}",
            )
            return None
        best = max(results, key=lambda r: r.proposal.replicas)
        conditions["ScalingActive"] = _condition(
            "ScalingActive",
            True,
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {best.name}",
        )
        if best.proposal.replicas > current:
            reason = f"{best.name} above target"
        else:
            reason = "All metrics below target"
        return best.proposal.replicas, [r.status for r in results], reason

    @staticmethod
    def _failure(metric: Mapping[str, Any], exc: Exception) -> tuple[str, str]:
        kind = str(metric.get("type") or "")
        source = metric.get("resource") or metric.get("containerResource") or {}
        resource = str(source.get("name") or "")
        if kind in ("Resource", "ContainerResource"):
            target = source.get("target") or {}
            what = "utilization" if target.get("type") == "Utilization" else "resource metric value"
            reason = (
                "FailedGetResourceMetric"
                if kind == "Resource"
                else ("FailedGetContainerResourceMetric")
            )
            return reason, f"failed to get {resource} {what}: {exc}"
        return f"FailedGet{kind}Metric", f"invalid metric source type {kind!r}: {exc}"

    async def _one(
        self, metric: Mapping[str, Any], ns: str, selector: str, pods: list[Frozen], current: int
    ) -> _MetricResult:
        kind = metric.get("type")
        if kind not in ("Resource", "ContainerResource"):
            raise MetricsError(f"metric type {kind!r} is not supported by berth's HPA")
        source = metric.get("resource") or metric.get("containerResource") or {}
        resource = str(source.get("name") or "")
        container = str(source.get("container")) if kind == "ContainerResource" else None
        target = source.get("target") or {}
        samples = await self.metrics.pod_usage(ns, selector, resource, container)
        if target.get("type") == "Utilization":
            utilization = int(target.get("averageUtilization") or 0)
            if utilization <= 0:
                raise MetricsError("averageUtilization must be positive")
            proposal = propose(current, pods, samples, resource, target_utilization=utilization)
            name_ = f"{resource} resource utilization (percentage of request)"
            current_status: Obj = {
                "averageUtilization": proposal.utilization,
                "averageValue": _quantity(proposal.average, resource),
            }
        else:
            average = quantity_value(target.get("averageValue") or "0")
            if average <= 0:
                raise MetricsError("averageValue must be positive")
            proposal = propose(current, pods, samples, resource, target_average=average)
            name_ = f"{resource} resource"
            current_status = {"averageValue": _quantity(proposal.average, resource)}
        if kind == "Resource":
            status: Obj = {
                "type": "Resource",
                "resource": {"name": resource, "current": current_status},
            }
        else:
            name_ = f"{name_} of container {container}"
            status = {
                "type": "ContainerResource",
                "containerResource": {
                    "name": resource,
                    "container": container,
                    "current": current_status,
                },
            }
        return _MetricResult(proposal, name_, status)

    async def _write_status(self, hpa: Obj, status: Obj, conditions: dict[str, Obj]) -> None:
        now = format_time(self.ctx.clock.now())
        old = {c.get("type"): c for c in (hpa.get("status") or {}).get("conditions") or ()}
        merged: list[Obj] = []
        for type_ in ("AbleToScale", "ScalingActive", "ScalingLimited"):
            c = conditions.get(type_) or old.get(type_)
            if c is None:
                continue
            c = dict(c)
            before = old.get(type_)
            kept = before is not None and before.get("status") == c["status"]
            c["lastTransitionTime"] = (before or {}).get("lastTransitionTime") if kept else now
            merged.append(c)
        status["conditions"] = merged
        status["observedGeneration"] = (hpa.get("metadata") or {}).get("generation")
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", status["currentReplicas"])
        if status == hpa.get("status"):
            return
        body = {**hpa, "status": status}
        try:
            await self.ctx.client.update(HORIZONTALPODAUTOSCALERS, body, subresource="status")
        except (errors.Conflict, errors.NotFound):
            return  # changed or gone under us: the next sync writes it


def _quantity(value: float, resource: str) -> str:
    """Usage as a quantity string (millicores for CPU, whole units otherwise)."""
    if resource == "cpu":
        return f"{round(value * 1000)}m"
    return str(round(value))
