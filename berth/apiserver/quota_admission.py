"""ResourceQuota admission: refuse a write that would take a namespace over its quota, and
charge the quota for what it admits.

As kube-apiserver's ``ResourceQuota`` plugin, the charge is written into the quota's
``status.used`` *before* the object is stored, with the quota's resourceVersion as a
precondition: two creates racing for the last unit both read the same ``used``, one write
wins, the other conflicts, re-reads the quota and is refused. Nothing is serialized per
namespace, so this holds across several API servers on one datastore too. A write that fails
after being charged leaves the quota over-counted until the resourcequota controller
recounts it (it does so on every change and periodically), never under-counted.

Which quotas a namespace has, and the resources each names, are kept from the watch hub
(and from this server's own writes at once), so a create that no quota tracks costs a dict
lookup. The quotas that apply are then read from the store, fresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from berth.api import quota as q
from berth.api.meta import Obj, get_path
from berth.api.quantity import Quantity
from berth.api.resources import ResourceDef
from berth.store.interface import Conflict, KeyNotFound

from .errors import conflict, forbidden

if TYPE_CHECKING:
    from .registry import Registry

MAX_ATTEMPTS = 16
"""Re-reads of the namespace's quotas when charging them conflicts with another writer."""

PREFIX = "/registry/core/resourcequotas/"


class QuotaAdmission:
    def __init__(self) -> None:
        self.names: dict[str, dict[str, frozenset[str]]] = {}
        """Namespace -> its ResourceQuotas' names -> the resource names of their hard."""

    # -- which quotas exist ------------------------------------------------------------------

    def remember(self, key: str, obj: Obj | None) -> None:
        """A quota stored at ``key`` (``/registry/core/resourcequotas/ns/name``); ``None``:
        deleted."""
        rest = key[len(PREFIX) :].split("/")
        if len(rest) != 2:
            return
        ns, name = rest
        if obj is None:
            names = self.names.get(ns)
            if names is not None:
                names.pop(name, None)
                if not names:
                    del self.names[ns]
        else:
            hard = get_path(obj, "spec", "hard")
            keys = (
                frozenset(k for k in hard if isinstance(k, str))
                if isinstance(hard, dict)
                else frozenset()
            )
            self.names.setdefault(ns, {})[name] = keys

    # -- admission -----------------------------------------------------------------------------

    async def admit(
        self,
        reg: Registry,
        rd: ResourceDef,
        ns: str,
        new: Obj,
        old: Obj | None,
        *,
        dry_run: bool,
    ) -> None:
        """Check ``new`` (replacing ``old`` on an update) against every quota of ``ns`` and,
        unless ``dry_run``, charge them; raises 403 when a quota would be exceeded."""
        if not rd.namespaced:
            return
        quotas = self.names.get(ns)
        if not quotas or not any(q.tracks(rd, k) for keys in quotas.values() for k in keys):
            return
        quotas_rd = reg.resources.lookup("", "v1", "resourcequotas")
        if quotas_rd is None:
            return
        name = str(get_path(new, "metadata", "name") or "")
        charged: set[str] = set()  # quotas already charged by an earlier attempt
        for _attempt in range(MAX_ATTEMPTS):
            writes: list[tuple[str, str, int, Obj]] = []
            for quota_name in sorted(quotas):
                if quota_name in charged:
                    continue
                kv = await reg.store.get(quotas_rd.key(ns, quota_name))
                if kv is None:
                    continue
                quota = reg.codec.decode(kv)
                hard = q.parse_list(get_path(quota, "spec", "hard"))
                if not any(q.tracks(rd, k) for k in hard) or not q.selects(quota, rd, new):
                    continue
                if rd.group == "" and rd.plural == "pods":
                    why = q.missing_declarations([k for k in hard if q.tracks(rd, k)], new)
                    if why is not None and old is None:
                        raise forbidden(
                            f'pods "{name}" is forbidden: failed quota: {quota_name}: {why}',
                            rd,
                            name,
                        )
                delta = q.subtract(q.charged(quota, rd, new), q.charged(quota, rd, old))
                delta = {k: v for k, v in delta.items() if v.nanos > 0}
                if not delta:
                    continue
                used = await self._used(reg, quota, ns, hard)
                after = q.add(used, delta)
                over = q.exceeded({k: after[k] for k in delta}, hard)
                if over:
                    raise forbidden(
                        f'{rd.group_resource} "{name}" is forbidden: exceeded quota: {quota_name}'
                        f", requested: {q.pretty({k: delta[k] for k in over})}"
                        f", used: {q.pretty({k: used.get(k, Quantity(0)) for k in over})}"
                        f", limited: {q.pretty({k: hard[k] for k in over})}",
                        rd,
                        name,
                    )
                quota["status"] = q.status_for(quota, after)
                writes.append((quota_name, kv.key, kv.mod_revision, quota))
            if dry_run:
                return
            try:
                for quota_name, key, revision, quota in writes:
                    await reg.store.update(
                        key, reg.codec.encode(key, quota), expected_revision=revision
                    )
                    charged.add(quota_name)
            except (Conflict, KeyNotFound):
                continue  # another write charged a quota meanwhile: read them again
            return
        raise conflict(rd, name, "the namespace's resource quotas changed too often; try again")

    async def _used(
        self, reg: Registry, quota: Obj, ns: str, hard: dict[str, Quantity]
    ) -> dict[str, Quantity]:
        """The quota's ``status.used``; counted from the stored objects when the controller
        has not filled it for every hard resource yet (a new quota, a raised one)."""
        status_hard = get_path(quota, "status", "hard") or {}
        used = q.parse_list(get_path(quota, "status", "used"))
        if all(k in used and k in status_hard for k in hard):
            return used
        return q.total(quota, await _objects(reg, ns, hard))


async def _objects(reg: Registry, ns: str, hard: Iterable[str]) -> list[tuple[ResourceDef, Obj]]:
    names = list(hard)
    out: list[tuple[ResourceDef, Obj]] = []
    seen: set[str] = set()  # a resource served in several versions is stored once
    for rd in reg.resources.resources:
        prefix = rd.key_prefix(ns)
        if rd.namespaced and prefix not in seen and any(q.tracks(rd, k) for k in names):
            seen.add(prefix)
            for kv in (await reg.store.list(prefix)).items:
                out.append((rd, reg.codec.decode(kv)))
    return out
