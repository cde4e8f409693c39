"""CustomResourceDefinitions (``apiextensions.k8s.io/v1``): defaults, validation, names and
conditions, and the deletion of a CRD's objects.

Each API server registers its own :class:`CustomResourceDefinitionStrategy`, bound to its
:class:`~berth.apiserver.crd.manager.CustomResources`: after every write of a CRD the names
are checked against the other CRDs and the built-ins and the resulting ``acceptedNames`` and
``NamesAccepted``/``Established`` conditions are written through ``/status`` (upstream's naming
and establishing controllers, run in the request that changed the CRD, so the resources are
served, here, before the answer leaves). Other servers learn the CRD from the watch.

Every CRD holds the ``customresourcecleanup.apiextensions.k8s.io`` finalizer: deleting it
marks it terminating (its resources stay served, refusing creates), every server that sees
that deletes its objects (through the normal delete, so their own finalizers are honoured),
and the finalizer goes once none is left.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import TYPE_CHECKING

from berth.api.meta import Obj
from berth.api.resources import CRD_RESOURCE, ResourceDef
from berth.apiserver import strategy as shared
from berth.apiserver.crd import definition, names
from berth.apiserver.crd import strategy as crs
from berth.apiserver.crd.manager import CLEANUP_FINALIZER, CustomResources, needs_cleanup
from berth.apiserver.errors import ApiError, FieldError
from berth.apiserver.options import DeleteOptions
from berth.store.interface import StoreError

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.registry import Registry

log = logging.getLogger(__name__)

SETTLE_RETRY = 1.0
"""Seconds before a CRD whose status write failed is settled again."""

CLEANUP_POLL = 0.5
"""Seconds between two passes deleting a terminating CRD's objects (objects with finalizers
of their own wait for their controllers)."""


def _revision(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def storage_resource(crd: Obj) -> ResourceDef | None:
    """The resource a CRD's objects are stored under (its storage version), or None when it
    never served any. Built from the names it was granted (``status.acceptedNames``, checked
    against the built-ins and the other CRDs), never from the names it asks for: a CRD asking
    for a built-in's plural is never established, and deleting it must not empty the
    built-in's keys. From the stored CRD alone, so that a terminating CRD is cleaned up even
    by a server that never served it."""
    if not names.is_true(crd, "Established"):
        return None
    spec = crd.get("spec") or {}
    accepted = (crd.get("status") or {}).get("acceptedNames") or {}
    group, plural, kind = spec.get("group"), accepted.get("plural"), accepted.get("kind")
    if not (isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)):
        return None
    if not (group and plural and kind):
        return None
    return ResourceDef(
        group=group,
        version=definition.storage_version(crd) or "v1",
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=spec.get("scope") == "Namespaced",
    )


class CustomResourceDefinitionStrategy(KindStrategy):
    group = CRD_RESOURCE.group
    kind = CRD_RESOURCE.kind

    def __init__(self, resources: CustomResources | None = None) -> None:
        self.resources = resources
        self._cleaning: set[str] = set()

    # -- writes -----------------------------------------------------------------------------

    def prepare_for_create(self, rd: ResourceDef, obj: Obj, namespace: str) -> Obj:
        shared.stamp_for_create(rd, obj, namespace, generation=True)
        crs.prepare_crd_create(obj)
        m = obj["metadata"]
        finalizers = m.get("finalizers")
        if finalizers is None:
            m["finalizers"] = [CLEANUP_FINALIZER]
        elif isinstance(finalizers, list) and CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)
        return obj

    def prepare_for_update(self, rd: ResourceDef, old: Obj, new: Obj, subresource: str) -> Obj:
        if subresource == "status":
            return crs.prepare_crd_status_update(old, new)
        if subresource:
            raise ValueError(f"no update strategy for subresource {subresource!r}")
        shared.stamp_for_update(rd, old, new)
        crs.prepare_crd_update(old, new)
        return new

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return definition.validate(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return definition.validate_update(new, old)

    # -- after writes -----------------------------------------------------------------------

    async def after_create(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        await self.settle(reg, rd, obj)

    async def after_update(self, reg: Registry, rd: ResourceDef, old: Obj, new: Obj) -> None:
        await self.settle(reg, rd, new)

    async def after_delete(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        if self.resources is None:
            return
        self.resources.observe(obj, deleted=True, revision=_revision(obj))
        # Names it held may now go to CRDs of its group that asked for them (as upstream's
        # naming controller requeues the group).
        group = (obj.get("spec") or {}).get("group")
        waiting = [
            c
            for c in self.resources.crds()
            if (c.get("spec") or {}).get("group") == group and not names.is_true(c, "NamesAccepted")
        ]
        if waiting:
            reg._spawn(self.resettle(reg, waiting))

    async def resettle(self, reg: Registry, crds: list[Obj] | None = None) -> None:
        """Accept the names of ``crds`` (default: every CRD this server knows) again: after
        a CRD freed names, and at start-up (a server may have stopped between writing a
        CRD and its status)."""
        if self.resources is None:
            return
        for crd in crds if crds is not None else self.resources.crds():
            try:
                await self.settle(reg, CRD_RESOURCE, copy.deepcopy(crd))
            except (ApiError, StoreError):
                log.warning("could not settle the names of a CRD", exc_info=True)

    async def settle(self, reg: Registry, rd: ResourceDef, crd: Obj, *, retry: bool = True) -> None:
        """Accept the names of a CRD just written (writing its status when that changes
        them), serve it, and start deleting its objects when it is terminating. A failed
        status write is tried once more (``retry``) a second later."""
        resources = self.resources
        if resources is None:
            return
        name = str(crd["metadata"].get("name") or "")
        if not crd["metadata"].get("deletionTimestamp"):
            status = resources.names_status(crd)
            if status != crd.get("status"):
                body = dict(crd)
                body["status"] = status
                try:
                    # Its own after_update serves the result.
                    await reg.update(rd, "", name, body, subresource="status", user=None)
                except ApiError as exc:
                    if exc.code in (404, 409):
                        return  # a newer write came in between: its settle decides
                    # The CRD itself is stored: its writer must not see a failure; try
                    # again shortly (and at every start-up).
                    log.warning("status of CRD %s not written: %s", name, exc.message)
                    if retry:
                        reg._spawn(self._settle_later(reg, name))
                except StoreError:
                    log.warning("status of CRD %s not written", name, exc_info=True)
                    if retry:
                        reg._spawn(self._settle_later(reg, name))
                return
        resources.observe(crd)
        self.observe(reg, crd)

    async def _settle_later(self, reg: Registry, name: str) -> None:
        await asyncio.sleep(SETTLE_RETRY)
        try:
            kv = await reg.store.get(CRD_RESOURCE.key("", name))
            if kv is not None:
                await self.settle(reg, CRD_RESOURCE, reg.codec.decode(kv), retry=False)
        except (ApiError, StoreError):
            log.warning("could not settle the names of CRD %s", name, exc_info=True)

    def observe(self, reg: Registry, crd: Obj) -> None:
        """Start the cleanup of a terminating CRD (once per CRD on this server)."""
        if not needs_cleanup(crd):
            return
        name = str(crd["metadata"].get("name") or "")
        if name and name not in self._cleaning:
            self._cleaning.add(name)
            reg._spawn(self._cleanup(reg, name))

    async def _cleanup(self, reg: Registry, name: str) -> None:
        try:
            while True:
                try:
                    if await self._cleanup_pass(reg, name):
                        return
                except (ApiError, StoreError):
                    log.warning("cleanup of CRD %s failed; retrying", name, exc_info=True)
                await asyncio.sleep(CLEANUP_POLL)
        finally:
            self._cleaning.discard(name)

    async def _cleanup_pass(self, reg: Registry, name: str) -> bool:
        """Delete what remains of the CRD's objects; True once the CRD is done (its
        finalizer removed, or it is gone or no longer terminating)."""
        kv = await reg.store.get(CRD_RESOURCE.key("", name))
        if kv is None:
            return True
        crd = reg.codec.decode(kv)
        if not needs_cleanup(crd):
            return True
        if not names.is_true(crd, "Terminating"):
            status = copy.deepcopy(crd.get("status") or {})
            names.set_condition(
                status,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            )
            crd = await reg.update(
                CRD_RESOURCE, "", name, {**crd, "status": status}, subresource="status", user=None
            )
        rd = storage_resource(crd)
        remaining = 0
        if rd is not None:
            for item in (await reg.store.list(rd.key_prefix())).items:
                remaining += 1
                obj = reg.codec.decode(item)
                meta = obj.get("metadata") or {}
                if meta.get("deletionTimestamp"):
                    continue  # waiting for its own finalizers
                try:
                    await reg.delete(
                        rd,
                        str(meta.get("namespace") or ""),
                        str(meta.get("name") or ""),
                        DeleteOptions(),
                        user=None,
                    )
                except ApiError as exc:
                    if exc.code not in (404, 409):
                        raise
        if remaining:
            return False
        new = copy.deepcopy(crd)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers") or [] if f != CLEANUP_FINALIZER
        ]
        try:
            await reg.update(CRD_RESOURCE, "", name, new, user=None)
        except ApiError as exc:
            if exc.code == 404:
                return True
            if exc.code == 409:
                return False
            raise
        return True
