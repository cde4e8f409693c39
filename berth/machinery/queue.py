"""A deduplicating, keyed work queue with rate-limited requeue — the heart of every control loop.

Concurrency contract (one asyncio loop, any number of worker tasks):

* A key is queued at most once: :meth:`WorkQueue.add` of a key already waiting is a no-op.
* A key is processed by at most one worker at a time. Between :meth:`get` and :meth:`done` the
  key is *processing*; an :meth:`add` meanwhile marks it *dirty* and it is queued again only
  when the worker calls :meth:`done` — so events arriving during a reconcile are never lost and
  never processed concurrently.
* :meth:`add_rate_limited` requeues after an exponential per-key delay
  (``base_delay * 2**failures``, capped at ``max_delay``); :meth:`forget` resets the key's
  failure count after a success. Delays run on the injected :class:`Clock`.
* After :meth:`shutdown`, :meth:`get` returns ``None`` to every waiting and later caller.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from berth.machinery.clock import Clock, Timer
from berth.machinery.prometheus import QUEUE_ADDS, track_queue

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        clock: Clock,
        *,
        base_delay: float = 0.005,
        max_delay: float = 300.0,
        name: str = "",
    ) -> None:
        self.name = name
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._waiting: dict[K, Timer] = {}  # delayed adds, one (the earliest) per key
        self._deadlines: dict[K, float] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutdown = False
        self._adds_key = (("name", name or "unnamed"),)  # workqueue_adds_total's labels
        track_queue(self)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    def add(self, key: K) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        QUEUE_ADDS.values[self._adds_key] += 1
        if key in self._processing:
            return  # re-queued by done()
        self._queue.append(key)
        self._wake()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (keeps the earliest pending)."""
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        deadline = self._clock.monotonic() + delay
        if key in self._waiting and self._deadlines[key] <= deadline:
            return
        if key in self._waiting:
            self._waiting[key].cancel()

        def fire() -> None:
            self._waiting.pop(key, None)
            self._deadlines.pop(key, None)
            self.add(key)

        self._waiting[key] = self._clock.call_later(delay, fire)
        self._deadlines[key] = deadline

    def backoff(self, key: K) -> float:
        """The delay the next :meth:`add_rate_limited` of ``key`` will use."""
        return float(min(self._base * (2 ** self._failures.get(key, 0)), self._max))

    def add_rate_limited(self, key: K) -> None:
        delay = self.backoff(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        self.add_after(key, delay)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K | None:
        """The next key to process (it is *processing* until :meth:`done`), or ``None``
        after shutdown."""
        while not self._queue:
            if self._shutdown:
                return None
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            finally:
                if fut in self._getters:
                    self._getters.remove(fut)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def get_nowait(self) -> K | None:
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def shutdown(self) -> None:
        self._shutdown = True
        for timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self._deadlines.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _wake(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
