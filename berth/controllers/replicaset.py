"""ReplicaSet controller: keep ``spec.replicas`` active pods matching the template.

reconcile(key) reads the ReplicaSet and its pods from the cache, creates or deletes the
difference (remembering in-flight writes as :class:`Expectations` so a lagging cache cannot
double them), adopts matching orphans, and writes ``status`` (replicas, fullyLabeledReplicas,
readyReplicas, availableReplicas, observedGeneration). Pods of a ReplicaSet enqueue it through
their controller ownerReference.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from berth.api.resources import PODS, REPLICASETS, ResourceDef
from berth.api.selectors import LabelSelector, label_selector_from_object
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers import pods as podutil
from berth.controllers.context import Context
from berth.machinery import ownership
from berth.machinery.controller import Controller, Retry
from berth.machinery.expectations import Expectations
from berth.machinery.informer import Handlers
from berth.machinery.objects import (
    Frozen,
    controller_ref,
    is_deleting,
    key_of,
    labels,
    meta,
    name,
    namespace,
    uid,
)
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

BURST = 100  # most pods created or deleted by one reconcile (kube: 500, slow-start batches)


class ReplicaSetController:
    """apps/v1 ReplicaSets; :class:`berth.controllers.replicationcontroller.
    ReplicationControllerController` runs the same loop over core/v1 ReplicationControllers
    (as upstream, through an adapter): it overrides ``kind``, ``resource`` and
    :meth:`selector_of`."""

    kind = "ReplicaSet"
    resource: ResourceDef = REPLICASETS

    def __init__(self, ctx: Context, *, workers: int = 4) -> None:
        self.ctx = ctx
        self.sets = ctx.informers.informer(self.resource)
        self.pods = ctx.pods()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name=self.resource.plural)
        self.expectations = Expectations(ctx.clock)
        self.controller = Controller(self.resource.plural, self, self.queue, workers=workers)
        self.sets.add_handlers(ownership.requeue_handlers(self._enqueue))
        self.pods.add_handlers(
            Handlers(
                on_add=self._pod_changed,
                on_update=self._pod_updated,
                on_delete=self._pod_changed,
            )
        )

    def selector_of(self, owner: Frozen) -> LabelSelector:
        """The pods ``owner`` wants: its ``spec.selector``, a ``metav1.LabelSelector``."""
        return label_selector_from_object((owner.get("spec") or {}).get("selector"))

    def _enqueue(self, obj: Frozen) -> None:
        self.queue.add(key_of(obj))

    def _pod_changed(self, pod: Frozen) -> None:
        key = ownership.owner_key(pod, self.kind)
        if key is not None:
            self.queue.add(key)
        elif ownership.is_orphan(pod):
            # An orphan: a ReplicaSet whose selector matches may adopt it.
            for rs in self.sets.list(namespace(pod) or ""):
                if self.selector_of(rs).matches(labels(pod)):
                    self._enqueue(rs)

    def _pod_updated(self, old: Frozen, new: Frozen) -> None:
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            self._pod_changed(old)
        self._pod_changed(new)

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        rs = self.sets.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        spec = rs.get("spec") or {}
        selector = self.selector_of(rs)
        owned = self.pods.by_index("controller", uid(rs))
        if not is_deleting(rs):
            owned = await self._release(rs, selector, owned)
            owned = owned + await self._adopt(rs, selector)
        active = [p for p in owned if podutil.is_active(p)]
        active_names = [name(p) for p in active]
        creating = self.expectations.pending_creates(key, [name(p) for p in owned])
        deleting = self.expectations.pending_deletes(key, active_names)
        counted = [p for p in active if name(p) not in deleting]
        want = int(spec.get("replicas", 1))
        have = len(counted) + len(creating)
        if not is_deleting(rs):
            if have < want:
                await self._create_pods(rs, key, min(want - have, BURST))
            elif have > want and len(counted) > 0:
                victims = sorted(counted, key=podutil.deletion_rank)[: min(have - want, BURST)]
                await self._delete_pods(rs, key, victims)
        retry_in = await self._update_status(rs, owned, selector)
        if retry_in is not None:
            raise Retry(retry_in, "waiting for pods to become available")

    async def _release(self, rs: Frozen, selector: Any, owned: list[Frozen]) -> list[Frozen]:
        """Let go of owned pods whose labels no longer match (they become orphans); returns
        the pods still owned."""
        return await ownership.release(self.ctx.client, PODS, rs, owned, selector)

    async def _adopt(self, rs: Frozen, selector: Any) -> list[Frozen]:
        return await ownership.adopt(
            self.ctx.client,
            PODS,
            rs,
            self.pods.list(namespace(rs) or ""),
            selector,
            eligible=podutil.is_active,
        )

    async def _create_pods(self, rs: Frozen, key: ObjectKey, count: int) -> None:
        template = (rs.get("spec") or {}).get("template") or {}

        async def one() -> None:
            body = podutil.pod_from_template(template, rs, generate_name=f"{name(rs)}-")
            body["metadata"]["name"] = f"{name(rs)}-{podutil.random_suffix()}"
            await ownership.create_expected(
                self.ctx.client, self.expectations, key, PODS, body, namespace=namespace(rs)
            )

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        created = count - len(failures)
        if created:
            await self.ctx.recorder.normal(rs, "SuccessfulCreate", f"Created {created} pod(s)")
        if failures:
            await self.ctx.recorder.warning(rs, "FailedCreate", f"Error creating: {failures[0]}")
            raise failures[0]

    async def _delete_pods(self, rs: Frozen, key: ObjectKey, victims: list[Frozen]) -> None:
        await asyncio.gather(
            *(
                ownership.delete_expected(self.ctx.client, self.expectations, key, PODS, p)
                for p in victims
            )
        )
        await self.ctx.recorder.normal(
            rs, "SuccessfulDelete", f"Deleted pod(s): {', '.join(name(p) for p in victims)}"
        )

    async def _update_status(self, rs: Frozen, owned: list[Frozen], selector: Any) -> float | None:
        spec = rs.get("spec") or {}
        now = self.ctx.clock.now()
        min_ready = int(spec.get("minReadySeconds") or 0)
        active = [p for p in owned if podutil.is_active(p)]
        tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active if all(labels(p).get(k) == v for k, v in tmpl_labels.items())
            ),
            "readyReplicas": sum(1 for p in active if podutil.is_ready(p)),
            "availableReplicas": sum(1 for p in active if podutil.is_available(p, min_ready, now)),
            "observedGeneration": meta(rs).get("generation", 1),
        }
        old = dict(rs.get("status") or {})
        if any(old.get(k, 0) != v for k, v in status.items()) and not (
            await ownership.write_status(self.ctx.client, self.resource, rs, status)
        ):
            return None
        waits = [podutil.available_in(p, min_ready, now) for p in active]
        pending = [w for w in waits if w is not None]
        return min(pending) + 0.01 if pending else None
