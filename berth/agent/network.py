"""The node's share of the cluster network, kept in step with the API: host-gw routes to every
other node's pod CIDR (+ the service CIDR route) and the service proxy's nftables table.

Level-triggered (:mod:`berth.agent.syncloop`): informers on Nodes, Services and EndpointSlices
only mark the state dirty; one loop then renders everything from the caches and applies the
difference (``ip route`` for routes that changed, one atomic ``nft -f`` when the ruleset
changed). A failed sync is logged and retried; a periodic resync repairs rules someone removed
by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from berth.agent.healthchecks import HealthCheckServers, wanted_checks
from berth.agent.lbspeaker import Speaker, held_here, nodes_with_ready_endpoints
from berth.agent.proxy_events import RejectionReporter
from berth.agent.syncloop import marks_dirty, run_sync_loop
from berth.agent.withdrawal import EndpointWithdrawal
from berth.api.loadbalancers import Pool, ingress_ips, node_internal_ip
from berth.api.resources import ENDPOINTS, ENDPOINTSLICES, NODES, SERVICES
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock
from berth.machinery.events import EventRecorder
from berth.machinery.informer import Informer
from berth.machinery.objects import Frozen
from berth.network.command import CommandFailed, Runner, SubprocessRunner, check
from berth.network.node import sync_node_network, usable_peers
from berth.proxy.sync import ServiceProxy

log = logging.getLogger(__name__)


async def device_with_address(runner: Runner, address: str) -> str:
    """The interface carrying ``address`` (where the service CIDR route points)."""
    result = await check(runner, ["ip", "-j", "-4", "addr", "show"], what="list addresses")
    for link in json.loads(result.stdout or b"[]"):
        for info in link.get("addr_info") or []:
            if info.get("local") == address:
                return str(link["ifname"])
    raise CommandFailed(result, f"no interface carries the node address {address}")


class NodeNetwork:
    """Routes + service rules for ``node``; :meth:`run` until cancelled."""

    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        *,
        node: str,
        node_address: str,
        cluster_cidr: str | None,
        service_cidr: str | None,
        service_device: str = "",
        node_local_ips: frozenset[str] = frozenset(),
        runner: Runner | None = None,
        resync_seconds: float = 30.0,
        load_balancer_pool: Pool | None = None,
        health_checks: HealthCheckServers | None = None,
        speaker_state: Path | None = None,
    ) -> None:
        self.clock = clock
        self.node = node
        self.node_address = node_address
        self.service_cidr = service_cidr
        self.cluster_cidr = cluster_cidr
        self._reported: dict[str, str] = {}  # node -> why its route is left out (logged once)
        self.service_device = service_device
        # Service addresses served on this node itself (the cluster DNS on its loopback
        # interface): no DNAT and no "no endpoints" reject for them, as NodeLocal DNSCache's
        # NOTRACK rules keep kube-proxy off its address
        self.node_local_ips = node_local_ips
        self.runner = runner or SubprocessRunner()
        self.pool = load_balancer_pool or Pool(())
        self.proxy = ServiceProxy(
            cluster_cidr=cluster_cidr,
            runner=self.runner,
            service_cidr=service_cidr,
            node_name=node,
            lb_address_allowed=self._lb_address_allowed,
        )
        # LoadBalancer addresses: this node's share of the pool, and the health checks of
        # externalTrafficPolicy Local Services
        self.speaker = Speaker(self.runner, self.pool, state_path=speaker_state)
        self.health_checks = health_checks or HealthCheckServers()
        self.lb_recorder = EventRecorder(client, clock, component="berth-speaker", host=node)
        self._lb_problems: dict[str, str] = {}
        self._node_ips: frozenset[str] = frozenset()  # the nodes' addresses, per sync
        self.reporter = RejectionReporter(
            EventRecorder(client, clock, component="berth-proxy", host=node), clock
        )
        self.resync_seconds = resync_seconds
        self.nodes = Informer(client, NODES, clock=clock)
        self.services = Informer(client, SERVICES, clock=clock)
        self.endpoints = Informer(client, ENDPOINTS, clock=clock)
        # the proxy reads EndpointSlices (as kube-proxy); the withdrawal signal still follows
        # Endpoints, which list the same pods
        self.slices = Informer(client, ENDPOINTSLICES, clock=clock)
        # the pods of this node are signalled on deletion once Services no longer list them
        self.withdrawal = EndpointWithdrawal(clock)
        self.endpoints.add_handlers(self.withdrawal.handlers())
        self._dirty = asyncio.Event()
        handlers = marks_dirty(self._dirty)
        for informer in (self.nodes, self.services, self.slices):
            informer.add_handlers(handlers)
        self.syncs = 0

    async def sync_once(self) -> None:
        """Make routes and rules match the caches now."""
        own = next(
            (
                str((n.get("spec") or {}).get("podCIDR") or "")
                for n in self.nodes.list()
                if (n.get("metadata") or {}).get("name") == self.node
            ),
            "",
        )
        if self.service_cidr and not self.service_device:
            self.service_device = await device_with_address(self.runner, self.node_address)
        peers, skipped = usable_peers(
            self.nodes.list(), cluster_cidr=self.cluster_cidr, own_pod_cidr=own
        )
        for name, why in skipped.items():
            if self._reported.get(name) != why:
                log.warning("node %s: no route to node %s: %s", self.node, name, why)
        self._reported = skipped
        commands = await sync_node_network(
            self.runner,
            own_pod_cidr=own,
            peers=peers,
            service_cidr=self.service_cidr,
            service_dev=self.service_device or None,
        )
        for argv in commands:
            log.info("node %s: %s", self.node, " ".join(argv))
        services = self.services.list()
        proxied = [s for s in services if not self._node_local(s)]
        self._node_ips = frozenset(
            ip for n in self.nodes.list() if (ip := node_internal_ip(n)) is not None
        )
        try:
            if await self.proxy.sync(proxied, self.slices.list()):
                log.info("node %s: service rules applied", self.node)
        finally:
            await self.reporter.report(self.proxy.rejected, services)
        await self._sync_load_balancers(services)
        self.syncs += 1

    def _lb_address_allowed(self, ip: str) -> bool:
        """The ingress addresses this node forwards: the pool's, or without a pool the nodes'
        own (what the service-lb controller writes in each mode; anything else is ignored)."""
        if self.pool:
            return self.pool.contains(ip)
        return ip in self._node_ips

    async def _sync_load_balancers(self, services: list[Frozen]) -> None:
        slices = self.slices.list()
        counts = nodes_with_ready_endpoints(slices)
        await self.health_checks.sync(wanted_checks(services, counts, self.node))
        # without a pool this only drops what an earlier pool left behind (if anything)
        wanted = held_here(self.node, self.pool, services, self.nodes.list(), slices)
        added, removed = await self.speaker.sync(wanted)
        for address in added:
            log.info("node %s: announcing load-balancer address %s", self.node, address)
            # as MetalLB's speaker: `kubectl describe svc` tells which node holds the address
            for svc in services:
                if address in ingress_ips(svc):
                    await self.lb_recorder.normal(
                        svc, "nodeAssigned", f"announcing {address} from node {self.node}"
                    )
        for address in removed:
            log.info("node %s: no longer announcing %s", self.node, address)
        for address, why in self.speaker.problems.items():
            if self._lb_problems.get(address) != why:
                log.warning("node %s: cannot announce %s: %s", self.node, address, why)
                for svc in services:
                    if address in ingress_ips(svc):
                        await self.lb_recorder.warning(svc, "AnnounceFailed", f"{self.node}: {why}")
        self._lb_problems = dict(self.speaker.problems)

    def _node_local(self, svc: Frozen) -> bool:
        spec = svc.get("spec") or {}
        ips = set(spec.get("clusterIPs") or ()) | {spec.get("clusterIP")}
        return bool(self.node_local_ips & ips)

    async def run(self) -> None:
        try:
            await run_sync_loop(
                (self.nodes, self.services, self.endpoints, self.slices),
                self.sync_once,
                dirty=self._dirty,
                clock=self.clock,
                resync_seconds=self.resync_seconds,
                what=f"node {self.node}: network",
                task_prefix="agent-network",
            )
        finally:
            await self.health_checks.close()
