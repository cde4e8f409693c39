"""Watch fan-out: one store watch for the whole server, decoded once, shared by every client.

The hub follows ``/registry/`` from the store, decodes each event once and keeps the most
recent ones in a ring so that a client can resume from any resourceVersion the ring still
covers. The ring holds the store's events as they came (JSON bytes), not decoded: a decoded
object takes several times its JSON in Python objects, and a ring full of decoded pods (each
with its previous state) was the largest part of what the API server grew by with 100 pods per
node (bench/footprint.py). A resuming client's backlog is decoded when it subscribes, only the
events under its prefix.

Each client watch is a :class:`Subscriber` with a bounded queue: a client that cannot keep up
is cut off (its stream ends, and the client relists) instead of holding memory or
slowing anyone else. A resume point older than the ring is served from the store's own log;
one older than the store's compaction point is ``410 Expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from berth.api.meta import Obj
from berth.store.interface import Compacted, Event, EventType, Store, StoreError, WatchOverflow

from .codec import Codec, CodecError

log = logging.getLogger(__name__)

ROOT_PREFIX = "/registry/"
MAX_WRITTEN = 1024
"""Bound on the objects :meth:`WatchHub.written` holds for events not yet dispatched."""


@dataclass(slots=True)
class ObjEvent:
    """A decoded store event. ``obj`` is the new object (the last state for deletes)."""

    revision: int
    key: str
    deleted: bool
    obj: Obj
    prev: Obj | None
    _json: dict[str, bytes] = field(default_factory=dict)


class Subscriber:
    """One client watch's bounded queue of events under ``prefix``."""

    def __init__(self, prefix: str, after: int, capacity: int) -> None:
        self.prefix = prefix
        self.after = after
        self.capacity = capacity
        self.queue: deque[ObjEvent] = deque()
        self.overflowed = False
        self.closed = False
        self.wakeup = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    def offer(self, ev: ObjEvent) -> None:
        if ev.revision <= self.after or not ev.key.startswith(self.prefix):
            return
        if len(self.queue) >= self.capacity:
            self.overflowed = True
        else:
            self.queue.append(ev)
        self.wakeup.set()

    async def next_batch(self, until: float) -> list[ObjEvent]:
        """Events queued so far, waiting until loop time ``until`` for the first.

        One timer per subscriber, kept while ``until`` stays the same: with thousands of
        watchers, a fresh timer per wait would cost more than the events themselves.
        """
        if not self.queue and not self.overflowed and not self.closed:
            loop = asyncio.get_running_loop()
            if until > loop.time():
                if self._timer is None or self._timer_when != until:
                    if self._timer is not None:
                        self._timer.cancel()
                    self._timer = loop.call_at(until, self.wakeup.set)
                    self._timer_when = until
                self.wakeup.clear()
                await self.wakeup.wait()
        batch = list(self.queue)
        self.queue.clear()
        return batch

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


RING_BYTES = 4 << 20
"""The most the ring holds in values (objects and their previous states, as JSON): with pods
of ~8 KiB each (managedFields) 4096 events would be ~64 MiB; past this, the oldest go and a
resume from before them is read from the store's log. A watch resumes from the last event its
client saw, almost always among the newest few hundred: 4 MiB (500-1000 pod events) serves
those from memory, where 16 MiB cost the API server 12 MiB of RSS once a cluster of 300 pods
had churned enough to fill it (bench/footprint.py)."""


def _held_bytes(event: Event) -> int:
    return len(event.kv.value) + (len(event.prev.value) if event.prev is not None else 0)


