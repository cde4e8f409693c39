"""Service load-balancer controller: the addresses of ``type: LoadBalancer`` Services on bare
metal (see :mod:`berth.api.loadbalancers` for the two modes).

With a pool it gives each Service of the default class one address of the pool in
``status.loadBalancer.ingress``: the one ``spec.loadBalancerIP`` asks for when it lies in the
pool and is free, else the one the Service already has, else the first free one. An address
outside the pool is never written, whatever the Service asks: a tenant must not be able to
claim a node's or the API server's address (the speaker and the proxy check the pool again).
Without a pool the ingress addresses are those of the Ready nodes (k3s's ServiceLB).

An address is free again when its Service is deleted, changes type or names a
``loadBalancerClass`` (the status is cleared then, as upstream's service controller does when
a Service stops being a LoadBalancer). One worker: allocation decisions are made one Service
at a time against what this controller itself assigned, so two Services never get the same
address even while the informer lags behind the status writes.
"""

from __future__ import annotations

from typing import Any

from berth.api.loadbalancers import (
    INGRESS_IP_MODE,
    Pool,
    eligible,
    handled_here,
    ingress_ips,
    node_internal_ip,
)
from berth.api.resources import NODES, SERVICES
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery.controller import Controller
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, key_of, thaw
from berth.machinery.queue import WorkQueue


class ServiceLBController:
    def __init__(self, ctx: Context, pool: Pool) -> None:
        self.ctx = ctx
        self.pool = pool
        self.services = ctx.informers.informer(SERVICES)
        self.nodes = ctx.informers.informer(NODES)
        # Service -> the pool address this controller assigned it (or found it holding)
        self.assigned: dict[ObjectKey, str] = {}
        # Service -> the last warning recorded for it (one Event per new problem, not one
        # per resync)
        self._warned: dict[ObjectKey, str] = {}
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="service-lb")
        self.controller = Controller("service-lb", self, self.queue, workers=1)
        self.services.add_handlers(
            Handlers(
                on_add=self._service_changed,
                on_update=lambda _o, s: self._service_changed(s),
                on_delete=self._service_deleted,
            )
        )
        if not pool:  # the node addresses are the ingress: follow the nodes
            self.nodes.add_handlers(
                Handlers(
                    on_add=lambda _n: self._all(),
                    on_update=self._node_updated,
                    on_delete=lambda _n: self._all(),
                )
            )

    def _service_changed(self, svc: Frozen) -> None:
        self.queue.add(key_of(svc))

    def _service_deleted(self, svc: Frozen) -> None:
        key = key_of(svc)
        freed = self.assigned.pop(key, None)
        if freed is not None:
            # a Service waiting for an address may get this one now
            self._all()

    def _node_updated(self, old: Frozen, new: Frozen) -> None:
        if (eligible(old), node_internal_ip(old)) != (eligible(new), node_internal_ip(new)):
            self._all()

    def _all(self) -> None:
        for svc in self.services.list():
            if handled_here(svc):
                self.queue.add(key_of(svc))

    # -- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: ObjectKey) -> None:
        svc = self.services.get(key)
        if svc is None:
            self.assigned.pop(key, None)
            self._warned.pop(key, None)
            return
        if not handled_here(svc):
            self.assigned.pop(key, None)
            spec = svc.get("spec") or {}
            if spec.get("type") != "LoadBalancer" and ingress_ips(svc):
                await self._write(svc, [])  # no longer a LoadBalancer: give the address back
            return
        if self.pool:
            wanted = await self._pool_address(key, svc)
            ingress = [] if wanted is None else [wanted]
        else:
            ingress = self.node_addresses()
        if ingress != ingress_ips(svc) or not self._has_ip_mode(svc, ingress):
            await self._write(svc, ingress)

    def node_addresses(self) -> list[str]:
        found = {
            ip for n in self.nodes.list() if eligible(n) and (ip := node_internal_ip(n)) is not None
        }
        return sorted(found, key=lambda a: tuple(int(p) for p in a.split(".")))

    def _used_by_others(self, key: ObjectKey) -> set[str]:
        used = {ip for k, ip in self.assigned.items() if k != key}
        for other in self.services.list():
            if key_of(other) != key and handled_here(other):
                used.update(ip for ip in ingress_ips(other) if self.pool.contains(ip))
        return used

    async def _pool_address(self, key: ObjectKey, svc: Frozen) -> str | None:
        used = self._used_by_others(key)
        requested = str((svc.get("spec") or {}).get("loadBalancerIP") or "")
        if requested:
            if not self.pool.contains(requested):
                self.assigned.pop(key, None)
                await self._warn(
                    key,
                    svc,
                    f"spec.loadBalancerIP {requested} is not in the load-balancer pool "
                    f"({', '.join(str(b) for b in self.pool.blocks)})",
                )
                return None
            if requested in used:
                self.assigned.pop(key, None)
                await self._warn(
                    key, svc, f"spec.loadBalancerIP {requested} is already used by another Service"
                )
                return None
            choice: str | None = requested
        else:
            held = [ip for ip in ingress_ips(svc) if self.pool.contains(ip) and ip not in used]
            choice = self.assigned.get(key) or (held[0] if held else self.pool.first_free(used))
            if choice is not None and choice in used:
                choice = self.pool.first_free(used)
        if choice is None:
            self.assigned.pop(key, None)
            await self._warn(key, svc, "no free address left in the load-balancer pool")
            return None
        self._warned.pop(key, None)
        if self.assigned.get(key) != choice:
            self.assigned[key] = choice
            await self.ctx.recorder.normal(svc, "IPAllocated", f"assigned IP {choice}")
        return choice

    async def _warn(self, key: ObjectKey, svc: Frozen, message: str) -> None:
        if self._warned.get(key) != message:
            self._warned[key] = message
            await self.ctx.recorder.warning(svc, "AllocationFailed", message)

    @staticmethod
    def _has_ip_mode(svc: Frozen, ingress: list[str]) -> bool:
        if not ingress:
            return True
        status = svc.get("status") or {}
        items = (status.get("loadBalancer") or {}).get("ingress") or ()
        return all(item.get("ipMode") == INGRESS_IP_MODE for item in items)

    async def _write(self, svc: Frozen, ingress: list[str]) -> None:
        """Replace the Service's status (a PUT on ``/status`` with its resourceVersion: a
        Service changed meanwhile conflicts, and the retry decides again on the new one)."""
        body: dict[str, Any] = thaw(svc)
        status = body.get("status")
        status = status if isinstance(status, dict) else {}
        status["loadBalancer"] = (
            {"ingress": [{"ip": ip, "ipMode": INGRESS_IP_MODE} for ip in ingress]}
            if ingress
            else {}
        )
        body["status"] = status
        try:
            await self.ctx.client.update(SERVICES, body, subresource="status")
        except errors.NotFound:
            self.assigned.pop(key_of(svc), None)
