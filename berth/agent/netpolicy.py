"""The node's NetworkPolicy enforcement, kept in step with the API (what Calico's or
kube-router's per-node agent does elsewhere).

Level-triggered (:mod:`berth.agent.syncloop`): informers on NetworkPolicies, Pods and
Namespaces only mark the state dirty; one loop renders the node's table from the caches
(:mod:`berth.netpol`) and applies it when it changed. A failed sync is logged and retried; a
periodic resync repairs a table someone removed by hand.

Peers are any pod of the cluster, so this loop lists every pod: it runs with the cluster
network's own identity (``system:kube-proxy``, bound to ``system:berth-network-policy``), not
with the node's, which the node authorizer keeps to the node's own pods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from berth.agent.syncloop import marks_dirty, run_sync_loop
from berth.api.resources import NAMESPACES, NETWORKPOLICIES, PODS
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen, freeze
from berth.netpol.model import policy_pod_fields
from berth.netpol.sync import PolicyEnforcer
from berth.network.command import Runner

log = logging.getLogger(__name__)


class NodeNetworkPolicies:
    """Enforces every NetworkPolicy on ``node``'s pods; :meth:`run` until cancelled."""

    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        *,
        node: str,
        runner: Runner | None = None,
        enforcer: PolicyEnforcer | None = None,
        resync_seconds: float = 30.0,
    ) -> None:
        self.clock = clock
        self.node = node
        self.enforcer = enforcer or PolicyEnforcer(node=node, runner=runner)
        self.resync_seconds = resync_seconds
        self.policies = Informer(client, NETWORKPOLICIES, clock=clock)
        self.pods = Informer(client, PODS, clock=clock, transform=_policy_view)
        self.namespaces = Informer(client, NAMESPACES, clock=clock)
        self._dirty = asyncio.Event()
        changed = marks_dirty(self._dirty)
        self.policies.add_handlers(changed)
        self.namespaces.add_handlers(changed)
        # Without a NetworkPolicy the table holds no pod (render_ruleset), so a pod's change
        # changes nothing: no sync (each rendered every pod of the cluster, and a burst of
        # pods changes several times per pod). The first policy's own event syncs them all.
        self.pods.add_handlers(
            Handlers(on_add=self._changed, on_update=self._pod_updated, on_delete=self._changed)
        )
        self.syncs = 0

    @property
    def _informers(self) -> tuple[Informer, ...]:
        return (self.policies, self.pods, self.namespaces)

    def _changed(self, _obj: Frozen) -> None:
        if len(self.policies):
            self._dirty.set()

    def _pod_updated(self, old: Frozen, new: Frozen) -> None:
        if len(self.policies) and _pod_view(old) != _pod_view(new):
            self._dirty.set()

    async def sync_once(self) -> bool:
        applied = await self.enforcer.sync(
            self.policies.list(), self.pods.list(), self.namespaces.list()
        )
        if applied:
            log.info("node %s: network policy rules applied", self.node)
        self.syncs += 1
        return applied

    async def run(self) -> None:
        await run_sync_loop(
            self._informers,
            self.sync_once,
            dirty=self._dirty,
            clock=self.clock,
            resync_seconds=self.resync_seconds,
            what=f"node {self.node}: network policy",
            task_prefix="agent-netpol",
            prepare=self.enforcer.ensure_bridge_netfilter,
        )


def _policy_view(pod: Mapping[str, Any]) -> Frozen:
    """What the pods informer caches: only what the rules read (every pod of the cluster
    passes through here on every change: freezing whole pods was most of this loop's CPU)."""
    view: Frozen = freeze(policy_pod_fields(pod))
    return view


def _pod_view(pod: Frozen) -> object:
    """What of a pod the rules read: labels, spec (node, ports, host network), address and
    phase; not its conditions or container statuses, which change all the time."""
    status = pod.get("status") or {}
    return (
        (pod.get("metadata") or {}).get("labels"),
        pod.get("spec"),
        status.get("podIP"),
        status.get("phase"),
    )