class WatchHub:
    """Server-wide event fan-out with a resumable ring of recent events."""

    def __init__(
        self,
        store: Store,
        codec: Codec,
        *,
        ring_size: int = 4096,  # older resume points are served from the store log
        ring_bytes: int = RING_BYTES,
        subscriber_capacity: int = 2000,
    ) -> None:
        self.store = store
        self.codec = codec
        self.ring: deque[Event] = deque()  # raw: see the module docstring
        self.ring_size = ring_size
        self.ring_bytes = ring_bytes
        self._held = 0  # bytes of the values in the ring
        self.subscriber_capacity = subscriber_capacity
        self.floor = 0  # every event with revision > floor is in the ring
        self.latest = 0  # highest revision seen
        self.subscribers: set[Subscriber] = set()
        self.listeners: list[Callable[[ObjEvent], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._seen = asyncio.Event()
        # key -> (revision, object) of creates this server just stored (see :meth:`written`)
        self._written: dict[str, tuple[int, Obj]] = {}

    async def start(self, after: int | None = None) -> None:
        """Follow the store from revision ``after`` (default: now); events after it reach
        the listeners and the ring (the server's caches were read at ``after``)."""
        rev = await self.store.current_revision() if after is None else after
        self.floor = self.latest = rev
        self._task = asyncio.create_task(self._follow(rev), name="watch-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in list(self.subscribers):
            sub.closed = True
            sub.wakeup.set()

    async def _follow(self, rev: int) -> None:
        """Follow the store for the server's lifetime; never give up silently."""
        while True:
            watch = self.store.watch(ROOT_PREFIX, revision=rev)
            try:
                async for event in watch:
                    self._dispatch(event)
                    rev = event.kv.mod_revision
                return  # the store closed: the server is stopping
            except WatchOverflow as exc:
                # The hub fell behind the store's live buffer: resume from its log, lossless.
                rev = exc.revision
            except Compacted:
                # History the hub never saw is gone: restart at the head; clients resuming
                # from before it get 410 and relist.
                rev = await self.store.current_revision()
                self.floor = max(self.floor, rev)
                self.ring.clear()
                self._held = 0
                log.warning("watch hub lost history; continuing from revision %d", rev)
            except StoreError:
                log.exception("watch hub: store watch failed; retrying")
                await asyncio.sleep(1.0)
            finally:
                await watch.aclose()

    def written(self, key: str, revision: int, obj: Obj) -> None:
        """This server stored ``obj`` under ``key`` at ``revision`` (a create: no previous
        value), and nothing will change ``obj`` any more: its event takes ``obj`` instead of
        decoding the bytes just encoded from it (a pod create's largest single cost after
        its validation). Only for objects whose stored bytes are exactly their JSON, with
        ``metadata.resourceVersion`` set to ``revision``, and that nobody mutates: the
        registry hands over the object of an API create it then only serializes.

        An event already dispatched (the store's watch was faster) is not waited for; an
        entry whose event never comes (history compacted) is dropped with the rest once
        :data:`MAX_WRITTEN` are held."""
        if revision <= self.latest:
            return
        if len(self._written) >= MAX_WRITTEN:
            self._written.clear()
        self._written[key] = (revision, obj)

    def decode_event(self, event: Event) -> ObjEvent | None:
        mine = self._written.pop(event.kv.key, None) if self._written else None
        if (
            mine is not None
            and mine[0] == event.kv.mod_revision
            and event.prev is None
            and event.type is EventType.PUT
        ):
            return ObjEvent(
                revision=event.kv.mod_revision,
                key=event.kv.key,
                deleted=False,
                obj=mine[1],
                prev=None,
            )
        try:
            obj = self.codec.decode(event.kv)
            prev = self.codec.decode(event.prev) if event.prev is not None else None
        except CodecError:
            log.exception("cannot decode event for %s", event.kv.key)
            return None
        return ObjEvent(
            revision=event.kv.mod_revision,
            key=event.kv.key,
            deleted=event.type is EventType.DELETE,
            obj=obj,
            prev=prev,
        )

    def _dispatch(self, event: Event) -> None:
        ev = self.decode_event(event)
        self.latest = max(self.latest, event.kv.mod_revision)
        if ev is None:
            return
        self.ring.append(event)
        self._held += _held_bytes(event)
        while len(self.ring) > self.ring_size or (
            self._held > self.ring_bytes and len(self.ring) > 1
        ):
            dropped = self.ring.popleft()
            self._held -= _held_bytes(dropped)
            self.floor = dropped.kv.mod_revision
        for listener in self.listeners:
            try:
                listener(ev)
            except Exception:
                log.exception("watch listener failed")
        for sub in self.subscribers:
            sub.offer(ev)

    def subscribe(self, prefix: str, after: int) -> Subscriber | None:
        """A subscriber receiving events with revision > ``after``; ``None`` when the ring no
        longer covers ``after`` (the caller then reads the store's log)."""
        if after < self.floor:
            return None
        sub = Subscriber(prefix, after, self.subscriber_capacity)
        backlog: list[Event] = []
        for raw in reversed(self.ring):  # usually only the newest few are wanted
            if raw.kv.mod_revision <= after:
                break
            if raw.kv.key.startswith(prefix):
                backlog.append(raw)
        # Oldest first; one past the queue's capacity is enough to overflow it, as the live
        # path would: no need to decode the rest.
        for raw in backlog[::-1][: self.subscriber_capacity + 1]:
            ev = self.decode_event(raw)
            if ev is not None:
                sub.offer(ev)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        sub.cancel_timer()
