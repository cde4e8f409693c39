"""Namespace controller: empty a terminating namespace, then finalize it.

reconcile(name): for a namespace with ``deletionTimestamp``, delete every object of every
namespaced resource in it; while anything remains (pods terminating gracefully, objects with
finalizers) retry shortly; once empty, drop ``kubernetes`` from ``spec.finalizers`` through
``namespaces/{name}/finalize`` so the API server removes the namespace.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from berth.api.resources import NAMESPACES, ResourceDef
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.controllers.kinds import MANAGED
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import is_deleting, name, thaw_obj
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
NAMESPACED: tuple[ResourceDef, ...] = tuple(r for r in MANAGED if r.namespaced)


class NamespaceController:
    def __init__(
        self,
        ctx: Context,
        *,
        resources: Sequence[ResourceDef] = NAMESPACED,
        retry_delay: float = 1.0,
    ) -> None:
        self.ctx = ctx
        self.resources = resources
        self.retry_delay = retry_delay
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="namespace")
        self.controller = Controller("namespace", self, self.queue, workers=2)
        self._unserved: set[ResourceDef] = set()
        self.namespaces.add_handlers(
            Handlers(
                on_add=lambda n: self.queue.add(ObjectKey(name(n))),
                on_update=lambda _o, n: self.queue.add(ObjectKey(name(n))),
            )
        )

    async def reconcile(self, key: ObjectKey) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not is_deleting(ns):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or ()):
            return
        remaining = 0
        for res in self.resources:
            if res in self._unserved:
                continue
            try:
                items = (await self.ctx.client.list(res, namespace=str(key))).items
            except errors.NotFound:
                self._unserved.add(res)  # the server does not serve it: nothing to delete
                continue
            for obj in items:
                remaining += 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                with contextlib.suppress(errors.NotFound, errors.Conflict):
                    await self.ctx.client.delete(res, obj["metadata"]["name"], namespace=str(key))
        if remaining:
            raise Retry(self.retry_delay, f"{remaining} object(s) left in namespace {key}")
        body: Obj = thaw_obj(ns)
        body["spec"]["finalizers"] = [f for f in body["spec"]["finalizers"] if f != FINALIZER]
        log.info("namespace %s is empty: finalizing", key)
        with contextlib.suppress(errors.NotFound):
            await self.ctx.client.update(NAMESPACES, body, subresource="finalize")
