"""The ``kubernetes`` Endpoints list every live API server sharing the datastore.

Each server holds a Lease ``kube-system/apiserver-<address>-<port>`` (label
``apiserver.kubernetes.io/identity: kube-apiserver``, holder ``<address>:<port>``) and renews
it every :data:`RENEW_INTERVAL` seconds. On each renewal it rewrites ``default/kubernetes``
Endpoints to the holders of every unexpired Lease (Kubernetes' lease endpoint reconciler
works the same way). A server that stops deletes its Lease at once; one that dies drops out
when its Lease expires, :data:`LEASE_SECONDS` later. Every server converges on the same
answer, so concurrent rewrites agree; a conflict is simply retried on the next tick.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from berth.api.meta import Obj, format_time, get_path, now, parse_time
from berth.api.resources import TABLE, ResourceDef
from berth.api.selectors import parse_label_selector
from berth.store.interface import StoreError

from .errors import ApiError
from .options import DeleteOptions, ListOptions
from .registry import Registry
from .service_validation import server_advertised_endpoints

log = logging.getLogger(__name__)

RENEW_INTERVAL = 5.0
LEASE_SECONDS = 15
IDENTITY_LABEL = "apiserver.kubernetes.io/identity"
NAMESPACE = "kube-system"


def _rd(group: str, plural: str) -> ResourceDef:
    rd = TABLE.lookup(group, "v1", plural)
    assert rd is not None, plural
    return rd


LEASES = _rd("coordination.k8s.io", "leases")
ENDPOINTS = _rd("", "endpoints")


def subsets(holders: list[tuple[str, int]]) -> list[Obj]:
    """Endpoints subsets for ``(address, port)`` holders: one subset per port."""
    by_port: dict[int, list[str]] = {}
    for address, port in holders:
        by_port.setdefault(port, []).append(address)
    return [
        {
            "addresses": [{"ip": ip} for ip in sorted(set(by_port[port]))],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        for port in sorted(by_port)
    ]


def _holder(lease: Obj, at: datetime) -> tuple[str, int] | None:
    """The ``(address, port)`` of an unexpired Lease, else ``None``."""
    holder = get_path(lease, "spec", "holderIdentity")
    renewed = get_path(lease, "spec", "renewTime")
    seconds = get_path(lease, "spec", "leaseDurationSeconds")
    if not isinstance(holder, str) or not isinstance(renewed, str) or not isinstance(seconds, int):
        return None
    try:
        renewed_at = parse_time(renewed)
    except ValueError:
        return None
    if renewed_at is None or renewed_at + timedelta(seconds=seconds) < at:
        return None
    address, _, port = holder.rpartition(":")
    return (address, int(port)) if address and port.isdigit() else None


class ApiServerPeers:
    """This server's Lease, and the ``kubernetes`` Endpoints derived from all of them."""

    def __init__(self, registry: Registry, *, address: str, port: int) -> None:
        self.registry = registry
        self.address = address
        self.port = port
        self.name = f"apiserver-{address.replace('.', '-').replace(':', '-')}-{port}"

    async def reconcile(self) -> list[Obj]:
        """Renew our Lease, then make the Endpoints list every live holder; returns them."""
        at = now()
        await self._renew(at)
        page = await self.registry.list_objects(
            LEASES,
            NAMESPACE,
            ListOptions(label=parse_label_selector(f"{IDENTITY_LABEL}=kube-apiserver")),
        )
        holders = [h for lease in page.items if (h := _holder(lease, at)) is not None]
        if (self.address, self.port) not in holders:
            holders.append((self.address, self.port))  # our renewal just succeeded
        wanted = subsets(holders)
        await self._write_endpoints(wanted)
        return wanted

    async def run(self, interval: float = RENEW_INTERVAL) -> None:
        """Reconcile every ``interval`` seconds until cancelled; errors are retried."""
        while True:
            try:
                await self.reconcile()
            except (ApiError, StoreError):
                log.warning("kubernetes endpoints reconcile failed; retrying", exc_info=True)
            await asyncio.sleep(interval)

    async def leave(self) -> None:
        """Delete our Lease and drop us from the Endpoints (a clean stop)."""
        try:
            await self.registry.delete(LEASES, NAMESPACE, self.name, DeleteOptions(), user=None)
        except ApiError as exc:
            if exc.code != 404:
                raise
        # Whoever is left (leases still live) keeps the endpoints; empty when we were last.
        at = now()
        page = await self.registry.list_objects(
            LEASES,
            NAMESPACE,
            ListOptions(label=parse_label_selector(f"{IDENTITY_LABEL}=kube-apiserver")),
        )
        holders = [h for lease in page.items if (h := _holder(lease, at)) is not None]
        if holders:
            await self._write_endpoints(subsets(holders))

    async def _renew(self, at: datetime) -> None:
        spec = {
            "holderIdentity": f"{self.address}:{self.port}",
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": format_time(at),
        }
        try:
            lease = await self.registry.get(LEASES, NAMESPACE, self.name)
        except ApiError as exc:
            if exc.code != 404:
                raise
            body = {
                "metadata": {
                    "name": self.name,
                    "namespace": NAMESPACE,
                    "labels": {IDENTITY_LABEL: "kube-apiserver"},
                },
                "spec": spec,
            }
            await self.registry.create(LEASES, NAMESPACE, body, user=None)
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        await self.registry.update(LEASES, NAMESPACE, self.name, lease, user=None)

    async def _write_endpoints(self, wanted: list[Obj]) -> None:
        # our advertise address may be loopback (a single-machine server), which validation
        # refuses in any Endpoints a client writes
        with server_advertised_endpoints():
            await self._write_endpoints_now(wanted)

    async def _write_endpoints_now(self, wanted: list[Obj]) -> None:
        try:
            current = await self.registry.get(ENDPOINTS, "default", "kubernetes")
        except ApiError as exc:
            if exc.code != 404:
                raise
            body = {"metadata": {"name": "kubernetes", "namespace": "default"}, "subsets": wanted}
            await self.registry.create(ENDPOINTS, "default", body, user=None)
            return
        if current.get("subsets") != wanted:
            current["subsets"] = wanted
            await self.registry.update(ENDPOINTS, "default", "kubernetes", current, user=None)
