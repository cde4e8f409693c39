"""The persistent volume controller: binding, reclaiming, protection and the local provisioner
(upstream's persistentvolume-binder, pvc-protection and pv-protection controllers, with the
volume-making half of Rancher's local-path-provisioner).

One queue holds both kinds of key: a claim's is ``namespace/name``, a volume's (cluster-scoped)
is its bare name, so ``"/" in key`` tells them apart.

Claims (:meth:`VolumeController._sync_claim`):

* deleting: ``kubernetes.io/pvc-protection`` is removed once no pod that may still run names
  the claim;
* bound (``spec.volumeName``): the volume's ``claimRef`` and both statuses are completed (a
  claim whose volume vanished becomes ``Lost``);
* unbound: the smallest fitting volume (:func:`berth.api.storage.best_volume`) is bound;
  none fits and the class has a provisioner: an ``Immediate`` class is provisioned now, a
  ``WaitForFirstConsumer`` one once the scheduler has named the node
  (``volume.kubernetes.io/selected-node``); with WFFC and a selected node, only volumes
  reachable from that node are considered.

Volumes (:meth:`VolumeController._sync_volume`):

* deleting: ``kubernetes.io/pv-protection`` is removed once the volume is not ``Bound``;
* no ``claimRef``: ``Available``; a claimRef to a claim that is gone (uid differs, or the
  claim was deleted): ``Released``, then the reclaim policy: ``Delete`` deletes the volume
  object (a local volume's directory is removed by its node before the object goes: the
  ``berth.io/local-volume-cleanup`` finalizer), ``Retain`` keeps it ``Released``,
  ``Recycle`` (deprecated upstream) is ``Failed``.

Binding writes the volume first (``claimRef`` with the claim's uid, under the volume's
resourceVersion), then the claim: two binders (or one after a crash) can never give one volume
to two claims, and a half-done bind is finished from the volume's pre-bound ``claimRef``.

The local provisioner (class provisioner ``berth.io/local``) only writes the API object: a
``local`` volume at ``<nodePath>/<volume name>`` pinned to the selected node; the node agent
makes the directory when a pod first mounts it and removes it on delete (only the node can
touch its disk, and it trusts no path it did not compute itself). It provisions only on a node
that can hold the volume (:meth:`VolumeController._selected_node_problem`):

* the selected node no longer exists: the ``selected-node`` annotation is removed so the
  scheduler picks again (upstream's external provisioner does the same, "reschedule"); the
  pods already bound to the gone node are removed by the pod garbage collector and their
  replacements are scheduled afresh;
* the node is not Ready, or reports less free space for local volumes than the claim asks
  (``berth.io/local-volumes-available``): no volume is pinned there, a ``ProvisioningFailed``
  warning says why, and the claim is looked at again (the node may recover or free space; a
  node deleted for good ends in the case above). The annotation stays: berth binds a pod to
  its node together with the annotation, and that pod can only run there.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from berth.api import storage as st
from berth.api.resources import NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery import ownership
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, annotations_of, is_deleting, meta, name, namespace, thaw
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

MAX_TOLD = 100_000
"""Bound on the claim uids remembered as told to wait (forgotten all at once beyond it)."""
RECHECK = 15.0
"""Seconds before a claim still waiting for a volume is looked at again without an event."""


def _claim_key(ns: str, claim: str) -> ObjectKey:
    return ObjectKey(f"{ns}/{claim}")


def _pods_claims(pod: Frozen) -> list[str]:
    ns = namespace(pod) or ""
    return [f"{ns}/{c}" for c in st.claim_names_of_pod(pod)]


def _volume_claim(pv: Frozen) -> list[str]:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    return [f"{ref.get('namespace')}/{ref.get('name')}"] if ref.get("name") else []


def _free_volume_class(pv: Frozen) -> list[str]:
    return [] if (pv.get("spec") or {}).get("claimRef") else [st.volume_class(pv)]


RESCHEDULE = "reschedule"


def _ready(node: Frozen) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _pod_may_run(pod: Frozen) -> bool:
    """The pod may still use its volumes: not finished (a deleted pod leaves the cache only
    once its node has stopped it)."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class VolumeController:
    def __init__(self, ctx: Context, *, workers: int = 2) -> None:
        self.ctx = ctx
        self.claims = ctx.informers.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = ctx.informers.informer(PERSISTENTVOLUMES)
        self.volumes.add_index("claim", _volume_claim)
        self.volumes.add_index("free-class", _free_volume_class)
        self.classes = ctx.informers.informer(STORAGECLASSES)
        self.nodes = ctx.informers.informer(NODES)
        self.pods = ctx.pods()
        self.pods.add_index("claims", _pods_claims)
        self._waiting_told: set[str] = set()
        self._problem_told: dict[str, str] = {}  # claim uid -> the provisioning problem told
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="persistentvolume-binder")
        self.controller = Controller("persistentvolume-binder", self, self.queue, workers=workers)
        self.claims.add_handlers(
            Handlers(
                on_add=self._claim_seen,
                on_update=lambda _o, c: self._claim_seen(c),
                on_delete=self._claim_gone,
            )
        )
        self.volumes.add_handlers(ownership.requeue_handlers(self._volume_seen))
        self.pods.add_handlers(
            Handlers(
                on_update=lambda _o, p: self._pod_changed(p),
                on_delete=self._pod_changed,
            )
        )

    # -- events ----------------------------------------------------------------------------
    def _claim_seen(self, claim: Frozen) -> None:
        self.queue.add(_claim_key(namespace(claim) or "", name(claim)))

    def _claim_gone(self, claim: Frozen) -> None:
        volume = (claim.get("spec") or {}).get("volumeName")
        if volume:
            self.queue.add(ObjectKey(str(volume)))
        for pv in self.volumes.by_index("claim", f"{namespace(claim)}/{name(claim)}"):
            self.queue.add(ObjectKey(name(pv)))  # a volume pre-bound to it

    def _volume_seen(self, pv: Frozen) -> None:
        self.queue.add(ObjectKey(name(pv)))
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("name") and ref.get("namespace"):
            self.queue.add(_claim_key(str(ref["namespace"]), str(ref["name"])))
        elif not is_deleting(pv):
            # A new free volume may satisfy a waiting claim.
            for claim in self.claims.list():
                if not (claim.get("spec") or {}).get("volumeName"):
                    self._claim_seen(claim)

    def _pod_changed(self, pod: Frozen) -> None:
        for key in _pods_claims(pod):
            claim = self.claims.get(key)
            if claim is not None and is_deleting(claim):
                self.queue.add(ObjectKey(key))

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        if "/" in key:
            await self._sync_claim(key)
        else:
            await self._sync_volume(str(key))

    async def _sync_claim(self, key: ObjectKey) -> None:
        claim = self.claims.get(key)
        if claim is None:
            return
        if is_deleting(claim):
            await self._release_claim_protection(claim)
            return
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if volume_name:
            await self._complete_bound_claim(claim, str(volume_name))
            return
        cls = self._class_of(claim)
        node = annotations_of(claim).get(st.SELECTED_NODE_ANNOTATION)
        wffc = cls is not None and cls.get("volumeBindingMode") == st.WAIT_FOR_FIRST_CONSUMER
        node_filter = None
        if wffc and node:
            node_filter = (self._node_labels(str(node)), str(node))
        if wffc and not node:
            # Static volumes for a WFFC claim are chosen by the scheduler's node.
            if not self._told(claim):
                await self.ctx.recorder.normal(
                    claim,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
            await self._set_claim_phase(claim, st.CLAIM_PENDING)
            return
        # Candidates: free volumes of the claim's class, and any reserved for this claim.
        candidates = {
            name(v): v
            for v in (
                *self.volumes.by_index("free-class", st.claim_class(claim)),
                *self.volumes.by_index("claim", str(key)),
            )
        }
        pv = st.best_volume(candidates.values(), claim, node=node_filter)
        if pv is not None:
            await self._bind(claim, pv)
            return
        if cls is None or not cls.get("provisioner"):
            await self._set_claim_phase(claim, st.CLAIM_PENDING)
            raise Retry(RECHECK, "no volume fits the claim")
        await self._provision(claim, cls, str(node or ""))

    def _told(self, claim: Frozen) -> bool:
        """The claim's WaitForFirstConsumer event was recorded (once per claim uid here)."""
        uid = str(meta(claim).get("uid"))
        if uid in self._waiting_told:
            return True
        if len(self._waiting_told) > MAX_TOLD:
            self._waiting_told.clear()
        self._waiting_told.add(uid)
        return False

    def _class_of(self, claim: Frozen) -> Frozen | None:
        cls_name = st.claim_class(claim)
        return self.classes.get(cls_name) if cls_name else None

    def _node_labels(self, node: str) -> dict[str, str]:
        obj = self.nodes.get(node)
        if obj is None:  # the agent sets kubernetes.io/hostname to the node's name
            return {"kubernetes.io/hostname": node}
        return dict(meta(obj).get("labels") or {})

    async def _release_claim_protection(self, claim: Frozen) -> None:
        fins = list(meta(claim).get("finalizers") or ())
        if st.PVC_PROTECTION_FINALIZER not in fins:
            return
        key = f"{namespace(claim)}/{name(claim)}"
        users = [p for p in self.pods.by_index("claims", key) if _pod_may_run(p)]
        if users:
            return  # a pod deletion enqueues the claim again
        body = thaw(claim)
        body["metadata"]["finalizers"] = [f for f in fins if f != st.PVC_PROTECTION_FINALIZER]
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.update(PERSISTENTVOLUMECLAIMS, body)

    async def _complete_bound_claim(self, claim: Frozen, volume_name: str) -> None:
        pv = self.volumes.get(volume_name)
        if pv is None:
            try:
                await self.ctx.client.get(PERSISTENTVOLUMES, volume_name)
                return  # the cache lags
            except errors.NotFound:
                pass
            if (claim.get("status") or {}).get("phase") == st.CLAIM_BOUND:
                await self._set_claim_phase(claim, st.CLAIM_LOST)
                await self.ctx.recorder.warning(
                    claim,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref:
            await self._bind(claim, pv)  # a claim the user pre-bound to a volume
            return
        if not st.claim_ref_matches(pv, claim):
            await self._set_claim_phase(claim, st.CLAIM_PENDING)
            return  # the volume is someone else's: wait (upstream does the same)
        if not ref.get("uid"):
            await self._bind(claim, pv)
            return
        await self._mark_bound(claim, pv)

    async def _bind(self, claim: Frozen, pv: Frozen) -> None:
        """Give ``pv`` to ``claim``: the volume first (optimistic on its resourceVersion)."""
        cm = meta(claim)
        spec = pv.get("spec") or {}
        ref = spec.get("claimRef") or {}
        if not ref.get("uid"):
            body = thaw(pv)
            body["spec"]["claimRef"] = {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": cm.get("namespace"),
                "name": cm.get("name"),
                "uid": cm.get("uid"),
                "resourceVersion": cm.get("resourceVersion"),
            }
            if not ref:
                body["metadata"].setdefault("annotations", {})[
                    st.BOUND_BY_CONTROLLER_ANNOTATION
                ] = "yes"
            try:
                pv = await self.ctx.client.update(PERSISTENTVOLUMES, body)
            except errors.Conflict:
                raise Retry(0.2, "volume changed while binding") from None
            except errors.NotFound:
                return
        await self._mark_bound(claim, pv)

    async def _mark_bound(self, claim: Frozen, pv: Frozen) -> None:
        if (pv.get("status") or {}).get("phase") != st.PV_BOUND:
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.ctx.client.patch(
                    PERSISTENTVOLUMES,
                    name(pv),
                    {"status": {"phase": st.PV_BOUND}},
                    subresource="status",
                )
        spec = claim.get("spec") or {}
        annotations = annotations_of(claim)
        if (
            spec.get("volumeName") != name(pv)
            or annotations.get(st.BIND_COMPLETED_ANNOTATION) != "yes"
        ):
            body = thaw(claim)
            body["spec"]["volumeName"] = name(pv)
            added = body["metadata"].setdefault("annotations", {})
            added[st.BIND_COMPLETED_ANNOTATION] = "yes"
            if not spec.get("volumeName"):
                added[st.BOUND_BY_CONTROLLER_ANNOTATION] = "yes"
            try:
                claim = await self.ctx.client.update(PERSISTENTVOLUMECLAIMS, body)
            except errors.Conflict:
                raise Retry(0.2, "claim changed while binding") from None
            except errors.NotFound:
                return
        pv_spec = pv.get("spec") or {}
        status = thaw(claim.get("status") or {})  # cached lists are tuples
        want = {
            "phase": st.CLAIM_BOUND,
            "accessModes": list(pv_spec.get("accessModes") or ()),
            "capacity": thaw(pv_spec.get("capacity") or {}),
        }
        if any(status.get(k) != v for k, v in want.items()):
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.ctx.client.patch(
                    PERSISTENTVOLUMECLAIMS,
                    name(claim),
                    {"status": want},
                    namespace=namespace(claim),
                    subresource="status",
                )
            log.info("bound claim %s/%s to volume %s", namespace(claim), name(claim), name(pv))

    async def _set_claim_phase(self, claim: Frozen, phase: str) -> None:
        if (claim.get("status") or {}).get("phase") == phase:
            return
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.patch(
                PERSISTENTVOLUMECLAIMS,
                name(claim),
                {"status": {"phase": phase}},
                namespace=namespace(claim),
                subresource="status",
            )

    # -- provisioning ------------------------------------------------------------------------
    async def _provision(self, claim: Frozen, cls: Frozen, node: str) -> None:
        provisioner = str(cls.get("provisioner"))
        await self._set_claim_phase(claim, st.CLAIM_PENDING)
        if annotations_of(claim).get(st.STORAGE_PROVISIONER_ANNOTATION) != provisioner:
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.ctx.client.patch(
                    PERSISTENTVOLUMECLAIMS,
                    name(claim),
                    {
                        "metadata": {
                            "annotations": {
                                st.STORAGE_PROVISIONER_ANNOTATION: provisioner,
                                st.BETA_STORAGE_PROVISIONER_ANNOTATION: provisioner,
                            }
                        }
                    },
                    namespace=namespace(claim),
                )
        if provisioner != st.LOCAL_PROVISIONER:
            await self.ctx.recorder.normal(
                claim,
                "ExternalProvisioning",
                f"Waiting for a volume to be created either by the external provisioner"
                f" '{provisioner}' or manually by the system administrator.",
            )
            return
        if not node:
            await self.ctx.recorder.warning(
                claim,
                "ProvisioningFailed",
                f"storageclass {name(cls)!r}: {st.LOCAL_PROVISIONER} makes node-local volumes"
                " and needs volumeBindingMode WaitForFirstConsumer",
            )
            raise Retry(RECHECK, "local volumes need a selected node")
        problem = await self._selected_node_problem(claim, node)
        if problem == RESCHEDULE:
            return
        uid = str(meta(claim).get("uid"))
        if problem:
            if self._problem_told.get(uid) != problem:  # once per problem, not per look
                if len(self._problem_told) > MAX_TOLD:
                    self._problem_told.clear()
                self._problem_told[uid] = problem
                await self.ctx.recorder.warning(claim, "ProvisioningFailed", problem)
            raise Retry(RECHECK, problem)
        self._problem_told.pop(uid, None)
        body = local_volume(claim, cls, node)
        try:
            await self.ctx.client.create(PERSISTENTVOLUMES, body)
        except errors.AlreadyExists:
            return  # made before; the volume event binds it
        await self.ctx.recorder.normal(
            claim,
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {body['metadata']['name']} on node {node}",
        )

    async def _selected_node_problem(self, claim: Frozen, node: str) -> str:
        """Why the local provisioner must not make ``claim``'s volume on ``node`` now (empty:
        it may); :data:`RESCHEDULE` once it has asked the scheduler to pick another node."""
        found = self.nodes.get(node)
        if found is None:
            try:
                found = await self.ctx.client.get(NODES, node)
            except errors.NotFound:
                await self._reschedule(claim, node)
                return RESCHEDULE
        if not _ready(found):
            return f"selected node {node!r} is not Ready: no local volume is made there now"
        room = st.local_available(found)
        wanted = st.claim_request(claim)
        if room is not None and wanted > room:
            return (
                f"node {node!r} has {st.room_text(room)} free for local volumes; the claim"
                f" requests {st.room_text(wanted)}"
            )
        return ""

    async def _reschedule(self, claim: Frozen, node: str) -> None:
        """Drop the claim's selected node (it is gone) so the scheduler chooses again."""
        log.info(
            "claim %s/%s: selected node %s not found, rescheduling",
            namespace(claim),
            name(claim),
            node,
        )
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.patch(
                PERSISTENTVOLUMECLAIMS,
                name(claim),
                {"metadata": {"annotations": {st.SELECTED_NODE_ANNOTATION: None}}},
                namespace=namespace(claim),
            )
        await self.ctx.recorder.warning(
            claim,
            "ProvisioningFailed",
            f"selected node {node!r} not found: rescheduling the claim's first consumer",
        )

    # -- volumes -------------------------------------------------------------------------------
    async def _sync_volume(self, volume_name: str) -> None:
        pv = self.volumes.get(volume_name)
        if pv is None:
            return
        phase = (pv.get("status") or {}).get("phase")
        if is_deleting(pv):
            fins = list(meta(pv).get("finalizers") or ())
            if phase == st.PV_BOUND and not await self._claim_alive(pv):
                await self._set_volume_phase(pv, st.PV_RELEASED)
                phase = st.PV_RELEASED
            drop = {st.PV_PROTECTION_FINALIZER}
            annotations = annotations_of(pv)
            if (
                annotations.get(st.PROVISIONED_BY_ANNOTATION) == st.LOCAL_PROVISIONER
                and annotations.get(st.LOCAL_VOLUME_MADE_ANNOTATION) != "true"
            ):
                drop.add(st.LOCAL_CLEANUP_FINALIZER)  # no node ever made its directory
            if drop & set(fins) and phase != st.PV_BOUND:
                body = thaw(pv)
                body["metadata"]["finalizers"] = [f for f in fins if f not in drop]
                with contextlib.suppress(errors.NotFound, errors.Conflict):
                    await self.ctx.client.update(PERSISTENTVOLUMES, body)
            return
        spec = pv.get("spec") or {}
        ref = spec.get("claimRef") or {}
        if not ref.get("name"):
            await self._set_volume_phase(pv, st.PV_AVAILABLE)
            return
        claim = self.claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
        if claim is not None and (not ref.get("uid") or ref.get("uid") == meta(claim).get("uid")):
            if (claim.get("spec") or {}).get("volumeName") == volume_name:
                await self._set_volume_phase(pv, st.PV_BOUND)
            elif (claim.get("spec") or {}).get("volumeName"):
                # The claim went to another volume: a volume the controller reserved is freed.
                if annotations_of(pv).get(st.BOUND_BY_CONTROLLER_ANNOTATION):
                    await self._unbind(pv)
            elif phase not in (st.PV_AVAILABLE, st.PV_BOUND):
                await self._set_volume_phase(pv, st.PV_AVAILABLE)
            return
        if not ref.get("uid"):
            await self._set_volume_phase(pv, st.PV_AVAILABLE)  # waiting for its claim
            return
        if claim is None:
            try:
                live = await self.ctx.client.get(
                    PERSISTENTVOLUMECLAIMS, str(ref["name"]), namespace=str(ref["namespace"])
                )
                if meta(live).get("uid") == ref.get("uid"):
                    return  # the cache lags
            except errors.NotFound:
                pass
        await self._reclaim(pv)

    async def _claim_alive(self, pv: Frozen) -> bool:
        """The claim the volume's claimRef names still exists (same uid), asked live when the
        cache has none."""
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if not ref.get("name"):
            return False
        claim = self.claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
        if claim is None:
            try:
                claim = await self.ctx.client.get(
                    PERSISTENTVOLUMECLAIMS, str(ref["name"]), namespace=str(ref.get("namespace"))
                )
            except errors.NotFound:
                return False
        return not ref.get("uid") or ref.get("uid") == meta(claim).get("uid")

    async def _reclaim(self, pv: Frozen) -> None:
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        phase = (pv.get("status") or {}).get("phase")
        if phase not in (st.PV_RELEASED, st.PV_FAILED):
            await self._set_volume_phase(pv, st.PV_RELEASED)
        if policy == "Retain":
            return
        if policy == "Recycle":
            await self._set_volume_phase(
                pv,
                st.PV_FAILED,
                reason="VolumeFailedRecycle",
                message="berth does not recycle volumes (deprecated upstream): use Delete",
            )
            return
        log.info("deleting released volume %s (reclaim policy Delete)", name(pv))
        with contextlib.suppress(errors.NotFound):
            await self.ctx.client.delete(PERSISTENTVOLUMES, name(pv))

    async def _unbind(self, pv: Frozen) -> None:
        body = thaw(pv)
        body["spec"].pop("claimRef", None)
        body["metadata"].get("annotations", {}).pop(st.BOUND_BY_CONTROLLER_ANNOTATION, None)
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.update(PERSISTENTVOLUMES, body)

    async def _set_volume_phase(
        self, pv: Frozen, phase: str, *, reason: str = "", message: str = ""
    ) -> None:
        status = pv.get("status") or {}
        if status.get("phase") == phase and (status.get("reason") or "") == reason:
            return
        patch: dict[str, Any] = {"phase": phase, "reason": reason or None}
        patch["message"] = message or None
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.patch(
                PERSISTENTVOLUMES, name(pv), {"status": patch}, subresource="status"
            )


def local_volume(claim: Frozen, cls: Frozen, node: str) -> dict[str, Any]:
    """The PersistentVolume the local provisioner makes for ``claim`` on ``node``: named after
    the claim's uid (never after names a user chose), its directory ``<nodePath>/<name>``."""
    cm = meta(claim)
    spec = claim.get("spec") or {}
    pv_name = f"pvc-{cm.get('uid')}"
    base = str((cls.get("parameters") or {}).get("nodePath") or st.LOCAL_VOLUMES_DIR).rstrip("/")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name,
            "annotations": {st.PROVISIONED_BY_ANNOTATION: st.LOCAL_PROVISIONER},
            "finalizers": [st.PV_PROTECTION_FINALIZER, st.LOCAL_CLEANUP_FINALIZER],
        },
        "spec": {
            "capacity": {
                "storage": (spec.get("resources") or {}).get("requests", {}).get("storage")
            },
            "accessModes": list(spec.get("accessModes") or ()),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy") or "Delete",
            "storageClassName": name(cls),
            "local": {"path": f"{base}/{pv_name}"},
            "nodeAffinity": st.pinned_to(node),
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": cm.get("namespace"),
                "name": cm.get("name"),
                "uid": cm.get("uid"),
            },
        },
    }
