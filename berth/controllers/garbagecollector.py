"""Garbage collector: delete objects whose owners are gone, honouring deletion propagation.

It keeps a graph of every monitored object (uid → resource, key, ownerReferences) and, per
uid, reconciles:

* **dangling dependents** — when every owner of an object is absent (confirmed by a live GET,
  since informers of different resources lag differently), the object is deleted (Background;
  Foreground when an owner is itself being deleted in the foreground). Owners that are absent
  while others remain are removed from ``ownerReferences``;
* **orphan** — an owner deleting with the ``orphan`` finalizer has its ownerReference removed
  from every dependent, then the finalizer is removed;
* **foreground** — an owner deleting with the ``foregroundDeletion`` finalizer has its
  dependents deleted (foreground too), and keeps the finalizer until no dependent with
  ``blockOwnerDeletion: true`` remains.

Concurrency contract: graph updates happen in informer handlers on the loop; reconcile of a
uid is serialised by the work queue; every write is guarded (NotFound/Conflict mean "the
world moved on" and the uid is re-examined on the next event).
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.api.resources import EVENTS, ResourceDef, for_kind
from berth.client import errors
from berth.client.interface import Obj, PropagationPolicy
from berth.client.keys import ObjectKey, split_key
from berth.controllers.context import Context
from berth.controllers.kinds import MANAGED
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen, is_deleting, key_of, meta, name, namespace, uid
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
STALE_RETRY = 0.2
"""Seconds before an owner whose dependents changed under an orphaning write is tried again."""
MONITORED: tuple[ResourceDef, ...] = tuple(r for r in MANAGED if r != EVENTS)
ABSENT_OWNERS = 500
"""Owners confirmed absent by a live GET that are remembered (least recently used go first):
the dependents of a deleted owner (30 pods of a ReplicaSet) need one GET, not one each, as
the upstream collector's absent-owner cache (500 references) does. A uid never comes back."""


@dataclass(slots=True)
class Node:
    uid: str
    resource: ResourceDef
    key: ObjectKey
    owners: tuple[Mapping[str, Any], ...]


