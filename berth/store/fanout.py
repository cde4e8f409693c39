"""In-process watch fan-out shared by the stores that own their write path (memory, SQLite).

A writer publishes each committed event once; the :class:`Broadcaster` copies it into the
bounded buffer of every subscription whose prefix matches. A subscription whose buffer is full
is dropped on the spot (marked overflowed) instead of making the writer wait: one slow watcher
must never slow down writes or hold memory without bound.

:class:`LogWatch` turns "history from the log, then live events" into one ordered stream:

1. replay history from the store's log in pages while it is far behind;
2. once a page comes back short, subscribe to live events and read the log once more to close
   the gap between the last page and the subscription;
3. serve live events, skipping any revision already delivered (the gap read and the live
   buffer may overlap; a revision is delivered at most once and always in increasing order).

Nothing here blocks the event loop or polls: the only waits are on an :class:`asyncio.Event`
set by ``publish``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from berth.store.interface import Event, WatchOverflow

DEFAULT_WATCH_BUFFER = 1000
"""Live events a watcher may have pending before it is dropped (kine uses 100, etcd 1024)."""

HISTORY_PAGE = 500

ReadHistory = Callable[[str, int, int], Awaitable[list[Event]]]
"""``(prefix, after_revision, limit)`` -> events under prefix with revision > after, in order,
at most ``limit`` (0 = all); raises ``Compacted`` when ``after_revision`` was compacted."""


class Subscription:
    """One watcher's bounded buffer of live events."""

    def __init__(self, prefix: str, capacity: int) -> None:
        self.prefix = prefix
        self.capacity = capacity
        self.events: deque[Event] = deque()
        self.overflowed = False
        self.closed = False
        self.wakeup = asyncio.Event()

    def offer(self, event: Event) -> bool:
        """Buffer ``event``; return False (and mark overflow) when the buffer is full."""
        if len(self.events) >= self.capacity:
            self.overflowed = True
            self.wakeup.set()
            return False
        self.events.append(event)
        self.wakeup.set()
        return True


class Broadcaster:
    """Fans committed events out to subscriptions, grouped by prefix."""

    def __init__(self, capacity: int = DEFAULT_WATCH_BUFFER) -> None:
        if capacity < 1:
            raise ValueError("watch buffer capacity must be at least 1")
        self.capacity = capacity
        self._by_prefix: dict[str, set[Subscription]] = {}
        self._closed = False

    def subscribe(self, prefix: str) -> Subscription:
        sub = Subscription(prefix, self.capacity)
        if self._closed:
            sub.closed = True
        else:
            self._by_prefix.setdefault(prefix, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_prefix.get(sub.prefix)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_prefix[sub.prefix]

    def publish(self, events: Iterable[Event]) -> None:
        """Deliver committed events, which must arrive in revision order."""
        for event in events:
            key = event.kv.key
            for prefix, subs in list(self._by_prefix.items()):
                if not key.startswith(prefix):
                    continue
                dropped = [sub for sub in subs if not sub.offer(event)]
                for sub in dropped:
                    self.unsubscribe(sub)

    def close(self) -> None:
        """End every subscription (their watches stop iterating)."""
        self._closed = True
        for subs in self._by_prefix.values():
            for sub in subs:
                sub.closed = True
                sub.wakeup.set()
        self._by_prefix.clear()

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._by_prefix.values())


class LogWatch:
    """A :class:`~berth.store.interface.Watch` over a log reader and a broadcaster."""

    def __init__(
        self,
        *,
        prefix: str,
        revision: int,
        read_history: ReadHistory,
        broadcaster: Broadcaster,
        page: int = HISTORY_PAGE,
    ) -> None:
        self._prefix = prefix
        self._delivered = revision  # highest revision handed out (or the start point)
        self._read_history = read_history
        self._broadcaster = broadcaster
        self._page = page
        self._pending: deque[Event] = deque()
        self._sub: Subscription | None = None
        self._closed = False

    def __aiter__(self) -> LogWatch:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            while self._pending:
                event = self._pending.popleft()
                if event.kv.mod_revision > self._delivered:
                    self._delivered = event.kv.mod_revision
                    return event
            if self._sub is None:
                await self._catch_up()
                continue
            sub = self._sub
            if sub.events:
                self._pending.extend(sub.events)
                sub.events.clear()
                continue
            if sub.overflowed:
                await self.aclose()
                raise WatchOverflow(self._prefix, self._delivered)
            if sub.closed:
                await self.aclose()
                raise StopAsyncIteration
            sub.wakeup.clear()
            await sub.wakeup.wait()

    async def _catch_up(self) -> None:
        events = await self._read_history(self._prefix, self._delivered, self._page)
        if len(events) >= self._page:
            self._pending.extend(events)
            return
        # Close to the head: subscribe first, then read again, so that no event committed
        # between the short page and the subscription is lost (duplicates are skipped).
        sub = self._broadcaster.subscribe(self._prefix)
        try:
            events = await self._read_history(self._prefix, self._delivered, 0)
        except BaseException:
            self._broadcaster.unsubscribe(sub)
            raise
        self._sub = sub
        self._pending.extend(events)

    async def aclose(self) -> None:
        self._closed = True
        self._pending.clear()
        if self._sub is not None:
            self._broadcaster.unsubscribe(self._sub)
            self._sub.events.clear()
            self._sub.wakeup.set()  # a task waiting in __anext__ wakes up and stops
