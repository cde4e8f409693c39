"""Service address bookkeeping: ClusterIPs and NodePorts allocated, kept, released.

Allocation happens when a Service is created or its type changes; addresses are released when
the Service is deleted or stops using them. Every item is a key in the datastore
(:mod:`berth.apiserver.allocators`), so any number of API servers may share one datastore.
:meth:`ServiceAddresses.repair` reconciles those keys with the stored Services: at start and
then periodically on every server (it is idempotent and safe to run concurrently).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from berth.api.meta import Obj, get_path
from berth.api.resources import TABLE, ResourceDef
from berth.store.interface import Conflict, KeyExists, KeyNotFound, KeyValue, Store

from .allocators import IPAllocator, Owner, PortAllocator, StoreAllocator
from .errors import FieldError, invalid

log = logging.getLogger(__name__)


def _services() -> ResourceDef:
    rd = TABLE.by_kind("", "Service")
    assert rd is not None
    return rd


IMMUTABLE = "Invalid value: field is immutable"


@dataclass(slots=True)
class Allocation:
    """Items taken for (or held by) one Service."""

    owner: Owner
    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RepairReport:
    restored: int  # keys written for items a stored Service holds without a key
    released: int  # keys no Service held in two passes in a row, deleted


def owner_of(obj: Obj) -> Owner:
    m = obj.get("metadata") or {}
    return Owner(f"{m.get('namespace', '')}/{m.get('name', '')}", str(m.get("uid", "")))


def _node_ports(spec: Obj) -> list[int]:
    """The node ports ``spec`` holds: its ports' and its health check's."""
    ports = [
        p["nodePort"]
        for p in spec.get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("nodePort"), int) and p["nodePort"]
    ]
    hc = spec.get("healthCheckNodePort")
    if isinstance(hc, int) and not isinstance(hc, bool) and hc and _needs_health_check(spec):
        ports.append(hc)
    return ports


def _needs_health_check(spec: Obj) -> bool:
    """A LoadBalancer with externalTrafficPolicy Local gets a health-check node port, which
    every node's proxy serves (the load balancer asks it which nodes have local endpoints)."""
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


