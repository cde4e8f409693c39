"""DaemonSet controller: one pod on every eligible node.

A node is eligible when it matches the template's nodeSelector and required node affinity and
its NoSchedule/NoExecute taints are tolerated (DaemonSet pods also tolerate not-ready,
unreachable, unschedulable and pressure taints, as in Kubernetes). reconcile(key) creates a
pod for each eligible node lacking one — pinned with required node affinity on
``metadata.name`` so the scheduler binds it there — deletes pods on ineligible nodes,
duplicates and failed pods, rolls out template changes under RollingUpdate (at most
``maxUnavailable`` old pods down at a time; ``OnDelete`` waits for users) and reports status.

Each template the set has had is kept as a ControllerRevision (:mod:`history`), named
``<set>-<hash>`` where the hash is the pods' ``controller-revision-hash``; ``kubectl rollout
history/undo daemonset`` read and apply them, an undo renumbering the old revision as newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

import orjson

from berth.api.resources import DAEMONSETS, NODES, PODS
from berth.api.scheduling import (
    NO_EXECUTE,
    NO_SCHEDULE,
    first_untolerated,
    node_taints,
    pod_tolerations,
    required_node_affinity,
)
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers import pods as podutil
from berth.controllers.context import Context
from berth.controllers.history import History, revision_data, safe_hash
from berth.machinery import ownership
from berth.machinery.controller import Controller, Retry
from berth.machinery.expectations import Expectations
from berth.machinery.informer import Handlers
from berth.machinery.objects import (
    Frozen,
    is_deleting,
    key_of,
    labels,
    meta,
    name,
    namespace,
    thaw,
    uid,
)
from berth.machinery.queue import WorkQueue

HASH_LABEL = "controller-revision-hash"
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)


def template_hash(template: Any, collision_count: int = 0) -> str:
    """The ``controller-revision-hash`` of a daemon pod template (what its pods and its
    ControllerRevision carry); without collisions the digest berth always used, so pods made
    before DaemonSets had revisions still count as up to date."""
    payload = orjson.dumps(thaw(template), option=orjson.OPT_SORT_KEYS)
    if collision_count:
        return safe_hash(payload, collision_count)
    return hashlib.sha256(payload).hexdigest()[:10]


def daemon_pod_template(ds: Frozen) -> Obj:
    """The DaemonSet's template with the daemon tolerations added."""
    tmpl: Obj = thaw((ds.get("spec") or {}).get("template") or {})
    spec = tmpl.setdefault("spec", {})
    tolerations = list(spec.get("tolerations") or [])
    for t in DAEMON_TOLERATIONS:
        if not any(
            x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tolerations
        ):
            tolerations.append(dict(t))
    spec["tolerations"] = tolerations
    return tmpl


def pin_to_node(pod_spec: Obj, node: str) -> None:
    """Require ``node`` through node affinity on ``metadata.name`` (replacing any such term)."""
    affinity = pod_spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    terms = required.get("nodeSelectorTerms") or [{}]
    for term in terms:
        fields = [f for f in term.get("matchFields") or [] if f.get("key") != "metadata.name"]
        term["matchFields"] = [*fields, pin]
    required["nodeSelectorTerms"] = terms


