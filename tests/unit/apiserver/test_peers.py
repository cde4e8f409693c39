"""The kubernetes Endpoints follow the API servers' Leases (in-memory store, no HTTP)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from berth.api.meta import Obj, format_time, now
from berth.api.resources import TABLE
from berth.apiserver.allocators import IPAllocator, PortAllocator
from berth.apiserver.codec import Codec
from berth.apiserver.peers import ENDPOINTS, LEASES, ApiServerPeers, subsets
from berth.apiserver.registry import Registry
from berth.store.memory import MemoryStore


async def _registry(store: MemoryStore) -> Registry:
    reg = Registry(
        store, Codec(), service_ips=IPAllocator("10.96.0.0/24"), node_ports=PortAllocator()
    )
    nss = TABLE.lookup("", "v1", "namespaces")
    assert nss is not None
    for ns in ("default", "kube-system"):
        await reg.ensure(nss, {"metadata": {"name": ns}})
    return reg


async def _endpoints(reg: Registry) -> list[Obj]:
    ep = await reg.get(ENDPOINTS, "default", "kubernetes")
    subs: list[Obj] = ep["subsets"]
    return subs


def test_every_live_server_is_listed_and_a_stopped_one_leaves() -> None:
    async def main() -> None:
        store = MemoryStore()
        a, b, c = [
            ApiServerPeers(await _registry(store), address=ip, port=6443)
            for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")
        ]
        await a.reconcile()
        await b.reconcile()
        await c.reconcile()
        assert await _endpoints(a.registry) == subsets(
            [("10.0.0.1", 6443), ("10.0.0.2", 6443), ("10.0.0.3", 6443)]
        )
        assert [x["ip"] for x in (await _endpoints(a.registry))[0]["addresses"]] == [
            "10.0.0.1",
            "10.0.0.2",
            "10.0.0.3",
        ]
        await b.leave()
        assert await _endpoints(a.registry) == subsets([("10.0.0.1", 6443), ("10.0.0.3", 6443)])

    asyncio.run(main())


def test_a_server_whose_lease_expired_drops_out() -> None:
    async def main() -> None:
        store = MemoryStore()
        live = ApiServerPeers(await _registry(store), address="127.0.0.1", port=7001)
        dead = ApiServerPeers(await _registry(store), address="127.0.0.1", port=7002)
        await dead.reconcile()
        await live.reconcile()
        assert await _endpoints(live.registry) == subsets(
            [("127.0.0.1", 7001), ("127.0.0.1", 7002)]
        )
        # The dead server stopped renewing a minute ago (power cut: no leave()).
        lease = await dead.registry.get(LEASES, "kube-system", dead.name)
        lease["spec"]["renewTime"] = format_time(now() - timedelta(minutes=1))
        await dead.registry.update(LEASES, "kube-system", dead.name, lease, user=None)
        assert await live.reconcile() == subsets([("127.0.0.1", 7001)])
        assert await _endpoints(live.registry) == subsets([("127.0.0.1", 7001)])

    asyncio.run(main())
