"""The scheduler: bind every pending pod to a node that fits, best-scored first.

Flow per pod: take its key from the scheduling queue, filter nodes (starting where the last
pod stopped, and stopping once enough feasible nodes are found — kube-scheduler's
``percentageOfNodesToScore``), score the feasible ones (least allocated + spreading of pods of
the same owner), *assume* the pod on the winner (its requests count against the node at once),
and bind through ``pods/{name}/binding`` in the background. A failed bind un-assumes the pod
and requeues it with backoff. A pod that fits nowhere gets a ``FailedScheduling`` event and a
``PodScheduled=False`` condition, and waits until a node or pod change (or a periodic flush)
gives it another chance.

Concurrency: one scheduling loop; binds run as tasks bounded by a semaphore. All cache
updates (informer handlers, assume/forget) happen on the loop without awaits in between, so the
accounting is consistent whenever the loop filters a pod.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from berth.api.meta import format_time
from berth.api.resources import NODES, PODDISRUPTIONBUDGETS, PODS
from berth.api.selectors import SelectorError, label_selector_from_object
from berth.client import errors
from berth.client.interface import ApiClient, Obj, bind
from berth.client.keys import ObjectKey
from berth.machinery.clock import Clock
from berth.machinery.events import EventRecorder
from berth.machinery.informer import Handlers, InformerFactory
from berth.machinery.objects import Frozen, is_deleting, key_of, meta, name, namespace
from berth.machinery.prometheus import REGISTRY
from berth.machinery.queue import WorkQueue
from berth.scheduler import plugins, preemption
from berth.scheduler.nodeinfo import NodeInfo, PodInfo, node_info, pod_info
from berth.scheduler.volumes import PodVolumes, VolumeBinding

ATTEMPTS = REGISTRY.counter(
    "scheduler_schedule_attempts_total",
    "Number of attempts to schedule pods, by the result (scheduled, unschedulable, error).",
)
ATTEMPT_SECONDS = REGISTRY.histogram(
    "scheduler_scheduling_attempt_duration_seconds",
    "Scheduling attempt latency in seconds (the placement decision), by result.",
)

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER = "default-scheduler"
STALE_ATTEMPTS = 3
"""Reads of a pod whose condition write keeps meeting a newer version, at most."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    scheduler_name: str = DEFAULT_SCHEDULER
    percentage_of_nodes_to_score: int = 0  # 0: adaptive, as kube-scheduler
    min_feasible_nodes: int = 100
    bind_concurrency: int = 64
    initial_backoff: float = 1.0
    max_backoff: float = 10.0
    unschedulable_flush: float = 60.0
    report_status: bool = True
    preemption: bool = True  # evict lower-priority pods for a pod that fits nowhere


@dataclass(frozen=True, slots=True)
class Decision:
    node: str | None
    reasons: Counter[str]
    evaluated: int
    total: int
    rejected: str = ""  # why the pod fits no node before any node is looked at (PreFilter)

    @property
    def message(self) -> str:
        if self.rejected:  # worded as kube-scheduler words a PreFilter rejection: no count
            return f"0/{self.total} nodes are available: {self.rejected}."
        return plugins.summarize(self.total, self.reasons)