class DaemonSetController:
    def __init__(self, ctx: Context, *, workers: int = 2) -> None:
        self.ctx = ctx
        self.sets = ctx.informers.informer(DAEMONSETS)
        self.nodes = ctx.informers.informer(NODES)
        self.pods = ctx.pods()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="daemonsets")
        self.controller = Controller("daemonsets", self, self.queue, workers=workers)
        self.expectations = Expectations(ctx.clock)
        self.history = History(ctx)
        self.sets.add_handlers(ownership.requeue_handlers(self._enqueue))
        self.nodes.add_handlers(
            Handlers(
                on_add=lambda _n: self._enqueue_all(),
                on_update=self._node_updated,
                on_delete=lambda _n: self._enqueue_all(),
            )
        )
        self.pods.add_handlers(ownership.requeue_handlers(self._pod_changed))

    def _enqueue(self, ds: Frozen) -> None:
        self.queue.add(key_of(ds))

    def _enqueue_all(self) -> None:
        for ds in self.sets.list():
            self._enqueue(ds)

    def _node_updated(self, old: Frozen, new: Frozen) -> None:
        if labels(old) != labels(new) or (old.get("spec") or {}) != (new.get("spec") or {}):
            self._enqueue_all()

    def _pod_changed(self, pod: Frozen) -> None:
        key = ownership.owner_key(pod, "DaemonSet")
        if key is not None:
            self.queue.add(key)

    def eligible(self, ds: Frozen, node: Frozen) -> bool:
        spec = daemon_pod_template(ds).get("spec") or {}
        relevant = tuple(t for t in node_taints(node) if t.effect in (NO_SCHEDULE, NO_EXECUTE))
        if first_untolerated(pod_tolerations(spec), relevant) is not None:
            return False
        return required_node_affinity(spec).matches(labels(node), name(node))

    async def reconcile(self, key: ObjectKey) -> None:
        ds = self.sets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        tmpl = daemon_pod_template(ds)
        h, collisions = await self._revision(ds, tmpl)
        owned = [p for p in self.pods.by_index("controller", uid(ds))]
        by_node: dict[str, list[Frozen]] = {}
        for pod in owned:
            if is_deleting(pod):
                continue
            target = self._target_node(pod)
            by_node.setdefault(target, []).append(pod)
        nodes = {name(n): n for n in self.nodes.list()}
        eligible = {n for n, node in nodes.items() if self.eligible(ds, node)}
        pending = self.expectations.pending_creates(
            key, [f"{name(p)}@{self._target_node(p)}" for p in owned]
        )
        pending_nodes = {p.rsplit("@", 1)[-1] for p in pending}
        to_create: list[str] = []
        to_delete: list[Frozen] = []
        for node_name in sorted(eligible):
            pods = by_node.get(node_name, [])
            failed = [p for p in pods if podutil.phase(p) == "Failed"]
            to_delete.extend(failed)
            live = [p for p in pods if p not in failed]
            if not live and node_name not in pending_nodes and not is_deleting(ds):
                to_create.append(node_name)
            to_delete.extend(sorted(live, key=lambda p: str(meta(p).get("creationTimestamp")))[1:])
        for node_name, pods in by_node.items():
            if node_name not in eligible:
                to_delete.extend(pods)
        to_delete.extend(
            await self._rolling_victims(
                ds, h=h, by_node=by_node, eligible=eligible, already=to_delete
            )
        )
        await asyncio.gather(
            *(self._create(ds, key, tmpl=tmpl, h=h, node=n) for n in to_create),
            *(self._delete(p) for p in {name(p): p for p in to_delete}.values()),
        )
        if to_create:
            await self.ctx.recorder.normal(
                ds, "SuccessfulCreate", f"Created {len(to_create)} daemon pod(s)"
            )
        retry = await self._update_status(
            ds, h=h, by_node=by_node, eligible=eligible, collisions=collisions
        )
        await self._truncate_history(ds, h=h, pods=owned)
        if retry is not None:
            raise Retry(retry, "waiting for daemon pods to become available")

    async def _revision(self, ds: Frozen, tmpl: Obj) -> tuple[str, int]:
        """The hash of the template's ControllerRevision (made the newest, created if need
        be: ``kubectl rollout history/undo ds`` read them) and the collision count."""
        collisions = int((ds.get("status") or {}).get("collisionCount") or 0)
        if is_deleting(ds):
            return template_hash(tmpl, collisions), collisions
        tmpl_labels = ((ds.get("spec") or {}).get("template") or {}).get("metadata") or {}
        ensured = await self.history.ensure(
            ds,
            data=revision_data(ds),
            labels=dict(tmpl_labels.get("labels") or {}),
            hash_label=HASH_LABEL,
            digest=lambda c: template_hash(tmpl, c),
            collision_count=collisions,
        )
        h = labels(ensured.revision).get(HASH_LABEL) or template_hash(tmpl, collisions)
        return str(h), ensured.collision_count

    async def _truncate_history(self, ds: Frozen, *, h: str, pods: list[Frozen]) -> None:
        """Keep ``revisionHistoryLimit`` revisions besides those of the pods and the current."""
        if is_deleting(ds):
            return
        hashes = {h} | {labels(p).get(HASH_LABEL) for p in pods}
        revisions = self.history.owned(ds)
        live = {name(r) for r in revisions if labels(r).get(HASH_LABEL) in hashes}
        limit = int((ds.get("spec") or {}).get("revisionHistoryLimit", 10))
        await self.history.truncate(revisions, live=live, limit=limit)

    @staticmethod
    def _target_node(pod: Frozen) -> str:
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            return str(spec["nodeName"])
        terms = (
            ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution"
            )
            or {}
        ).get("nodeSelectorTerms") or ()
        for term in terms:
            for f in term.get("matchFields") or ():
                if f.get("key") == "metadata.name" and f.get("values"):
                    return str(f["values"][0])
        return ""

    async def _rolling_victims(
        self,
        ds: Frozen,
        *,
        h: str,
        by_node: dict[str, list[Frozen]],
        eligible: set[str],
        already: list[Frozen],
    ) -> list[Frozen]:
        strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete":
            return []
        raw = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
        total = len(eligible)
        if isinstance(raw, str) and raw.endswith("%"):
            max_unavailable = max(1, int(raw[:-1]) * total // 100)
        else:
            max_unavailable = max(1, int(raw))
        now = self.ctx.clock.now()
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        unavailable = 0
        old: list[Frozen] = []
        for node_name in eligible:
            pods = by_node.get(node_name, [])
            if not pods or not any(podutil.is_available(p, min_ready, now) for p in pods):
                unavailable += 1
            old.extend(p for p in pods if labels(p).get(HASH_LABEL) != h and p not in already)
        budget = max_unavailable - unavailable
        return old[: max(budget, 0)]

    async def _create(self, ds: Frozen, key: ObjectKey, *, tmpl: Obj, h: str, node: str) -> None:
        body = podutil.pod_from_template(
            tmpl, ds, generate_name=f"{name(ds)}-", extra_labels={HASH_LABEL: h}
        )
        pod_name = f"{name(ds)}-{podutil.random_suffix()}"
        body["metadata"]["name"] = pod_name
        pin_to_node(body["spec"], node)
        # Expectation names carry the node so a lagging cache cannot double a node's pod.
        await ownership.create_expected(
            self.ctx.client,
            self.expectations,
            key,
            PODS,
            body,
            namespace=namespace(ds),
            expect_as=f"{pod_name}@{node}",
        )

    async def _delete(self, pod: Frozen) -> None:
        with contextlib.suppress(errors.NotFound):
            await self.ctx.client.delete(PODS, name(pod), namespace=namespace(pod))

    async def _update_status(
        self,
        ds: Frozen,
        *,
        h: str,
        by_node: dict[str, list[Frozen]],
        eligible: set[str],
        collisions: int,
    ) -> float | None:
        now = self.ctx.clock.now()
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        scheduled = [n for n in by_node if n in eligible and by_node[n]]
        ready = available = updated = 0
        waits: list[float] = []
        for n in scheduled:
            pods = by_node[n]
            if any(podutil.is_ready(p) for p in pods):
                ready += 1
            if any(podutil.is_available(p, min_ready, now) for p in pods):
                available += 1
            waits.extend(
                w for p in pods if (w := podutil.available_in(p, min_ready, now)) is not None
            )
            if any(labels(p).get(HASH_LABEL) == h for p in pods):
                updated += 1
        status: Obj = {
            "desiredNumberScheduled": len(eligible),
            "currentNumberScheduled": len(scheduled),
            "numberMisscheduled": sum(1 for n in by_node if n not in eligible and by_node[n]),
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": max(0, len(eligible) - available),
            "updatedNumberScheduled": updated,
            "observedGeneration": meta(ds).get("generation", 1),
        }
        if collisions:
            status["collisionCount"] = collisions
        old = ds.get("status") or {}
        if any(old.get(k, 0) != v for k, v in status.items()):
            await ownership.write_status(self.ctx.client, DAEMONSETS, ds, status)
        return min(waits) + 0.01 if waits else None
