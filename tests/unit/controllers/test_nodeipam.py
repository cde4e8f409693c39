"""Node IPAM reconcile(node): lowest free subnet, existing assignments respected."""

from __future__ import annotations

from typing import Any

import pytest

from berth.api.resources import NODES
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.controllers.nodeipam import NodeIpamController
from berth.machinery.controller import Permanent

from .harness import Harness, run


def test_assigns_free_pod_cidrs_and_skips_used_ones() -> None:
    async def body() -> None:
        h = Harness()
        c = NodeIpamController(h.ctx, cluster_cidr="10.244.0.0/22", node_mask_size=24)
        h.api.seed(NODES, {"metadata": {"name": "old"}, "spec": {"podCIDR": "10.244.0.0/24"}})
        h.api.seed(NODES, {"metadata": {"name": "new"}})
        await h.sync()
        await c.reconcile(ObjectKey("new"))
        node = h.api.stored(NODES, "new")
        assert node is not None
        assert node["spec"]["podCIDR"] == "10.244.1.0/24"
        assert node["spec"]["podCIDRs"] == ["10.244.1.0/24"]
        await c.reconcile(ObjectKey("old"))
        assert len(h.api.writes("patch", NODES)) == 1

    run(body)


def test_a_stale_cache_never_gets_a_node_a_second_cidr() -> None:
    async def body() -> None:
        h = Harness()
        c = NodeIpamController(h.ctx, cluster_cidr="10.244.0.0/22", node_mask_size=24)
        h.api.seed(NODES, {"metadata": {"name": "n3"}})
        await h.sync()
        await c.reconcile(ObjectKey("n3"))
        # an older update of n3 (no podCIDR yet) is all the cache has when n3 is queued again
        await c.reconcile(ObjectKey("n3"))
        assert len(h.api.writes("patch", NODES)) == 1
        node = h.api.stored(NODES, "n3")
        assert node is not None
        assert node["spec"]["podCIDR"] == "10.244.0.0/24"

    run(body)


def test_exhausted_range_is_reported() -> None:
    async def body() -> None:
        h = Harness()
        c = NodeIpamController(h.ctx, cluster_cidr="10.244.0.0/24", node_mask_size=24)
        h.api.seed(NODES, {"metadata": {"name": "a"}, "spec": {"podCIDR": "10.244.0.0/24"}})
        h.api.seed(NODES, {"metadata": {"name": "b"}})
        await h.sync()
        with pytest.raises(Permanent):
            await c.reconcile(ObjectKey("b"))

    run(body)


def test_a_patch_committed_without_an_answer_never_gives_its_range_to_another_node() -> None:
    async def body() -> None:
        h = Harness()
        c = NodeIpamController(h.ctx, cluster_cidr="10.244.0.0/22", node_mask_size=24)
        h.api.seed(NODES, {"metadata": {"name": "n1"}})
        h.api.seed(NODES, {"metadata": {"name": "n3"}})
        await h.sync()
        patch = h.api.patch

        async def committed_then_timed_out(*args: Any, **kwargs: Any) -> Any:
            await patch(*args, **kwargs)
            raise errors.Unreachable("timed out")

        h.api.patch = committed_then_timed_out  # type: ignore[method-assign]
        with pytest.raises(errors.Unreachable):
            await c.reconcile(ObjectKey("n1"))
        h.api.patch = patch  # type: ignore[method-assign]
        # the informers have not seen n1's range yet: n3 must still not get it
        await c.reconcile(ObjectKey("n3"))
        n1, n3 = h.api.stored(NODES, "n1"), h.api.stored(NODES, "n3")
        assert n1 is not None
        assert n3 is not None
        assert n1["spec"]["podCIDR"] == "10.244.0.0/24"
        assert n3["spec"]["podCIDR"] == "10.244.1.0/24"

    run(body)


def test_a_new_leader_with_a_stale_cache_takes_ranges_from_the_store() -> None:
    async def body() -> None:
        h = Harness()
        c = NodeIpamController(h.ctx, cluster_cidr="10.244.0.0/22", node_mask_size=24)
        h.api.seed(NODES, {"metadata": {"name": "n1"}})
        h.api.seed(NODES, {"metadata": {"name": "n3"}})
        await h.sync()
        # the leader before us gave n1 a range; our watch has not delivered it
        await h.api.patch(NODES, "n1", {"spec": {"podCIDR": "10.244.0.0/24"}})
        await c.reconcile(ObjectKey("n1"))  # the store already has it: nothing to write
        await c.reconcile(ObjectKey("n3"))
        n3 = h.api.stored(NODES, "n3")
        assert n3 is not None
        assert n3["spec"]["podCIDR"] == "10.244.1.0/24"
        assert len(h.api.writes("patch", NODES)) == 2  # the old leader's and n3's

    run(body)
