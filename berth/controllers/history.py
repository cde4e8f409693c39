"""ControllerRevisions: the template history of StatefulSets and DaemonSets.

Each revision holds, as ``data``, the strategic merge patch that puts its template back on the
parent (``{"spec": {"template": {..., "$patch": "replace"}}}``), which is exactly what
``kubectl rollout undo`` sends and what ``kubectl rollout history --revision`` applies to show
a template. A revision is named ``<parent>-<hash>``, labelled with the parent's template labels
(kubectl finds a parent's revisions through its selector) and owned by the parent as its
controller.

:meth:`History.ensure` makes the revision of the parent's current template the newest: an
existing revision with the same data is renumbered to ``max + 1`` (how a rollback shows up as
the newest revision, as in kube) and otherwise a new one is created; a name taken by another
object is a hash collision, resolved by bumping the parent's ``status.collisionCount``.
:meth:`History.truncate` keeps at most ``revisionHistoryLimit`` revisions that nothing uses.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

import orjson

from berth.api.resources import CONTROLLERREVISIONS
from berth.client import errors
from berth.client.interface import Obj
from berth.controllers.context import Context, by_controller_uid
from berth.machinery.objects import (
    Frozen,
    controller_ref,
    meta,
    name,
    namespace,
    owner_reference,
    thaw,
    uid,
)

HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_PREFIX = 223  # a revision name is <parent prefix>-<hash>, within 253 characters
MAX_COLLISIONS = 20


def revision_data(parent: Frozen) -> Obj:
    """The patch that restores ``parent``'s current pod template."""
    template: Obj = thaw((parent.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def safe_hash(payload: bytes, collision_count: int) -> str:
    """A short name-safe digest of ``payload`` (and the collision count, when non-zero)."""
    if collision_count:
        payload += b"/" + str(collision_count).encode()
    value = int.from_bytes(hashlib.sha256(payload).digest()[:8], "big")
    out = []
    for _ in range(10):
        value, r = divmod(value, len(HASH_ALPHABET))
        out.append(HASH_ALPHABET[r])
    return "".join(out)


def data_hash(data: Obj, collision_count: int) -> str:
    return safe_hash(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), collision_count)


def revision_name(parent: str, digest: str) -> str:
    return f"{parent[:MAX_PREFIX]}-{digest}"


def revision_number(rev: Frozen) -> int:
    value = rev.get("revision")
    return value if isinstance(value, int) else 0


@dataclass(frozen=True, slots=True)
class Ensured:
    revision: Frozen
    """The revision of the parent's current template (newest)."""
    revisions: list[Frozen]
    """Every revision the parent owns, oldest first, ``revision`` included."""
    collision_count: int


class History:
    """A parent kind's revisions, read from the shared ControllerRevision informer."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.informer = ctx.informers.informer(CONTROLLERREVISIONS)
        self.informer.add_index("controller", by_controller_uid)

    def owned(self, parent: Frozen) -> list[Frozen]:
        """The parent's revisions, oldest first (by revision number, then name)."""
        revs = self.informer.by_index("controller", uid(parent))
        return sorted(revs, key=lambda r: (revision_number(r), name(r)))

    async def ensure(
        self,
        parent: Frozen,
        *,
        data: Obj,
        labels: Mapping[str, str],
        hash_label: str,
        digest: Callable[[int], str],
        collision_count: int,
    ) -> Ensured:
        """The parent's revision for ``data``, made the newest; ``digest(collisions)`` names
        a new revision; ``hash_label`` carries the digest on it."""
        revisions = self.owned(parent)
        top = revision_number(revisions[-1]) if revisions else 0
        same = [r for r in revisions if thaw(r.get("data")) == data]
        if same:
            current = same[-1]
            if current is not revisions[-1] and revision_number(current) <= top:
                current = await self._renumber(current, top + 1)
                revisions = [r for r in revisions if name(r) != name(current)] + [current]
            return Ensured(current, revisions, collision_count)
        ns = namespace(parent)
        for _ in range(MAX_COLLISIONS):
            h = digest(collision_count)
            body: Obj = {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": revision_name(name(parent), h),
                    "namespace": ns,
                    "labels": {**labels, hash_label: h},
                    "ownerReferences": [owner_reference(parent)],
                },
                "data": data,
                "revision": top + 1,
            }
            try:
                created = await self.ctx.client.create(CONTROLLERREVISIONS, body, namespace=ns)
                return Ensured(created, [*revisions, created], collision_count)
            except errors.AlreadyExists:
                existing = await self.ctx.client.get(
                    CONTROLLERREVISIONS, body["metadata"]["name"], namespace=ns
                )
                ref = controller_ref(existing)
                mine = ref is not None and ref.get("uid") == uid(parent)
                if mine and thaw(existing.get("data")) == data:
                    # ours, created by an earlier pass the cache has not shown yet
                    found: Frozen = existing
                    if revision_number(existing) < top:
                        found = await self._renumber(existing, top + 1)
                    return Ensured(found, [*revisions, found], collision_count)
                collision_count += 1
        raise errors.Conflict(
            409, "Conflict", f"no free ControllerRevision name for {name(parent)}"
        )

    async def _renumber(self, rev: Frozen, number: int) -> Frozen:
        return await self.ctx.client.patch(
            CONTROLLERREVISIONS, name(rev), {"revision": number}, namespace=namespace(rev)
        )

    async def truncate(
        self, revisions: Iterable[Frozen], *, live: Collection[str], limit: int
    ) -> None:
        """Delete the oldest revisions not named in ``live`` beyond ``limit`` of them."""
        idle = [r for r in revisions if name(r) not in live]
        extra = len(idle) - max(limit, 0)
        for rev in idle[: max(extra, 0)]:
            with contextlib.suppress(errors.NotFound):
                await self.ctx.client.delete(
                    CONTROLLERREVISIONS,
                    name(rev),
                    namespace=namespace(rev),
                    precondition_uid=str(meta(rev).get("uid")),
                )
