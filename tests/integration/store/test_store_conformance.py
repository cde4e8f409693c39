"""The behaviour every store backend must show (run once per backend, see conftest)."""

from __future__ import annotations

import asyncio

import pytest

from berth.store.interface import (
    Compacted,
    Conflict,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    Store,
    Watch,
    WatchOverflow,
)

from .conftest import Backend

NEXT_EVENT_TIMEOUT = 5.0


async def next_event(watch: Watch) -> Event:
    return await asyncio.wait_for(watch.__anext__(), NEXT_EVENT_TIMEOUT)


async def take(watch: Watch, count: int) -> list[Event]:
    return [await next_event(watch) for _ in range(count)]


def keys(items: list[KeyValue]) -> list[str]:
    return [kv.key for kv in items]


def test_every_write_takes_the_next_cluster_wide_revision(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        start = await store.current_revision()
        assert start >= 1
        a = await store.create(p + "a", b"1")
        b = await store.create(p + "b", b"2")
        assert (a.create_revision, a.mod_revision) == (start + 1, start + 1)
        assert (b.create_revision, b.mod_revision) == (start + 2, start + 2)
        a2 = await store.update(p + "a", b"1'", expected_revision=a.mod_revision)
        assert (a2.create_revision, a2.mod_revision, a2.value) == (start + 1, start + 3, b"1'")
        gone = await store.delete(p + "b")
        assert (gone.key, gone.value, gone.create_revision) == (p + "b", b"2", start + 2)
        assert gone.mod_revision == start + 4
        assert await store.current_revision() == start + 4
        assert await store.get(p + "a") == a2
        assert await store.get(p + "b") is None

    backend.run(scenario)


def test_failed_writes_take_no_revision(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        kv = await store.create(p + "k", b"v")
        before = await store.current_revision()
        with pytest.raises(KeyExists):
            await store.create(p + "k", b"other")
        with pytest.raises(Conflict):
            await store.update(p + "k", b"x", expected_revision=kv.mod_revision - 1)
        with pytest.raises(KeyNotFound):
            await store.update(p + "missing", b"x", expected_revision=kv.mod_revision)
        with pytest.raises(KeyNotFound):
            await store.delete(p + "missing")
        assert await store.current_revision() == before
        assert await store.get(p + "k") == kv

    backend.run(scenario)


def test_stale_update_conflicts_and_reports_the_current_value(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        v1 = await store.create(p + "k", b"v1")
        v2 = await store.update(p + "k", b"v2", expected_revision=v1.mod_revision)
        with pytest.raises(Conflict) as info:
            await store.update(p + "k", b"v3", expected_revision=v1.mod_revision)
        assert info.value.key == p + "k"
        assert info.value.current == v2
        assert await store.get(p + "k") == v2

    backend.run(scenario)


def test_update_with_revision_zero_never_creates_nor_skips_the_check(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        with pytest.raises(KeyNotFound):
            await store.update(p + "k", b"v", expected_revision=0)
        assert await store.get(p + "k") is None
        kv = await store.create(p + "k", b"v")
        with pytest.raises(Conflict):
            await store.update(p + "k", b"w", expected_revision=0)
        assert await store.get(p + "k") == kv

    backend.run(scenario)


def test_concurrent_updates_from_one_revision_let_exactly_one_win(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        base = await store.create(p + "k", b"base")
        results = await asyncio.gather(
            *(
                store.update(p + "k", f"w{i}".encode(), expected_revision=base.mod_revision)
                for i in range(12)
            ),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, KeyValue)]
        losers = [r for r in results if isinstance(r, Conflict)]
        assert len(winners) == 1
        assert len(losers) == 11
        assert await store.get(p + "k") == winners[0]

    backend.run(scenario)


def test_delete_compare_and_swap(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        v1 = await store.create(p + "k", b"v1")
        v2 = await store.update(p + "k", b"v2", expected_revision=v1.mod_revision)
        with pytest.raises(Conflict) as info:
            await store.delete(p + "k", expected_revision=v1.mod_revision)
        assert info.value.current == v2
        gone = await store.delete(p + "k", expected_revision=v2.mod_revision)
        assert gone.value == b"v2"
        assert gone.mod_revision > v2.mod_revision
        with pytest.raises(KeyNotFound):
            await store.delete(p + "k", expected_revision=v2.mod_revision)
        again = await store.create(p + "k", b"new")
        assert again.create_revision == again.mod_revision > gone.mod_revision

    backend.run(scenario)


def test_values_and_keys_round_trip_exactly(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        value = bytes(range(256)) + b"\x00\xff"
        await store.create(p + "ключ/ü", value)
        got = await store.get(p + "ключ/ü")
        assert got is not None
        assert got.value == value
        listed = await store.list(p)
        assert keys(listed.items) == [p + "ключ/ü"]

    backend.run(scenario)


def test_list_by_prefix_now_and_at_a_past_revision(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        a1 = await store.create(p + "a/1", b"a1")
        a2 = await store.create(p + "a/2", b"a2")
        await store.create(p + "b/1", b"b1")
        await store.create(p + "a", b"not under a/")
        past = await store.current_revision()
        a1_new = await store.update(p + "a/1", b"a1'", expected_revision=a1.mod_revision)
        await store.delete(p + "a/2")
        a3 = await store.create(p + "a/3", b"a3")

        now = await store.list(p + "a/")
        assert now.items == [a1_new, a3]
        assert now.revision == await store.current_revision()
        assert not now.more

        then = await store.list(p + "a/", revision=past)
        assert then.items == [a1, a2]
        assert then.revision == past

        assert keys((await store.list(p)).items) == [p + "a", p + "a/1", p + "a/3", p + "b/1"]
        assert (await store.list(p + "zzz/")).items == []

        with pytest.raises(FutureRevision):
            await store.list(p, revision=now.revision + 1000)

    backend.run(scenario)


def test_paginated_list_is_one_consistent_snapshot(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        created = [await store.create(f"{p}item-{i:02}", str(i).encode()) for i in range(7)]
        full = await store.list(p)
        assert full.items == created

        first = await store.list(p, limit=3)
        assert first.more
        assert first.items == created[:3]
        # Writes between pages must not show up in the later pages.
        await store.delete(created[4].key)
        await store.create(p + "item-03a", b"late")
        await store.update(created[6].key, b"changed", expected_revision=created[6].mod_revision)

        pages = [first]
        while pages[-1].more:
            pages.append(
                await store.list(
                    p, limit=3, revision=first.revision, start_after=pages[-1].items[-1].key
                )
            )
        assert [kv for page in pages for kv in page.items] == full.items
        assert [len(page.items) for page in pages] == [3, 3, 1]
        assert all(page.revision == first.revision for page in pages)

        exact = await store.list(p, limit=7)
        assert not exact.more
        assert len(exact.items) == 7

    backend.run(scenario)


def test_watch_replays_history_then_follows_live_writes(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        start = await store.current_revision()
        v1 = await store.create(p + "k", b"v1")
        v2 = await store.update(p + "k", b"v2", expected_revision=v1.mod_revision)
        gone = await store.delete(p + "k")

        watch = store.watch(p, revision=start)
        try:
            history = await take(watch, 3)
            assert [e.type for e in history] == [EventType.PUT, EventType.PUT, EventType.DELETE]
            assert [e.kv for e in history] == [v1, v2, gone]
            assert [e.prev for e in history] == [None, v1, v2]

            live = await store.create(p + "k2", b"live")
            event = await next_event(watch)
            assert (event.type, event.kv, event.prev) == (EventType.PUT, live, None)
        finally:
            await watch.aclose()

        # A watch from the middle of history sees only what came after that revision.
        middle = store.watch(p, revision=v2.mod_revision)
        try:
            rest = await take(middle, 2)
            assert [e.kv.mod_revision for e in rest] == [gone.mod_revision, live.mod_revision]
        finally:
            await middle.aclose()

    backend.run(scenario)


def test_watch_sees_only_its_prefix(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        start = await store.current_revision()
        watch = store.watch(p + "x/", revision=start)
        try:
            await store.create(p + "y/1", b"other")
            await store.create(p + "x", b"not under x/")
            mine = await store.create(p + "x/1", b"mine")
            await store.create(p + "y/2", b"other")
            mine2 = await store.create(p + "x/2", b"mine")
            events = await take(watch, 2)
            assert [e.kv for e in events] == [mine, mine2]
        finally:
            await watch.aclose()

    backend.run(scenario)


def test_compaction_expires_older_reads_and_watches(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        old = await store.create(p + "k", b"v1")
        v2 = await store.update(p + "k", b"v2", expected_revision=old.mod_revision)
        await store.create(p + "gone", b"x")
        await store.delete(p + "gone")
        point = await store.current_revision()
        v3 = await store.update(p + "k", b"v3", expected_revision=v2.mod_revision)

        await store.compact(point)

        with pytest.raises(Compacted) as info:
            await store.list(p, revision=old.mod_revision)
        assert info.value.requested == old.mod_revision
        assert info.value.compacted >= point
        at_point = await store.list(p, revision=point)
        assert at_point.items == [v2]
        assert (await store.list(p)).items == [v3]

        stale = store.watch(p, revision=old.mod_revision)
        try:
            # Raised promptly by the first __anext__, without waiting for a new event.
            with pytest.raises(Compacted):
                await next_event(stale)
        finally:
            await stale.aclose()

        fresh = store.watch(p, revision=point)
        try:
            event = await next_event(fresh)
            assert (event.kv, event.prev) == (v3, v2)
        finally:
            await fresh.aclose()

        await store.compact(old.mod_revision)  # below the compaction point: a no-op
        with pytest.raises(FutureRevision):
            await store.compact(v3.mod_revision + 1000)

        v4 = await store.update(p + "k", b"v4", expected_revision=v3.mod_revision)
        assert await store.get(p + "k") == v4

    backend.run(scenario)


def test_many_concurrent_watchers_all_receive_every_event_in_order(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        start = await store.current_revision()
        watches = [store.watch(p, revision=start) for _ in range(40)]
        try:
            # Open every watch (so most events arrive live rather than from history).
            await store.create(p + "first", b"0")
            await asyncio.gather(*(next_event(watch) for watch in watches))
            written = await asyncio.gather(
                *(store.create(f"{p}k{i}", str(i).encode()) for i in range(60))
            )
            expected = sorted(kv.mod_revision for kv in written)
            received = await asyncio.gather(*(take(watch, 60) for watch in watches))
            for events in received:
                assert [e.kv.mod_revision for e in events] == expected
                assert {e.kv for e in events} == set(written)
        finally:
            for watch in watches:
                await watch.aclose()

    backend.run(scenario)


def test_slow_watcher_does_not_block_writers(backend: Backend) -> None:
    buffer = 16
    writes = 200

    async def scenario(store: Store, p: str) -> None:
        start = await store.current_revision()
        slow = store.watch(p, revision=start)
        resumed: Watch | None = None
        try:
            await store.create(p + "first", b"")
            await next_event(slow)  # live now, and never read again until writes are done
            done = [await store.create(f"{p}k{i:03}", b"x") for i in range(writes)]
            expected = [kv.mod_revision for kv in done]

            seen: list[int] = []
            overflow: WatchOverflow | None = None
            try:
                while len(seen) < writes:
                    seen.append((await next_event(slow)).kv.mod_revision)
            except WatchOverflow as exc:
                overflow = exc
            assert seen == expected[: len(seen)]  # a gapless, ordered prefix
            if backend.bounded_watch:
                assert overflow is not None, "the bounded buffer never overflowed"
                assert len(seen) <= buffer
            if overflow is not None:
                assert overflow.revision == (seen[-1] if seen else done[0].mod_revision - 1)
                resumed = store.watch(p, revision=overflow.revision)
                rest = await take(resumed, writes - len(seen))
                assert [e.kv.mod_revision for e in rest] == expected[len(seen) :]
        finally:
            await slow.aclose()
            if resumed is not None:
                await resumed.aclose()

    backend.run(scenario, watch_buffer=buffer)


def test_closed_watch_stops_iterating(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        watch = store.watch(p, revision=await store.current_revision())
        await store.create(p + "a", b"")
        await next_event(watch)
        await watch.aclose()
        await watch.aclose()  # idempotent
        await store.create(p + "b", b"")  # writers are unaffected by closed watchers
        with pytest.raises(StopAsyncIteration):
            await next_event(watch)

    backend.run(scenario)


def test_closing_a_watch_wakes_a_task_waiting_on_it(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        watch = store.watch(p, revision=await store.current_revision())
        await store.create(p + "a", b"")
        await next_event(watch)  # live, with nothing more to come
        waiter = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await watch.aclose()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiter, NEXT_EVENT_TIMEOUT)

    backend.run(scenario)


def test_a_watch_from_a_future_revision_waits_for_it(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        now = await store.current_revision()
        watch = store.watch(p, revision=now + 2)
        try:
            await store.create(p + "a", b"")
            await store.create(p + "b", b"")
            third = await store.create(p + "c", b"")
            assert (await next_event(watch)).kv == third
        finally:
            await watch.aclose()

    backend.run(scenario)


TTL_PATIENCE = 18.0
"""Seconds a ttl of 1 s may take to be acted on (sweeps every second; etcd rounds a lease up
to its minimum and checks leases every 500 ms), with room for a loaded machine."""


async def wait_gone(store: Store, key: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TTL_PATIENCE
    while await store.get(key) is not None:
        assert loop.time() < deadline, f"{key} outlived its ttl"
        await asyncio.sleep(0.2)


def test_a_key_with_a_ttl_is_deleted_by_the_store_and_watchers_see_it(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        start = await store.current_revision()
        watch = store.watch(p, revision=start)
        try:
            short = await store.create(p + "short", b"s", ttl=1)
            kept = await store.create(p + "kept", b"k")
            made_permanent = await store.create(p + "permanent", b"p0", ttl=1)
            # A later write without a ttl makes the key permanent (etcd: detached from its lease).
            made_permanent = await store.update(
                p + "permanent", b"p1", expected_revision=made_permanent.mod_revision
            )
            await wait_gone(store, p + "short")
            seen = await take(watch, 5)  # three creates, the update, the expiry
            gone = seen[4]
            assert (gone.type, gone.kv.key, gone.kv.value) == (EventType.DELETE, p + "short", b"s")
            assert gone.kv.mod_revision > made_permanent.mod_revision
            assert gone.prev is not None
            assert gone.prev.mod_revision == short.mod_revision
            assert await store.get(p + "kept") == kept
            # Past its first deadline too (created together with "short"), and still there.
            assert await store.get(p + "permanent") == made_permanent
            listed = await store.list(p)
            assert keys(listed.items) == [p + "kept", p + "permanent"]
        finally:
            await watch.aclose()

    backend.run(scenario, watch_buffer=1000)


def test_an_update_with_a_ttl_starts_its_clock_again(backend: Backend) -> None:
    async def scenario(store: Store, p: str) -> None:
        first = await store.create(p + "k", b"1", ttl=1)
        again = await store.update(p + "k", b"2", expected_revision=first.mod_revision, ttl=3600)
        other = await store.create(p + "probe", b"x", ttl=1)
        await wait_gone(store, p + "probe")  # a ttl of 1 s has passed for both by now
        assert other.mod_revision > again.mod_revision
        assert await store.get(p + "k") == again

    backend.run(scenario)
