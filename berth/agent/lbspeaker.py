"""The node's share of LoadBalancer addresses (MetalLB's layer-2 speaker, folded into the agent).

Every agent runs the same election (:func:`berth.api.loadbalancers.announcer`) over the same
informer caches, so exactly one node holds each pool address: it adds ``ADDRESS/32`` to the
interface whose subnet contains the address (the kernel then answers ARP for it) and sends
gratuitous ARP so the link's caches move to it at once. The candidates are the Ready nodes
not excluded by label; with ``externalTrafficPolicy: Local`` only those with a ready endpoint
of the Service (a node without one would drop the traffic). When the holder goes NotReady the
next candidate takes the address over; the old holder, should it still run, drops it.

Only addresses inside the configured pool are ever added, whatever a Service's status says,
and every ``/32`` of the pool found on an interface is treated as this agent's (the pool is
reserved for load balancers), so an agent restart cleans up what it no longer holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from berth.api.loadbalancers import (
    Pool,
    announcer,
    eligible,
    handled_here,
    ingress_ips,
    local_traffic,
    node_name,
)
from berth.network.command import Runner, check
from berth.vip.addresses import parse_ipv4_addresses, subnet_interface
from berth.vip.arp import ArpAnnouncer

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MAX_STATE = 1 << 20
STATE_PATH = Path("/run/berth/lb-addresses")


def nodes_with_ready_endpoints(
    slices: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, int]]:
    """``(namespace, service) -> {node: ready endpoint count}`` from EndpointSlices."""
    out: dict[tuple[str, str], dict[str, set[str]]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc:
            continue
        per_node = out.setdefault((str(meta.get("namespace") or ""), str(svc)), {})
        for ep in sl.get("endpoints") or ():
            if (ep.get("conditions") or {}).get("ready") is False or not ep.get("nodeName"):
                continue
            per_node.setdefault(str(ep["nodeName"]), set()).update(
                str(a) for a in ep.get("addresses") or ()
            )
    return {k: {n: len(a) for n, a in v.items()} for k, v in out.items()}


def held_here(
    node: str,
    pool: Pool,
    services: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
) -> set[str]:
    """The pool addresses ``node`` must hold now."""
    if not pool:
        return set()
    candidates = sorted(node_name(n) for n in nodes if eligible(n))
    local = nodes_with_ready_endpoints(slices)
    mine: set[str] = set()
    for svc in services:
        if not handled_here(svc):
            continue
        meta = svc.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        eligible_here = candidates
        if local_traffic(svc):
            with_endpoints = local.get(key, {})
            eligible_here = [n for n in candidates if with_endpoints.get(n)]
        for ip in ingress_ips(svc):
            if pool.contains(ip) and announcer(ip, eligible_here) == node:
                mine.add(ip)
    return mine


class Speaker:
    """Adds and removes this node's pool addresses; sends gratuitous ARP for new ones."""

    def __init__(
        self,
        runner: Runner,
        pool: Pool,
        *,
        announce: bool = True,
        state_path: Path | None = None,
    ) -> None:
        self.runner = runner
        self.pool = pool
        self.announce = announce
        # The addresses this speaker added, kept across agent restarts (under /run: gone with
        # the addresses at reboot), so the addresses of a pool that has since been changed or
        # removed from the spec are dropped too.
        self.state_path = state_path
        self.problems: dict[str, str] = {}  # address -> why it cannot be placed (last sync)

    def _recorded(self) -> set[str]:
        if self.state_path is None:
            return set()
        try:
            text = self.state_path.read_text()[:MAX_STATE]
        except OSError:
            return set()
        return {line.strip() for line in text.splitlines() if line.strip()}

    def _record(self, held: set[str]) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text("".join(f"{a}\n" for a in sorted(held)))
        tmp.replace(self.state_path)

    async def sync(self, wanted: set[str]) -> tuple[list[str], list[str]]:
        """Make this host hold exactly ``wanted`` (pool addresses); returns (added, removed)."""
        recorded = self._recorded()
        if not self.pool and not recorded:
            return [], []
        wanted = {a for a in wanted if self.pool.contains(a)}
        result = await check(self.runner, ["ip", "-o", "-4", "addr", "show"], what="list addresses")
        addresses = parse_ipv4_addresses((result.stdout or b"").decode())
        have: dict[str, str] = {}
        for device, cidr in addresses:
            address, _, prefix = cidr.partition("/")
            if prefix == "32" and (self.pool.contains(address) or address in recorded):
                have[address] = device
        added, removed = [], []
        self.problems = {}
        for address in sorted(set(have) - wanted):
            await check(
                self.runner,
                ["ip", "addr", "del", f"{address}/32", "dev", have[address]],
                what=f"drop load-balancer address {address}",
            )
            removed.append(address)
        subnets = [(d, c) for d, c in addresses if not c.endswith("/32")]
        for address in sorted(wanted - set(have)):
            found = subnet_interface(address, subnets)
            if found is None:
                self.problems[address] = (
                    f"no interface of this node has a subnet containing {address}: the "
                    "load-balancer pool must be free addresses of the nodes' own subnet"
                )
                continue
            await check(
                self.runner,
                ["ip", "addr", "add", f"{address}/32", "dev", found],
                what=f"add load-balancer address {address}",
            )
            added.append(address)
            if self.announce:
                await self._gratuitous_arp(address, found)
        held = (set(have) - set(removed)) | set(added)
        if held != recorded:
            self._record(held)
        return added, removed

    async def _gratuitous_arp(self, address: str, dev: str) -> None:
        try:
            await asyncio.to_thread(ArpAnnouncer(address, dev).announce)
        except OSError as exc:  # the address still answers ARP requests; caches just age
            log.warning("gratuitous ARP for %s on %s failed: %s", address, dev, exc)
