"""The VolumeBinding plugin: pods that use PersistentVolumeClaims.

Before filtering (:meth:`VolumeBinding.prepare`, once per scheduling attempt) each of the pod's
claims is looked up: a missing or terminating claim, or an unbound claim of an ``Immediate``
class (or of no class), makes the pod wait — the binder binds it, and the claim's change
requeues the pod. A bound claim contributes its volume's ``nodeAffinity``; an unbound
``WaitForFirstConsumer`` claim contributes its candidate volumes (static ones that fit it,
whatever their node) and whether its class can provision.

Per node (:meth:`PodVolumes.unfit`): every bound volume must be reachable from the node, and
every WFFC claim must have a candidate volume reachable from it or a provisioner. A claim the
local provisioner would make (``berth.io/local``) also needs room: a node whose agent reports
less free space for its local volumes (``berth.io/local-volumes-available``) than the pod's
local claims request together is not fit (upstream's message for CSI storage capacity). A node
that reports nothing is not refused; when every node reports enough, no node is asked.

After the node is chosen (:meth:`VolumeBinding.select_node`), every unbound WFFC claim gets
``volume.kubernetes.io/selected-node``; the binder then binds or provisions on that node and
the node's agent waits for the claim to be bound before it starts the pod.

Pods without claims never reach this module (:attr:`PodInfo.simple` stays true for them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.api import storage as st
from berth.api.resources import NODES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES
from berth.client import errors
from berth.client.interface import ApiClient
from berth.machinery.informer import Handlers, InformerFactory
from berth.machinery.objects import Frozen, annotations_of, is_deleting, name, namespace

log = logging.getLogger(__name__)

UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
AFFINITY_CONFLICT = "node(s) had volume node affinity conflict"
NO_VOLUME = "node(s) didn't find available persistent volumes to bind"
NOT_ENOUGH_SPACE = st.NOT_ENOUGH_SPACE
UNKNOWN_ROOM = 1 << 62
"""A node that does not report its room is taken to have plenty."""


CLASS_INDEX = "free-by-class"


def _free_volume_class(pv: Frozen) -> list[str]:
    """Index of the volumes a claim could still get (no claimRef, or pre-bound to a claim
    not yet bound: its uid is unset) by class: the scheduler and binder look only there."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    return [] if ref.get("uid") else [st.volume_class(pv)]


@dataclass(slots=True)
class _Waiting:
    claim: Frozen
    candidates: list[Frozen]
    can_provision: bool
    local: bool = False  # the local provisioner would make it: needs room on the node


@dataclass(slots=True)
class PodVolumes:
    """What one pod's claims ask of a node."""

    bound: list[Frozen] = field(default_factory=list)  # bound claims' volumes with affinity
    waiting: list[_Waiting] = field(default_factory=list)  # unbound WFFC claims
    local_request: int = 0  # bytes the local provisioner would make for this pod
    room: Mapping[str, int] | None = None  # node -> free bytes, when some node is short

    @property
    def constrained(self) -> bool:
        """Some node may not do (else :meth:`unfit` is None everywhere and is not asked)."""
        return (
            bool(self.bound)
            or self.room is not None
            or any(not w.can_provision for w in self.waiting)
        )

    def unfit(self, labels: Mapping[str, str], node: str) -> str | None:
        for pv in self.bound:
            if not st.volume_reachable_from(pv, labels, node):
                return AFFINITY_CONFLICT
        short = self.room is not None and self.room.get(node, UNKNOWN_ROOM) < self.local_request
        for w in self.waiting:
            if w.can_provision and not (w.local and short):
                continue
            if not any(st.volume_reachable_from(pv, labels, node) for pv in w.candidates):
                return NO_VOLUME if not w.can_provision else NOT_ENOUGH_SPACE
        return None


class VolumeBinding:
    def __init__(self, client: ApiClient, informers: InformerFactory) -> None:
        self.client = client
        self.claims = informers.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = informers.informer(PERSISTENTVOLUMES)
        self.volumes.add_index(CLASS_INDEX, _free_volume_class)
        self.classes = informers.informer(STORAGECLASSES)
        # The room each node reports for local volumes; the smallest one, computed again
        # only after a change (most pods' claims fit everywhere: no node is asked then).
        self.room: dict[str, int] = {}
        self._least_room: int | None = None
        informers.informer(NODES).add_handlers(
            Handlers(
                on_add=self._node_room,
                on_update=lambda _o, n: self._node_room(n),
                on_delete=self._node_gone,
            )
        )

    def _node_room(self, node: Frozen) -> None:
        room = st.local_available(node)
        if self.room.get(name(node)) == room:
            return
        if room is None:
            self.room.pop(name(node), None)
        else:
            self.room[name(node)] = room
        self._least_room = None

    def _node_gone(self, node: Frozen) -> None:
        if self.room.pop(name(node), None) is not None:
            self._least_room = None

    def least_room(self) -> int:
        if self._least_room is None:
            self._least_room = min(self.room.values(), default=UNKNOWN_ROOM)
        return self._least_room

    def prepare(self, pod: Frozen) -> PodVolumes | str:
        """The pod's volume needs, or why it cannot be scheduled anywhere yet."""
        ns = namespace(pod) or "default"
        out = PodVolumes()
        for claim_name in st.claim_names_of_pod(pod):
            claim = self.claims.get(f"{ns}/{claim_name}")
            if claim is None:
                return f'persistentvolumeclaim "{claim_name}" not found'
            if is_deleting(claim):
                return f'persistentvolumeclaim "{claim_name}" is being deleted'
            volume_name = (claim.get("spec") or {}).get("volumeName")
            if volume_name:
                pv = self.volumes.get(str(volume_name))
                if pv is None:
                    return f'persistentvolume "{volume_name}" not found'
                if (pv.get("spec") or {}).get("nodeAffinity"):
                    out.bound.append(pv)
                continue
            cls_name = st.claim_class(claim)
            cls = self.classes.get(cls_name) if cls_name else None
            if cls is None or cls.get("volumeBindingMode") != st.WAIT_FOR_FIRST_CONSUMER:
                return UNBOUND_IMMEDIATE
            candidates = [
                pv
                for pv in self.volumes.by_index(CLASS_INDEX, cls_name)
                if st.volume_unfit(pv, claim) is None
            ]
            provisioner = str(cls.get("provisioner") or "")
            can_provision = bool(provisioner) and provisioner != "kubernetes.io/no-provisioner"
            local = provisioner == st.LOCAL_PROVISIONER
            if local:
                out.local_request += st.claim_request(claim)
            out.waiting.append(_Waiting(claim, candidates, can_provision, local))
        if out.local_request > self.least_room():
            out.room = self.room
        return out

    async def select_node(self, volumes: PodVolumes, node: str) -> None:
        """Tell the binder where the pod goes: annotate every unbound WFFC claim."""
        for w in volumes.waiting:
            if annotations_of(w.claim).get(st.SELECTED_NODE_ANNOTATION) == node:
                continue
            patch: dict[str, Any] = {
                "metadata": {"annotations": {st.SELECTED_NODE_ANNOTATION: node}}
            }
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.client.patch(
                    PERSISTENTVOLUMECLAIMS,
                    name(w.claim),
                    patch,
                    namespace=namespace(w.claim),
                )
                log.info(
                    "selected node %s for claim %s/%s", node, namespace(w.claim), name(w.claim)
                )