class GarbageCollector:
    def __init__(self, ctx: Context, *, resources: Sequence[ResourceDef] = MONITORED) -> None:
        self.ctx = ctx
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="garbagecollector")
        self.controller = Controller("garbagecollector", self, self.queue, workers=4)
        self.graph: dict[str, Node] = {}
        self.dependents: dict[str, set[str]] = {}
        self.informers: dict[ResourceDef, Informer] = {}
        self.deleted = 0
        self._absent: OrderedDict[tuple[str, str | None], None] = OrderedDict()
        for res in resources:
            inf = ctx.informers.informer(res)
            self.informers[res] = inf
            inf.add_handlers(
                Handlers(
                    on_add=lambda o, r=res: self._upsert(r, o),  # type: ignore[misc]
                    on_update=lambda _o, n, r=res: self._upsert(r, n),  # type: ignore[misc]
                    on_delete=self._remove,
                )
            )

    # ---- graph --------------------------------------------------------------------------
    def _upsert(self, res: ResourceDef, obj: Frozen) -> None:
        u = uid(obj)
        owners = tuple(meta(obj).get("ownerReferences") or ())
        old = self.graph.get(u)
        if old is not None:
            for ref in old.owners:
                self.dependents.get(str(ref.get("uid")), set()).discard(u)
        self.graph[u] = Node(u, res, key_of(obj), owners)
        for ref in owners:
            self.dependents.setdefault(str(ref.get("uid")), set()).add(u)
        finalizers = meta(obj).get("finalizers") or ()
        if owners or (is_deleting(obj) and (ORPHAN in finalizers or FOREGROUND in finalizers)):
            self.queue.add(ObjectKey(u))
        if is_deleting(obj):
            self.queue.add(ObjectKey(u))

    def _remove(self, obj: Frozen) -> None:
        u = uid(obj)
        node = self.graph.pop(u, None)
        if node is None:
            return
        for ref in node.owners:
            owner = str(ref.get("uid"))
            self.dependents.get(owner, set()).discard(u)
            self.queue.add(ObjectKey(owner))  # a foreground owner may be unblocked now
        for dep in self.dependents.get(u, set()):
            self.queue.add(ObjectKey(dep))  # now dangling

    def _cached(self, node: Node) -> Frozen | None:
        return self.informers[node.resource].get(node.key)

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        node = self.graph.get(str(key))
        if node is None:
            return
        obj = self._cached(node)
        if obj is None:
            return
        finalizers = list(meta(obj).get("finalizers") or ())
        if is_deleting(obj) and ORPHAN in finalizers:
            await self._orphan_dependents(node)
            await self._remove_finalizer(node, obj, ORPHAN)
            return
        if is_deleting(obj) and FOREGROUND in finalizers:
            if await self._delete_dependents_foreground(node):
                await self._remove_finalizer(node, obj, FOREGROUND)
            return
        if node.owners and not is_deleting(obj):
            await self._check_owners(node, obj)

    async def _owner_state(self, ref: Mapping[str, Any], ns: str | None) -> Frozen | None:
        """The owner if it exists (same uid), else None — checked live when not cached."""
        owner_uid = str(ref.get("uid"))
        cached = self.graph.get(owner_uid)
        if cached is not None:
            obj = self._cached(cached)
            if obj is not None:
                return obj
        res = for_kind(str(ref.get("apiVersion")), str(ref.get("kind")))
        if res is None:
            raise LookupError(f"unknown owner kind {ref.get('apiVersion')}/{ref.get('kind')}")
        where = ns if res.namespaced else None
        absent = (owner_uid, where)
        if absent in self._absent:
            self._absent.move_to_end(absent)
            return None
        try:
            live = await self.ctx.client.get(res, str(ref.get("name")), namespace=where)
        except errors.NotFound:
            live = None
        if live is not None and str(live["metadata"].get("uid")) == owner_uid:
            return live
        self._absent[absent] = None
        if len(self._absent) > ABSENT_OWNERS:
            self._absent.popitem(last=False)
        return None

    async def _check_owners(self, node: Node, obj: Frozen) -> None:
        ns = namespace(obj)
        alive: list[Mapping[str, Any]] = []
        waiting = 0
        for ref in node.owners:
            try:
                owner = await self._owner_state(ref, ns)
            except LookupError as exc:
                log.debug("%s: %s; keeping it", node.key, exc)
                return
            if owner is None:
                continue
            alive.append(ref)
            owner_fin = meta(owner).get("finalizers") or ()
            if is_deleting(owner) and FOREGROUND in owner_fin:
                waiting += 1
        if not alive:
            await self._delete(node, obj, "Background")
            return
        if waiting == len(alive) and any(r.get("blockOwnerDeletion") for r in alive):
            await self._delete(node, obj, "Foreground")
            return
        if len(alive) != len(node.owners):
            keep = [dict(r) for r in alive]
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.ctx.client.patch(
                    node.resource,
                    name(obj),
                    {
                        "metadata": {
                            "ownerReferences": keep,
                            "resourceVersion": meta(obj).get("resourceVersion"),
                        }
                    },
                    namespace=ns,
                )

    async def _delete(self, node: Node, obj: Frozen, policy: PropagationPolicy) -> None:
        log.info("garbage collecting %s %s (%s)", node.resource.kind, node.key, policy)
        ns, n = split_key(node.key)
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.delete(
                node.resource, n, namespace=ns, propagation_policy=policy, precondition_uid=node.uid
            )
            self.deleted += 1

    def _dependents(self, owner_uid: str) -> Iterable[Node]:
        for dep in list(self.dependents.get(owner_uid, ())):
            node = self.graph.get(dep)
            if node is not None:
                yield node

    async def _orphan_dependents(self, owner: Node) -> None:
        """Drop ``owner``'s reference from each dependent. The list is written whole, so only
        over the version it was computed from: from a stale cache it would drop a reference
        added meanwhile (an adoption, a second owner). A Conflict reconciles the owner again
        (its orphan finalizer stays until every dependent is let go)."""
        stale = 0
        for dep in self._dependents(owner.uid):
            obj = self._cached(dep)
            if obj is None:
                continue
            refs = meta(obj).get("ownerReferences") or ()
            keep = [dict(r) for r in refs if str(r.get("uid")) != owner.uid]
            if len(keep) == len(refs):
                continue  # the cache already shows it let go; its event updates the graph
            patch: Obj = {
                "metadata": {
                    "ownerReferences": keep or None,
                    "resourceVersion": meta(obj).get("resourceVersion"),
                }
            }
            try:
                await self.ctx.client.patch(
                    dep.resource, name(obj), patch, namespace=namespace(obj)
                )
            except errors.NotFound:
                continue
            except errors.Conflict:
                stale += 1
        if stale:
            raise Retry(STALE_RETRY, f"{stale} dependent(s) changed since the cache read")

    async def _delete_dependents_foreground(self, owner: Node) -> bool:
        """Delete dependents; True when none that block the owner's deletion remain."""
        blocking = 0
        for dep in self._dependents(owner.uid):
            obj = self._cached(dep)
            if obj is None:
                continue
            ref = next((r for r in dep.owners if str(r.get("uid")) == owner.uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not is_deleting(obj):
                await self._delete(dep, obj, "Foreground")
        return blocking == 0

    async def _remove_finalizer(self, node: Node, obj: Frozen, finalizer: str) -> None:
        remaining = [f for f in meta(obj).get("finalizers") or () if f != finalizer]
        body: Obj = {
            "metadata": {
                "finalizers": remaining or None,
                "resourceVersion": meta(obj).get("resourceVersion"),
            }
        }
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.patch(node.resource, name(obj), body, namespace=namespace(obj))
