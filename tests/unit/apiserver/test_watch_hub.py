"""The watch hub: shared decoding, resumable ring, bounded per-watcher queues."""

from __future__ import annotations

import asyncio

from berth.apiserver.codec import Codec
from berth.apiserver.watch import WatchHub
from berth.store.interface import Event
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


def test_ring_keeps_store_events_undecoded_and_replays_a_backlog_decoded() -> None:
    """The ring holds what the store sent (bytes, a fraction of a decoded object's memory);
    a resuming subscriber gets its prefix's events decoded, oldest first, and overflows as a
    live one would when the backlog is past its capacity."""

    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec(), ring_size=20, subscriber_capacity=3)
        await hub.start()
        start = hub.latest
        for i in range(4):
            await store.create(f"/registry/core/configmaps/a/c{i}", b'{"metadata":{}}')
            await store.create(f"/registry/core/secrets/a/s{i}", b'{"metadata":{}}')
        await _settle()
        assert len(hub.ring) == 8
        assert all(isinstance(raw, Event) for raw in hub.ring)
        full = hub.subscribe("/registry/core/configmaps/", start)
        assert full is not None
        assert full.overflowed  # 4 configmaps, room for 3
        assert [e.key.rsplit("/", 1)[1] for e in full.queue] == ["c0", "c1", "c2"]
        recent = hub.subscribe("/registry/core/configmaps/", hub.latest - 3)
        assert recent is not None
        assert not recent.overflowed
        assert [
            (e.key.rsplit("/", 1)[1], e.obj["metadata"]["resourceVersion"]) for e in recent.queue
        ] == [("c3", str(hub.latest - 1))]
        await hub.stop()
        await store.close()

    asyncio.run(scenario())


def test_ring_is_bounded_by_the_bytes_it_holds() -> None:
    """Big objects push the oldest events out before the count does; resuming from before
    them is refused (the caller reads the store's log), from after them is served."""

    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec(), ring_size=100, ring_bytes=3000)
        await hub.start()
        body = b'{"metadata":{},"data":"' + b"x" * 900 + b'"}'
        revisions = []
        for i in range(6):
            kv = await store.create(f"/registry/core/configmaps/a/c{i}", body)
            revisions.append(kv.mod_revision)
        await _settle()
        assert len(hub.ring) == 3  # 3 x ~930 bytes fit in 3000, 4 do not
        assert hub.floor == revisions[2]
        assert hub.subscribe("/registry/", revisions[1]) is None
        served = hub.subscribe("/registry/", revisions[2])
        assert served is not None
        assert [e.revision for e in served.queue] == revisions[3:]
        await hub.stop()
        await store.close()

    asyncio.run(scenario())
