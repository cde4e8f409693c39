"""FakeClock: timers fire in deadline order on advance; sleep returns only when time moves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from berth.machinery.clock import FakeClock


def test_fake_clock_fires_timers_in_deadline_order_and_moves_wall_time() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    fired: list[tuple[str, float]] = []
    clock.call_later(5, lambda: fired.append(("b", clock.monotonic())))
    clock.call_later(2, lambda: fired.append(("a", clock.monotonic())))
    t = clock.call_later(3, lambda: fired.append(("x", clock.monotonic())))
    t.cancel()
    clock.advance(4)
    assert fired == [("a", 2.0)]
    clock.advance(10)
    assert fired == [("a", 2.0), ("b", 5.0)]
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=14)


def test_fake_sleep_returns_only_after_advance() -> None:
    async def body() -> None:
        clock = FakeClock()
        task = asyncio.create_task(clock.sleep(30))
        await clock.step(29)
        assert not task.done()
        await clock.step(1)
        assert task.done()

    asyncio.run(body())
