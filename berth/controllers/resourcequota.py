"""ResourceQuota controller: keep each quota's ``status`` (``hard`` and ``used``) current.

The API server's quota admission charges a quota as it admits objects; nothing there gives
usage back when an object goes away or a pod finishes, and a write refused after being
charged leaves usage too high. This controller recounts: reconcile(quota key) reads the
quota, lists the objects of every resource its ``spec.hard`` names in its namespace, sums
what they cost (:mod:`berth.api.quota`) and writes the status with the quota's
resourceVersion as a precondition, so a charge admitted meanwhile is never overwritten (the
write conflicts and the count is redone). It recounts when a quota changes, when a pod
finishes or goes, when a Service, ConfigMap or Secret goes, and every
:data:`RESYNC_SECONDS` seconds anyway.
"""

from __future__ import annotations

import logging

from berth.api import quota as q
from berth.api.meta import Obj
from berth.api.resources import (
    CONFIGMAPS,
    RESOURCEQUOTAS,
    SECRETS,
    SERVICES,
    TABLE,
    ResourceDef,
)
from berth.client import errors
from berth.client.keys import ObjectKey, make_key, split_key
from berth.controllers.context import Context
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, key_of, namespace, thaw_obj
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0
"""How often every quota is recounted even when nothing it watches changed (usage of kinds it
has no informer for: count/deployments.apps...)."""

REPLENISHED = (SERVICES, CONFIGMAPS, SECRETS)
"""Kinds whose deletion gives quota back at once (pods: also when they finish)."""


class ResourceQuotaController:
    def __init__(self, ctx: Context, *, resources: tuple[ResourceDef, ...] | None = None) -> None:
        self.ctx = ctx
        self.resources = resources or tuple(r for r in TABLE.resources if r.namespaced)
        self.quotas = ctx.informers.informer(RESOURCEQUOTAS)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="resourcequota")
        self.controller = Controller("resourcequota", self, self.queue, workers=2)
        self.quotas.add_handlers(
            Handlers(
                on_add=lambda o: self.queue.add(key_of(o)),
                on_update=self._quota_changed,
            )
        )
        ctx.pods().add_handlers(Handlers(on_update=self._pod_changed, on_delete=self._gone))
        for rd in REPLENISHED:
            ctx.informers.informer(rd).add_handlers(Handlers(on_delete=self._gone))

    def _quota_changed(self, old: Frozen, new: Frozen) -> None:
        if old.get("spec") != new.get("spec") or not (new.get("status") or {}).get("hard"):
            self.queue.add(key_of(new))

    def _pod_changed(self, old: Frozen, new: Frozen) -> None:
        if q.pod_counts(thaw_obj(old)) and not q.pod_counts(thaw_obj(new)):
            self._gone(new)

    def _gone(self, obj: Frozen) -> None:
        ns = namespace(obj)
        for quota in self.quotas.list(ns):
            self.queue.add(key_of(quota))

    async def reconcile(self, key: ObjectKey) -> None:
        ns, name = split_key(key)
        try:
            quota = await self.ctx.client.get(RESOURCEQUOTAS, name, namespace=ns)
        except errors.NotFound:
            return
        hard = list((quota.get("spec") or {}).get("hard") or {})
        objects: list[tuple[ResourceDef, Obj]] = []
        seen: set[str] = set()
        for rd in self.resources:
            if rd.key_prefix() in seen or not any(q.tracks(rd, k) for k in hard):
                continue
            seen.add(rd.key_prefix())
            try:
                items = (await self.ctx.client.list(rd, namespace=ns)).items
            except (errors.NotFound, errors.Forbidden):
                continue  # not served here, or not ours to read: counted as none
            objects.extend((rd, o) for o in items)
        used = q.total(quota, objects)
        # What no resource this controller knows can spend (count/ of a custom resource) is
        # left as admission charged it: recounting it as zero would let quota be overrun.
        before = q.parse_list((quota.get("status") or {}).get("used"))
        for k in hard:
            if k in before and not any(q.tracks(rd, k) for rd in self.resources):
                used[k] = before[k]
        status = q.status_for(quota, used)
        if status != quota.get("status"):
            quota["status"] = status
            try:
                await self.ctx.client.update(RESOURCEQUOTAS, quota, subresource="status")
            except errors.Conflict:
                raise Retry(0.1, "quota charged meanwhile; counting again") from None
            except errors.NotFound:
                return
            log.info("resourcequota %s: used %s", make_key(ns, name), status["used"])
        raise Retry(RESYNC_SECONDS)
