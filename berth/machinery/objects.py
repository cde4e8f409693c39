"""Helpers over API objects as JSON: frozen cache views, metadata accessors, owner references,
and conditions (times and quantities are :mod:`berth.api.meta` and :mod:`berth.api.quantity`).

Cached objects are *frozen* — nested :class:`types.MappingProxyType` and tuples — so a handler or
a reconcile can read them freely but cannot mutate the shared cache; :func:`thaw` returns a
mutable deep copy to build a write from.

Concurrency contract: every function here is pure; frozen values may be shared freely between
tasks (nothing can change them), while thawed copies belong to whoever made them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from berth.api.meta import format_time
from berth.client.interface import Obj
from berth.client.keys import ObjectKey, make_key

Frozen = Mapping[str, Any]
"""A read-only view of an API object, as handed out by informer caches."""


# JSON's leaves: returned as they are. Checked by exact type first because ``isinstance`` against
# the ``Mapping`` ABC is slow and freeze runs on every field of every object every informer
# caches (a third of a pod's freeze went to the ABC checks).
_LEAVES = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is dict:
        return MappingProxyType(
            {k: v if type(v) in _LEAVES else freeze(v) for k, v in value.items()}
        )
    if kind is list or kind is tuple:
        return tuple([v if type(v) in _LEAVES else freeze(v) for v in value])
    # Anything else (a MappingProxyType, other Mappings, subclasses): the general rules.
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def cache_view(obj: Mapping[str, Any]) -> Frozen:
    """What an informer caches of ``obj``: :func:`freeze`, without ``metadata.managedFields``.

    No component decides anything from managedFields (the API server keeps the stored ones
    when a write omits them), yet they are often the largest part of an object (a pod's
    entries for its controller, the scheduler's binding and the agent's status writes): kept in
    every cache of every component they cost memory and nothing else. kube-scheduler and
    kube-controller-manager drop them from their informers the same way (client-go's
    ``TransformStripManagedFields``)."""
    m = obj.get("metadata")
    if isinstance(m, Mapping) and "managedFields" in m:
        obj = {**obj, "metadata": {k: v for k, v in m.items() if k != "managedFields"}}
    frozen: Frozen = freeze(obj)
    return frozen


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def thaw_obj(obj: Frozen) -> Obj:
    result: Obj = thaw(obj)
    return result


def meta(obj: Frozen) -> Mapping[str, Any]:
    m: Mapping[str, Any] = obj.get("metadata") or {}
    return m


def name(obj: Frozen) -> str:
    return str(meta(obj).get("name", ""))


def namespace(obj: Frozen) -> str | None:
    ns = meta(obj).get("namespace")
    return str(ns) if ns else None


def uid(obj: Frozen) -> str:
    return str(meta(obj).get("uid", ""))


def key_of(obj: Frozen) -> ObjectKey:
    return make_key(namespace(obj), name(obj))


def labels(obj: Frozen) -> Mapping[str, str]:
    result: Mapping[str, str] = meta(obj).get("labels") or {}
    return result


def annotations_of(obj: Frozen) -> Mapping[str, str]:
    result: Mapping[str, str] = meta(obj).get("annotations") or {}
    return result


def is_deleting(obj: Frozen) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def owner_references(obj: Frozen) -> Sequence[Mapping[str, Any]]:
    refs: Sequence[Mapping[str, Any]] = meta(obj).get("ownerReferences") or ()
    return refs


def controller_ref(obj: Frozen) -> Mapping[str, Any] | None:
    for ref in owner_references(obj):
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: Frozen, *, block_owner_deletion: bool = True) -> Obj:
    """A controller ownerReference pointing at ``owner``."""
    return {
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": name(owner),
        "uid": uid(owner),
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }


def adoption_patch(child: Frozen, owner: Frozen) -> Obj:
    """A merge patch making ``owner`` the controller of ``child``. It carries the child's
    resourceVersion, so it fails with a conflict if the child changed since it was read (another
    controller may have adopted it in between)."""
    refs = [dict(r) for r in owner_references(child)]
    refs.append(owner_reference(owner))
    return {
        "metadata": {
            "ownerReferences": refs,
            "resourceVersion": meta(child).get("resourceVersion"),
        }
    }


def is_controlled_by(obj: Frozen, owner: Frozen) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid(owner)


def get_condition(obj: Frozen, type_: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            result: Mapping[str, Any] = cond
            return result
    return None


def condition_true(obj: Frozen, type_: str) -> bool:
    cond = get_condition(obj, type_)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: list[Obj],
    *,
    type_: str,
    status: str,
    now: datetime,
    reason: str = "",
    message: str = "",
    heartbeat: bool = False,
) -> list[Obj]:
    """Return ``conditions`` with ``type_`` set; lastTransitionTime moves only on a status
    change (``lastHeartbeatTime``/``lastUpdateTime`` when ``heartbeat``)."""
    stamp = format_time(now)
    out = [dict(c) for c in conditions]
    for cond in out:
        if cond.get("type") == type_:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = stamp
            cond["status"] = status
            cond["reason"] = reason
            cond["message"] = message
            if heartbeat:
                cond["lastHeartbeatTime"] = stamp
            return out
    new: Obj = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp,
    }
    if heartbeat:
        new["lastHeartbeatTime"] = stamp
    out.append(new)
    return out
