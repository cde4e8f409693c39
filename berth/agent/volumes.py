"""PersistentVolumeClaim-backed volumes on a node: find the directory behind each claim of a
pod, make and remove the directories of berth's local volumes.

* :func:`resolve_claims` turns each ``persistentVolumeClaim`` volume of a pod into the
  ``hostPath`` the runtime bind-mounts (``readOnly`` of the claim source kept). A claim that
  is missing or not yet bound raises :class:`ClaimNotReady`: the pod waits (the kubelet's
  volume manager does the same).
* :class:`LocalVolumes` owns ``<volumes dir>`` on this node. A volume of the local provisioner
  is used only if its path is exactly ``<volumes dir>/<volume name>`` and it is pinned to this
  node: the path in the API object is never trusted (volume names come from claim uids, and
  are checked as one path element anyway, :mod:`berth.runtime.safepath`). The directory is
  made on first mount; :meth:`LocalVolumes.sweep` removes the directories of volumes being
  deleted (reclaim ``Delete``; ``Retain`` keeps the data) and then drops the volume's
  ``berth.io/local-volume-cleanup`` finalizer so the object can go.

Size is not enforced: a plain directory has no quota (XFS/ext4 project quotas would be
needed); :data:`SIZE_NOT_ENFORCED` is reported as an event on first mount. What the node does
report is the room it has (:meth:`LocalVolumes.room`: the size and free space of the
filesystem under ``<volumes dir>``, published on its Node by :class:`berth.agent.node.NodeAgent`),
so that no claim bigger than the free space is placed on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from berth.api import storage as st
from berth.api.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES
from berth.client import errors
from berth.client.interface import ApiClient
from berth.runtime.safepath import UnsafePath, check_element

log = logging.getLogger(__name__)

SIZE_NOT_ENFORCED = (
    "capacity of local volume {name} is not enforced: the node's volume directory has no"
    " project quota"
)


class ClaimNotReady(Exception):
    """A claim of the pod cannot be mounted yet (or ever, as it stands)."""


class LocalVolumes:
    """The local provisioner's directories on this node, under ``root``."""

    def __init__(self, root: Path, node: str) -> None:
        self.root = root
        self.node = node

    def room(self) -> tuple[int, int] | None:
        """(size, free bytes for an unprivileged writer) of the filesystem that holds the
        volumes directory (the nearest existing parent while it does not exist yet)."""
        where = self.root
        while not where.exists() and where != where.parent:
            where = where.parent
        try:
            fs = os.statvfs(where)
        except OSError:
            return None
        return fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize

    def path_of(self, pv_name: str) -> Path:
        return self.root / check_element(pv_name, what="volume name")

    def ensure(self, pv: Mapping[str, Any]) -> tuple[Path, bool]:
        """The directory of local volume ``pv`` (made if missing; True when just made)."""
        pv_name = str((pv.get("metadata") or {}).get("name") or "")
        path = self.path_of(pv_name)
        declared = ((pv.get("spec") or {}).get("local") or {}).get("path")
        if declared != str(path):
            raise ClaimNotReady(
                f"local volume {pv_name!r} names path {declared!r}; this node keeps it at {path}"
            )
        if st.pinned_node(pv) != self.node:
            raise ClaimNotReady(f"local volume {pv_name!r} is not on node {self.node}")
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise ClaimNotReady(f"{path} exists and is not a directory") from None
            return path, False
        # any container user may write its volume (the umask narrowed the mkdir)
        os.chmod(path, 0o777)  # noqa: S103
        return path, True

    async def sweep(self, client: ApiClient) -> list[str]:
        """Remove the directories of local volumes being deleted; returns their names."""
        if not self.root.is_dir():
            return []
        removed = []
        for entry in sorted(os.listdir(self.root)):
            try:
                path = self.path_of(entry)
            except UnsafePath:
                continue
            try:
                pv = await client.get(PERSISTENTVOLUMES, entry)
            except (errors.NotFound, errors.Forbidden):
                continue  # not ours to judge (a retained volume whose object was deleted)
            m = pv.get("metadata") or {}
            fins = list(m.get("finalizers") or ())
            if not m.get("deletionTimestamp") or st.LOCAL_CLEANUP_FINALIZER not in fins:
                continue
            policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
            if policy == "Delete" and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # never follows symlinks out of the volume
                removed.append(entry)
                log.info("removed local volume %s", path)
            m["finalizers"] = [f for f in fins if f != st.LOCAL_CLEANUP_FINALIZER]
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await client.update(PERSISTENTVOLUMES, pv)
        return removed


