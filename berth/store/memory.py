"""An in-memory :class:`~berth.store.interface.Store` with full MVCC, for tests and tools.

Same semantics as the durable stores (revisions, CAS, history, compaction, bounded watch
buffers) and passes the same conformance suite, but nothing survives the process. Every
method runs on the event loop without awaiting anything else, so each write is atomic with
respect to other coroutines.

Keys written with a ``ttl`` go on one heap of (deadline, key, revision); one task, started at
the first such write, deletes those whose deadline passed and whose revision is still current.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import contextlib
import heapq
import time
from dataclasses import dataclass, field

from berth.store.fanout import DEFAULT_WATCH_BUFFER, Broadcaster, LogWatch
from berth.store.interface import (
    Compacted,
    Conflict,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    StoreError,
    Watch,
)


@dataclass(slots=True)
class _History:
    """Versions of one key, oldest first; ``None`` marks a deletion."""

    revisions: list[int] = field(default_factory=list)
    values: list[KeyValue | None] = field(default_factory=list)

    def at(self, revision: int) -> KeyValue | None:
        i = bisect.bisect_right(self.revisions, revision)
        return self.values[i - 1] if i else None

    @property
    def latest(self) -> KeyValue | None:
        return self.values[-1] if self.values else None


class MemoryStore:
    """In-memory store. ``MemoryStore(watch_buffer=1000)``; ``expiry_interval``: seconds
    between sweeps for keys whose ``ttl`` has passed."""

    def __init__(
        self, *, watch_buffer: int = DEFAULT_WATCH_BUFFER, expiry_interval: float = 1.0
    ) -> None:
        self._revision = 1
        self._compacted = 0  # nothing compacted yet (etcd also reports 0)
        self._keys: list[str] = []  # sorted; every key that has history
        self._history: dict[str, _History] = {}
        self._log: list[Event] = []  # events with revision > _compacted, in order
        self._broadcaster = Broadcaster(watch_buffer)
        self._closed = False
        self._expiry_interval = expiry_interval
        self._expiring: list[tuple[float, str, int]] = []  # heap: (deadline, key, revision)
        self._sweeper: asyncio.Task[None] | None = None

    # -- reads ---------------------------------------------------------------------------

    async def current_revision(self) -> int:
        return self._revision

    async def get(self, key: str) -> KeyValue | None:
        history = self._history.get(key)
        return history.latest if history else None

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        at = self._check_revision(revision)
        start = max(prefix, start_after)
        i = bisect.bisect_left(self._keys, start)
        items: list[KeyValue] = []
        more = False
        while i < len(self._keys):
            key = self._keys[i]
            i += 1
            if not key.startswith(prefix):
                break
            if key <= start_after:
                continue
            kv = self._history[key].at(at)
            if kv is None:
                continue
            if limit and len(items) == limit:
                more = True
                break
            items.append(kv)
        return ListResult(items=items, revision=at, more=more)

    def _check_revision(self, revision: int) -> int:
        if revision == 0:
            return self._revision
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)
        return revision

    # -- writes --------------------------------------------------------------------------

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        self._check_open()
        if self._current(key) is not None:
            raise KeyExists(key)
        rev = self._revision + 1
        kv = KeyValue(key=key, value=value, create_revision=rev, mod_revision=rev)
        self._commit(Event(EventType.PUT, kv, None))
        self._expire_later(kv, ttl)
        return kv

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int = 0
    ) -> KeyValue:
        self._check_open()
        current = self._current(key)
        if current is None:
            raise KeyNotFound(key)
        if current.mod_revision != expected_revision:
            raise Conflict(key, current)
        kv = KeyValue(key, value, current.create_revision, self._revision + 1)
        self._commit(Event(EventType.PUT, kv, current))
        self._expire_later(kv, ttl)
        return kv

    def _expire_later(self, kv: KeyValue, ttl: int) -> None:
        # A write without a ttl needs nothing here: the entry of an older version no longer
        # matches the key's revision when it comes due, and is dropped.
        if ttl <= 0:
            return
        heapq.heappush(self._expiring, (time.time() + ttl, kv.key, kv.mod_revision))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._expiry_interval)
            self.expire_due(time.time())

    def expire_due(self, now: float) -> int:
        """Delete every key whose ttl ran out by ``now`` and that was not written since;
        returns how many were deleted."""
        deleted = 0
        while self._expiring and self._expiring[0][0] <= now and not self._closed:
            _, key, revision = heapq.heappop(self._expiring)
            current = self._current(key)
            if current is not None and current.mod_revision == revision:
                kv = KeyValue(key, current.value, current.create_revision, self._revision + 1)
                self._commit(Event(EventType.DELETE, kv, current))
                deleted += 1
        return deleted

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        self._check_open()
        current = self._current(key)
        if current is None:
            raise KeyNotFound(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise Conflict(key, current)
        kv = KeyValue(key, current.value, current.create_revision, self._revision + 1)
        self._commit(Event(EventType.DELETE, kv, current))
        return kv

    def _current(self, key: str) -> KeyValue | None:
        history = self._history.get(key)
        return history.latest if history else None

    def _commit(self, event: Event) -> None:
        key = event.kv.key
        self._revision = event.kv.mod_revision
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = _History()
            bisect.insort(self._keys, key)
        history.revisions.append(self._revision)
        history.values.append(None if event.type is EventType.DELETE else event.kv)
        self._log.append(event)
        self._broadcaster.publish((event,))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    # -- watch and compaction ------------------------------------------------------------

    def watch(self, prefix: str, *, revision: int) -> Watch:
        return LogWatch(
            prefix=prefix,
            revision=revision,
            read_history=self._read_history,
            broadcaster=self._broadcaster,
        )

    @property
    def _log_base(self) -> int:
        """Revision just before the first event in ``_log`` (revision 1 has no event)."""
        return max(self._compacted, 1)

    async def _read_history(self, prefix: str, after: int, limit: int) -> builtins.list[Event]:
        if after < self._compacted:
            raise Compacted(after, self._compacted)
        # The log holds exactly one event per revision after _log_base.
        start = max(0, after - self._log_base)
        out: builtins.list[Event] = []
        for event in self._log[start:]:
            if event.kv.key.startswith(prefix):
                out.append(event)
                if limit and len(out) == limit:
                    break
        return out

    async def compact(self, revision: int) -> None:
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)
        if revision <= self._compacted:
            return
        del self._log[: revision - self._log_base]
        self._compacted = revision
        for history in self._history.values():
            # Keep the newest version at or before the compaction point (it is still the
            # key's value as of that revision) and everything after it.
            i = bisect.bisect_right(history.revisions, revision)
            if i == 0:
                continue
            keep_from = i - 1 if history.values[i - 1] is not None else i
            del history.revisions[:keep_from]
            del history.values[:keep_from]
        for key in [k for k, h in self._history.items() if not h.revisions]:
            del self._history[key]
            self._keys.pop(bisect.bisect_left(self._keys, key))

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self._broadcaster.close()
