"""An informer's watch through berth-lb to an API server that stops sending without closing.

The stand-in API server answers the list, starts each watch with one event and then sends
nothing more while keeping the connection open (a hung server, or a peer whose packets stopped
arriving). The balancer still finds the backend healthy (it accepts connections), so only the
client can notice: it gives the silent watch up after the silence limit of its clock (a fake
clock here, moved by hand) and watches again from the last resourceVersion, through the
balancer, on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web

from berth.api.resources import CONFIGMAPS
from berth.api.watch import SILENCE_LIMIT
from berth.client.http import HttpClient
from berth.lb.config import Backend, HealthConfig, LBConfig
from berth.lb.proxy import LoadBalancer
from berth.machinery.clock import FakeClock
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import name
from tests.harness.ports import free_port

PATIENCE = 30.0  # seconds of real time for the sockets on a loaded machine


class StalledApi:
    """List: empty at resourceVersion 1. Watch number n: ADDED ``cm-n`` at 1 + n, then silence."""

    def __init__(self) -> None:
        self.watched_from: list[str] = []
        self._never = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/configmaps", self._collection)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5.0)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self._never.set()  # the stalled handlers return, so the shutdown need not wait
        if self._runner is not None:
            await self._runner.cleanup()

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response(
                {"kind": "ConfigMapList", "metadata": {"resourceVersion": "1"}, "items": []}
            )
        self.watched_from.append(request.query.get("resourceVersion", ""))
        n = len(self.watched_from)
        stream = web.StreamResponse(headers={"Content-Type": "application/json"})
        await stream.prepare(request)
        added = {
            "type": "ADDED",
            "object": {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {
                    "name": f"cm-{n}",
                    "namespace": "default",
                    "resourceVersion": str(1 + n),
                },
            },
        }
        await stream.write(orjson.dumps(added) + b"\n")
        await self._never.wait()  # silence, the connection left open
        return stream


@contextlib.asynccontextmanager
async def _through_balancer() -> AsyncIterator[tuple[StalledApi, HttpClient]]:
    api = StalledApi()
    balancer: LoadBalancer | None = None
    client: HttpClient | None = None
    try:
        await api.start()
        config = LBConfig(
            backends=(Backend("127.0.0.1", api.port),),
            listen_port=0,
            connect_timeout=5.0,
            health=HealthConfig(interval=0.5, timeout=5.0, fall=3, rise=1),
        )
        balancer = LoadBalancer(config)
        await balancer.start()
        client = HttpClient(f"http://127.0.0.1:{balancer.port}", None)
        yield api, client
    finally:
        if client is not None:
            await client.close()
        if balancer is not None:
            await balancer.stop()
        await api.stop()


def _arrivals(informer: Informer) -> dict[str, asyncio.Event]:
    """An event per ConfigMap name, set when the informer adds it."""
    arrived = {f"cm-{n}": asyncio.Event() for n in (1, 2, 3)}
    informer.add_handlers(Handlers(on_add=lambda obj: arrived[name(obj)].set()))
    return arrived


def test_a_watch_gone_silent_behind_the_balancer_is_replaced_from_the_last_version() -> None:
    async def scenario() -> None:
        async with _through_balancer() as (api, client):
            clock = FakeClock()
            informer = Informer(client, CONFIGMAPS, clock=clock)
            arrived = _arrivals(informer)
            task = asyncio.create_task(informer.run())
            try:
                await asyncio.wait_for(arrived["cm-1"].wait(), PATIENCE)
                assert api.watched_from == ["1"]

                await clock.step(SILENCE_LIMIT + 1)
                await asyncio.wait_for(arrived["cm-2"].wait(), PATIENCE)
                assert api.watched_from == ["1", "2"], "watched again from the last version"
                assert informer.silent_watches == 1
                assert informer.relists == 1
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    run(scenario)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 4 * PATIENCE))
