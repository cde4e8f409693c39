"""A StatefulSet pod's PersistentVolumeClaims, one per ``volumeClaimTemplates`` entry.

The claim of template ``data`` for pod ``web-2`` is ``data-web-2``: it is created before the
pod, found again when the pod is recreated (so a rescheduled pod gets its old volume back) and
mounted as the pod volume named after the template. ``persistentVolumeClaimRetentionPolicy``
decides who owns it: ``whenDeleted: Delete`` makes the StatefulSet an owner (the garbage
collector removes the claims with the set), ``whenScaled: Delete`` makes a condemned pod the
owner instead of the set (the claim goes with the pod when the set scales down).

On a server that does not serve ``persistentvolumeclaims`` (an older API server during an
upgrade), the templates are validated by the API server but nothing is created and pods get no
claim volumes; the set gets one Warning event saying so. Claims on a WaitForFirstConsumer class
(the default ``berth-local``) are bound once the scheduler picks the pod's node; a recreated pod
is then scheduled back onto its volume's node
(``tests/integration/controlplane/test_statefulset_volumes.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from berth.api.resources import TABLE, ResourceDef
from berth.client import errors
from berth.client.interface import Obj
from berth.controllers.context import Context
from berth.machinery.objects import (
    Frozen,
    meta,
    name,
    namespace,
    owner_reference,
    owner_references,
    thaw,
    uid,
)


def claim_name(template: str, set_name: str, ordinal: int) -> str:
    return f"{template}-{set_name}-{ordinal}"


def _retention(sts: Frozen, field: str) -> str:
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return str(policy.get(field) or "Retain")


class ClaimManager:
    def __init__(self, ctx: Context, resource: ResourceDef | None = None) -> None:
        self.ctx = ctx
        self.resource = resource or TABLE.lookup("", "v1", "persistentvolumeclaims")
        self._served: bool | None = None
        self._warned: set[str] = set()

    async def available(self) -> bool:
        if self.resource is None:
            return False
        if self._served is None:
            self._served = await self.ctx.client.served(self.resource)
        return self._served

    async def prepare(self, sts: Frozen, pod: Obj, ordinal: int) -> None:
        """Make sure the claims of the pod ``ordinal`` exist and mount them into ``pod``."""
        templates = (sts.get("spec") or {}).get("volumeClaimTemplates") or ()
        if not templates:
            return
        if not await self.available() or self.resource is None:
            if uid(sts) not in self._warned:
                self._warned.add(uid(sts))
                await self.ctx.recorder.warning(
                    sts,
                    "VolumeClaimsNotServed",
                    "volumeClaimTemplates are ignored: this cluster does not serve "
                    "persistentvolumeclaims yet, pods get no claim volumes",
                )
            return
        volumes = [
            v for v in pod["spec"].get("volumes") or [] if not _is_claim_volume(v, templates)
        ]
        for tmpl in templates:
            tname = str((tmpl.get("metadata") or {}).get("name"))
            cname = claim_name(tname, name(sts), ordinal)
            await self._ensure(sts, tmpl, cname, name(pod))
            volumes.append({"name": tname, "persistentVolumeClaim": {"claimName": cname}})
        pod["spec"]["volumes"] = volumes

    async def _ensure(self, sts: Frozen, tmpl: Frozen, cname: str, pod_name: str) -> None:
        assert self.resource is not None
        ns = namespace(sts)
        with contextlib.suppress(errors.NotFound):
            found = await self.ctx.client.get(self.resource, cname, namespace=ns)
            await self._reclaim(sts, found, pod_name)
            return
        body: Obj = thaw(tmpl)
        body.pop("status", None)
        m = body.setdefault("metadata", {})
        m.pop("creationTimestamp", None)
        m["name"] = cname
        m["namespace"] = ns
        selector = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        m["labels"] = {**(m.get("labels") or {}), **selector}
        if _retention(sts, "whenDeleted") == "Delete":
            m["ownerReferences"] = [
                owner_reference(sts, block_owner_deletion=True) | {"controller": False}
            ]
        body["apiVersion"], body["kind"] = "v1", "PersistentVolumeClaim"
        with contextlib.suppress(errors.AlreadyExists):
            await self.ctx.client.create(self.resource, body, namespace=ns)

    async def _reclaim(self, sts: Frozen, claim: Frozen, pod_name: str) -> None:
        """A claim a scale down gave to its (condemned) pod is wanted again by a new pod
        ``pod_name`` of the ordinal: the old pod's reference goes (or the garbage collector
        would delete the claim under the new pod) and, with ``whenDeleted: Delete``, the set
        owns it again."""
        assert self.resource is not None
        owners = [dict(r) for r in owner_references(claim)]
        kept = [r for r in owners if not (r.get("kind") == "Pod" and r.get("name") == pod_name)]
        if len(kept) == len(owners):
            return
        if _retention(sts, "whenDeleted") == "Delete" and uid(sts) not in {
            r.get("uid") for r in kept
        }:
            kept.append(owner_reference(sts, block_owner_deletion=True) | {"controller": False})
        patch: Obj = {
            "metadata": {
                "ownerReferences": kept,
                "resourceVersion": meta(claim).get("resourceVersion"),
            }
        }
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.patch(self.resource, name(claim), patch, namespace=namespace(sts))

    async def condemn(self, sts: Frozen, pod: Frozen, ordinal: int) -> None:
        """The pod is removed by a scale down: with ``whenScaled: Delete`` its claims become
        the pod's dependents, so they go with it."""
        templates = (sts.get("spec") or {}).get("volumeClaimTemplates") or ()
        if not templates or _retention(sts, "whenScaled") != "Delete":
            return
        if not await self.available() or self.resource is None:
            return
        for tmpl in templates:
            cname = claim_name(str((tmpl.get("metadata") or {}).get("name")), name(sts), ordinal)
            try:
                claim = await self.ctx.client.get(self.resource, cname, namespace=namespace(sts))
            except errors.NotFound:
                continue
            # The pod becomes the claim's only owner from this set: were the set still an
            # owner too (``whenDeleted: Delete``), the garbage collector would keep the claim
            # while the set lives and just drop the vanished pod's reference (as kube's
            # controller does, the set's reference is swapped for the pod's).
            owners = [dict(r) for r in owner_references(claim)]
            owner_uids = {r.get("uid") for r in owners}
            if uid(pod) in owner_uids and uid(sts) not in owner_uids:
                continue
            refs = [r for r in owners if r.get("uid") not in (uid(sts), uid(pod))]
            ref = owner_reference(pod, block_owner_deletion=True) | {"controller": False}
            patch: Obj = {
                "metadata": {
                    "ownerReferences": [*refs, ref],
                    "resourceVersion": meta(claim).get("resourceVersion"),
                }
            }
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.ctx.client.patch(self.resource, cname, patch, namespace=namespace(sts))


def _is_claim_volume(volume: Frozen, templates: Iterable[Frozen]) -> bool:
    """A pod volume named like a claim template: the claim replaces it (as kube does)."""
    names = {str((t.get("metadata") or {}).get("name")) for t in templates}
    return isinstance(volume, Mapping) and volume.get("name") in names
