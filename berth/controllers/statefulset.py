"""StatefulSet controller: pods with stable names, created, replaced and removed in order.

The set's pods are ``<set>-<ordinal>`` for ordinals ``start .. start+replicas-1``
(``spec.ordinals.start``, default 0); each carries ``statefulset.kubernetes.io/pod-name``,
``apps.kubernetes.io/pod-index`` and ``controller-revision-hash`` (the name of the
ControllerRevision its template came from), and has hostname = its name, subdomain =
``spec.serviceName`` (its DNS name under the set's headless Service).

reconcile(key), as kube-controller-manager's stateful set control:

1. make the current template's ControllerRevision the update revision (:mod:`history`); the
   current revision is ``status.currentRevision`` (the update revision on a new set);
2. walk the ordinals in range, lowest first: a missing pod is created (at the current revision
   when its index is below the partition — or below ``status.currentReplicas`` — else at the
   update revision), a failed one deleted so it comes back; with ``OrderedReady`` the walk
   stops at the first pod that is not Running, Ready and available, so pod N+1 is created only
   once pod N is up. ``Parallel`` does not wait;
3. delete pods whose ordinal is out of range, highest first: with ``OrderedReady`` one at a
   time and only while every other pod is healthy;
4. ``RollingUpdate``: from the highest ordinal down to ``start + partition`` delete the first
   pod not at the update revision (it comes back at it), one at a time, waiting for each to be
   healthy again. ``OnDelete``: wait for users to delete pods;
5. write ``status`` (replicas, readyReplicas, currentReplicas, updatedReplicas,
   availableReplicas, currentRevision, updateRevision, observedGeneration, collisionCount);
   when every pod is updated and ready the update revision becomes the current one;
6. delete revisions beyond ``revisionHistoryLimit`` that no pod uses.

Claims of ``volumeClaimTemplates`` are made by :mod:`statefulset_claims`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from berth.api.resources import PODS, STATEFULSETS
from berth.api.selectors import label_selector_from_object
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers import pods as podutil
from berth.controllers.context import Context
from berth.controllers.history import History, data_hash, revision_data
from berth.controllers.statefulset_claims import ClaimManager
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

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
REVISION_HASH_LABEL = "controller.kubernetes.io/hash"
_ORDINAL = re.compile(r"^(.*)-(0|[1-9][0-9]{0,8})$")


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    """The ordinal of ``pod_name`` if it is a name of set ``set_name``'s pods."""
    m = _ORDINAL.match(pod_name)
    if m is None or m.group(1) != set_name:
        return None
    return int(m.group(2))


def pod_revision(pod: Frozen) -> str:
    return str(labels(pod).get(REVISION_LABEL) or "")


def _spec(sts: Frozen) -> Any:
    return sts.get("spec") or {}


def start_ordinal(sts: Frozen) -> int:
    return int((_spec(sts).get("ordinals") or {}).get("start") or 0)


def partition(sts: Frozen) -> int:
    ru = (_spec(sts).get("updateStrategy") or {}).get("rollingUpdate") or {}
    return int(ru.get("partition") or 0)


def update_type(sts: Frozen) -> str:
    return str((_spec(sts).get("updateStrategy") or {}).get("type") or "RollingUpdate")


@dataclass
class _Pass:
    """What one reconcile saw and did."""

    sts: Frozen
    current: str
    update: str
    current_template: Frozen
    update_template: Frozen
    pods: dict[int, Frozen] = field(default_factory=dict)
    """Every live pod of the set by ordinal, in range or not, updated as this pass acts."""
    deleting: set[str] = field(default_factory=set)
    """Pods this controller deleted that the cache may not show as terminating yet."""
    created: int = 0
    waits: list[float] = field(default_factory=list)


