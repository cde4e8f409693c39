"""A watch that goes silent without ending (a peer gone without closing its connection) is
given up after the silence limit of the informer's clock and replaced by a new watch from the
last seen resourceVersion; bookmarks and events keep a quiet watch alive.

The fake API's watches never end and never send anything by themselves: a stalled server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from berth.api.resources import CONFIGMAPS, ResourceDef
from berth.api.watch import BOOKMARK_INTERVAL, SILENCE_LIMIT
from berth.client.interface import WatchEvent
from berth.machinery.clock import FakeClock
from berth.machinery.informer import Informer
from berth.machinery.silence import SilenceWatchdog, Silent
from tests.harness.fake_client import FakeClient


class RecordingWatches(FakeClient):
    """The fake API, remembering the resourceVersion each watch started from."""

    def __init__(self) -> None:
        super().__init__()
        self.watched_from: list[str] = []

    async def watch(
        self, resource: ResourceDef, *, resource_version: str = "", **kwargs: Any
    ) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(resource_version)
        async for event in super().watch(resource, resource_version=resource_version, **kwargs):
            yield event


def cm(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "data": {}}


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@dataclass
class Rig:
    api: RecordingWatches
    clock: FakeClock
    informer: Informer
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_informer() -> AsyncIterator[Rig]:
    """A ConfigMap informer on a fake clock, listed and watching; stopped afterwards."""
    api, clock = RecordingWatches(), FakeClock()
    informer = Informer(api, CONFIGMAPS, clock=clock)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 10)
        await settle()
        yield Rig(api, clock, informer, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_watch_silent_past_two_bookmark_intervals_is_replaced_from_the_last_version() -> None:
    assert 2 * BOOKMARK_INTERVAL < SILENCE_LIMIT < 3 * BOOKMARK_INTERVAL

    async def body() -> None:
        async with running_informer() as rig:
            api, clock, inf = rig.api, rig.clock, rig.informer
            await api.create(CONFIGMAPS, cm("before"))
            await settle()
            listed_at, seen = api.watched_from[0], inf.resource_version
            assert inf.get("default/before") is not None
            assert len(api.watched_from) == 1

            await clock.step(SILENCE_LIMIT - 1)
            assert len(api.watched_from) == 1, "a quiet watch is kept until the limit"
            await clock.step(2)
            assert api.watched_from == [listed_at, seen]
            assert inf.silent_watches == 1
            assert inf.relists == 1, "the new watch resumes; nothing is listed again"

            await api.create(CONFIGMAPS, cm("after"))
            await settle()
            assert inf.get("default/after") is not None

    asyncio.run(body())


def test_bookmarks_and_events_keep_a_quiet_watch() -> None:
    async def body() -> None:
        async with running_informer() as rig:
            for _ in range(5):  # ten minutes in all, never silent for a whole limit
                await rig.clock.step(BOOKMARK_INTERVAL)
                rig.api.bookmark()
                await rig.clock.step(BOOKMARK_INTERVAL)
                await rig.api.create(CONFIGMAPS, cm(f"cm-{rig.clock.monotonic():.0f}"))
            await settle()
            assert len(rig.api.watched_from) == 1
            assert rig.informer.silent_watches == 0
            assert len(rig.informer) == 5

    asyncio.run(body())


def test_stopping_an_informer_during_a_silent_watch_still_stops_it() -> None:
    async def body() -> None:
        async with running_informer() as rig:
            await rig.clock.step(SILENCE_LIMIT / 2)
        assert rig.task.cancelled()
        assert rig.clock.pending == 0, "the watchdog's timer went with the watch"

    asyncio.run(body())


def test_the_watchdog_leaves_other_cancellations_alone() -> None:
    async def body() -> None:
        clock = FakeClock()
        forever = asyncio.Event()

        async def quiet() -> None:
            async with SilenceWatchdog(clock, 10.0):
                await forever.wait()

        silent = asyncio.create_task(quiet())
        await clock.step(10.0)
        with pytest.raises(Silent):
            await silent

        stopped = asyncio.create_task(quiet())
        await clock.step(5.0)
        stopped.cancel()
        await asyncio.gather(stopped, return_exceptions=True)
        assert stopped.cancelled()
        assert clock.pending == 0

    asyncio.run(body())
