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


async def _ipam(
    *nodes: str | dict[str, Any], cluster_cidr: str = "10.244.0.0/22"
) -> tuple[Harness, NodeIpamController]:
    """The controller handing out /24s of ``cluster_cidr``, over a fake API holding ``nodes``
    (a name: a Node without a range), its informers synced."""
    h = Harness()
    c = NodeIpamController(h.ctx, cluster_cidr=cluster_cidr, node_mask_size=24)
    for node in nodes:
        h.api.seed(NODES, {"metadata": {"name": node}} if isinstance(node, str) else node)
    await h.sync()
    return h, c


def _with_range(name: str, cidr: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr}}


def _stored_spec(h: Harness, name: str) -> Any:
    node = h.api.stored(NODES, name)
    assert node is not None
    return node["spec"]


def test_assigns_free_pod_cidrs_and_skips_used_ones() -> None:
    async def body() -> None:
        h, c = await _ipam(_with_range("old", "10.244.0.0/24"), "new")
        await c.reconcile(ObjectKey("new"))
        assert _stored_spec(h, "new")["podCIDR"] == "10.244.1.0/24"
        assert _stored_spec(h, "new")["podCIDRs"] == ["10.244.1.0/24"]
        await c.reconcile(ObjectKey("old"))
        assert len(h.api.writes("patch", NODES)) == 1

    run(body)


def test_a_stale_cache_never_gets_a_node_a_second_cidr() -> None:
    async def body() -> None:
        h, c = await _ipam("n3")
        await c.reconcile(ObjectKey("n3"))
        # an older update of n3 (no podCIDR yet) is all the cache has when n3 is queued again
        await c.reconcile(ObjectKey("n3"))
        assert len(h.api.writes("patch", NODES)) == 1
        assert _stored_spec(h, "n3")["podCIDR"] == "10.244.0.0/24"

    run(body)


def test_exhausted_range_is_reported() -> None:
    async def body() -> None:
        _, c = await _ipam(_with_range("a", "10.244.0.0/24"), "b", cluster_cidr="10.244.0.0/24")
        with pytest.raises(Permanent):
            await c.reconcile(ObjectKey("b"))

    run(body)


def test_a_patch_committed_without_an_answer_never_gives_its_range_to_another_node() -> None:
    async def body() -> None:
        h, c = await _ipam("n1", "n3")
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
        assert _stored_spec(h, "n1")["podCIDR"] == "10.244.0.0/24"
        assert _stored_spec(h, "n3")["podCIDR"] == "10.244.1.0/24"

    run(body)


def test_a_new_leader_with_a_stale_cache_takes_ranges_from_the_store() -> None:
    async def body() -> None:
        h, c = await _ipam("n1", "n3")
        # the leader before us gave n1 a range; our watch has not delivered it
        await h.api.patch(NODES, "n1", {"spec": {"podCIDR": "10.244.0.0/24"}})
        await c.reconcile(ObjectKey("n1"))  # the store already has it: nothing to write
        await c.reconcile(ObjectKey("n3"))
        assert _stored_spec(h, "n3")["podCIDR"] == "10.244.1.0/24"
        assert len(h.api.writes("patch", NODES)) == 2  # the old leader's and n3's

    run(body)