class StatefulSetController:
    def __init__(self, ctx: Context, *, workers: int = 2) -> None:
        self.ctx = ctx
        self.sets = ctx.informers.informer(STATEFULSETS)
        self.pods = ctx.pods()
        self.history = History(ctx)
        self.claims = ClaimManager(ctx)
        self.expectations = Expectations(ctx.clock)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="statefulsets")
        self.controller = Controller("statefulsets", self, self.queue, workers=workers)
        self.sets.add_handlers(ownership.requeue_handlers(self._enqueue))
        self.pods.add_handlers(ownership.requeue_handlers(self._owned_changed))
        self.history.informer.add_handlers(
            Handlers(on_delete=self._owned_changed)  # a user deleted a revision
        )

    def _enqueue(self, sts: Frozen) -> None:
        self.queue.add(key_of(sts))

    def _owned_changed(self, obj: Frozen) -> None:
        key = ownership.owner_key(obj, "StatefulSet")
        if key is not None:
            self.queue.add(key)
        elif ownership.is_orphan(obj) and obj.get("kind", "Pod") == "Pod":
            for sts in self.sets.list(namespace(obj) or ""):
                if ordinal_of(name(sts), name(obj)) is not None:
                    self._enqueue(sts)

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        sts = self.sets.get(key)
        if sts is None:
            self.expectations.forget(key)
            return
        owned = list(self.pods.by_index("controller", uid(sts)))
        if is_deleting(sts):
            return  # its pods go with it (garbage collector)
        owned += await self._adopt(sts)
        p = await self._revisions(sts)
        p.deleting = self.expectations.pending_deletes(key, [name(x) for x in owned])
        for pod in owned:
            ordinal = ordinal_of(name(sts), name(pod))
            if ordinal is not None:
                p.pods[ordinal] = pod
        if await self._replicas(key, p) and await self._scale_down(key, p):
            await self._roll(key, p)
        await self._update_status(p)
        live = {p.current, p.update} | {pod_revision(x) for x in p.pods.values()}
        limit = int(_spec(sts).get("revisionHistoryLimit", 10))
        await self.history.truncate(self.history.owned(sts), live=live, limit=limit)
        if p.waits:
            raise Retry(min(p.waits) + 0.01, "waiting for pods to become available")

    async def _adopt(self, sts: Frozen) -> list[Frozen]:
        """Orphans named like the set's pods and matching its selector become its own."""
        return await ownership.adopt(
            self.ctx.client,
            PODS,
            sts,
            self.pods.list(namespace(sts) or ""),
            label_selector_from_object(_spec(sts).get("selector")),
            eligible=lambda pod: ordinal_of(name(sts), name(pod)) is not None,
        )

    async def _revisions(self, sts: Frozen) -> _Pass:
        data = revision_data(sts)
        status = sts.get("status") or {}
        tmpl_labels = ((_spec(sts).get("template") or {}).get("metadata") or {}).get("labels")
        ensured = await self.history.ensure(
            sts,
            data=data,
            labels=dict(tmpl_labels or {}),
            hash_label=REVISION_HASH_LABEL,
            digest=lambda c: data_hash(data, c),
            collision_count=int(status.get("collisionCount") or 0),
        )
        update = ensured.revision
        current = update
        for rev in ensured.revisions:
            if name(rev) == status.get("currentRevision"):
                current = rev
        p = _Pass(
            sts=sts,
            current=name(current),
            update=name(update),
            current_template=_template_of(current),
            update_template=_template_of(update),
        )
        p.sts = _with_collisions(sts, ensured.collision_count)
        return p

    @staticmethod
    def _terminating(p: _Pass, pod: Frozen) -> bool:
        return is_deleting(pod) or name(pod) in p.deleting

    def _healthy(self, p: _Pass, pod: Frozen) -> bool:
        """Running, Ready and ready for minReadySeconds (remembers when it will be)."""
        if self._terminating(p, pod):
            return False
        if podutil.phase(pod) != "Running" or not podutil.is_ready(pod):
            return False
        min_ready = int(_spec(p.sts).get("minReadySeconds") or 0)
        now = self.ctx.clock.now()
        if podutil.is_available(pod, min_ready, now):
            return True
        wait = podutil.available_in(pod, min_ready, now)
        if wait is not None:
            p.waits.append(wait)
        return False

    async def _replicas(self, key: ObjectKey, p: _Pass) -> bool:
        """Step 2; False when an ``OrderedReady`` set must wait before going on."""
        start = start_ordinal(p.sts)
        ordered = _spec(p.sts).get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        for ordinal in range(start, start + int(_spec(p.sts).get("replicas", 1))):
            pod = p.pods.get(ordinal)
            if pod is not None and podutil.is_terminal(pod) and not self._terminating(p, pod):
                await self._delete(key, p, pod, ordinal, reason="failed")
            if pod is None:
                await self._create(p, ordinal)
                if ordered:
                    return False
                continue
            if self._terminating(p, pod):
                # comes back under its name once it is gone
                if ordered:
                    return False
                continue
            if not self._healthy(p, pod) and ordered:
                return False
        return True

    async def _scale_down(self, key: ObjectKey, p: _Pass) -> bool:
        """Step 3; False when an ``OrderedReady`` set must wait before going on."""
        start = start_ordinal(p.sts)
        end = start + int(_spec(p.sts).get("replicas", 1))
        ordered = _spec(p.sts).get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        condemned = sorted((o for o in p.pods if not start <= o < end), reverse=True)
        for ordinal in condemned:
            pod = p.pods[ordinal]
            if self._terminating(p, pod):
                if ordered:
                    return False
                continue
            if ordered and any(
                not self._healthy(p, other) for o, other in p.pods.items() if o != ordinal
            ):
                return False
            await self.claims.condemn(p.sts, pod, ordinal)
            await self._delete(key, p, pod, ordinal, reason="scale down")
            if ordered:
                return False
        return not condemned

    async def _roll(self, key: ObjectKey, p: _Pass) -> None:
        """Step 4 (RollingUpdate only): one pod at a time, highest ordinal first."""
        if update_type(p.sts) != "RollingUpdate":
            return
        start = start_ordinal(p.sts)
        end = start + int(_spec(p.sts).get("replicas", 1))
        for ordinal in range(end - 1, start + partition(p.sts) - 1, -1):
            pod = p.pods.get(ordinal)
            if pod is None:
                return
            if pod_revision(pod) != p.update and not self._terminating(p, pod):
                await self._delete(key, p, pod, ordinal, reason="update")
                return
            if not self._healthy(p, pod):
                return

    async def _create(self, p: _Pass, ordinal: int) -> None:
        sts = p.sts
        start = start_ordinal(sts)
        status = sts.get("status") or {}
        # as kube: below the partition a pod is made at the current revision (without a
        # rollingUpdate block, the first currentReplicas ones); OnDelete always updates
        at_current = False
        if update_type(sts) == "RollingUpdate":
            ru = (_spec(sts).get("updateStrategy") or {}).get("rollingUpdate")
            below = partition(sts) if ru is not None else int(status.get("currentReplicas") or 0)
            at_current = ordinal - start < below
        revision = p.current if at_current else p.update
        template = p.current_template if at_current else p.update_template
        pod_name = f"{name(sts)}-{ordinal}"
        body = podutil.pod_from_template(
            template,
            sts,
            generate_name="",
            extra_labels={
                POD_NAME_LABEL: pod_name,
                POD_INDEX_LABEL: str(ordinal),
                REVISION_LABEL: revision,
            },
        )
        body["metadata"].pop("generateName", None)
        body["metadata"]["name"] = pod_name
        body["spec"]["hostname"] = pod_name
        if _spec(sts).get("serviceName"):
            body["spec"]["subdomain"] = _spec(sts)["serviceName"]
        await self.claims.prepare(sts, body, ordinal)
        try:
            created = await self.ctx.client.create(PODS, body, namespace=namespace(sts))
        except errors.AlreadyExists:
            return  # the cache lags behind our last create; it shows the pod soon
        except errors.ApiError as e:
            await self.ctx.recorder.warning(
                sts, "FailedCreate", f"create Pod {pod_name} in StatefulSet {name(sts)} failed: {e}"
            )
            raise
        p.pods[ordinal] = created
        p.created += 1
        await self.ctx.recorder.normal(
            sts, "SuccessfulCreate", f"create Pod {pod_name} in StatefulSet {name(sts)} successful"
        )

    async def _delete(
        self, key: ObjectKey, p: _Pass, pod: Frozen, ordinal: int, *, reason: str
    ) -> None:
        await ownership.delete_expected(
            self.ctx.client, self.expectations, key, PODS, pod, precondition_uid=uid(pod)
        )
        p.deleting.add(name(pod))
        await self.ctx.recorder.normal(
            p.sts,
            "SuccessfulDelete",
            f"delete Pod {name(pod)} in StatefulSet {name(p.sts)} successful ({reason})",
        )

    async def _update_status(self, p: _Pass) -> None:
        sts = p.sts
        now = self.ctx.clock.now()
        min_ready = int(_spec(sts).get("minReadySeconds") or 0)
        pods = [x for x in p.pods.values() if not self._terminating(p, x)]
        status: Obj = {
            "observedGeneration": meta(sts).get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": sum(1 for x in pods if podutil.is_ready(x)),
            "availableReplicas": sum(1 for x in pods if podutil.is_available(x, min_ready, now)),
            "currentReplicas": sum(1 for x in pods if pod_revision(x) == p.current),
            "updatedReplicas": sum(1 for x in pods if pod_revision(x) == p.update),
            "currentRevision": p.current,
            "updateRevision": p.update,
            "collisionCount": int((sts.get("status") or {}).get("collisionCount") or 0),
        }
        want = int(_spec(sts).get("replicas", 1))
        if (
            p.current != p.update
            and status["updatedReplicas"] == status["replicas"] == want
            and status["readyReplicas"] == want
        ):
            # the rollout is complete: the update revision becomes the current one
            status["currentRevision"] = p.update
            status["currentReplicas"] = status["updatedReplicas"]
        old = sts.get("status") or {}
        if any(old.get(k) != v for k, v in status.items()):
            await ownership.write_status(self.ctx.client, STATEFULSETS, sts, status)


def _template_of(revision: Frozen) -> Obj:
    """The pod template a revision restores."""
    template: Obj = thaw(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def _with_collisions(sts: Frozen, count: int) -> Frozen:
    status = sts.get("status") or {}
    if int(status.get("collisionCount") or 0) == count:
        return sts
    copy: Obj = thaw(sts)
    copy.setdefault("status", {})["collisionCount"] = count
    return copy
