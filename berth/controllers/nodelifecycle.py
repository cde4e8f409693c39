"""Node lifecycle controller: notice dead nodes, taint them, evict their pods.

Health is judged from heartbeats *as observed here*: a node is healthy while its Lease in
``kube-node-lease`` (or its Ready condition's ``lastHeartbeatTime``) keeps changing. When
neither changed for ``grace_period`` seconds (40s by default; ``startup_grace_period`` for a
node that never reported), its conditions become ``Unknown`` ("Kubelet stopped posting node
status."), its pods are marked not ready, and it gets the ``node.kubernetes.io/unreachable``
NoExecute taint (``not-ready`` when the agent itself reports Ready=False). The taint manager
part then evicts (deletes) every pod on a NoExecute-tainted node that does not tolerate the
taint — at once, or after the toleration's ``tolerationSeconds``. A pod with no toleration for
not-ready/unreachable gets ``default_toleration_seconds`` (300s, the cluster spec's
``podEvictionTimeout``), as the API server's DefaultTolerationSeconds admission
(:mod:`berth.apiserver.tolerations`) gives every pod created since.

reconcile(node name) is level-triggered; a periodic monitor re-enqueues every node every
``monitor_period`` seconds, and reconcile asks to be retried when the next eviction is due.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.meta import format_time, parse_time
from berth.api.resources import LEASES, NODES, PODS
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, get_condition, is_deleting, name, namespace, thaw
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
NODE_LEASE_NAMESPACE = "kube-node-lease"
STALE_RETRY = 0.2
"""Seconds before a reconcile whose Node write met a newer Node runs again."""
STALE_ATTEMPTS = 3
"""Reads of a pod whose condition write keeps meeting a newer version, at most."""


def _over_version(obj: Frozen | Obj, patch: Obj) -> Obj:
    """``patch`` (a merge patch) made to apply only over ``obj``'s resourceVersion."""
    version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    if version:
        patch["metadata"] = {"resourceVersion": version}
    return patch


@dataclass(frozen=True, slots=True)
class NodeLifecycleConfig:
    grace_period: float = 40.0
    startup_grace_period: float = 60.0
    monitor_period: float = 5.0
    default_toleration_seconds: int = 300


@dataclass(slots=True)
class _Health:
    lease_renew: str
    heartbeat: str
    observed_at: float


def _tolerated_for(pod: Frozen, taint: Mapping[str, Any], default: int) -> float | None:
    """Seconds the pod may stay on a node with ``taint`` (None = forever, 0 = not at all)."""
    best: float | None = 0.0
    matched = False
    for t in (pod.get("spec") or {}).get("tolerations") or ():
        if t.get("effect") and t.get("effect") != taint["effect"]:
            continue
        key = t.get("key") or ""
        op = t.get("operator") or "Equal"
        if key and key != taint["key"]:
            continue
        if not key and op != "Exists":
            continue
        if op == "Equal" and (t.get("value") or "") != (taint.get("value") or ""):
            continue
        matched = True
        seconds = t.get("tolerationSeconds")
        if seconds is None:
            return None
        best = max(best or 0.0, float(seconds))
    if not matched and taint["key"] in (NOT_READY, UNREACHABLE):
        return float(default)
    return best if matched else 0.0