class ServiceAddresses:
    def __init__(self, store: Store, ips: IPAllocator, ports: PortAllocator) -> None:
        self.ips = ips
        self.ports = ports
        self._ips = StoreAllocator(store, ips)
        self._ports = StoreAllocator(store, ports)
        self._store = store
        # Keys seen unheld by the previous repair pass (key, mod_revision): a key is only
        # released when a second pass still finds it unheld and unchanged, so a Service whose
        # create is in flight on another server is never robbed of its address.
        self._suspects: set[tuple[str, int]] = set()

    async def allocate(
        self, obj: Obj, old: Obj | None = None, *, dry_run: bool = False
    ) -> Allocation:
        """Allocate a ClusterIP and NodePorts; returns what was newly taken (for rollback).
        With ``dry_run`` nothing is written: the answer shows what would be allocated."""
        spec = obj.setdefault("spec", {})
        owner = owner_of(obj if old is None else old)
        taken = Allocation(owner)
        old_spec = (old or {}).get("spec") or {}
        try:
            stype = spec.get("type", "ClusterIP")
            if stype == "ExternalName":
                spec.pop("clusterIP", None)
            elif old is not None and old_spec.get("clusterIP"):
                wanted = spec.get("clusterIP")
                if wanted not in (None, "", old_spec["clusterIP"]):
                    raise invalid(
                        _services(),
                        str(get_path(obj, "metadata", "name") or ""),
                        [FieldError("FieldValueInvalid", "spec.clusterIP", IMMUTABLE)],
                    )
                spec["clusterIP"] = old_spec["clusterIP"]
            elif spec.get("clusterIP") == "None":
                pass
            elif spec.get("clusterIP"):
                if await self._ips.reserve(spec["clusterIP"], owner, dry_run=dry_run):
                    taken.ips.append(spec["clusterIP"])
            else:
                spec["clusterIP"] = await self._ips.allocate(owner, dry_run=dry_run)
                taken.ips.append(spec["clusterIP"])
            if spec.get("clusterIP"):
                spec["clusterIPs"] = [spec["clusterIP"]]
            old_ports = set(_node_ports(old_spec))
            # allocateLoadBalancerNodePorts false: a LoadBalancer gets node ports only when
            # it names them (its traffic arrives on the load-balancer address itself)
            no_new_ports = stype == "LoadBalancer" and (
                spec.get("allocateLoadBalancerNodePorts") is False
            )
            for p in spec.get("ports") or []:
                if not isinstance(p, dict):
                    continue
                if stype in ("NodePort", "LoadBalancer"):
                    np = p.get("nodePort")
                    if np in old_ports and np:
                        continue
                    if no_new_ports and not np:
                        p.pop("nodePort", None)
                        continue
                    if isinstance(np, int) and np:
                        if await self._ports.reserve(np, owner, dry_run=dry_run):
                            taken.ports.append(np)
                    else:
                        p["nodePort"] = await self._ports.allocate(owner, dry_run=dry_run)
                        taken.ports.append(p["nodePort"])
                else:
                    p.pop("nodePort", None)
            await self._health_check_port(spec, old_spec, owner, taken, dry_run=dry_run)
        except BaseException:
            if not dry_run:
                await self.release(taken)
            raise
        if dry_run:
            return Allocation(owner)  # nothing was written, nothing to give back
        return taken

    async def _health_check_port(
        self, spec: Obj, old_spec: Obj, owner: Owner, taken: Allocation, *, dry_run: bool
    ) -> None:
        """Allocate (or keep) ``healthCheckNodePort`` while the Service needs one; drop it
        when it does not (the old one is then released with the Service's other freed ports)."""
        if not _needs_health_check(spec):
            spec.pop("healthCheckNodePort", None)
            return
        wanted = spec.get("healthCheckNodePort")
        kept = old_spec.get("healthCheckNodePort") if _needs_health_check(old_spec) else None
        if kept and wanted in (None, 0, kept):
            spec["healthCheckNodePort"] = kept
        elif isinstance(wanted, int) and wanted:
            if wanted not in _node_ports(old_spec) and await self._ports.reserve(
                wanted, owner, dry_run=dry_run
            ):
                taken.ports.append(wanted)
        else:
            spec["healthCheckNodePort"] = await self._ports.allocate(owner, dry_run=dry_run)
            taken.ports.append(spec["healthCheckNodePort"])

    async def release(self, allocation: Allocation | None, *, keep: Obj | None = None) -> None:
        """Give back what ``allocation`` took, except what the stored Service ``keep``
        holds: when two servers create the same Service with the same ClusterIP, the loser
        may be the one whose key it is, and the winner's Service relies on it (the key's
        owner is then stale; repair reclaims it once that Service is gone)."""
        if allocation is None:
            return
        kept = self.freed(keep, None) if keep is not None else Allocation(allocation.owner)
        for ip in allocation.ips:
            if ip not in kept.ips:
                await self._ips.release(ip, allocation.owner)
        for port in allocation.ports:
            if port not in kept.ports:
                await self._ports.release(port, allocation.owner)

    def freed(self, old: Obj, new: Obj | None) -> Allocation:
        """Addresses and ports ``old`` held that ``new`` (None = deleted) no longer holds."""
        old_spec = old.get("spec") or {}
        new_spec = (new or {}).get("spec") or {}
        ips = [
            ip
            for ip in [old_spec.get("clusterIP")]
            if isinstance(ip, str) and ip != new_spec.get("clusterIP")
        ]
        new_ports = set(_node_ports(new_spec))
        ports = [p for p in _node_ports(old_spec) if p not in new_ports]
        return Allocation(owner_of(old), ips, ports)

    async def repair(self, list_services: Callable[[], Awaitable[list[Obj]]]) -> RepairReport:
        """Make the allocation keys match the stored Services.

        Keys are listed *before* the Services, so a Service stored meanwhile holds a key we
        saw. A Service item without a key (a datastore written before allocation keys
        existed) gets one; a key no Service holds is released once two passes in a row find
        it unheld with the same revision."""
        ip_keys = await self._ips.held()
        port_keys = await self._ports.held()
        services = await list_services()
        held_ips: dict[int, Owner] = {}
        held_ports: dict[int, Owner] = {}
        for svc in services:
            spec = svc.get("spec") or {}
            owner = owner_of(svc)
            off = self.ips.offset(spec.get("clusterIP"))
            if off is not None:
                held_ips[off] = owner
            for port in _node_ports(spec):
                port_off = self.ports.offset(port)
                if port_off is not None:
                    held_ports[port_off] = owner
        restored = released = 0
        suspects: set[tuple[str, int]] = set()
        for allocator, keys, held in (
            (self._ips, ip_keys, held_ips),
            (self._ports, port_keys, held_ports),
        ):
            r, freed = await self._reconcile(allocator, keys, held, suspects)
            restored += r
            released += freed
        self._suspects = suspects
        if restored or released:
            log.info("service allocations repaired: %d restored, %d released", restored, released)
        return RepairReport(restored, released)

    async def _reconcile(
        self,
        allocator: StoreAllocator[str] | StoreAllocator[int],
        keys: dict[int, KeyValue],
        held: dict[int, Owner],
        suspects: set[tuple[str, int]],
    ) -> tuple[int, int]:
        restored = released = 0
        for off, owner in held.items():
            if off in keys:
                continue
            try:
                await self._store.create(allocator.items.key_at(off), owner.encode())
                allocator.items.used.add(off)
                restored += 1
            except KeyExists:
                continue  # another server restored it
        for off, kv in keys.items():
            if off in held:
                continue
            mark = (kv.key, kv.mod_revision)
            if mark not in self._suspects:
                suspects.add(mark)
                continue
            try:
                await self._store.delete(kv.key, expected_revision=kv.mod_revision)
            except (Conflict, KeyNotFound):
                continue
            allocator.items.used.discard(off)
            released += 1
        return restored, released
