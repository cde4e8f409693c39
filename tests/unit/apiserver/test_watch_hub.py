"""The watch hub: shared decoding, resumable ring, bounded per-watcher queues."""

from __future__ import annotations

import asyncio

from berth.apiserver.codec import Codec
from berth.apiserver.watch import WatchHub
from berth.store.memory import MemoryStore


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_subscribers_get_events_after_their_revision_and_overflow_is_bounded() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec(), ring_size=5, subscriber_capacity=3)
        await hub.start()
        first = await store.create("/registry/core/configmaps/a/x", b'{"metadata":{"name":"x"}}')
        await store.create("/registry/core/configmaps/b/y", b'{"metadata":{"name":"y"}}')
        await _settle()
        sub = hub.subscribe("/registry/core/configmaps/a/", first.mod_revision - 1)
        assert sub is not None
        loop = asyncio.get_running_loop()
        batch = await sub.next_batch(loop.time() + 1)
        assert [(e.key, e.obj["metadata"]["resourceVersion"]) for e in batch] == [
            ("/registry/core/configmaps/a/x", str(first.mod_revision))
        ]
        for i in range(5):  # more than the subscriber's capacity, nobody reading
            await store.update(
                "/registry/core/configmaps/a/x",
                f'{{"v":{i}}}'.encode(),
                expected_revision=(await store.get("/registry/core/configmaps/a/x")).mod_revision,  # type: ignore[union-attr]
            )
        await _settle()
        assert sub.overflowed
        assert len(sub.queue) == 3
        # The ring keeps 5 events: resuming from before them is refused (caller reads the log).
        assert hub.subscribe("/registry/", first.mod_revision) is None
        assert hub.subscribe("/registry/", hub.latest - 2) is not None
        hub.unsubscribe(sub)
        await hub.stop()
        await store.close()

    asyncio.run(scenario())


def test_next_batch_times_out_empty() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec())
        await hub.start()
        sub = hub.subscribe("/registry/", hub.latest)
        assert sub is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await sub.next_batch(started + 0.05) == []
        assert loop.time() - started >= 0.04
        await hub.stop()
        await store.close()

    asyncio.run(scenario())