class NodeLifecycleController:
    def __init__(self, ctx: Context, config: NodeLifecycleConfig | None = None) -> None:
        self.ctx = ctx
        self.config = config or NodeLifecycleConfig()
        self.nodes = ctx.informers.informer(NODES)
        self.leases = ctx.informers.informer(LEASES, namespace=NODE_LEASE_NAMESPACE)
        self.pods = ctx.pods()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="nodelifecycle")
        self.controller = Controller("nodelifecycle", self, self.queue, workers=2)
        self.health: dict[str, _Health] = {}
        self.evictions = 0
        self.nodes.add_handlers(
            Handlers(
                on_add=lambda n: self.queue.add(ObjectKey(name(n))),
                on_update=lambda _o, n: self.queue.add(ObjectKey(name(n))),
                on_delete=self._node_gone,
            )
        )
        self.leases.add_handlers(
            Handlers(
                on_add=lambda ls: self.queue.add(ObjectKey(name(ls))),
                on_update=lambda _o, ls: self.queue.add(ObjectKey(name(ls))),
            )
        )

    def _node_gone(self, node: Frozen) -> None:
        self.health.pop(name(node), None)

    def monitor(self) -> None:
        """Enqueue every node (the periodic health check)."""
        for node in self.nodes.list():
            self.queue.add(ObjectKey(name(node)))

    async def run_monitor(self) -> None:
        while True:
            await self.ctx.clock.sleep(self.config.monitor_period)
            self.monitor()

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        node_name = name(node)
        ready = get_condition(node, "Ready")
        status = str(ready.get("status")) if ready is not None else "Unknown"
        now = self.ctx.clock.monotonic()
        lease = self.leases.get(f"{NODE_LEASE_NAMESPACE}/{node_name}")
        renew = str((lease.get("spec") or {}).get("renewTime") or "") if lease else ""
        heartbeat = str(ready.get("lastHeartbeatTime") or "") if ready is not None else ""
        seen = self.health.get(node_name)
        if seen is None or seen.lease_renew != renew or seen.heartbeat != heartbeat:
            seen = _Health(renew, heartbeat, now)
            self.health[node_name] = seen
        grace = self.config.grace_period if ready is not None else self.config.startup_grace_period
        silent = now - seen.observed_at
        if silent >= grace and status != "Unknown":
            node = await self._mark_unknown(node)
            status = "Unknown"
        wait = [max(grace - silent, 0.01)] if status != "Unknown" else []
        due = await self._sync_taints_and_evict(node, status)
        if due is not None:
            wait.append(due)
        if wait:
            raise Retry(min(*wait, self.config.monitor_period), "node health check")

    async def _mark_unknown(self, node: Frozen) -> Frozen:
        """Mark the Node's conditions Unknown; returns the Node as written (the taints that
        follow are written over this version, not over the cache's older one)."""
        stamp = format_time(self.ctx.clock.now())
        conditions = []
        for raw in (node.get("status") or {}).get("conditions") or ():
            c = thaw(raw)
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = stamp
            c.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
            )
            conditions.append(c)
        if not conditions:
            conditions.append(
                {
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastTransitionTime": stamp,
                    "lastHeartbeatTime": stamp,
                }
            )
        # The conditions are written whole, so only over the Node they were computed from: a
        # status the agent posted since the cache read (a heartbeat) must not be overwritten.
        patch = _over_version(node, {"status": {"conditions": conditions}})
        try:
            written = await self.ctx.client.patch(NODES, name(node), patch, subresource="status")
        except errors.Conflict:
            raise Retry(STALE_RETRY, "stale Node in the cache") from None
        log.warning("node %s stopped posting status: marked it Unknown", name(node))
        await self.ctx.recorder.normal(
            node, "NodeNotReady", f"Node {name(node)} status is now: NodeNotReady"
        )
        for pod in self.pods.by_index("node", name(node)):
            await self._mark_pod_not_ready(pod, stamp)
        return written

    async def _mark_pod_not_ready(self, pod: Frozen, stamp: str) -> None:
        """Set the pod's Ready and ContainersReady conditions False. The list is written whole,
        over the version it was computed from (a condition another writer added since the cache
        read must stay); on a Conflict it is read again and recomputed (once the Node is
        Unknown nothing marks its pods again)."""
        current: Frozen | Obj = pod
        for _attempt in range(STALE_ATTEMPTS):
            conditions = []
            changed = False
            for raw in (current.get("status") or {}).get("conditions") or ():
                c = thaw(raw)
                if c.get("type") in ("Ready", "ContainersReady") and c.get("status") != "False":
                    c.update(status="False", lastTransitionTime=stamp)
                    changed = True
                conditions.append(c)
            if not changed:
                return
            patch = _over_version(current, {"status": {"conditions": conditions}})
            try:
                await self.ctx.client.patch(
                    PODS, name(pod), patch, namespace=namespace(pod), subresource="status"
                )
                return
            except errors.NotFound:
                return
            except errors.Conflict:
                try:
                    current = await self.ctx.client.get(PODS, name(pod), namespace=namespace(pod))
                except errors.NotFound:
                    return
        log.warning("pod %s/%s kept changing: not marked not ready", namespace(pod), name(pod))

    async def _sync_taints_and_evict(self, node: Frozen, status: str) -> float | None:
        taints = [thaw(t) for t in (node.get("spec") or {}).get("taints") or ()]
        others = [t for t in taints if t.get("key") not in (NOT_READY, UNREACHABLE)]
        wanted_key = {"False": NOT_READY, "Unknown": UNREACHABLE}.get(status)
        existing = {(t["key"], t["effect"]): t for t in taints}
        stamp = format_time(self.ctx.clock.now())
        desired = list(others)
        if wanted_key is not None:
            for effect in ("NoSchedule", "NoExecute"):
                old = existing.get((wanted_key, effect))
                taint: Obj = {"key": wanted_key, "effect": effect}
                if effect == "NoExecute":
                    taint["timeAdded"] = old.get("timeAdded", stamp) if old else stamp
                desired.append(taint)
        if desired != taints:
            # The list is replaced whole, so only over the Node it was computed from: from a
            # stale cache it would drop a taint written meanwhile (berth apply's control-plane
            # taint, an operator's). A Conflict means the watch has a newer Node coming.
            patch = _over_version(node, {"spec": {"taints": desired or None}})
            try:
                await self.ctx.client.patch(NODES, name(node), patch)
            except errors.Conflict:
                raise Retry(STALE_RETRY, "stale Node in the cache") from None
        return await self._evict(node, [t for t in desired if t.get("effect") == "NoExecute"])

    async def _evict(self, node: Frozen, no_execute: list[Obj]) -> float | None:
        if not no_execute:
            return None
        now = self.ctx.clock.now()
        next_due: float | None = None
        for pod in self.pods.by_index("node", name(node)):
            if is_deleting(pod):
                continue
            deadline = 0.0
            forever = True
            for taint in no_execute:
                seconds = _tolerated_for(pod, taint, self.config.default_toleration_seconds)
                if seconds is None:
                    continue
                forever = False
                added = parse_time(taint.get("timeAdded")) or now
                deadline = max(deadline, seconds - (now - added).total_seconds())
            if forever:
                continue
            if deadline > 0:
                next_due = deadline if next_due is None else min(next_due, deadline)
                continue
            log.info("evicting pod %s/%s from node %s", namespace(pod), name(pod), name(node))
            with contextlib.suppress(errors.NotFound):
                await self.ctx.client.delete(PODS, name(pod), namespace=namespace(pod))
                self.evictions += 1
                await self.ctx.recorder.normal(
                    pod,
                    "TaintManagerEviction",
                    f"Marking for deletion Pod {namespace(pod)}/{name(pod)}",
                )
        return next_due
