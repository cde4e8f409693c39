"""A watchdog on the machinery's :class:`~berth.machinery.clock.Clock` for a stream that may
go silent without ending (a peer gone without closing its connection).

Example::

    watchdog = SilenceWatchdog(clock, limit=130.0)
    try:
        async with watchdog:
            async for event in stream:
                watchdog.heard()
                ...
    except Silent:
        ...  # nothing arrived for 130 s: open a new stream

Concurrency contract: used by one task, on one event loop. When the limit passes, the clock's
timer callback cancels that task; leaving the block turns that one cancellation (and only that
one: a cancel from elsewhere still propagates) into :class:`Silent`, as ``asyncio.timeout``
does with loop time.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from berth.machinery.clock import Clock, Timer


class Silent(Exception):
    """Nothing was heard for :attr:`SilenceWatchdog.limit` seconds."""


class SilenceWatchdog:
    def __init__(self, clock: Clock, limit: float) -> None:
        self.limit = limit
        self._clock = clock
        self._last = 0.0
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._timer: Timer | None = None
        self.expired = False

    def heard(self) -> None:
        """Something arrived: the silence starts again from now. (Cheap on purpose: a
        timestamp, no timer rescheduled per event.)"""
        self._last = self._clock.monotonic()

    async def __aenter__(self) -> SilenceWatchdog:
        task = asyncio.current_task()
        assert task is not None, "SilenceWatchdog is used inside a task"
        self._task = task
        self._cancelling = task.cancelling()
        self.expired = False
        self._last = self._clock.monotonic()
        self._timer = self._clock.call_later(self.limit, self._check)
        return self

    def _check(self) -> None:
        silent = self._clock.monotonic() - self._last
        if silent < self.limit:
            self._timer = self._clock.call_later(self.limit - silent, self._check)
            return
        self._timer = None
        self.expired = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.expired:
            return
        assert self._task is not None
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise Silent(f"nothing heard for {self.limit:.0f}s") from None
