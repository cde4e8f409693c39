"""The ingress controller: level-triggered over informers.

Informers on Ingresses, IngressClasses, Services, EndpointSlices and Nodes, and one per TLS
Secret an Ingress served here names (:mod:`berth.ingress.secrets`: the identity may read no
other Secret), mark the state dirty; one loop recomputes everything from the caches
(:func:`build_routes`), hands
it to the proxy (which reloads only when the result changed) and writes each served
Ingress's ``status.loadBalancer`` (the nodes' addresses) when it differs. A burst of changes
costs one pass (:data:`COALESCE_SECONDS`); a failed pass is retried; HAProxy is started again
if it ever exits. Every node runs one, each writing the same status: the writes converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from berth.api.resources import (
    ENDPOINTSLICES,
    INGRESSCLASSES,
    INGRESSES,
    NODES,
    SERVICES,
)
from berth.client.errors import ApiError
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen

from .routes import Routes, build_routes, is_ours, our_classes, referenced_secrets
from .secrets import TlsSecrets

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.05
RECHECK_SECONDS = 5.0
SECRET_SYNC_SECONDS = 2.0
"""How long a pass waits for the first read of a newly named Secret before rendering without it
(its arrival marks the state dirty again)."""


class Proxy(Protocol):
    @property
    def running(self) -> bool: ...

    async def apply(self, routes: Routes) -> Any: ...


def node_addresses(nodes: list[Frozen]) -> list[str]:
    """Each node's InternalIP (else ExternalIP), sorted: where the ingress listens."""
    out = set()
    for n in nodes:
        addresses = (n.get("status") or {}).get("addresses") or ()
        by_type = {a.get("type"): a.get("address") for a in addresses if isinstance(a, Mapping)}
        address = by_type.get("InternalIP") or by_type.get("ExternalIP")
        if isinstance(address, str) and address:
            out.add(address)
    return sorted(out)


class IngressController:
    def __init__(self, client: ApiClient, clock: Clock, proxy: Proxy) -> None:
        self.client = client
        self.proxy = proxy
        self.ingresses = Informer(client, INGRESSES, clock=clock)
        self.classes = Informer(client, INGRESSCLASSES, clock=clock)
        self.services = Informer(client, SERVICES, clock=clock)
        self.slices = Informer(client, ENDPOINTSLICES, clock=clock)
        self.nodes = Informer(client, NODES, clock=clock)
        self.informers = (
            self.ingresses, self.classes, self.services, self.slices, self.nodes,
        )  # fmt: skip
        self._dirty = asyncio.Event()
        self.secrets = TlsSecrets(client, clock, self._dirty.set)
        handlers = Handlers(
            on_add=self._changed,
            on_update=lambda _old, new: self._changed(new),
            on_delete=self._changed,
        )
        for informer in self.informers:
            informer.add_handlers(handlers)
        self.passes = 0
        self.last: Routes | None = None
        self.synced = asyncio.Event()

    def _changed(self, _obj: Frozen) -> None:
        self._dirty.set()

    async def sync(self) -> None:
        """One pass: the TLS Secrets to read, routes to the proxy, then statuses."""
        ingresses, classes = self.ingresses.list(), self.classes.list()
        names, default_ours = our_classes(classes)
        served = [i for i in ingresses if is_ours(i, names, default_ours)]
        started = self.secrets.want(referenced_secrets(served))
        if started:
            # a new Ingress's certificate on its first render, not a pass later (no reload
            # without it); a Secret that cannot be read yet only delays this pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(i.wait_synced() for i in started)), SECRET_SYNC_SECONDS
                )
        routes = build_routes(
            ingresses,
            classes,
            self.services.list(),
            self.slices.list(),
            self.secrets.list(),
        )
        if routes.problems and (self.last is None or routes.problems != self.last.problems):
            for problem in routes.problems:
                log.warning("%s", problem)
        await self.proxy.apply(routes)
        self.last = routes
        self.passes += 1
        await self._write_statuses(routes)

    async def _write_statuses(self, routes: Routes) -> None:
        wanted = [{"ip": a} for a in node_addresses(self.nodes.list())]
        for ns, name in routes.ingresses:
            obj = self.ingresses.get(f"{ns}/{name}")
            if obj is None:
                continue
            have = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
            if [dict(x) for x in have] == wanted:
                continue
            body = {"status": {"loadBalancer": {"ingress": wanted}}}
            try:
                await self.client.patch(INGRESSES, name, body, namespace=ns, subresource="status")
            except ApiError as exc:  # gone, or a conflict: the next pass sees the news
                log.info("status of ingress %s/%s not written: %s", ns, name, exc)

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(i.run(), name=f"ingress-{i.resource.plural}")
            for i in self.informers
        ]
        try:
            for informer in self.informers:
                await informer.wait_synced()
            self._dirty.set()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), RECHECK_SECONDS)
                if not self._dirty.is_set() and self.proxy.running:
                    continue
                await asyncio.sleep(COALESCE_SECONDS)
                self._dirty.clear()
                try:
                    await self.sync()
                    self.synced.set()
                # one bad object or a failed write must not stop the controller: retry later
                except Exception:
                    log.exception("ingress sync failed; retrying")
                    self._dirty.set()
                    await asyncio.sleep(1.0)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)
            await self.secrets.stop()
