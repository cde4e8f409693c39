"""A watch that goes silent without ending (a peer gone without closing its connection) is
given up after the silence limit of the informer's clock and replaced by a new watch from the
last seen resourceVersion; bookmarks and events keep a quiet watch alive.

The fake API's watches never end and never send anything by themselves: a stalled server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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


async def _started(api: RecordingWatches, clock: FakeClock) -> tuple[Informer, asyncio.Task[None]]:
    inf = Informer(api, CONFIGMAPS, clock=clock)
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.wait_synced(), 10)
    await settle()
    return inf, task


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_watch_silent_past_two_bookmark_intervals_is_replaced_from_the_last_version() -> None:
    assert 2 * BOOKMARK_INTERVAL < SILENCE_LIMIT < 3 * BOOKMARK_INTERVAL

    async def body() -> None:
        api, clock = RecordingWatches(), FakeClock()
        inf, task = await _started(api, clock)
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
        await _stopped(task)

    asyncio.run(body())


def test_bookmarks_and_events_keep_a_quiet_watch() -> None:
    async def body() -> None:
        api, clock = RecordingWatches(), FakeClock()
        inf, task = await _started(api, clock)
        for _ in range(5):  # ten minutes in all, never silent for a whole limit
            await clock.step(BOOKMARK_INTERVAL)
            api.bookmark()
            await clock.step(BOOKMARK_INTERVAL)
            await api.create(CONFIGMAPS, cm(f"cm-{clock.monotonic():.0f}"))
        await settle()
        assert len(api.watched_from) == 1
        assert inf.silent_watches == 0
        assert len(inf) == 5
        await _stopped(task)

    asyncio.run(body())


def test_stopping_an_informer_during_a_silent_watch_still_stops_it() -> None:
    async def body() -> None:
        api, clock = RecordingWatches(), FakeClock()
        _, task = await _started(api, clock)
        await clock.step(SILENCE_LIMIT / 2)
        await _stopped(task)
        assert task.cancelled()
        assert clock.pending == 0, "the watchdog's timer went with the watch"

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
