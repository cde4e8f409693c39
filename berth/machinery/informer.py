"""Informers: a list + watch of one resource feeding a shared, read-only cache and handlers.

Concurrency contract:

* One task (:meth:`Informer.run`) owns the cache and is its only writer. Readers on the same
  loop (:meth:`get`, :meth:`list`, :meth:`by_index`) see a consistent snapshot because every
  update happens without an ``await`` in between.
* Cached objects are frozen (:func:`berth.machinery.objects.freeze`): nobody can mutate the
  shared cache; use :func:`~berth.machinery.objects.thaw_obj` to build a write.
* Handlers run synchronously on the informer task, in event order, after the cache is
  updated. They must not block: they only enqueue keys. An exception in a handler is logged
  and does not stop the informer.
* The watch resumes from the last seen resourceVersion when a stream ends; an ERROR 410
  (or :class:`~berth.client.errors.Gone`) makes it relist, and the relist reports deletions
  it missed as ``on_delete`` of the last known state. Other errors back off on the clock.
* A watch that delivers nothing, not even the BOOKMARK the server sends a quiet watch every
  :data:`~berth.api.watch.BOOKMARK_INTERVAL`, for ``watch_silence_limit`` seconds of the
  clock is taken for dead (a peer gone without closing the connection, e.g. behind the node's
  berth-lb) and replaced at once by a new watch from the last seen resourceVersion. client-go
  gets the same from HTTP/2 health-check pings; this client speaks HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.resources import ResourceDef
from berth.api.watch import SILENCE_LIMIT
from berth.client import errors
from berth.client.interface import ApiClient, WatchEvent
from berth.client.keys import ObjectKey
from berth.machinery.clock import Clock
from berth.machinery.objects import Frozen, cache_view, key_of, meta
from berth.machinery.silence import SilenceWatchdog, Silent

log = logging.getLogger(__name__)

IndexFunc = Callable[[Frozen], Iterable[str]]
Transform = Callable[[Mapping[str, Any]], Frozen]
"""Turns an object from the API into what the cache keeps (client-go's SetTransform)."""


@dataclass(frozen=True, slots=True)
class Handlers:
    on_add: Callable[[Frozen], None] | None = None
    on_update: Callable[[Frozen, Frozen], None] | None = None
    on_delete: Callable[[Frozen], None] | None = None


def _namespace_index(obj: Frozen) -> builtins.list[str]:
    return [str(meta(obj).get("namespace") or "")]


class Informer:
    def __init__(
        self,
        client: ApiClient,
        resource: ResourceDef,
        *,
        clock: Clock,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        watch_silence_limit: float = SILENCE_LIMIT,
        transform: Transform = cache_view,
    ) -> None:
        self.client = client
        self._transform = transform
        self.resource = resource
        self._clock = clock
        self._namespace = namespace
        self._label = label_selector
        self._fields = field_selector
        self._resync = resync_period
        self._watch_timeout = watch_timeout
        self._silence_limit = watch_silence_limit
        self._items: dict[ObjectKey, Frozen] = {}
        self._indexers: dict[str, IndexFunc] = {
            "namespace": lambda o: [meta(o).get("namespace") or ""]
        }
        self._indices: dict[str, dict[str, set[ObjectKey]]] = {"namespace": {}}
        self._handlers: list[Handlers] = []
        self._synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0
        self._failures = 0
        """Failed watches (or lists) in a row, for the backoff; an event resets it."""
        self.silent_watches = 0
        """Watches abandoned because they went silent (see the module docstring)."""

    # ---- reading ------------------------------------------------------------------------
    def get(self, key: str) -> Frozen | None:
        return self._items.get(ObjectKey(key))

    def list(self, namespace: str | None = None) -> builtins.list[Frozen]:
        if namespace is None:
            return list(self._items.values())
        return self.by_index("namespace", namespace)

    def keys(self) -> builtins.list[ObjectKey]:
        return list(self._items)

    def by_index(self, index: str, value: str) -> builtins.list[Frozen]:
        return [self._items[k] for k in self._indices[index].get(value, ())]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # ---- configuration ------------------------------------------------------------------
    def add_index(self, index: str, func: IndexFunc) -> None:
        """Maintain an index; adding a name that already exists keeps the first (shared
        informers get the same index from several controllers)."""
        if index in self._indexers:
            return
        self._indexers[index] = func
        table: dict[str, set[ObjectKey]] = {}
        for key, obj in self._items.items():
            for value in func(obj):
                table.setdefault(value, set()).add(key)
        self._indices[index] = table

    def add_handlers(self, handlers: Handlers) -> None:
        """Register handlers; objects already cached are delivered as adds at once."""
        self._handlers.append(handlers)
        if handlers.on_add:
            for obj in list(self._items.values()):
                self._call(handlers.on_add, obj)

    # ---- feeding (run() uses these; unit tests may call them directly) -----------------
    def replace(self, items: Iterable[Frozen | dict[str, object]], resource_version: str) -> None:
        """Replace the cache with a fresh list, dispatching adds, updates and deletions."""
        fresh = {key_of(o): self._transform(o) for o in items}
        for key in [k for k in self._items if k not in fresh]:
            gone = self._remove(key)
            if gone is not None:
                self._dispatch("delete", gone, gone)
        for key, obj in fresh.items():
            old = self._items.get(key)
            self._store(key, obj)
            if old is None:
                self._dispatch("add", obj, obj)
            else:
                self._dispatch("update", old, obj)
        self.resource_version = resource_version
        self._synced.set()

    def apply(self, event: WatchEvent) -> None:
        obj = self._transform(event.object)
        rv = meta(obj).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if event.type == "BOOKMARK":
            return
        key = key_of(obj)
        if event.type == "DELETED":
            old = self._remove(key)
            self._dispatch("delete", old if old is not None else obj, obj)
            return
        old = self._items.get(key)
        self._store(key, obj)
        if old is None:
            self._dispatch("add", obj, obj)
        else:
            self._dispatch("update", old, obj)

    def resync(self) -> None:
        for obj in list(self._items.values()):
            self._dispatch("update", obj, obj)

    def _store(self, key: ObjectKey, obj: Frozen) -> None:
        if key in self._items:
            self._unindex(key, self._items[key])
        self._items[key] = obj
        for index, func in self._indexers.items():
            for value in func(obj):
                self._indices[index].setdefault(value, set()).add(key)

    def _remove(self, key: ObjectKey) -> Frozen | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: ObjectKey, obj: Frozen) -> None:
        for index, func in self._indexers.items():
            for value in func(obj):
                bucket = self._indices[index].get(value)
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del self._indices[index][value]

    def _dispatch(self, kind: str, old: Frozen | None, new: Frozen) -> None:
        for h in self._handlers:
            if kind == "add" and h.on_add:
                self._call(h.on_add, new)
            elif kind == "update" and h.on_update and old is not None:
                self._call(h.on_update, old, new)
            elif kind == "delete" and h.on_delete and old is not None:
                self._call(h.on_delete, old)

    def _call(self, fn: Callable[..., None], *args: Frozen) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s informer: event handler failed", self.resource.plural)

    # ---- running ------------------------------------------------------------------------
    async def relist(self) -> None:
        result = await self.client.list(
            self.resource,
            namespace=self._namespace,
            label_selector=self._label,
            field_selector=self._fields,
        )
        self.relists += 1
        self.replace(result.items, result.resource_version)

    async def run(self) -> None:
        """List, then watch forever (until cancelled)."""
        resync_task = asyncio.create_task(self._resync_loop()) if self._resync else None
        self._failures = 0
        need_list = True
        try:
            while True:
                try:
                    if need_list:
                        await self.relist()
                        need_list = False
                    need_list = await self._follow_watch()
                except Silent as silence:
                    self.silent_watches += 1
                    log.warning(
                        "%s informer: watch went silent (%s); watching again from %s",
                        self.resource.plural,
                        silence,
                        self.resource_version,
                    )
                except errors.Gone:
                    need_list = True
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failures += 1
                    delay = min(0.2 * (2 ** min(self._failures, 6)), 10.0)
                    log.warning(
                        "%s informer: %s; retrying in %.1fs", self.resource.plural, exc, delay
                    )
                    await self._clock.sleep(delay)
                    if self._failures > 3:
                        need_list = True
        finally:
            if resync_task is not None:
                resync_task.cancel()

    async def _follow_watch(self) -> bool:
        """Apply one watch stream's events until it ends; True when it ended asking for a
        relist (410). Raises :class:`Silent` when it went quiet for the silence limit."""
        watchdog = SilenceWatchdog(self._clock, self._silence_limit)
        async with watchdog:
            async for event in self.client.watch(
                self.resource,
                namespace=self._namespace,
                resource_version=self.resource_version,
                label_selector=self._label,
                field_selector=self._fields,
                timeout_seconds=self._watch_timeout,
            ):
                watchdog.heard()
                if event.type == "ERROR":
                    code = int(event.object.get("code") or 0)
                    if code == 410:
                        return True
                    raise errors.from_status(code or 500, event.object)
                self.apply(event)
                self._failures = 0
        return False

    async def _resync_loop(self) -> None:
        assert self._resync is not None
        while True:
            await self._clock.sleep(self._resync)
            self.resync()


class InformerFactory:
    """Shares one informer per (resource, namespace, selectors) between controllers."""

    def __init__(
        self,
        client: ApiClient,
        *,
        clock: Clock,
        resync_period: float | None = None,
        transform: Transform = cache_view,
    ):
        self.client = client
        self._transform = transform
        self.clock = clock
        self._resync = resync_period
        self._informers: dict[tuple[str, str | None, str | None, str | None], Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def informer(
        self,
        resource: ResourceDef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Informer:
        ident = (resource.group_resource, namespace, label_selector, field_selector)
        if ident not in self._informers:
            self._informers[ident] = Informer(
                self.client,
                resource,
                clock=self.clock,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                resync_period=self._resync,
                transform=self._transform,
            )
        return self._informers[ident]

    def all(self) -> list[Informer]:
        return list(self._informers.values())

    def start(self) -> None:
        # Informers are only ever appended, so the first len(tasks) are already running.
        running = len(self._tasks)
        for inf in list(self._informers.values())[running:]:
            self._tasks.append(
                asyncio.create_task(inf.run(), name=f"informer-{inf.resource.plural}")
            )

    async def wait_for_sync(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
