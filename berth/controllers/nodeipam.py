"""Node IPAM: give every Node a ``spec.podCIDR`` carved from the cluster pod CIDR.

reconcile(node name): a node without a podCIDR gets the lowest free subnet of
``node_mask_size`` bits; CIDRs of existing nodes are marked used as the informer delivers
them (before any reconcile runs, since workers start after the cache syncs), and released
when a node is deleted.
"""

from __future__ import annotations

import ipaddress
import logging

from berth.api.resources import NODES
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery.controller import Controller, Permanent
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, name
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)


class NodeIpamController:
    def __init__(self, ctx: Context, *, cluster_cidr: str, node_mask_size: int = 24) -> None:
        self.ctx = ctx
        self.network = ipaddress.ip_network(cluster_cidr)
        if node_mask_size < self.network.prefixlen:
            raise ValueError(
                f"node CIDR mask /{node_mask_size} is larger than the cluster CIDR {cluster_cidr}"
            )
        self.mask = node_mask_size
        self.used: dict[str, str] = {}  # cidr -> node
        self.nodes = ctx.informers.informer(NODES)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="nodeipam")
        self.controller = Controller("nodeipam", self, self.queue, workers=1)
        self.nodes.add_handlers(
            Handlers(
                on_add=self._seen,
                on_update=lambda _o, n: self._seen(n),
                on_delete=self._gone,
            )
        )

    def _seen(self, node: Frozen) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr:
            try:
                self.used[str(ipaddress.ip_network(str(cidr), strict=False))] = name(node)
            except ValueError:
                # the API refuses such a value now; one stored earlier must not stop the
                # handler (and with it every other node's assignment)
                log.warning("node %s: ignoring malformed podCIDR %r", name(node), cidr)
        else:
            self.queue.add(ObjectKey(name(node)))

    def _gone(self, node: Frozen) -> None:
        for cidr, owner in list(self.used.items()):
            if owner == name(node):
                del self.used[cidr]

    async def _refresh_used(self, node_name: str) -> bool:
        """Rebuild the used ranges from the API; whether ``node_name`` has one there."""
        listed = await self.ctx.client.list(NODES)
        used: dict[str, str] = {}
        has_range = False
        for node in listed.items:
            cidr = (node.get("spec") or {}).get("podCIDR")
            if not cidr:
                continue
            try:
                used[str(ipaddress.ip_network(str(cidr), strict=False))] = name(node)
            except ValueError:
                continue
            has_range = has_range or name(node) == node_name
        self.used = used
        return has_range

    def _next_free(self) -> str | None:
        for subnet in self.network.subnets(new_prefix=self.mask):
            if str(subnet) not in self.used:
                return str(subnet)
        return None

    async def reconcile(self, key: ObjectKey) -> None:
        node = self.nodes.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            return
        if str(key) in self.used.values():
            # assigned by us, but the cache still shows an older Node (an update made before
            # our patch arrived after it): a second CIDR would move the node's pods' range
            return
        # The cache can lag the store: a patch of ours whose answer never came (a timeout on a
        # loaded machine) but that was committed, or the last patches of a leader before us
        # that our watch has not delivered yet. Taking a range from the cache alone then gave
        # two nodes one range (an HA lab cluster: routes to both dropped as overlapping), so
        # the used ranges come from a fresh list before every assignment.
        if await self._refresh_used(str(key)):
            return  # the store already gives this node a range
        cidr = self._next_free()
        if cidr is None:
            await self.ctx.recorder.warning(
                node, "CIDRNotAvailable", f"no free /{self.mask} left in {self.network}"
            )
            raise Permanent(f"cluster CIDR {self.network} is exhausted")
        self.used[cidr] = str(key)
        try:
            await self.ctx.client.patch(
                NODES, str(key), {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
            )
        except errors.ApiError as error:
            if error.status != 0:  # the server answered: nothing was written
                del self.used[cidr]
            raise  # no answer: it may have been written; the next try lists and sees
        log.info("node %s: podCIDR %s", key, cidr)