def _is_terminal(pod: Frozen) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(
        self,
        client: ApiClient,
        informers: InformerFactory,
        clock: Clock,
        *,
        recorder: EventRecorder,
        config: SchedulerConfig | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.recorder = recorder
        self.config = config or SchedulerConfig()
        self.pods = informers.informer(PODS)
        self.nodes = informers.informer(NODES)
        self.budgets = informers.informer(PODDISRUPTIONBUDGETS) if self.config.preemption else None
        self.preemptions = 0
        # node -> {uid: pod} nominated there by a preemption, until bound or gone: pods of
        # no higher priority are filtered as if they were already there (kube's nominator),
        # so the room the victims leave is not taken by others.
        self.nominated: dict[str, dict[str, PodInfo]] = {}
        self.queue: WorkQueue[ObjectKey] = WorkQueue(
            clock,
            base_delay=self.config.initial_backoff,
            max_delay=self.config.max_backoff,
            name="scheduling",
        )
        self.node_infos: dict[str, NodeInfo] = {}
        self._order: list[str] = []
        self._next_start = 0
        self._pod_node: dict[str, tuple[str, str]] = {}  # uid -> (node, pod key)
        self.assumed: dict[str, str] = {}  # uid -> node, bind in flight
        self.unschedulable: dict[ObjectKey, float] = {}  # key -> when it failed
        self._attempts: Counter[ObjectKey] = Counter()
        self._bind_slots = asyncio.Semaphore(self.config.bind_concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.scheduled = 0
        self.bind_failures = 0
        self.rng = random.Random(0)  # noqa: S311 - tie-breaking, not security
        self.pods.add_handlers(
            Handlers(on_add=self._pod_seen, on_update=self._pod_updated, on_delete=self._pod_gone)
        )
        self.nodes.add_handlers(
            Handlers(
                on_add=self._node_seen, on_update=self._node_updated, on_delete=self._node_gone
            )
        )
        self.volume_binding = VolumeBinding(client, informers)
        storage_changed = Handlers(
            on_add=lambda _o: self._retry_unschedulable(),
            on_update=lambda _o, _n: self._retry_unschedulable(),
        )
        for inf in (
            self.volume_binding.claims,
            self.volume_binding.volumes,
            self.volume_binding.classes,
        ):
            inf.add_handlers(storage_changed)

    # ---- cache maintenance (informer handlers) ------------------------------------------
    def _responsible(self, pod: Frozen) -> bool:
        wanted = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        return bool(wanted == self.config.scheduler_name)

    def _pod_seen(self, pod: Frozen) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        uid = str(meta(pod).get("uid"))
        key = key_of(pod)
        if node:
            self._forget_nomination(uid)
            self.assumed.pop(uid, None)
            self.unschedulable.pop(key, None)
            if _is_terminal(pod):
                self._unaccount(uid)
            else:
                self._account(pod, str(node))
        elif not is_deleting(pod) and self._responsible(pod) and key not in self.unschedulable:
            self.queue.add(key)

    def _pod_updated(self, old: Frozen, new: Frozen) -> None:
        self._pod_seen(new)
        if _is_terminal(new) and not _is_terminal(old):
            self._retry_unschedulable()

    def _pod_gone(self, pod: Frozen) -> None:
        uid = str(meta(pod).get("uid"))
        self._forget_nomination(uid)
        self.unschedulable.pop(key_of(pod), None)
        was_assumed = self.assumed.pop(uid, None) is not None
        if self._unaccount(uid) or was_assumed:
            self._retry_unschedulable()

    def _account(self, pod: Frozen, node: str) -> None:
        uid = str(meta(pod).get("uid"))
        current = self._pod_node.get(uid)
        if current is not None and current[0] == node:
            return
        if current is not None:
            self._unaccount(uid)
        info = self.node_infos.get(node)
        if info is None:
            # The node is not known (yet): remember the pod so it is counted when it appears.
            self._pod_node[uid] = (node, key_of(pod))
            return
        info.add_pod(pod_info(pod))
        self._pod_node[uid] = (node, key_of(pod))

    def _unaccount(self, uid: str) -> bool:
        entry = self._pod_node.pop(uid, None)
        if entry is None:
            return False
        info = self.node_infos.get(entry[0])
        if info is not None:
            info.remove_pod(uid)
        return True

    def _node_seen(self, node: Frozen) -> None:
        fresh = node_info(node)
        current = self.node_infos.get(fresh.name)
        if current is None:
            self.node_infos[fresh.name] = fresh
            self._order.append(fresh.name)
            # Pods bound before the node was seen.
            for n, key in list(self._pod_node.values()):
                if n == fresh.name:
                    pod = self.pods.get(key)
                    if pod is not None:
                        fresh.add_pod(pod_info(pod))
        else:
            current.update_node(fresh)
        self._retry_unschedulable()

    def _node_updated(self, old: Frozen, new: Frozen) -> None:
        del old
        self._node_seen(new)

    def _node_gone(self, node: Frozen) -> None:
        n = name(node)
        if self.node_infos.pop(n, None) is not None:
            self._order.remove(n)

    def _retry_unschedulable(self) -> None:
        """Cluster changed: give every unschedulable pod another try (after its backoff)."""
        now = self.clock.monotonic()
        for key, failed_at in list(self.unschedulable.items()):
            del self.unschedulable[key]
            attempts = max(self._attempts[key], 1)
            backoff = min(
                self.config.initial_backoff * 2 ** (attempts - 1), self.config.max_backoff
            )
            self.queue.add_after(key, backoff - (now - failed_at))

    # ---- the algorithm ------------------------------------------------------------------
    def feasible_target(self, total: int) -> int:
        if total < self.config.min_feasible_nodes:
            return total
        pct = self.config.percentage_of_nodes_to_score
        if pct <= 0:
            pct = max(5, 50 - total // 125)
        return max(total * pct // 100, self.config.min_feasible_nodes)

    def find_node(self, pod: PodInfo, volumes: PodVolumes | None = None) -> Decision:
        order = self._order
        total = len(order)
        reasons: Counter[str] = Counter()
        if total == 0:
            return Decision(None, reasons, 0, 0)
        target = self.feasible_target(total)
        feasible: list[NodeInfo] = []
        start = self._next_start % total
        evaluated = 0
        infos = self.node_infos
        # Claims alone do not make a pod complex: the plain path, plus the volume check when
        # the claims' volumes restrict the nodes at all.
        simple = pod.affinity.empty and not pod.host_ports
        check_volumes = volumes if volumes is not None and volumes.constrained else None
        fits_plain = plugins.fits_plain
        nominated = self.nominated
        for i in range(total):
            node = infos[order[(start + i) % total]]
            evaluated += 1
            if nominated and node.name in nominated:
                ahead = [
                    p
                    for p in nominated[node.name].values()
                    if p.uid != pod.uid and p.priority >= pod.priority
                ]
                if ahead:
                    failed = plugins.filter_node(
                        pod, preemption.with_pods(node, [*node.pods.values(), *ahead])
                    )
                    if failed:
                        reasons.update(failed)
                        continue
                    feasible.append(node)
                    if len(feasible) >= target:
                        break
                    continue
            if simple and node.plain:
                if not fits_plain(pod, node):
                    reasons.update(plugins.resources(pod, node))
                    continue
                if check_volumes is not None:
                    unfit = check_volumes.unfit(node.labels, node.name)
                    if unfit:
                        reasons[unfit] += 1
                        continue
            else:
                failed = plugins.filter_node(pod, node)
                if not failed and check_volumes is not None:
                    unfit = check_volumes.unfit(node.labels, node.name)
                    failed = [unfit] if unfit else []
                if failed:
                    reasons.update(failed)
                    continue
            feasible.append(node)
            if len(feasible) >= target:
                break
        self._next_start = (start + evaluated) % total
        if not feasible:
            return Decision(None, reasons, evaluated, total)
        best = plugins.best_nodes(pod, feasible)
        chosen = best[0] if len(best) == 1 else self.rng.choice(best)
        return Decision(chosen.name, reasons, evaluated, total)

    async def schedule_one(self, key: ObjectKey) -> Decision | None:
        pod = self.pods.get(key)
        if pod is None or is_deleting(pod) or not self._responsible(pod):
            return None
        if (pod.get("spec") or {}).get("nodeName"):
            return None
        uid = str(meta(pod).get("uid"))
        if uid in self.assumed:
            return None
        info = pod_info(pod)
        started = time.perf_counter()
        volumes: PodVolumes | None = None
        if info.claims:
            prepared = self.volume_binding.prepare(pod)
            if isinstance(prepared, str):
                total = len(self._order)
                decision = Decision(None, Counter(), 0, total, rejected=prepared)
            else:
                volumes = prepared
                decision = self.find_node(info, volumes)
        else:
            decision = self.find_node(info)
        result = "unschedulable" if decision.node is None else "scheduled"
        ATTEMPT_SECONDS.observe(time.perf_counter() - started, result=result)
        if decision.node is None:
            ATTEMPTS.inc(result="unschedulable")
            self._attempts[key] += 1
            self.unschedulable[key] = self.clock.monotonic()
            self._spawn(self._report_unschedulable(pod, decision.message))
            if self.config.preemption and self._may_preempt(pod, info):
                chosen = preemption.choose(info, list(self.node_infos.values()), self._breaking)
                if chosen is not None:
                    self._nominate(info, chosen.node)
                    self._spawn(self._preempt(pod, chosen))
            return decision
        self.node_infos[decision.node].add_pod(info)
        self._pod_node[uid] = (decision.node, key)
        self.assumed[uid] = decision.node
        self._spawn(self._bind(pod, info, decision.node, volumes))
        return decision

    # ---- preemption -----------------------------------------------------------------------
    def _may_preempt(self, pod: Frozen, info: PodInfo) -> bool:
        """kube's eligibility: the pod's policy allows it, and it is not still waiting for
        the victims of an earlier preemption to go."""
        if not info.preempts:
            return False
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        node = self.node_infos.get(str(nominated)) if nominated else None
        if node is None:
            return True
        for other in node.pods.values():
            victim = self.pods.get(ObjectKey(other.key))
            if victim is not None and is_deleting(victim) and other.priority < info.priority:
                return False
        return True

    def _nominate(self, info: PodInfo, node: str) -> None:
        self._forget_nomination(info.uid)
        self.nominated.setdefault(node, {})[info.uid] = info

    def _forget_nomination(self, uid: str) -> None:
        for node, pods in list(self.nominated.items()):
            if pods.pop(uid, None) is not None and not pods:
                del self.nominated[node]

    def _breaking(self, victims: list[PodInfo]) -> set[str]:
        """The victims whose eviction, in this order, would break a PodDisruptionBudget
        (budgets judged from the pods themselves, as the eviction endpoint does)."""
        if self.budgets is None:
            return set()
        allowed: dict[str, int] = {}
        out: set[str] = set()
        for v in victims:
            victim = self.pods.get(ObjectKey(v.key))
            if victim is None:
                continue
            ns = namespace(victim)
            labels = meta(victim).get("labels") or {}
            for pdb in self.budgets.list(ns):
                spec = pdb.get("spec") or {}
                try:
                    selector = label_selector_from_object(spec.get("selector"))
                except SelectorError:
                    continue
                if selector.empty or not selector.matches(labels):
                    continue
                k = key_of(pdb)
                if k not in allowed:
                    allowed[k] = self._disruptions_allowed(spec, selector, ns)
                allowed[k] -= 1
                if allowed[k] < 0:
                    out.add(v.uid)
        return out

    def _disruptions_allowed(self, spec: Any, selector: Any, ns: str | None) -> int:
        covered = [
            p
            for p in self.pods.list(ns)
            if not is_deleting(p) and selector.matches(meta(p).get("labels") or {})
        ]
        healthy = sum(
            1
            for p in covered
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or ()
            )
        )
        expected = len(covered)
        if "minAvailable" in spec:
            desired = _scaled(spec["minAvailable"], expected)
        else:
            desired = expected - _scaled(spec.get("maxUnavailable", 0), expected)
        return healthy - desired

    async def _preempt(self, pod: Frozen, chosen: preemption.Candidate) -> None:
        """Nominate the node for ``pod``, then delete the victims gracefully (each told why,
        with a ``DisruptionTarget`` condition and a ``Preempted`` event)."""
        self.preemptions += 1
        ns, pod_name = namespace(pod), name(pod)
        try:
            await self.client.patch(
                PODS,
                pod_name,
                {"status": {"nominatedNodeName": chosen.node}},
                namespace=ns,
                subresource="status",
            )
        except (errors.ApiError, OSError) as exc:
            log.info("could not nominate %s for %s/%s: %s", chosen.node, ns, pod_name, exc)
            return
        uid = str(meta(pod).get("uid"))
        for v in chosen.victims:
            victim = self.pods.get(ObjectKey(v.key))
            if victim is None:
                continue
            cond = {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": f"{self.config.scheduler_name}: preempting to accommodate a higher"
                " priority pod",
                "lastTransitionTime": format_time(self.clock.now()),
            }
            try:
                if not await self._set_condition(victim, cond):
                    continue  # gone, or no longer the pod chosen
                await self.client.delete(
                    PODS, name(victim), namespace=namespace(victim), precondition_uid=v.uid
                )
            except (errors.ApiError, OSError) as exc:
                log.info("could not preempt %s: %s", v.key, exc)
                continue
            await self.recorder.normal(
                victim, "Preempted", f"Preempted by pod {uid} on node {chosen.node}"
            )
        log.info("%s/%s preempted %d pod(s) on %s", ns, pod_name, len(chosen.victims), chosen.node)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bind(
        self, pod: Frozen, info: PodInfo, node: str, volumes: PodVolumes | None = None
    ) -> None:
        ns, pod_name = namespace(pod) or "default", name(pod)
        async with self._bind_slots:
            try:
                if volumes is not None and volumes.waiting:
                    await self.volume_binding.select_node(volumes, node)
                await bind(self.client, namespace=ns, pod=pod_name, node=node)
            except (TimeoutError, errors.ApiError, OSError) as exc:
                self.bind_failures += 1
                ATTEMPTS.inc(result="error")
                if self.assumed.pop(info.uid, None) is not None:
                    self._unaccount(info.uid)
                if isinstance(exc, errors.NotFound | errors.Conflict):
                    return  # deleted, or bound by someone else: the informer will tell
                log.warning("binding %s/%s to %s failed: %s", ns, pod_name, node, exc)
                self.queue.add_rate_limited(ObjectKey(info.key))
                return
        self.scheduled += 1
        ATTEMPTS.inc(result="scheduled")
        self._attempts.pop(ObjectKey(info.key), None)
        self.queue.forget(ObjectKey(info.key))
        await self.recorder.normal(
            pod, "Scheduled", f"Successfully assigned {ns}/{pod_name} to {node}"
        )

    async def _report_unschedulable(self, pod: Frozen, message: str) -> None:
        await self.recorder.warning(pod, "FailedScheduling", message)
        if not self.config.report_status:
            return
        cond = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": format_time(self.clock.now()),
        }
        try:
            await self._set_condition(pod, cond, unless_bound=True)
        except (errors.ApiError, OSError) as exc:
            log.debug("could not mark %s unschedulable: %s", name(pod), exc)

    async def _set_condition(self, pod: Frozen, cond: Obj, *, unless_bound: bool = False) -> bool:
        """Put ``cond`` in ``pod``'s conditions. The merge patch replaces the whole list, so it
        applies only over the version it was computed from: a condition another writer added
        since the cache read (the agent's Ready, a DisruptionTarget) stays. On a Conflict the
        pod is read again (same uid, and with ``unless_bound`` still unbound) and the list
        recomputed. Returns False when the pod is gone or no longer the one meant."""
        current: Frozen | Obj = pod
        for _attempt in range(STALE_ATTEMPTS):
            try:
                await self.client.patch(
                    PODS,
                    name(pod),
                    _with_condition(current, cond),
                    namespace=namespace(pod),
                    subresource="status",
                )
                return True
            except errors.NotFound:
                return False
            except errors.Conflict:
                try:
                    current = await self.client.get(PODS, name(pod), namespace=namespace(pod))
                except errors.NotFound:
                    return False
                if meta(current).get("uid") != meta(pod).get("uid"):
                    return False
                if unless_bound and (current.get("spec") or {}).get("nodeName"):
                    return False
        raise errors.Conflict(409, "Conflict", f"pod {name(pod)} kept changing")

    # ---- running ------------------------------------------------------------------------
    async def run(self) -> None:
        """Schedule until cancelled (informers must be started and synced by the caller)."""
        flush = asyncio.create_task(self._flush_loop())
        try:
            n = 0
            while True:
                key = await self.queue.get()
                if key is None:
                    return
                try:
                    await self.schedule_one(key)
                except Exception:
                    log.exception("scheduling %s failed", key)
                    self.queue.add_rate_limited(key)
                finally:
                    self.queue.done(key)
                n += 1
                if n % 16 == 0:
                    await asyncio.sleep(0)  # let binds and informers run
        finally:
            flush.cancel()
            await asyncio.gather(flush, return_exceptions=True)

    async def _flush_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.unschedulable_flush)
            self._retry_unschedulable()

    async def wait_binds(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _scaled(value: Any, total: int) -> int:
    """An int-or-percent budget figure of ``total`` pods (percentages round up)."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            return -(-int(value[:-1]) * total // 100)
        except ValueError:
            return total
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _with_condition(pod: Frozen | Obj, cond: Obj) -> Obj:
    """A status merge patch replacing ``pod``'s condition of ``cond``'s type with ``cond``
    (a merge patch replaces the whole list, so the other conditions are carried along, and
    ``pod``'s resourceVersion makes it apply only over the version they were read from)."""
    kept = [
        dict(c)
        for c in (pod.get("status") or {}).get("conditions") or ()
        if c.get("type") != cond["type"]
    ]
    patch: Obj = {"status": {"conditions": [*kept, cond]}}
    version = (pod.get("metadata") or {}).get("resourceVersion")
    if version:
        patch["metadata"] = {"resourceVersion": str(version)}
    return patch
