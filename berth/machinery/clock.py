"""Time as a dependency: every delay in the machinery and every timeout in a controller reads
a :class:`Clock`, so tests drive time by hand with :class:`FakeClock`.

Concurrency contract: clocks are used from one asyncio event loop. ``call_later`` callbacks run
on that loop (RealClock: scheduled by the loop; FakeClock: synchronously inside
:meth:`FakeClock.advance`, in deadline order), never concurrently with other loop code.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations)."""
        ...

    def now(self) -> datetime:
        """Wall time, timezone-aware UTC (for timestamps written to objects)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...

    async def sleep(self, delay: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(delay, 0.0), callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))


@dataclass(order=True)
class _FakeTimer:
    deadline: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance` (or :meth:`step`)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._t = 0.0
        self._timers: list[_FakeTimer] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._t

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._t)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer(self._t + max(delay, 0.0), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        timer = self.call_later(delay, wake)
        try:
            await fut
        finally:
            timer.cancel()

    @property
    def pending(self) -> int:
        """Timers still waiting (cancelled ones excluded)."""
        return sum(1 for t in self._timers if not t.cancelled)

    def next_deadline(self) -> float | None:
        live = [t.deadline for t in self._timers if not t.cancelled]
        return min(live) if live else None

    def advance(self, seconds: float) -> None:
        """Move time forward, firing due timers in deadline order (synchronously)."""
        target = self._t + seconds
        while self._timers and self._timers[0].deadline <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._t = max(self._t, timer.deadline)
            timer.callback()
        self._t = target

    async def step(self, seconds: float, *, settle: int = 20) -> None:
        """Let pending tasks run, :meth:`advance`, then let woken tasks run (``settle`` loop
        iterations each side)."""
        for _ in range(settle):
            await asyncio.sleep(0)
        self.advance(seconds)
        for _ in range(settle):
            await asyncio.sleep(0)
