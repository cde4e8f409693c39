"""Cordon, drain and uncordon a node through the API, the way ``kubectl drain
--ignore-daemonsets --delete-emptydir-data`` does.

* DaemonSet pods stay (their controller would recreate them at once) and so do mirror pods.
* Finished pods (Succeeded/Failed) are deleted; the rest go through the ``eviction``
  subresource, so PodDisruptionBudgets are honoured: a 429 is retried until the deadline.
* Pods with ``emptyDir`` volumes are evicted; their scratch data is lost, as with
  ``--delete-emptydir-data`` (the report counts them).
* Pods no controller owns would not come back anywhere: the drain refuses them unless
  ``force`` (kubectl's ``--force``), naming each one.
* The drain waits until every evicted pod is gone, at most ``timeout`` seconds
  (``spec.upgrade.drainTimeoutSeconds``), and then fails naming the pods still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from berth.api.resources import NODES, PODS
from berth.client import errors as api_errors
from berth.client.interface import ApiClient, evict
from provisioner.errors import ProvisionerError

Obj = dict[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class DrainError(ProvisionerError):
    """A node could not be drained (pods refused or still there at the deadline)."""


@dataclass
class DrainResult:
    evicted: list[str] = field(default_factory=list)
    deleted_finished: list[str] = field(default_factory=list)
    emptydir: list[str] = field(default_factory=list)
    ignored_daemonset: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.evicted)} pod(s) evicted"]
        if self.emptydir:
            parts.append(f"{len(self.emptydir)} with emptyDir data deleted")
        if self.deleted_finished:
            parts.append(f"{len(self.deleted_finished)} finished pod(s) deleted")
        if self.ignored_daemonset:
            parts.append(f"{len(self.ignored_daemonset)} DaemonSet pod(s) left")
        return ", ".join(parts)


def _key(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def _controller(pod: Obj) -> Obj | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _is_daemonset(pod: Obj) -> bool:
    ref = _controller(pod)
    return ref is not None and ref.get("kind") == "DaemonSet"


def _is_mirror(pod: Obj) -> bool:
    return MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {})


def _has_emptydir(pod: Obj) -> bool:
    return any("emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or [])


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


async def cordon(client: ApiClient, node: str) -> None:
    await client.patch(NODES, node, {"spec": {"unschedulable": True}})


async def uncordon(client: ApiClient, node: str) -> None:
    await client.patch(NODES, node, {"spec": {"unschedulable": None}})


async def _pods_on(client: ApiClient, node: str) -> list[Obj]:
    return (await client.list(PODS, field_selector=f"spec.nodeName={node}")).items


async def drain(
    client: ApiClient,
    node: str,
    *,
    timeout: float,  # noqa: ASYNC109 - a deadline for many waits, not one call
    force: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    poll: float = 0.5,
) -> DrainResult:
    """Cordon ``node`` and move its pods off (see the module docstring)."""
    deadline = monotonic() + timeout
    await cordon(client, node)
    result = DrainResult()
    pods = await _pods_on(client, node)
    movable: list[Obj] = []
    unmanaged: list[str] = []
    for pod in pods:
        if _is_mirror(pod):
            continue
        if _is_daemonset(pod):
            result.ignored_daemonset.append(_key(pod))
        elif _finished(pod):
            meta = pod["metadata"]
            with contextlib.suppress(api_errors.NotFound):
                await client.delete(PODS, meta["name"], namespace=meta.get("namespace"))
            result.deleted_finished.append(_key(pod))
        elif _controller(pod) is None and not force:
            unmanaged.append(_key(pod))
        else:
            movable.append(pod)
    if unmanaged:
        raise DrainError(
            f"node {node}: cannot drain pod(s) no controller manages: {', '.join(unmanaged)} "
            "(they would not be recreated anywhere)",
            hint="delete or move them yourself, then run `berth upgrade --resume`",
        )
    waiting: dict[str, str] = {}  # key -> uid of the pod being evicted
    for pod in movable:
        key = _key(pod)
        meta = pod["metadata"]
        while True:
            try:
                await evict(client, namespace=meta.get("namespace", "default"), pod=meta["name"])
            except api_errors.NotFound:
                break
            except api_errors.TooManyRequests as error:
                # a PodDisruptionBudget says not now: retry until the deadline
                if monotonic() >= deadline:
                    raise DrainError(
                        f"node {node}: eviction of {key} still refused at the "
                        f"{timeout:.0f}s drain timeout: {error}",
                        hint="check the PodDisruptionBudgets that cover it, or raise "
                        "spec.upgrade.drainTimeoutSeconds",
                    ) from None
                await sleep(poll)
                continue
            waiting[key] = str(meta.get("uid", ""))
            result.evicted.append(key)
            if _has_emptydir(pod):
                result.emptydir.append(key)
            break
    while waiting:
        present = {_key(p): str(p["metadata"].get("uid", "")) for p in await _pods_on(client, node)}
        waiting = {k: uid for k, uid in waiting.items() if present.get(k) == uid}
        if not waiting:
            break
        if monotonic() >= deadline:
            raise DrainError(
                f"node {node}: pod(s) still terminating after the {timeout:.0f}s drain "
                f"timeout: {', '.join(sorted(waiting))}",
                hint="look at why they do not stop (finalizers, grace periods), or raise "
                "spec.upgrade.drainTimeoutSeconds",
            )
        await sleep(poll)
    return result
