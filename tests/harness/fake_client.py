"""An in-memory API server behind the :class:`~berth.client.interface.ApiClient` seam.

For unit tests of control loops: it keeps objects per resource with a global resourceVersion,
records every write as an :class:`Action`, and mimics the server semantics control loops rely
on — generation bumps on spec changes, the status subresource split, optimistic concurrency,
graceful pod deletion, finalizers and propagation policies, namespace finalization, binding and
eviction, and watches that replay history and answer 410 once history is compacted.

It is single-threaded asyncio code: every method runs to completion without awaiting, so each
call is atomic with respect to the others, as one request is on a real server.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from berth.api import patches
from berth.api.meta import format_time
from berth.api.resources import NAMESPACES, NODES, PODS, SERVICEACCOUNTS, ResourceDef
from berth.api.selectors import (
    FieldGetter,
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
    path_getter,
)
from berth.client import errors
from berth.client.interface import (
    Obj,
    ObjectList,
    PatchBody,
    PatchType,
    PropagationPolicy,
    WatchEvent,
    WatchEventType,
)
from berth.client.keys import ObjectKey, make_key


@dataclass(frozen=True, slots=True)
class Action:
    verb: str  # create, update, patch, delete, bind, evict, finalize
    resource: str  # plural
    namespace: str | None
    name: str
    subresource: str | None = None
    body: Obj | None = None


@dataclass(slots=True)
class _Watcher:
    resource: ResourceDef
    namespace: str | None
    queue: asyncio.Queue[WatchEvent | None]
    label: LabelSelector
    fields: FieldSelector


@dataclass(slots=True)
class _Record:
    rv: int
    resource: ResourceDef
    type: WatchEventType
    obj: Obj
    prev: Obj | None


_iso = format_time


class _AnyField(Mapping[str, FieldGetter]):
    """Every dotted path is a field (the default: the fake does not know which fields each
    kind supports; the API server refuses the others)."""

    def __getitem__(self, key: str) -> FieldGetter:
        return path_getter(*key.split("."))

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


FieldsOf = Callable[[ResourceDef], Mapping[str, FieldGetter]]


# Kinds without a spec have no generation (as the API server's strategy.py: only objects with
# a spec have one); for the others a change of ``spec`` bumps it.
_SPECLESS = {
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Event",
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
}


def _spec_part(obj: Obj) -> object:
    return obj.get("spec")


@dataclass
class FakeClient:
    """In-memory :class:`ApiClient`. ``now`` supplies timestamps (pass a fake clock's)."""

    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    actions: list[Action] = field(default_factory=list)
    _objects: dict[ResourceDef, dict[ObjectKey, Obj]] = field(default_factory=dict)
    _rv: int = 0
    _history: list[_Record] = field(default_factory=list)
    _compacted: int = 0
    _watchers: list[_Watcher] = field(default_factory=list)
    _errors: dict[tuple[str, str], list[errors.ApiError]] = field(default_factory=dict)
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    unserved: set[ResourceDef] = field(default_factory=set)
    tokens_issued: int = 0  # serviceaccounts/token requests answered
    # the field selector fields of each resource (default: any dotted path)
    fields_of: FieldsOf = field(default=lambda _resource: _AnyField())

    # ---- test helpers -------------------------------------------------------------------
    def seed(self, resource: ResourceDef, obj: Obj) -> Obj:
        """Store ``obj`` as if created (no action recorded); returns the stored copy."""
        stored = self._create(resource, copy.deepcopy(obj), None)
        return copy.deepcopy(stored)

    def objects(self, resource: ResourceDef) -> list[Obj]:
        return [copy.deepcopy(o) for o in self._objects.get(resource, {}).values()]

    def stored(self, resource: ResourceDef, key: str) -> Obj | None:
        obj = self._objects.get(resource, {}).get(ObjectKey(key))
        return copy.deepcopy(obj) if obj is not None else None

    def fail_next(self, verb: str, resource: ResourceDef, error: errors.ApiError) -> None:
        """Make the next ``verb`` on ``resource`` raise ``error``."""
        self._errors.setdefault((verb, resource.plural), []).append(error)

    def writes(self, verb: str | None = None, resource: ResourceDef | None = None) -> list[Action]:
        return [
            a
            for a in self.actions
            if (verb is None or a.verb == verb)
            and (resource is None or a.resource == resource.plural)
        ]

    def compact(self) -> None:
        """Forget history: watches from older resourceVersions now get 410."""
        self._compacted = self._rv
        self._history.clear()

    def bookmark(self) -> None:
        """Send every open watch a BOOKMARK at the latest resourceVersion (what a server sends
        a quiet watch that allows bookmarks)."""
        for w in self._watchers:
            obj = {
                "kind": w.resource.kind,
                "apiVersion": w.resource.api_version,
                "metadata": {"resourceVersion": str(self._rv)},
            }
            w.queue.put_nowait(WatchEvent("BOOKMARK", obj))

    def end_watches(self) -> None:
        """Close every open watch stream (as a server does at ``timeoutSeconds``)."""
        for w in self._watchers:
            w.queue.put_nowait(None)
        self._watchers.clear()

    # ---- internals ----------------------------------------------------------------------
    def _check_error(self, verb: str, resource: ResourceDef) -> None:
        pending = self._errors.get((verb, resource.plural))
        if pending:
            raise pending.pop(0)

    def _bucket(self, resource: ResourceDef) -> dict[ObjectKey, Obj]:
        return self._objects.setdefault(resource, {})

    def _find(self, resource: ResourceDef, name: str, namespace: str | None) -> Obj:
        key = make_key(namespace if resource.namespaced else None, name)
        obj = self._bucket(resource).get(key)
        if obj is None:
            raise errors.NotFound(404, "NotFound", f'{resource.group_resource} "{name}" not found')
        return obj

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(
        self, resource: ResourceDef, type_: WatchEventType, obj: Obj, *, prev: Obj | None
    ) -> None:
        rec = _Record(self._rv, resource, type_, copy.deepcopy(obj), prev)
        self._history.append(rec)
        for w in self._watchers:
            ev = self._event_for(w, rec)
            if ev is not None:
                w.queue.put_nowait(ev)

    def _event_for(self, w: _Watcher, rec: _Record) -> WatchEvent | None:
        if rec.resource != w.resource:
            return None
        ns = rec.obj.get("metadata", {}).get("namespace")
        if w.namespace and ns != w.namespace:
            return None

        def match(o: Obj | None) -> bool:
            if o is None:
                return False
            labels = o.get("metadata", {}).get("labels") or {}
            return w.label.matches(labels) and w.fields.matches(o)

        now_m, prev_m = match(rec.obj), match(rec.prev)
        if rec.type == "DELETED":
            return WatchEvent("DELETED", copy.deepcopy(rec.obj)) if now_m else None
        if now_m and not prev_m:
            return WatchEvent("ADDED", copy.deepcopy(rec.obj))
        if prev_m and not now_m:
            return WatchEvent("DELETED", copy.deepcopy(rec.obj))
        if now_m:
            return WatchEvent(rec.type, copy.deepcopy(rec.obj))
        return None

    def _create(
        self, resource: ResourceDef, body: Obj, namespace: str | None, *, api: bool = False
    ) -> Obj:
        meta = body.setdefault("metadata", {})
        if resource.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            meta["namespace"] = ns
            nsobj = self._bucket(NAMESPACES).get(ObjectKey(ns))
            if nsobj is not None and nsobj["metadata"].get("deletionTimestamp"):
                raise errors.Forbidden(
                    403, "Forbidden", f"namespace {ns} is being terminated; cannot create"
                )
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise errors.Invalid(422, "Invalid", "metadata.name: Required value")
            meta["name"] = f"{prefix}{uuid.uuid4().hex[:5]}"
        key = make_key(meta.get("namespace"), meta["name"])
        bucket = self._bucket(resource)
        if key in bucket:
            raise errors.AlreadyExists(
                409, "AlreadyExists", f'{resource.group_resource} "{meta["name"]}" already exists'
            )
        body["kind"] = resource.kind
        body["apiVersion"] = resource.api_version
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _iso(self.now())
        if resource.kind in _SPECLESS:
            meta.pop("generation", None)
        else:
            meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        if api and resource.has_status and resource not in (NODES, PODS, NAMESPACES):
            body.pop("status", None)  # the status subresource owns it (seed() may set one)
        if resource == NAMESPACES:
            body.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            body.setdefault("status", {})["phase"] = "Active"
        if resource == PODS:
            body.setdefault("status", {}).setdefault("phase", "Pending")
        meta["resourceVersion"] = self._bump()
        bucket[key] = body
        self._emit(resource, "ADDED", body, prev=None)
        return body

    def _store_update(self, resource: ResourceDef, old: Obj, new: Obj) -> Obj:
        key = make_key(new["metadata"].get("namespace"), new["metadata"]["name"])
        new["metadata"]["resourceVersion"] = self._bump()
        if self._finished(resource, new):
            del self._bucket(resource)[key]
            self._emit(resource, "DELETED", new, prev=old)
            return new
        self._bucket(resource)[key] = new
        self._emit(resource, "MODIFIED", new, prev=old)
        return new

    @staticmethod
    def _finished(resource: ResourceDef, obj: Obj) -> bool:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if resource == NAMESPACES:
            return not (obj.get("spec") or {}).get("finalizers")
        if resource == PODS:
            return bool(meta.get("deletionGracePeriodSeconds") == 0)
        return True

    def _write(
        self, resource: ResourceDef, old: Obj, desired: Obj, *, subresource: str | None
    ) -> Obj:
        new = copy.deepcopy(desired)
        new["kind"], new["apiVersion"] = resource.kind, resource.api_version
        meta = new.setdefault("metadata", {})
        oldmeta = old["metadata"]
        for immutable in ("uid", "creationTimestamp", "namespace", "name"):
            if immutable in oldmeta:
                meta[immutable] = oldmeta[immutable]
        # deletionTimestamp is set only by delete; clients cannot set or clear it.
        for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if server_owned in oldmeta:
                meta[server_owned] = oldmeta[server_owned]
            else:
                meta.pop(server_owned, None)
        if oldmeta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or ()) - set(oldmeta.get("finalizers") or ())
            if added:
                raise errors.Forbidden(
                    403,
                    "Forbidden",
                    "no new finalizers can be added if the object is being deleted",
                )
        if subresource == "status":
            kept = copy.deepcopy(old)
            kept["status"] = new.get("status", {})
            new = kept
        elif resource.has_status and subresource is None:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if resource.kind in _SPECLESS:
            new["metadata"].pop("generation", None)
        else:
            gen = int(oldmeta.get("generation", 1))
            if subresource is None and _spec_part(new) != _spec_part(old):
                gen += 1
            new["metadata"]["generation"] = gen
        return self._store_update(resource, old, new)

    # ---- ApiClient ----------------------------------------------------------------------
    async def get(
        self,
        resource: ResourceDef,
        name: str,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        self._check_error("get", resource)
        obj = self._find(resource, name, namespace)
        if subresource == "scale":
            return self._scale(resource, obj)
        return copy.deepcopy(obj)

    @staticmethod
    def _scale(resource: ResourceDef, obj: Obj) -> Obj:
        spec = obj.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"].get("namespace"),
                "resourceVersion": obj["metadata"]["resourceVersion"],
            },
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sel.items()),
            },
        }

    async def list(
        self,
        resource: ResourceDef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
    ) -> ObjectList:
        self._check_error("list", resource)
        label, fields = self._selectors(resource, label_selector, field_selector)
        items = [
            copy.deepcopy(o)
            for o in self._bucket(resource).values()
            if (not namespace or o["metadata"].get("namespace") == namespace)
            and label.matches(o["metadata"].get("labels"))
            and fields.matches(o)
        ]
        return ObjectList(items=items, resource_version=str(self._rv))

    def _selectors(
        self, resource: ResourceDef, label: str | None, fields: str | None
    ) -> tuple[LabelSelector, FieldSelector]:
        try:
            return (
                parse_label_selector(label),
                parse_field_selector(fields, self.fields_of(resource)),
            )
        except SelectorError as exc:
            raise errors.BadRequest(400, "BadRequest", str(exc)) from None

    async def create(
        self, resource: ResourceDef, body: Obj, *, namespace: str | None = None
    ) -> Obj:
        self._check_error("create", resource)
        stored = self._create(resource, copy.deepcopy(body), namespace, api=True)
        meta = stored["metadata"]
        self.actions.append(
            Action("create", resource.plural, meta.get("namespace"), meta["name"], None, stored)
        )
        return copy.deepcopy(stored)

    async def create_subresource(
        self,
        resource: ResourceDef,
        name: str,
        subresource: str,
        *,
        body: Obj,
        namespace: str | None = None,
    ) -> Obj:
        self._check_error(subresource, resource)
        obj = self._find(resource, name, namespace)
        if resource == PODS and subresource == "binding":
            if (obj.get("spec") or {}).get("nodeName"):
                raise errors.Conflict(
                    409,
                    "Conflict",
                    f"pod {name} is already assigned to node {obj['spec']['nodeName']}",
                )
            if obj["metadata"].get("deletionTimestamp"):
                raise errors.Conflict(409, "Conflict", f"pod {name} is being deleted")
            new = copy.deepcopy(obj)
            new.setdefault("spec", {})["nodeName"] = body["target"]["name"]
            status = new.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": _iso(self.now())}
            )
            status["conditions"] = conds
            self.actions.append(Action("bind", resource.plural, namespace, name, None, body))
            self._store_update(resource, obj, new)
            return {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}
        if resource == PODS and subresource == "eviction":
            self.actions.append(Action("evict", resource.plural, namespace, name, None, body))
            await self._delete(resource, obj, policy=None, grace=None)
            return {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}
        if resource == SERVICEACCOUNTS and subresource == "token":
            # A stand-in for the API server's TokenRequest: an opaque numbered token.
            self.actions.append(Action("token", resource.plural, namespace, name, None, body))
            spec = dict(body.get("spec") or {})
            seconds = int(spec.get("expirationSeconds") or 3600)
            self.tokens_issued += 1
            return {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
                "status": {
                    "token": f"fake-token-{self.tokens_issued}",
                    "expirationTimestamp": _iso(self.now() + timedelta(seconds=seconds)),
                },
            }
        raise errors.NotFound(404, "NotFound", f"subresource {subresource} not supported")

    async def update(
        self, resource: ResourceDef, body: Obj, *, subresource: str | None = None
    ) -> Obj:
        self._check_error("update", resource)
        meta = body.get("metadata") or {}
        old = self._find(resource, str(meta.get("name")), meta.get("namespace"))
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.Conflict(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.group_resource} "{meta.get("name")}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        verb = "finalize" if subresource == "finalize" else "update"
        self.actions.append(
            Action(
                verb,
                resource.plural,
                meta.get("namespace"),
                str(meta.get("name")),
                subresource,
                copy.deepcopy(body),
            )
        )
        if subresource == "finalize":
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["finalizers"] = list(
                (body.get("spec") or {}).get("finalizers") or []
            )
            return copy.deepcopy(self._store_update(resource, old, new))
        if subresource == "scale":
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = int(body["spec"]["replicas"])
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            return self._scale(resource, self._store_update(resource, old, new))
        return copy.deepcopy(self._write(resource, old, body, subresource=subresource))

    async def patch(
        self,
        resource: ResourceDef,
        name: str,
        patch: PatchBody,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
    ) -> Obj:
        self._check_error("patch", resource)
        old = self._find(resource, name, namespace)
        desired = self._apply_patch(patch_type, old, patch)
        rv = (desired.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.Conflict(
                409, "Conflict", f'{resource.group_resource} "{name}" was modified'
            )
        # a JSON patch (a list of operations) is recorded as {"operations": [...]}
        recorded = copy.deepcopy(patch) if isinstance(patch, dict) else {"operations": patch}
        self.actions.append(
            Action("patch", resource.plural, namespace, name, subresource, recorded)
        )
        return copy.deepcopy(self._write(resource, old, desired, subresource=subresource))

    @staticmethod
    def _apply_patch(patch_type: PatchType, old: Obj, patch: PatchBody) -> Obj:
        """The patched object, with the server's answers to a patch that does not apply."""
        try:
            if patch_type == "json":
                desired = patches.json_patch(old, patch)
            elif patch_type == "strategic":
                desired = patches.strategic_merge_patch(old, patch)
            else:
                desired = patches.json_merge_patch(old, patch)
        except patches.PatchFormatError as exc:
            raise errors.BadRequest(400, "BadRequest", str(exc)) from None
        except patches.PatchError as exc:
            raise errors.Invalid(422, "Invalid", str(exc)) from None
        if not isinstance(desired, dict):
            raise errors.BadRequest(400, "BadRequest", "the patched object is not an object")
        return desired

    async def delete(
        self,
        resource: ResourceDef,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: PropagationPolicy | None = None,
        grace_period_seconds: int | None = None,
        precondition_uid: str | None = None,
    ) -> Obj | None:
        self._check_error("delete", resource)
        obj = self._find(resource, name, namespace)
        if precondition_uid and obj["metadata"].get("uid") != precondition_uid:
            raise errors.Conflict(409, "Conflict", f"precondition failed: uid {precondition_uid}")
        self.actions.append(
            Action(
                "delete",
                resource.plural,
                namespace,
                name,
                None,
                {
                    "propagationPolicy": propagation_policy,
                    "gracePeriodSeconds": grace_period_seconds,
                },
            )
        )
        return await self._delete(
            resource, obj, policy=propagation_policy, grace=grace_period_seconds
        )

    async def _delete(
        self,
        resource: ResourceDef,
        obj: Obj,
        *,
        policy: PropagationPolicy | None,
        grace: int | None,
    ) -> Obj | None:
        new = copy.deepcopy(obj)
        meta = new["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        if finalizers:
            meta["finalizers"] = finalizers
        now = self.now()
        if resource == NAMESPACES:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _iso(now)
                new.setdefault("status", {})["phase"] = "Terminating"
                self._store_update(resource, obj, new)
            return copy.deepcopy(self._find(resource, meta["name"], None))
        if resource == PODS:
            spec = new.get("spec") or {}
            phase = (new.get("status") or {}).get("phase")
            if grace is None:
                grace = int(spec.get("terminationGracePeriodSeconds", 30))
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0
            current = meta.get("deletionGracePeriodSeconds")
            if current is not None and grace > current:
                grace = current
            meta["deletionGracePeriodSeconds"] = grace
            if grace > 0 or finalizers:
                meta["deletionTimestamp"] = meta.get("deletionTimestamp") or _iso(
                    now + timedelta(seconds=grace)
                )
                self._store_update(resource, obj, new)
                return copy.deepcopy(new)
        elif finalizers:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _iso(now)
                meta["deletionGracePeriodSeconds"] = 0
            self._store_update(resource, obj, new)
            return copy.deepcopy(new)
        meta["deletionTimestamp"] = meta.get("deletionTimestamp") or _iso(now)
        key = make_key(meta.get("namespace"), meta["name"])
        del self._bucket(resource)[key]
        self._bump()
        meta["resourceVersion"] = str(self._rv)
        self._emit(resource, "DELETED", new, prev=obj)
        return None

    async def watch(
        self,
        resource: ResourceDef,
        *,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        self._check_error("watch", resource)
        label, fields = self._selectors(resource, label_selector, field_selector)
        w = _Watcher(resource, namespace, asyncio.Queue(), label, fields)
        if resource_version in ("", "0"):
            for obj in list(self._bucket(resource).values()):
                ev = self._event_for(w, _Record(self._rv, resource, "ADDED", obj, None))
                if ev is not None:
                    w.queue.put_nowait(ev)
        else:
            start = int(resource_version)
            if start < self._compacted:
                status = errors.status_body(
                    410, "Expired", f"too old resource version: {start} ({self._compacted})"
                )
                yield WatchEvent("ERROR", status)
                return
            for rec in self._history:
                if rec.rv > start:
                    ev = self._event_for(w, rec)
                    if ev is not None:
                        w.queue.put_nowait(ev)
        self._watchers.append(w)
        try:
            while True:
                item = await w.queue.get()
                if item is None:
                    return
                yield item
        finally:
            if w in self._watchers:
                self._watchers.remove(w)

    async def served(self, resource: ResourceDef) -> bool:
        return resource not in self.unserved

    async def close(self) -> None:
        self.end_watches()


def count_gets(api: FakeClient, resource: ResourceDef) -> list[str]:
    """From now on, the name of every GET of ``resource`` made through ``api``, in order
    (the other GETs pass through uncounted)."""
    names: list[str] = []
    real_get = api.get

    async def counting_get(res: ResourceDef, name: str, **kw: Any) -> Obj:
        if res == resource:
            names.append(name)
        return await real_get(res, name, **kw)

    api.get = counting_get  # type: ignore[method-assign,assignment]
    return names