async def resolve_claims(
    client: ApiClient,
    pod: Mapping[str, Any],
    local: LocalVolumes | None,
    *,
    note: Any = None,
) -> dict[str, dict[str, Any]]:
    """``{volume name: hostPath volume}`` replacing the pod's claim volumes. ``local``: this
    node's local volume directories (None: a simulated node, nothing is made on disk).
    ``note(message)`` is told about sizes that cannot be enforced."""
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    out: dict[str, dict[str, Any]] = {}
    for vol in (pod.get("spec") or {}).get("volumes") or ():
        src = vol.get("persistentVolumeClaim")
        if not isinstance(src, Mapping):
            continue
        claim_name = str(src.get("claimName") or "")
        try:
            claim = await client.get(PERSISTENTVOLUMECLAIMS, claim_name, namespace=ns)
        except errors.NotFound:
            raise ClaimNotReady(f'persistentvolumeclaim "{claim_name}" not found') from None
        pv_name = (claim.get("spec") or {}).get("volumeName")
        if not pv_name or (claim.get("status") or {}).get("phase") != st.CLAIM_BOUND:
            raise ClaimNotReady(f'persistentvolumeclaim "{claim_name}" is not bound yet')
        try:
            pv = await client.get(PERSISTENTVOLUMES, str(pv_name))
        except errors.NotFound:
            raise ClaimNotReady(f'persistentvolume "{pv_name}" not found') from None
        spec = pv.get("spec") or {}
        annotations = (pv.get("metadata") or {}).get("annotations") or {}
        if annotations.get(st.PROVISIONED_BY_ANNOTATION) == st.LOCAL_PROVISIONER:
            if local is None:
                path = str((spec.get("local") or {}).get("path") or "")
            else:
                local.path_of(str(pv_name))  # a hostile name goes no further
                if annotations.get(st.LOCAL_VOLUME_MADE_ANNOTATION) != "true":
                    # Say so before making it: the binder relies on "no annotation, no
                    # directory" when it deletes a volume no pod ever used.
                    pv["metadata"].setdefault("annotations", {})[
                        st.LOCAL_VOLUME_MADE_ANNOTATION
                    ] = "true"
                    try:
                        pv = await client.update(PERSISTENTVOLUMES, pv)
                    except (errors.Conflict, errors.NotFound) as exc:
                        raise ClaimNotReady(f"persistentvolume {pv_name!r}: {exc}") from None
                made_path, made = local.ensure(pv)
                path = str(made_path)
                if made and note is not None:
                    note(SIZE_NOT_ENFORCED.format(name=pv_name))
        elif spec.get("hostPath") is not None:
            path = str(spec["hostPath"].get("path") or "")
        elif spec.get("local") is not None:
            path = str(spec["local"].get("path") or "")
        else:
            kinds = sorted(k for k in spec if isinstance(spec[k], Mapping) and k != "claimRef")
            raise ClaimNotReady(
                f"persistentvolume {pv_name!r}: berth nodes mount hostPath and local volumes,"
                f" not {kinds}"
            )
        host_path: dict[str, Any] = {"path": path}
        if src.get("readOnly"):
            host_path["readOnly"] = True
        out[str(vol["name"])] = {"name": vol["name"], "hostPath": host_path}
    return out


def with_claims(spec: Mapping[str, Any], resolved: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """``spec`` with its claim volumes replaced by what :func:`resolve_claims` found."""
    if not resolved:
        return dict(spec)
    volumes = [resolved.get(str(v.get("name")), v) for v in spec.get("volumes") or ()]
    return {**spec, "volumes": volumes}
