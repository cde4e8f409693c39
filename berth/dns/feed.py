"""Keeps a :class:`~berth.dns.server.DnsServer`'s zone in step with the API: informers on
Services and EndpointSlices mark the zone dirty; one loop rebuilds the whole zone (linear in
Services + endpoints) and swaps it in, at most once per :data:`COALESCE_SECONDS` so a burst of
changes costs one rebuild. A change is answered well within a second."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from berth.api.resources import ENDPOINTSLICES, SERVICES
from berth.client.interface import ApiClient
from berth.dns.records import build_zone
from berth.dns.server import DnsServer
from berth.machinery.clock import Clock
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.05


class ZoneFeed:
    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        server: DnsServer,
        *,
        domain: str,
        dns_ip: str = "",
    ) -> None:
        self.server = server
        self.domain = domain
        self.dns_ip = dns_ip
        self.services = Informer(client, SERVICES, clock=clock)
        self.slices = Informer(client, ENDPOINTSLICES, clock=clock)
        self._dirty = asyncio.Event()
        handlers = Handlers(
            on_add=self._changed,
            on_update=lambda _old, new: self._changed(new),
            on_delete=self._changed,
        )
        self.services.add_handlers(handlers)
        self.slices.add_handlers(handlers)
        self.rebuilds = 0
        self.synced = asyncio.Event()

    def _changed(self, _obj: Frozen) -> None:
        self._dirty.set()

    def rebuild(self) -> None:
        self.server.set_zone(
            build_zone(
                self.services.list(), self.slices.list(), domain=self.domain, dns_ip=self.dns_ip
            )
        )
        self.rebuilds += 1

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(i.run(), name=f"dns-{i.resource.plural}")
            for i in (self.services, self.slices)
        ]
        try:
            for informer in (self.services, self.slices):
                await informer.wait_synced()
            self.rebuild()
            self.synced.set()
            while True:
                await self._dirty.wait()
                await asyncio.sleep(COALESCE_SECONDS)
                self._dirty.clear()
                try:
                    self.rebuild()
                # one bad object must not stop the DNS: keep the previous zone, log, go on
                except Exception:
                    log.exception("rebuilding the cluster zone failed; keeping the previous one")
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)
