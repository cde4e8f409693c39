"""WorkQueue: dedup, one in-flight per key, dirty re-add, rate-limited backoff, forget,
shutdown — all on a fake clock."""

from __future__ import annotations

import asyncio

from berth.machinery.clock import FakeClock
from berth.machinery.queue import WorkQueue


def test_add_deduplicates_waiting_keys() -> None:
    q: WorkQueue[str] = WorkQueue(FakeClock())
    q.add("a")
    q.add("b")
    q.add("a")
    assert len(q) == 2
    assert q.get_nowait() == "a"
    assert q.get_nowait() == "b"
    assert q.get_nowait() is None


def test_key_added_while_processing_is_requeued_only_after_done() -> None:
    q: WorkQueue[str] = WorkQueue(FakeClock())
    q.add("a")
    assert q.get_nowait() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0, "a processing key must not be handed to a second worker"
    q.done("a")
    assert len(q) == 1
    assert q.get_nowait() == "a"
    q.done("a")
    assert len(q) == 0


def test_rate_limited_requeue_backs_off_exponentially_and_forget_resets() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock, base_delay=1.0, max_delay=5.0)
    delays = []
    for _ in range(5):
        delays.append(q.backoff("k"))
        q.add_rate_limited("k")
        clock.advance(delays[-1] - 0.001)
        assert len(q) == 0
        clock.advance(0.001)
        assert q.get_nowait() == "k"
        q.done("k")
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert q.num_requeues("k") == 5
    q.forget("k")
    assert q.backoff("k") == 1.0


def test_add_after_keeps_earliest_deadline() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add_after("k", 10)
    q.add_after("k", 3)
    q.add_after("k", 20)
    clock.advance(3)
    assert q.get_nowait() == "k"
    q.done("k")
    clock.advance(30)
    assert len(q) == 0


def test_get_waits_for_add_and_shutdown_releases_waiters() -> None:
    async def body() -> None:
        q: WorkQueue[str] = WorkQueue(FakeClock())
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        assert not getter.done()
        q.add("x")
        assert await getter == "x"
        waiting = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.shutdown()
        assert await waiting is None
        q.add("y")
        assert await q.get() is None

    asyncio.run(body())


def test_two_workers_never_hold_the_same_key() -> None:
    async def body() -> None:
        q: WorkQueue[str] = WorkQueue(FakeClock())
        active: set[str] = set()
        seen: list[str] = []

        async def worker() -> None:
            while (key := await q.get()) is not None:
                assert key not in active
                active.add(key)
                seen.append(key)
                await asyncio.sleep(0)
                q.add(key if len(seen) < 6 else "done")  # re-add while processing
                active.discard(key)
                q.done(key)
                if key == "done":
                    q.shutdown()

        q.add("a")
        q.add("b")
        await asyncio.wait_for(asyncio.gather(worker(), worker()), 2)
        assert seen.count("a") >= 2
        assert seen.count("b") >= 2

    asyncio.run(body())
