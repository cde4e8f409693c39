"""MemoryStore details the cross-backend conformance suite cannot see."""

from __future__ import annotations

import asyncio

import pytest

from berth.store.fanout import Broadcaster
from berth.store.interface import EventType, StoreError, WatchOverflow
from berth.store.memory import MemoryStore


def test_a_fresh_store_is_at_revision_one_and_watch_from_zero_sees_everything() -> None:
    async def main() -> None:
        store = MemoryStore()
        assert await store.current_revision() == 1
        first = await store.create("/a", b"")
        assert first.mod_revision == 2
        watch = store.watch("/", revision=0)
        event = await asyncio.wait_for(watch.__anext__(), 1)
        assert (event.type, event.kv) == (EventType.PUT, first)
        await watch.aclose()

    asyncio.run(main())


def test_watchers_unregister_on_close_and_on_overflow() -> None:
    async def main() -> None:
        store = MemoryStore(watch_buffer=2)
        broadcaster: Broadcaster = store._broadcaster
        closed = store.watch("/", revision=1)
        slow = store.watch("/", revision=1)
        await store.create("/a", b"")
        await closed.__anext__()
        await slow.__anext__()
        assert broadcaster.subscriber_count == 2
        await closed.aclose()
        assert broadcaster.subscriber_count == 1
        for i in range(3):
            await store.create(f"/k{i}", b"")
        assert broadcaster.subscriber_count == 0  # dropped at the third buffered write
        assert [(await slow.__anext__()).kv.key for _ in range(2)] == ["/k0", "/k1"]
        with pytest.raises(WatchOverflow) as info:
            await slow.__anext__()
        assert info.value.revision == 4

    asyncio.run(main())


def test_close_ends_watches_and_refuses_writes() -> None:
    async def main() -> None:
        store = MemoryStore()
        watch = store.watch("/", revision=1)
        waiter = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0)
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiter, 1)
        with pytest.raises(StoreError):
            await store.create("/a", b"")

    asyncio.run(main())


def test_compaction_drops_deleted_keys_entirely() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.create("/gone", b"")
        await store.delete("/gone")
        kept = await store.create("/kept", b"")
        await store.compact(await store.current_revision())
        assert store._keys == ["/kept"]
        assert (await store.list("/")).items == [kept]

    asyncio.run(main())


def test_broadcaster_rejects_a_zero_capacity() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Broadcaster(0)
