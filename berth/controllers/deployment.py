"""Deployment controller: roll a workload from ReplicaSet to ReplicaSet.

reconcile(key) finds the Deployment's ReplicaSets (by controller ownerReference), picks the
*new* one — whose pod template equals the Deployment's, ignoring the ``pod-template-hash``
label — creating it (``{name}-{hash}``) when needed, and then:

* on a scaling event (an active ReplicaSet's ``desired-replicas`` annotation differs from
  ``spec.replicas``) scales all ReplicaSets proportionally, within ``replicas + maxSurge``;
* with ``RollingUpdate``, scales the new ReplicaSet up within ``maxSurge`` and the old ones
  down within ``maxUnavailable`` (unhealthy old pods first);
* with ``Recreate``, scales old ReplicaSets to zero, waits until their pods are gone, then
  scales the new one up.

Revisions follow Kubernetes: each ReplicaSet carries ``deployment.kubernetes.io/revision``; the
new one gets ``max(old) + 1`` (so re-applying an old template — ``kubectl rollout undo`` —
moves that ReplicaSet to the newest revision). ``status`` carries observedGeneration, replica
counts and the ``Available`` and ``Progressing`` conditions (``ProgressDeadlineExceeded`` after
``progressDeadlineSeconds`` without progress), which is what ``kubectl rollout status`` reads.
Old ReplicaSets beyond ``revisionHistoryLimit`` are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from berth.api.meta import format_time, parse_time
from berth.api.resources import DEPLOYMENTS, REPLICASETS
from berth.api.selectors import label_selector_from_object
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.context import Context, by_controller_uid
from berth.machinery import ownership
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import (
    Frozen,
    adoption_patch,
    annotations_of,
    controller_ref,
    is_deleting,
    key_of,
    labels,
    meta,
    name,
    namespace,
    owner_reference,
    thaw,
    uid,
)
from berth.machinery.queue import WorkQueue

REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
OWN_CONDITIONS = ("Available", "Progressing")
"""The status conditions this controller writes (others' stay: its status patch merges them
by type)."""
_NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION, DESIRED, MAX_REPLICAS)
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Any, collision_count: int = 0) -> str:
    digest = hashlib.sha256(
        orjson.dumps(thaw(template), option=orjson.OPT_SORT_KEYS) + str(collision_count).encode()
    ).digest()
    value = int.from_bytes(digest[:8], "big")
    out = []
    for _ in range(10):
        value, r = divmod(value, len(_HASH_ALPHABET))
        out.append(_HASH_ALPHABET[r])
    return "".join(out)


def _strip_hash(template: Any) -> Any:
    t = thaw(template) or {}
    lbls = (t.get("metadata") or {}).get("labels")
    if lbls is not None:
        lbls.pop(HASH_LABEL, None)
    return t


def templates_equal(a: Any, b: Any) -> bool:
    return bool(_strip_hash(a) == _strip_hash(b))


def revision(rs: Frozen) -> int:
    try:
        return int(annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def spec_replicas(obj: Frozen) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def _status(obj: Frozen, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def _resolve(value: Any, total: int, *, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def surge_and_unavailable(d: Frozen) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` as numbers; both zero is not allowed, so unavailable
    becomes 1 (as in Kubernetes)."""
    spec = d.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, 0
    ru = strategy.get("rollingUpdate") or {}
    replicas = spec_replicas(d)
    surge = _resolve(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _resolve(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _set_condition(
    conditions: list[Obj], *, type_: str, status: str, reason: str, message: str, now: datetime
) -> list[Obj]:
    stamp = format_time(now)
    out = [dict(c) for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    cond: Obj = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
    }
    if old is not None and old.get("status") == status:
        cond["lastTransitionTime"] = old.get("lastTransitionTime", stamp)
        if old.get("reason") == reason and old.get("message") == message:
            cond["lastUpdateTime"] = old.get("lastUpdateTime", stamp)
    out.append(cond)
    return out


class DeploymentController:
    def __init__(self, ctx: Context, *, workers: int = 4) -> None:
        self.ctx = ctx
        self.deployments = ctx.informers.informer(DEPLOYMENTS)
        self.sets = ctx.informers.informer(REPLICASETS)
        self.sets.add_index("controller", by_controller_uid)
        self.pods = ctx.pods()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="deployments")
        self.controller = Controller("deployments", self, self.queue, workers=workers)
        self.deployments.add_handlers(ownership.requeue_handlers(self._enqueue))
        self.sets.add_handlers(
            Handlers(
                on_add=self._owner_of,
                on_update=self._rs_updated,
                on_delete=self._owner_of,
            )
        )
        self.pods.add_handlers(Handlers(on_delete=self._pod_deleted))

    def _enqueue(self, d: Frozen) -> None:
        self.queue.add(key_of(d))

    def _owner_of(self, rs: Frozen) -> None:
        key = ownership.owner_key(rs, "Deployment")
        if key is not None:
            self.queue.add(key)

    def _rs_updated(self, old: Frozen, new: Frozen) -> None:
        self._owner_of(old)
        self._owner_of(new)

    def _pod_deleted(self, pod: Frozen) -> None:
        # Recreate waits for old pods to disappear; their deletion must wake the Deployment.
        rs_key = ownership.owner_key(pod, "ReplicaSet")
        rs = self.sets.get(rs_key) if rs_key is not None else None
        if rs is not None:
            self._owner_of(rs)

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        d = self.deployments.get(key)
        if d is None:
            return
        sets = [rs for rs in self.sets.by_index("controller", uid(d)) if not is_deleting(rs)]
        if not is_deleting(d):
            sets += await self._adopt(d)
        spec = d.get("spec") or {}
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        new_rs = self._find_new(d, sets)
        olds = [rs for rs in sets if new_rs is None or name(rs) != name(new_rs)]
        if is_deleting(d):
            await self._sync_status(d, new_rs, olds)
            return
        if spec.get("paused") or self._is_scaling_event(d, sets):
            if new_rs is not None:
                new_rs = await self._sync_revision(d, new_rs, olds)
            await self._scale(d, new_rs, olds)
            await self._sync_status(d, new_rs, olds)
            return
        if recreate:
            await self._recreate(d, new_rs, olds)
        else:
            await self._rolling(d, new_rs, olds)

    async def _adopt(self, d: Frozen) -> list[Frozen]:
        """Take ownership of orphaned ReplicaSets the selector matches (e.g. left behind by
        ``kubectl delete --cascade=orphan`` of a previous Deployment of the same name)."""
        selector = label_selector_from_object((d.get("spec") or {}).get("selector"))
        if selector.empty:
            return []
        adopted: list[Frozen] = []
        for rs in self.sets.list(namespace(d) or ""):
            if controller_ref(rs) is not None or is_deleting(rs):
                continue
            if not selector.matches(labels(rs)):
                continue
            patch = adoption_patch(rs, d)
            try:
                adopted.append(
                    await self.ctx.client.patch(
                        REPLICASETS, name(rs), patch, namespace=namespace(rs)
                    )
                )
            except (errors.Conflict, errors.NotFound):
                continue
        return adopted

    def _find_new(self, d: Frozen, sets: list[Frozen]) -> Frozen | None:
        template = (d.get("spec") or {}).get("template")
        matches = [
            rs for rs in sets if templates_equal((rs.get("spec") or {}).get("template"), template)
        ]
        if not matches:
            return None
        # Several equal templates can exist after collisions; the oldest wins, as in kube.
        return min(matches, key=lambda rs: str(meta(rs).get("creationTimestamp") or ""))

    def _is_scaling_event(self, d: Frozen, sets: list[Frozen]) -> bool:
        want = str(spec_replicas(d))
        for rs in sets:
            if spec_replicas(rs) > 0:
                desired = annotations_of(rs).get(DESIRED)
                if desired is not None and desired != want:
                    return True
        return False

    async def _sync_revision(self, d: Frozen, new_rs: Frozen, olds: list[Frozen]) -> Frozen:
        """Give the new ReplicaSet the newest revision and mirror it on the Deployment."""
        want = max((revision(rs) for rs in olds), default=0) + 1
        if revision(new_rs) < want:
            new_rs = await self.ctx.client.patch(
                REPLICASETS,
                name(new_rs),
                {"metadata": {"annotations": {REVISION: str(want)}}},
                namespace=namespace(new_rs),
            )
        rev = str(revision(new_rs))
        if annotations_of(d).get(REVISION) != rev:
            await self.ctx.client.patch(
                DEPLOYMENTS,
                name(d),
                {"metadata": {"annotations": {REVISION: rev}}},
                namespace=namespace(d),
            )
        return new_rs

    async def _create_new(self, d: Frozen, olds: list[Frozen], replicas: int) -> Frozen:
        spec = d.get("spec") or {}
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        template = thaw(spec.get("template") or {})
        h = template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = thaw(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        surge, _ = surge_and_unavailable(d)
        annotations = {k: v for k, v in annotations_of(d).items() if k not in _NOT_COPIED}
        annotations[REVISION] = str(max((revision(rs) for rs in olds), default=0) + 1)
        annotations[DESIRED] = str(spec_replicas(d))
        annotations[MAX_REPLICAS] = str(spec_replicas(d) + surge)
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name(d)}-{h}",
                "namespace": namespace(d),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        try:
            created = await self.ctx.client.create(REPLICASETS, body, namespace=namespace(d))
        except errors.AlreadyExists:
            existing = await self.ctx.client.get(
                REPLICASETS, f"{name(d)}-{h}", namespace=namespace(d)
            )
            ref = controller_ref(existing)
            owned = ref is not None and ref.get("uid") == uid(d)
            if owned and templates_equal(existing["spec"]["template"], spec.get("template")):
                return existing
            # A hash collision with a foreign or different ReplicaSet: bump collisionCount.
            await self.ctx.client.patch(
                DEPLOYMENTS,
                name(d),
                {"status": {"collisionCount": collisions + 1}},
                namespace=namespace(d),
                subresource="status",
            )
            raise Retry(0, "pod-template-hash collision") from None
        await self.ctx.recorder.normal(
            d,
            "ScalingReplicaSet",
            f"Scaled up replica set {created['metadata']['name']} to {replicas}",
        )
        await self.ctx.client.patch(
            DEPLOYMENTS,
            name(d),
            {"metadata": {"annotations": {REVISION: annotations[REVISION]}}},
            namespace=namespace(d),
        )
        return created

    async def _scale_rs(self, d: Frozen, rs: Frozen, replicas: int) -> Frozen:
        surge, _ = surge_and_unavailable(d)
        want_annotations = {
            DESIRED: str(spec_replicas(d)),
            MAX_REPLICAS: str(spec_replicas(d) + surge),
        }
        current = annotations_of(rs)
        if spec_replicas(rs) == replicas and all(
            current.get(k) == v for k, v in want_annotations.items()
        ):
            return rs
        updated = await self.ctx.client.patch(
            REPLICASETS,
            name(rs),
            {"metadata": {"annotations": want_annotations}, "spec": {"replicas": replicas}},
            namespace=namespace(rs),
        )
        if spec_replicas(rs) != replicas:
            verb = "up" if replicas > spec_replicas(rs) else "down"
            await self.ctx.recorder.normal(
                d,
                "ScalingReplicaSet",
                f"Scaled {verb} replica set {name(rs)} to {replicas}",
            )
        return updated

    # ---- strategies ---------------------------------------------------------------------
    async def _rolling(self, d: Frozen, new_rs: Frozen | None, olds: list[Frozen]) -> None:
        want = spec_replicas(d)
        surge, unavailable = surge_and_unavailable(d)
        created = False
        if new_rs is None:
            current = sum(spec_replicas(rs) for rs in olds)
            first = max(0, min(want + surge - current, want))
            new_rs = await self._create_new(d, olds, first)
            created = True
        else:
            new_rs = await self._sync_revision(d, new_rs, olds)
        all_sets = [*olds, new_rs]
        if not created:
            have = spec_replicas(new_rs)
            if have > want:
                new_rs = await self._scale_rs(d, new_rs, want)
            elif have < want:
                current = sum(spec_replicas(rs) for rs in all_sets)
                grow = max(0, min(want + surge - current, want - have))
                new_rs = await self._scale_rs(d, new_rs, have + grow)
            else:
                new_rs = await self._scale_rs(d, new_rs, have)  # refresh annotations only
            all_sets = [*olds, new_rs]
        olds = await self._scale_down_olds(d, new_rs, olds, max_unavailable=unavailable)
        if self._complete(d, new_rs, olds):
            await self._cleanup(d, olds)
        await self._sync_status(d, new_rs, olds, created=created)

    async def _scale_down_olds(
        self, d: Frozen, new_rs: Frozen, olds: list[Frozen], *, max_unavailable: int
    ) -> list[Frozen]:
        if sum(spec_replicas(rs) for rs in olds) == 0:
            return olds
        want = spec_replicas(d)
        all_count = sum(spec_replicas(rs) for rs in [*olds, new_rs])
        min_available = want - max_unavailable
        new_unavailable = spec_replicas(new_rs) - _status(new_rs, "availableReplicas")
        budget = all_count - min_available - new_unavailable
        if budget <= 0:
            return olds
        by_age = sorted(olds, key=lambda rs: (revision(rs), str(meta(rs).get("creationTimestamp"))))
        sizes = {name(rs): spec_replicas(rs) for rs in by_age}
        # 1. Unhealthy old pods cost no availability: remove them first.
        cleaned = 0
        for rs in by_age:
            if cleaned >= budget:
                break
            unhealthy = sizes[name(rs)] - _status(rs, "availableReplicas")
            if sizes[name(rs)] == 0 or unhealthy <= 0:
                continue
            cut = min(budget - cleaned, unhealthy)
            sizes[name(rs)] -= cut
            cleaned += cut
        # 2. Then available ones, as far as minAvailable allows.
        available = sum(
            min(_status(rs, "availableReplicas"), sizes[name(rs)]) for rs in by_age
        ) + _status(new_rs, "availableReplicas")
        room = min(available - min_available, budget - cleaned)
        for rs in by_age:
            if room <= 0:
                break
            cut = min(sizes[name(rs)], room)
            sizes[name(rs)] -= cut
            room -= cut
        out = []
        for rs in by_age:
            size = sizes[name(rs)]
            out.append(await self._scale_rs(d, rs, size) if size != spec_replicas(rs) else rs)
        return out

    async def _recreate(self, d: Frozen, new_rs: Frozen | None, olds: list[Frozen]) -> None:
        olds = [await self._scale_rs(d, rs, 0) if spec_replicas(rs) else rs for rs in olds]
        old_uids = {uid(rs) for rs in olds}
        running = [
            p
            for p in self.pods.list(namespace(d) or "")
            if (ref := controller_ref(p)) is not None
            and ref.get("uid") in old_uids
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        if running:
            await self._sync_status(d, new_rs, olds)
            return
        created = False
        if new_rs is None:
            new_rs = await self._create_new(d, olds, spec_replicas(d))
            created = True
        else:
            new_rs = await self._sync_revision(d, new_rs, olds)
            new_rs = await self._scale_rs(d, new_rs, spec_replicas(d))
        if self._complete(d, new_rs, olds):
            await self._cleanup(d, olds)
        await self._sync_status(d, new_rs, olds, created=created)

    async def _scale(self, d: Frozen, new_rs: Frozen | None, olds: list[Frozen]) -> None:
        """Proportional scaling across active ReplicaSets."""
        want = spec_replicas(d)
        all_sets = [*olds, *([new_rs] if new_rs is not None else [])]
        active = [rs for rs in all_sets if spec_replicas(rs) > 0]
        if len(active) <= 1:
            target = active[0] if active else new_rs
            if target is not None:
                await self._scale_rs(d, target, want)
            return
        if (
            new_rs is not None
            and spec_replicas(new_rs) == want
            and _status(new_rs, "availableReplicas") == want
        ):
            for rs in olds:
                await self._scale_rs(d, rs, 0)
            return
        surge, _ = surge_and_unavailable(d)
        allowed = want + surge
        total = sum(spec_replicas(rs) for rs in active)
        to_add = allowed - total
        growing = to_add > 0
        ordered = sorted(
            active,
            key=lambda rs: (-spec_replicas(rs), -revision(rs) if growing else revision(rs)),
        )
        sizes: dict[str, int] = {}
        added = 0
        for rs in ordered:
            size = spec_replicas(rs)
            if to_add == 0:
                sizes[name(rs)] = size
                continue
            try:
                annotated = int(annotations_of(rs).get(MAX_REPLICAS, ""))
            except ValueError:
                annotated = 0
            annotated = annotated or max(_status(d, "replicas"), 1)
            fraction = round(size * allowed / annotated) - size if want else -size
            left = to_add - added
            share = min(fraction, left) if growing else max(fraction, left)
            sizes[name(rs)] = size + share
            added += share
        if ordered:
            first = name(ordered[0])
            sizes[first] = max(0, sizes[first] + to_add - added)
        for rs in ordered:
            await self._scale_rs(d, rs, max(0, sizes[name(rs)]))

    async def _cleanup(self, d: Frozen, olds: list[Frozen]) -> None:
        limit = int((d.get("spec") or {}).get("revisionHistoryLimit", 10))
        idle = [
            rs
            for rs in olds
            if spec_replicas(rs) == 0 and _status(rs, "replicas") == 0 and not is_deleting(rs)
        ]
        idle.sort(key=revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            with contextlib.suppress(errors.NotFound):
                await self.ctx.client.delete(REPLICASETS, name(rs), namespace=namespace(rs))

    # ---- status -------------------------------------------------------------------------
    @staticmethod
    def _complete(d: Frozen, new_rs: Frozen, olds: list[Frozen]) -> bool:
        want = spec_replicas(d)
        return (
            _status(new_rs, "replicas") == want
            and _status(new_rs, "availableReplicas") == want
            and spec_replicas(new_rs) == want
            and all(_status(rs, "replicas") == 0 for rs in olds)
        )

    async def _sync_status(
        self,
        d: Frozen,
        new_rs: Frozen | None,
        olds: list[Frozen],
        *,
        created: bool = False,
    ) -> None:
        spec = d.get("spec") or {}
        want = spec_replicas(d)
        _, max_unavailable = surge_and_unavailable(d)
        all_sets = [*olds, *([new_rs] if new_rs is not None else [])]
        old_status: Mapping[str, Any] = d.get("status") or {}
        status: Obj = {
            "observedGeneration": meta(d).get("generation", 1),
            "replicas": sum(_status(rs, "replicas") for rs in all_sets),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs is not None else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_sets),
            "availableReplicas": sum(_status(rs, "availableReplicas") for rs in all_sets),
        }
        status["unavailableReplicas"] = max(0, want - status["availableReplicas"])
        if old_status.get("collisionCount"):
            status["collisionCount"] = old_status["collisionCount"]
        now = self.ctx.clock.now()
        conds = [dict(c) for c in old_status.get("conditions") or ()]
        if status["availableReplicas"] >= want - max_unavailable:
            conds = _set_condition(
                conds,
                type_="Available",
                status="True",
                reason="MinimumReplicasAvailable",
                message="Deployment has minimum availability.",
                now=now,
            )
        else:
            conds = _set_condition(
                conds,
                type_="Available",
                status="False",
                reason="MinimumReplicasUnavailable",
                message="Deployment does not have minimum availability.",
                now=now,
            )
        deadline = spec.get("progressDeadlineSeconds", 600)
        retry: float | None = None
        rs_name = name(new_rs) if new_rs is not None else ""
        progressing = next((c for c in conds if c.get("type") == "Progressing"), None)
        if spec.get("paused"):
            conds = _set_condition(
                conds,
                type_="Progressing",
                status="Unknown",
                reason="DeploymentPaused",
                message="Deployment is paused",
                now=now,
            )
        elif new_rs is not None and self._complete(d, new_rs, olds):
            conds = _set_condition(
                conds,
                type_="Progressing",
                status="True",
                reason="NewReplicaSetAvailable",
                message=f'ReplicaSet "{rs_name}" has successfully progressed.',
                now=now,
            )
        elif created:
            conds = _set_condition(
                conds,
                type_="Progressing",
                status="True",
                reason="NewReplicaSetCreated",
                message=f'Created new replica set "{rs_name}"',
                now=now,
            )
        elif (
            self._made_progress(old_status, status)
            or progressing is None
            or (progressing.get("reason") in ("NewReplicaSetAvailable", "DeploymentPaused"))
        ):
            if new_rs is not None:
                conds = _set_condition(
                    conds,
                    type_="Progressing",
                    status="True",
                    reason="ReplicaSetUpdated",
                    message=f'ReplicaSet "{rs_name}" is progressing.',
                    now=now,
                )
                # Progress restarts the deadline clock even when the message is unchanged.
                for c in conds:
                    if c["type"] == "Progressing":
                        c["lastUpdateTime"] = format_time(now)
        elif deadline is not None and progressing.get("reason") != "ProgressDeadlineExceeded":
            since = parse_time(progressing.get("lastUpdateTime"))
            elapsed = (now - since).total_seconds() if since else 0.0
            if elapsed >= int(deadline):
                conds = _set_condition(
                    conds,
                    type_="Progressing",
                    status="False",
                    reason="ProgressDeadlineExceeded",
                    message=f'ReplicaSet "{rs_name}" has timed out progressing.',
                    now=now,
                )
                await self.ctx.recorder.warning(
                    d, "ProgressDeadlineExceeded", f"Deployment {name(d)} timed out"
                )
            else:
                retry = int(deadline) - elapsed + 0.01
        changed = any(old_status.get(k) != v for k, v in status.items())
        if changed or self._conds_differ(old_status.get("conditions") or (), conds):
            # Only the controller's own conditions, merged by type: the whole list, computed
            # from the cache, would drop a condition another writer added since.
            status["conditions"] = [c for c in conds if c.get("type") in OWN_CONDITIONS]
            await ownership.write_status(
                self.ctx.client, DEPLOYMENTS, d, status, patch_type="strategic"
            )
        cond = next((c for c in conds if c["type"] == "Progressing"), None)
        in_progress = cond is not None and cond["reason"] in (
            "ReplicaSetUpdated",
            "NewReplicaSetCreated",
        )
        if retry is None and deadline is not None and in_progress:
            # Progress was just made: check the deadline again when it could expire.
            retry = float(deadline) + 0.01
        if retry is not None:
            raise Retry(retry, "checking the progress deadline")

    @staticmethod
    def _made_progress(old: Mapping[str, Any], new: Obj) -> bool:
        old_olds = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
        new_olds = new["replicas"] - new["updatedReplicas"]
        return bool(
            new["updatedReplicas"] > int(old.get("updatedReplicas") or 0)
            or new_olds < old_olds
            or new["readyReplicas"] > int(old.get("readyReplicas") or 0)
            or new["availableReplicas"] > int(old.get("availableReplicas") or 0)
        )

    @staticmethod
    def _conds_differ(old: Any, new: list[Obj]) -> bool:
        # By type: the status patch merges them by type, so the stored order is not ours.
        return {c.get("type"): thaw(c) for c in old} != {c.get("type"): c for c in new}
