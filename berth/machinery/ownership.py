"""What every controller of owned objects does alike (kube's ControllerRefManager and
controller_utils): wake the owner when one of its objects changes, adopt matching orphans,
let go of objects its selector no longer matches, create and delete them while remembering
the write as an :class:`Expectations` entry, and write the owner's ``status``.

The ReplicaSet, ReplicationController, Job, StatefulSet, DaemonSet, Deployment and CronJob
controllers differ in *which* objects they take and how they build them; the mechanics of a
claim or a counted write are these, once.

Concurrency contract: pure functions and coroutines over the caller's client; the caller
owns the expectations and serialises reconciles of a key (the work queue does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from berth.api.resources import ResourceDef
from berth.api.selectors import LabelSelector
from berth.client import errors
from berth.client.interface import ApiClient, Obj, PatchType
from berth.client.keys import ObjectKey, make_key
from berth.machinery.expectations import Expectations
from berth.machinery.informer import Handlers
from berth.machinery.objects import (
    Frozen,
    adoption_patch,
    controller_ref,
    is_deleting,
    labels,
    meta,
    name,
    namespace,
    uid,
)


def requeue_handlers(enqueue: Callable[[Frozen], None]) -> Handlers:
    """Handlers passing the object (on an update, the new one) to ``enqueue`` on every event."""
    return Handlers(on_add=enqueue, on_update=lambda _old, new: enqueue(new), on_delete=enqueue)


def owner_key(obj: Frozen, kind: str) -> ObjectKey | None:
    """The key of ``obj``'s controller when that controller is a ``kind``."""
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") != kind:
        return None
    return make_key(namespace(obj), str(ref.get("name")))


def is_orphan(obj: Frozen) -> bool:
    """No controller and not going away: an owner whose selector matches may adopt it."""
    return controller_ref(obj) is None and not is_deleting(obj)


async def adopt(
    client: ApiClient,
    resource: ResourceDef,
    owner: Frozen,
    candidates: Iterable[Frozen],
    selector: LabelSelector,
    *,
    eligible: Callable[[Frozen], bool] = lambda _obj: True,
    amend: Callable[[Frozen, Obj], None] | None = None,
) -> list[Frozen]:
    """Make ``owner`` the controller of the orphans among ``candidates`` its (non-empty)
    ``selector`` matches and ``eligible`` accepts; ``amend`` may add to each adoption patch.
    Returns the adopted objects as written. An object that changed or went away since it
    was read is skipped: its next event brings the owner back."""
    adopted: list[Frozen] = []
    if selector.empty:
        return adopted
    for obj in candidates:
        if not is_orphan(obj) or not eligible(obj) or not selector.matches(labels(obj)):
            continue
        patch = adoption_patch(obj, owner)
        if amend is not None:
            amend(obj, patch)
        with contextlib.suppress(errors.Conflict, errors.NotFound):
            adopted.append(await client.patch(resource, name(obj), patch, namespace=namespace(obj)))
    return adopted


async def release(
    client: ApiClient,
    resource: ResourceDef,
    owner: Frozen,
    owned: Iterable[Frozen],
    selector: LabelSelector,
) -> list[Frozen]:
    """Let go of owned objects ``selector`` no longer matches (they become orphans); returns
    those still owned (an object that changed under us stays: its next event decides)."""
    kept: list[Frozen] = []
    for obj in owned:
        if selector.matches(labels(obj)) or is_deleting(obj):
            kept.append(obj)
            continue
        refs = [
            dict(r) for r in meta(obj).get("ownerReferences") or () if r.get("uid") != uid(owner)
        ]
        patch: Obj = {
            "metadata": {
                "ownerReferences": refs or None,
                "resourceVersion": meta(obj).get("resourceVersion"),
            }
        }
        try:
            await client.patch(resource, name(obj), patch, namespace=namespace(obj))
        except (errors.Conflict, errors.NotFound):
            kept.append(obj)
    return kept


async def create_expected(
    client: ApiClient,
    expectations: Expectations,
    key: ObjectKey,
    resource: ResourceDef,
    body: Obj,
    *,
    namespace: str | None,
    expect_as: str | None = None,
) -> Obj:
    """Create ``body``, expecting it under ``key`` (as ``expect_as``, default its name) until
    the cache shows it; a failed create is not expected any more."""
    expected = expect_as or body["metadata"]["name"]
    expectations.created(key, expected)
    try:
        return await client.create(resource, body, namespace=namespace)
    except errors.ApiError:
        expectations.create_failed(key, expected)
        raise


async def delete_expected(
    client: ApiClient,
    expectations: Expectations,
    key: ObjectKey,
    resource: ResourceDef,
    obj: Frozen,
    *,
    precondition_uid: str | None = None,
) -> None:
    """Delete ``obj``, expecting it gone under ``key`` until the cache stops showing it (an
    object already gone is fine)."""
    expectations.deleted(key, name(obj))
    with contextlib.suppress(errors.NotFound):
        await client.delete(
            resource, name(obj), namespace=namespace(obj), precondition_uid=precondition_uid
        )


async def write_status(
    client: ApiClient,
    resource: ResourceDef,
    obj: Frozen,
    status: Obj,
    *,
    patch_type: PatchType = "merge",
) -> bool:
    """Merge ``status`` into ``obj``'s status subresource; False when ``obj`` is gone. A
    ``strategic`` patch merges ``status.conditions`` by type: only the conditions sent are
    written."""
    try:
        await client.patch(
            resource,
            name(obj),
            {"status": status},
            namespace=namespace(obj),
            subresource="status",
            patch_type=patch_type,
        )
    except errors.NotFound:
        return False
    return True
