"""Pod garbage collector: remove pods that can never finish on their own.

A pod bound to a Node that no longer exists has nobody to stop it and report its deletion,
so it would stay (often ``Terminating``) forever; reconcile(pod key) force-deletes it (grace
0) once the Node's absence is confirmed with a live GET — the node informer may simply lag.
Deleting a Node enqueues its pods.
"""

from __future__ import annotations

import contextlib
import logging

from berth.api.resources import NODES, PODS
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery.controller import Controller
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, key_of, name, namespace, uid
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)


class PodGarbageCollector:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pods = ctx.pods()
        self.nodes = ctx.informers.informer(NODES)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="podgc")
        self.controller = Controller("podgc", self, self.queue, workers=2)
        self.collected = 0
        self.pods.add_handlers(
            Handlers(on_add=self._pod_seen, on_update=lambda _o, p: self._pod_seen(p))
        )
        self.nodes.add_handlers(Handlers(on_delete=self._node_gone))

    def _pod_seen(self, pod: Frozen) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and self.nodes.has_synced and self.nodes.get(str(node)) is None:
            self.queue.add(key_of(pod))

    def _node_gone(self, node: Frozen) -> None:
        for pod in self.pods.by_index("node", name(node)):
            self.queue.add(key_of(pod))

    async def reconcile(self, key: ObjectKey) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node or self.nodes.get(node) is not None:
            return
        try:
            await self.ctx.client.get(NODES, node)
            return  # the node exists; our cache lags
        except errors.NotFound:
            pass
        log.info("deleting pod %s: its node %s no longer exists", key, node)
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.delete(
                PODS,
                name(pod),
                namespace=namespace(pod),
                grace_period_seconds=0,
                precondition_uid=uid(pod),
            )
            self.collected += 1
