"""An etcd member cut off from its quorum: the client asks it to refuse at once ("no leader"),
gives up a request the member holds once a probe shows the leader is gone, and raises the
contract's Unavailable for every "cannot serve now" answer (a fake etcd gateway on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from berth.store.etcd import EtcdNoQuorum, EtcdStore, EtcdUnavailable
from berth.store.interface import Unavailable

NO_LEADER = {"error": "etcdserver: no leader", "message": "etcdserver: no leader", "code": 14}
TIMED_OUT = {
    "error": "etcdserver: request timed out",
    "message": "etcdserver: request timed out",
    "code": 14,
}
RANGE_OK = {"header": {"revision": "7"}, "kvs": []}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def always(body: dict[str, object], status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return handler


@asynccontextmanager
async def fake_etcd(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_every_request_asks_the_member_to_refuse_without_a_leader() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Grpc-Metadata-hasleader"))
        return web.json_response(RANGE_OK)

    async def main() -> None:
        async with fake_etcd(handler) as url:
            store = EtcdStore([url])
            try:
                await store.get("/registry/a")
                await store.list("/registry/")
            finally:
                await store.close()

    asyncio.run(main())
    assert seen == ["true", "true"]


def test_no_leader_is_unavailable_with_a_reason_naming_the_quorum() -> None:
    async def main() -> None:
        async with fake_etcd(always(NO_LEADER, 503)) as url:
            store = EtcdStore([url])
            try:
                with pytest.raises(EtcdUnavailable) as read:
                    await store.get("/registry/a")
                with pytest.raises(EtcdUnavailable) as write:
                    await store.create("/registry/a", b"v")
            finally:
                await store.close()
        assert "the datastore has no quorum" in str(read.value)
        assert isinstance(read.value, EtcdNoQuorum)
        assert url in str(read.value)
        # refused before anything was proposed: the write certainly did not happen
        assert not write.value.outcome_unknown
        assert isinstance(write.value, Unavailable)

    asyncio.run(main())


def test_etcds_own_timeout_is_unavailable_and_a_timed_out_write_may_be_applied() -> None:
    async def main() -> None:
        async with fake_etcd(always(TIMED_OUT, 503)) as url:
            store = EtcdStore([url])
            try:
                with pytest.raises(EtcdUnavailable) as read:
                    await store.get("/registry/a")
                with pytest.raises(EtcdUnavailable) as write:
                    await store.update("/registry/a", b"v", expected_revision=3)
            finally:
                await store.close()
        assert "request timed out" in str(read.value)
        assert not read.value.outcome_unknown
        assert write.value.outcome_unknown

    asyncio.run(main())


def test_a_request_held_by_a_member_that_loses_its_leader_is_given_up_at_once() -> None:
    """etcd holds a request sent just before its member lost the leader until its own 7 s
    timeout; the client's probe sees "no leader" and gives the request up."""
    leader_lost = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/v3/maintenance/status":
            if leader_lost.is_set():
                return web.json_response(NO_LEADER, status=503)
            return web.json_response({"header": {"revision": "7"}, "leader": "1"})
        await asyncio.sleep(30)  # a read or write stuck in the member
        return web.json_response(RANGE_OK)

    async def main() -> float:
        async with fake_etcd(handler) as url:
            store = EtcdStore([url])
            try:
                loop = asyncio.get_running_loop()
                loop.call_later(1.0, leader_lost.set)  # the member notices after a while
                started = time.monotonic()
                with pytest.raises(EtcdUnavailable) as lost:
                    await store.create("/registry/a", b"v")
                took = time.monotonic() - started
            finally:
                await store.close()
        assert "the datastore has no quorum" in str(lost.value)
        assert lost.value.outcome_unknown  # it was sent: the majority may still apply it
        return took

    took = asyncio.run(main())
    assert 1.0 <= took < 2.5, took


def test_no_reachable_member_is_unavailable() -> None:
    async def main() -> None:
        store = EtcdStore(["http://127.0.0.1:9"])  # discard port: nothing listens
        try:
            with pytest.raises(EtcdUnavailable, match="the datastore is unreachable"):
                await store.current_revision()
        finally:
            await store.close()

    asyncio.run(main())


def test_opening_waits_for_a_leader_as_long_as_one_request_may_take() -> None:
    """A whole cluster booting after a power cut has no leader for a while: opening the store
    (the API server's start) waits for one instead of failing at once, which would make a
    supervisor restart the server in a tight loop."""
    elected = asyncio.Event()

    async def handler(_: web.Request) -> web.StreamResponse:
        if elected.is_set():
            return web.json_response(RANGE_OK)
        return web.json_response(NO_LEADER, status=503)

    async def main() -> None:
        async with fake_etcd(handler) as url:
            asyncio.get_running_loop().call_later(1.0, elected.set)
            store = await EtcdStore.open([url], request_timeout=5)
            assert await store.current_revision() == 7
            await store.close()
            elected.clear()
            with pytest.raises(EtcdNoQuorum):
                await EtcdStore.open([url], request_timeout=1)

    asyncio.run(main())
