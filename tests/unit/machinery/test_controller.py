"""Controller.process: the one error policy — success forgets, Retry requeues after its
delay, other errors back off exponentially, Permanent waits for the next event."""

from __future__ import annotations

import asyncio

from berth.client.keys import ObjectKey
from berth.machinery.clock import FakeClock
from berth.machinery.controller import Controller, Permanent, Retry
from berth.machinery.queue import WorkQueue

KEY = ObjectKey("ns/a")


class Scripted:
    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def reconcile(self, key: ObjectKey) -> None:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


def rig(
    *outcomes: BaseException | None,
) -> tuple[FakeClock, WorkQueue[ObjectKey], Controller, Scripted]:
    clock = FakeClock()
    queue: WorkQueue[ObjectKey] = WorkQueue(clock, base_delay=1.0, max_delay=60.0)
    rec = Scripted(*outcomes)
    return clock, queue, Controller("test", rec, queue), rec


def test_errors_back_off_exponentially_and_success_forgets() -> None:
    async def body() -> None:
        clock, queue, c, rec = rig(RuntimeError("a"), RuntimeError("b"), None)
        queue.add(KEY)
        assert await c.drain() == 1
        assert queue.num_requeues(KEY) == 1
        clock.advance(0.99)
        assert await c.drain() == 0
        clock.advance(0.01)
        assert await c.drain() == 1  # second failure: 2s
        clock.advance(1.99)
        assert await c.drain() == 0
        clock.advance(0.01)
        assert await c.drain() == 1  # success
        assert queue.num_requeues(KEY) == 0
        assert rec.calls == 3

    asyncio.run(body())


def test_retry_requeues_after_its_delay_without_backoff() -> None:
    async def body() -> None:
        clock, queue, c, rec = rig(Retry(5.0), None)
        queue.add(KEY)
        await c.drain()
        assert queue.num_requeues(KEY) == 0
        clock.advance(4.9)
        assert await c.drain() == 0
        clock.advance(0.1)
        assert await c.drain() == 1
        assert rec.calls == 2

    asyncio.run(body())


def test_permanent_errors_wait_for_the_next_event() -> None:
    async def body() -> None:
        clock, queue, c, rec = rig(Permanent("bad spec"), None)
        queue.add(KEY)
        await c.drain()
        clock.advance(3600)
        assert await c.drain() == 0
        queue.add(KEY)  # the object changed
        assert await c.drain() == 1
        assert rec.calls == 2

    asyncio.run(body())
