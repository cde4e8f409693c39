"""ClusterIP/NodePort allocation kept in the datastore: several registries (API servers) on one
store never hand out the same item; leaks are repaired (in-memory store, no HTTP)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver.allocators import ALLOCATIONS_PREFIX, IPAllocator, Owner, PortAllocator
from berth.apiserver.codec import Codec
from berth.apiserver.errors import ApiError
from berth.apiserver.options import DeleteOptions
from berth.apiserver.registry import Registry
from berth.store.interface import KeyValue, ListResult
from berth.store.memory import MemoryStore


def _rd(plural: str) -> ResourceDef:
    rd = TABLE.lookup("", "v1", plural)
    assert rd is not None
    return rd


SVC, NSS = _rd("services"), _rd("namespaces")
CIDR = "10.96.0.0/28"  # 14 host addresses: .1 is kubernetes', 13 to hand out
PORTS = (30000, 30007)


def _server(store: MemoryStore) -> Registry:
    return Registry(store, Codec(), service_ips=IPAllocator(CIDR), node_ports=PortAllocator(*PORTS))


async def _servers(n: int) -> tuple[MemoryStore, list[Registry]]:
    store = MemoryStore()
    regs = [_server(store) for _ in range(n)]
    await regs[0].create(NSS, "", {"metadata": {"name": "default"}}, user=None)
    return store, regs


def _svc(name: str, *, node_port: bool = False, ip: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 80, "protocol": "TCP"}]}
    if node_port:
        spec["type"] = "NodePort"
    if ip:
        spec["clusterIP"] = ip
    return {"metadata": {"name": name}, "spec": spec}


async def _keys(store: MemoryStore, kind: str) -> list[str]:
    result = await store.list(f"{ALLOCATIONS_PREFIX}{kind}/")
    return [kv.key.rsplit("/", 1)[1] for kv in result.items]


def test_two_servers_never_hand_out_the_same_address_or_port() -> None:
    async def main() -> None:
        store, (a, b) = await _servers(2)
        made = await asyncio.gather(
            *(
                (a if i % 2 else b).create(SVC, "default", _svc(f"s{i}", node_port=True), user=None)
                for i in range(8)
            )
        )
        ips = [m["spec"]["clusterIP"] for m in made]
        ports = [m["spec"]["ports"][0]["nodePort"] for m in made]
        assert len(set(ips)) == 8
        assert sorted(ports) == list(range(30000, 30008))  # the whole range, once each
        assert "10.96.0.1" not in ips  # the kubernetes Service's, never automatic
        assert sorted(await _keys(store, "nodeports")) == [str(p) for p in sorted(ports)]
        with pytest.raises(ApiError, match="range is full"):
            await a.create(SVC, "default", _svc("extra", node_port=True), user=None)
        # The failed create gave back the ClusterIP it had taken before the port ran out.
        assert len(await _keys(store, "serviceips")) == 8

    asyncio.run(main())


def test_a_deleted_services_items_go_back_to_every_server() -> None:
    async def main() -> None:
        store, (a, b) = await _servers(2)
        for i in range(8):
            await a.create(SVC, "default", _svc(f"s{i}", node_port=True), user=None)
        await a.delete(SVC, "default", "s3", DeleteOptions(), user=None)
        # b never saw the delete: its hint says every port is taken, the store says one is free.
        made = await b.create(SVC, "default", _svc("late", node_port=True), user=None)
        assert made["spec"]["ports"][0]["nodePort"] in range(30000, 30008)
        assert len(await _keys(store, "nodeports")) == 8

    asyncio.run(main())


def test_an_address_another_server_gave_out_is_refused() -> None:
    async def main() -> None:
        _, (a, b) = await _servers(2)
        first = await a.create(SVC, "default", _svc("one"), user=None)
        with pytest.raises(ApiError, match="already allocated"):
            await b.create(SVC, "default", _svc("two", ip=first["spec"]["clusterIP"]), user=None)
        with pytest.raises(ApiError, match="not in the valid range"):
            await b.create(SVC, "default", _svc("three", ip="10.97.0.5"), user=None)

    asyncio.run(main())


class _SlowObjectWrites(MemoryStore):
    """A view of ``store`` whose API object creates wait first: the server using it reserves
    its ClusterIP, then loses the race to store the Service."""

    def __init__(self, store: MemoryStore) -> None:
        self.inner = store

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def get(self, key: str) -> KeyValue | None:
        return await self.inner.get(key)

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        return await self.inner.list(
            prefix, revision=revision, limit=limit, start_after=start_after
        )

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        if key.startswith("/registry/"):
            await asyncio.sleep(0.05)
        return await self.inner.create(key, value, ttl=ttl)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        return await self.inner.delete(key, expected_revision=expected_revision)


def test_racing_creates_of_one_service_keep_the_winners_address() -> None:
    async def main() -> None:
        store, (a, _) = await _servers(2)
        loser = _server(_SlowObjectWrites(store))
        late = asyncio.create_task(
            loser.create(SVC, "default", _svc("api", ip="10.96.0.9"), user=None)
        )
        await asyncio.sleep(0.01)  # the loser holds the address key now
        winner = await a.create(SVC, "default", _svc("api", ip="10.96.0.9"), user=None)
        with pytest.raises(ApiError) as lost:
            await late
        assert lost.value.reason == "AlreadyExists"
        assert winner["spec"]["clusterIP"] == "10.96.0.9"
        # The winner's Service still holds its address: nobody else may take it.
        assert await _keys(store, "serviceips") == ["10.96.0.9"]
        with pytest.raises(ApiError, match="already allocated"):
            await a.create(SVC, "default", _svc("other", ip="10.96.0.9"), user=None)

    asyncio.run(main())


def test_dry_run_takes_nothing_and_type_change_frees_the_port() -> None:
    async def main() -> None:
        store, (a, _) = await _servers(2)
        await a.create(SVC, "default", _svc("dry", node_port=True), user=None, dry_run=True)
        assert await _keys(store, "serviceips") == []
        assert await _keys(store, "nodeports") == []
        made = await a.create(SVC, "default", _svc("web", node_port=True), user=None)
        made["spec"]["type"] = "ClusterIP"
        await a.update(SVC, "default", "web", made, user=None)
        assert await _keys(store, "nodeports") == []
        assert await _keys(store, "serviceips") == [made["spec"]["clusterIP"]]

    asyncio.run(main())


def test_repair_restores_missing_keys_and_releases_leaks_on_the_second_pass() -> None:
    async def main() -> None:
        store, (a, b) = await _servers(2)
        made = await a.create(SVC, "default", _svc("web", node_port=True), user=None)
        ip, port = made["spec"]["clusterIP"], made["spec"]["ports"][0]["nodePort"]
        # A datastore from before allocation keys: the Service holds items without keys.
        await store.delete(f"{ALLOCATIONS_PREFIX}serviceips/{ip}")
        await store.delete(f"{ALLOCATIONS_PREFIX}nodeports/{port}")
        # A server died after reserving for a Service it never stored.
        leaked = "10.96.0.14" if ip != "10.96.0.14" else "10.96.0.13"
        leak = Owner("default/ghost", "uid-ghost")
        await store.create(f"{ALLOCATIONS_PREFIX}serviceips/{leaked}", leak.encode())
        first = await b.services.repair(b._stored_services)
        assert (first.restored, first.released) == (2, 0)  # the leak is only a suspect yet
        assert sorted(await _keys(store, "serviceips")) == sorted([ip, leaked])
        second = await b.services.repair(b._stored_services)
        assert (second.restored, second.released) == (0, 1)
        assert await _keys(store, "serviceips") == [ip]
        assert await _keys(store, "nodeports") == [str(port)]

    asyncio.run(main())


def test_a_key_whose_service_appears_between_passes_is_kept() -> None:
    async def main() -> None:
        store, (a, b) = await _servers(2)
        owner = Owner("default/slow", "uid-slow")
        await store.create(f"{ALLOCATIONS_PREFIX}serviceips/10.96.0.5", owner.encode())
        await b.services.repair(b._stored_services)  # suspect: no Service holds it yet
        await a.create(SVC, "default", _svc("slow", ip="10.96.0.5"), user=None)
        report = await b.services.repair(b._stored_services)
        assert report.released == 0
        assert await _keys(store, "serviceips") == ["10.96.0.5"]

    asyncio.run(main())
