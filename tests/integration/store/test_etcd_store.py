"""EtcdStore behaviour beyond the shared contract: mTLS and endpoint failover."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.store.config import DatastoreConfig, open_store
from berth.store.etcd import EtcdError, EtcdStore, EtcdTLS
from berth.store.interface import EventType

from .etcd_server import EtcdProcess, TLSFiles, make_tls, start_etcd


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("etcd-pki"))


@pytest.fixture(scope="module")
def tls_etcd(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles
) -> Iterator[EtcdProcess]:
    server = start_etcd(tmp_path_factory.mktemp("etcd-tls"), tls=tls_files)
    try:
        yield server
    finally:
        server.stop()


def test_mtls_reads_writes_and_watches(tls_etcd: EtcdProcess, tls_files: TLSFiles) -> None:
    tls = EtcdTLS(tls_files.ca, tls_files.client_cert, tls_files.client_key)

    async def main() -> None:
        store = await EtcdStore.open([tls_etcd.url], tls=tls)
        try:
            start = await store.current_revision()
            kv = await store.create("/tls/a", b"secret")
            assert (await store.list("/tls/")).items == [kv]
            watch = store.watch("/tls/", revision=start)
            event = await asyncio.wait_for(watch.__anext__(), 5)
            await watch.aclose()
            assert (event.type, event.kv) == (EventType.PUT, kv)
        finally:
            await store.close()

    asyncio.run(main())


def test_mtls_without_a_client_certificate_is_refused(
    tls_etcd: EtcdProcess, tls_files: TLSFiles
) -> None:
    async def main() -> None:
        with pytest.raises(EtcdError):
            await EtcdStore.open([tls_etcd.url], tls=EtcdTLS(tls_files.ca))

    asyncio.run(main())


def test_an_unreachable_endpoint_fails_over_to_the_next(
    etcd_server: EtcdProcess, tmp_path: Path
) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens there on a test machine

    async def main() -> None:
        store = await EtcdStore.open([dead, etcd_server.url], request_timeout=2)
        try:
            start = await store.current_revision()
            watch = store.watch("/failover/", revision=start)
            kv = await store.create("/failover/a", b"")
            event = await asyncio.wait_for(watch.__anext__(), 5)
            await watch.aclose()
            assert event.kv == kv
        finally:
            await store.close()

    asyncio.run(main())


def test_no_reachable_endpoint_says_what_to_check() -> None:
    async def main() -> None:
        with pytest.raises(EtcdError, match="no etcd endpoint reachable"):
            await EtcdStore.open(["http://127.0.0.1:9"], request_timeout=2)

    asyncio.run(main())


def test_a_broken_watch_stream_resumes_without_loss_or_duplicates(etcd_server: EtcdProcess) -> None:
    async def main() -> None:
        store = await EtcdStore.open([etcd_server.url])
        watch = store.watch("/resume/", revision=await store.current_revision())
        try:
            a = await store.create("/resume/a", b"")
            assert (await asyncio.wait_for(watch.__anext__(), 5)).kv == a
            # Cut the connection under the watch, as a restarting member or a proxy would.
            resp = watch._resp  # type: ignore[attr-defined]
            assert resp is not None
            assert resp.connection is not None
            resp.connection.transport.abort()
            b = await store.create("/resume/b", b"")
            c = await store.create("/resume/c", b"")
            got = [(await asyncio.wait_for(watch.__anext__(), 5)).kv for _ in range(2)]
            assert got == [b, c]
        finally:
            await watch.aclose()
            await store.close()

    asyncio.run(main())


def test_open_store_reaches_etcd_over_mtls(tls_etcd: EtcdProcess, tls_files: TLSFiles) -> None:
    section = {
        "type": "etcd",
        "endpoints": [tls_etcd.url],
        "caFile": str(tls_files.ca),
        "certFile": str(tls_files.client_cert),
        "keyFile": str(tls_files.client_key),
    }

    async def main() -> None:
        store = await open_store(DatastoreConfig.from_mapping(section))
        try:
            assert isinstance(store, EtcdStore)
            assert await store.current_revision() >= 1
        finally:
            await store.close()

    asyncio.run(main())


def test_writes_with_one_ttl_share_a_lease_and_a_lost_lease_is_replaced(
    etcd_server: EtcdProcess,
) -> None:
    """A burst of Events costs one lease grant, not one lease (and one etcd timer) each; a
    write whose lease etcd no longer has gets a new one."""

    async def leases(store: EtcdStore) -> set[str]:
        answer = await store._call("/v3/lease/leases", {})
        return {str(lease["ID"]) for lease in answer.get("leases") or ()}

    async def main() -> None:
        store = await EtcdStore.open([etcd_server.url])
        try:
            before = await leases(store)
            await asyncio.gather(*(store.create(f"/lease/{i}", b"e", ttl=3600) for i in range(40)))
            granted = await leases(store) - before
            assert len(granted) == 1
            (lease,) = granted
            await store._call("/v3/lease/revoke", {"ID": lease})  # its keys go with it
            assert (await store.list("/lease/")).items == []
            kv = await store.create("/lease/after", b"e", ttl=3600)
            assert await store.get("/lease/after") == kv
            assert len(await leases(store) - before - {lease}) == 1
        finally:
            await store.close()

    asyncio.run(main())
