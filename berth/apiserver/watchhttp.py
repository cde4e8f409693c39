"""Serving one watch request: the initial state, then events as chunked JSON lines.

Events come from the server's :class:`~berth.apiserver.watch.WatchHub` (or the store's log
for resume points older than the hub's ring), are filtered per watcher with selector-aware
transitions (leaving the selector is ``DELETED``, entering is ``ADDED``), rendered as plain
objects or one-row Tables, and written in batches. Bookmarks only when asked; ``410
Expired`` as an ``ERROR`` event when the resume point is compacted away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.api.selectors import FieldSelector, LabelSelector
from berth.store.interface import Compacted, Event, Watch, WatchOverflow

from .errors import bad_request, status_body, too_large_resource_version
from .metrics import Metrics
from .options import ListOptions
from .params import parse_bool, parse_int, table_version
from .selectors import parse_field_selector
from .tables import Printer, to_table
from .watch import ObjEvent, Subscriber
from .watchlist import INITIAL_EVENTS_END, list_options

if TYPE_CHECKING:
    from .app import ApiServer

JSON = "application/json"
log = logging.getLogger(__name__)


async def serve_watch(
    server: ApiServer,
    request: web.Request,
    rd: ResourceDef,
    *,
    namespace: str,
    name: str,
    label: LabelSelector,
    field: FieldSelector,
    printer: Printer,
    convert: Callable[[ResourceDef, Obj], Obj] | None = None,
) -> web.StreamResponse:
    """Stream watch events for ``rd`` in ``namespace`` (all namespaces when empty);
    ``printer`` renders them when the client asks for Tables; ``convert`` turns stored
    objects into ``rd``'s version (custom resources)."""
    q = request.query
    timeout = parse_int(q.get("timeoutSeconds"), "timeoutSeconds", minimum=0)
    if not timeout:
        timeout = int(1800 * (1 + random.random()))  # noqa: S311 (spread, not security)
    bookmarks = parse_bool(q.get("allowWatchBookmarks"), "allowWatchBookmarks")
    rv = q.get("resourceVersion", "")
    accept = request.headers.get("Accept", "")
    tv = table_version(accept)
    include = q.get("includeObject", "Metadata")
    prefix = rd.key_prefix(namespace)
    if name:
        field = parse_field_selector(f"metadata.name={name}", {})
    send_initial = list_options(q, watch=True).send_initial_events
    initial: list[Obj] = []
    if send_initial is False:  # watch-list without the list: from rv, or from now
        start_rev = _revision(rv) if rv not in ("", "0") else await server.store.current_revision()
    elif send_initial or rv in ("", "0"):
        if send_initial and rv not in ("", "0"):  # a state at least as new as rv
            current = await server.store.current_revision()
            if _revision(rv) > current:
                raise too_large_resource_version(_revision(rv), current)
        page = await server.registry.list_objects(
            rd, namespace, ListOptions(label=label, field=field)
        )
        start_rev = page.revision
        initial = page.items
    else:
        start_rev = _revision(rv)
    source = EventSource(server, prefix, start_rev)
    resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    server.metrics.watchers[rd.plural] += 1
    writer = WatchWriter(
        resp,
        rd=rd,
        label=label,
        field=field,
        table_version=tv,
        include=include,
        metrics=server.metrics,
        printer=printer,
        convert=convert,
    )
    try:
        try:
            await source.open()
        except Compacted as exc:
            await writer.error(
                status_body(
                    410,
                    "Expired",
                    f"too old resource version: {exc.requested} ({exc.compacted})",
                )
            )
            return resp
        for obj in initial:
            writer.add("ADDED", obj)
        if send_initial and bookmarks:  # the state is complete: upstream's watch-list marker
            writer.bookmark(start_rev, initial_events_end=True)
        await writer.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        bookmark_every = server.config.watch_bookmark_interval
        next_bookmark = loop.time() + bookmark_every
        while not server.stopping.is_set():
            now_t = loop.time()
            if now_t >= deadline:
                break
            wake_at = min(deadline, next_bookmark) if bookmarks else deadline
            try:
                batch = await source.next_batch(wake_at)
            except WatchOverflow:
                break  # too slow: end the stream; the client relists
            except Compacted as exc:
                await writer.error(
                    status_body(
                        410,
                        "Expired",
                        f"too old resource version: {exc.requested} ({exc.compacted})",
                    )
                )
                break
            for ev in batch:
                writer.event(ev)
            if batch:
                await writer.flush()
            if source.overflowed:
                break
            if bookmarks and loop.time() >= next_bookmark:
                if not batch:
                    writer.bookmark(max(source.delivered, server.hub.latest if source.live else 0))
                    await writer.flush()
                next_bookmark = loop.time() + bookmark_every
            if source.closed:
                break
    except (ConnectionError, RuntimeError):
        pass  # the client went away
    except Exception:
        # Headers are sent: no Status can follow. End the stream; the client re-watches.
        log.exception("watch on %s failed", rd.plural)
    finally:
        server.metrics.watchers[rd.plural] -= 1
        await source.close()
    return resp


def _revision(rv: str) -> int:
    try:
        return int(rv)
    except ValueError as exc:
        raise bad_request(f"invalid resource version {rv!r}") from exc


class EventSource:
    """Events for one client watch: from the hub's ring, or the store's log when older.

    A store watch is read through one pending ``__anext__`` task at a time, so waiting with a
    timeout never cancels the store's iterator in the middle of a step.
    """

    def __init__(self, server: ApiServer, prefix: str, after: int) -> None:
        self.server = server
        self.prefix = prefix
        self.after = after
        self.sub: Subscriber | None = None
        self.store_watch: Watch | None = None
        self._next: asyncio.Task[Event] | None = None
        self.delivered = after
        self.overflowed = False
        self.closed = False

    @property
    def live(self) -> bool:
        return self.sub is not None

    async def open(self) -> None:
        """Subscribe; raises :class:`Compacted` at once when ``after`` is too old."""
        self.sub = self.server.hub.subscribe(self.prefix, self.after)
        if self.sub is None:
            self.store_watch = self.server.store.watch(self.prefix, revision=self.after)
            self._next = asyncio.ensure_future(self.store_watch.__anext__())
            # The store reports compaction on the first step without waiting for an event.
            await asyncio.wait({self._next}, timeout=0.05)
            if self._next.done() and self._next.exception() is not None:
                raise self._next.exception()  # type: ignore[misc]

    async def next_batch(self, until: float) -> list[ObjEvent]:
        """Events after the last batch, waiting until loop time ``until`` for the first."""
        if self.sub is not None:
            batch = await self.sub.next_batch(until)
            self.overflowed = self.sub.overflowed
            self.closed = self.sub.closed
        else:
            wait = max(until - asyncio.get_running_loop().time(), 0.0)
            batch = await self._from_store(wait)
        if batch:
            self.delivered = batch[-1].revision
        return batch

    async def _from_store(self, wait_seconds: float) -> list[ObjEvent]:
        assert self.store_watch is not None
        if self._next is None:
            self._next = asyncio.ensure_future(self.store_watch.__anext__())
        # ``stopping`` ends the wait too: the hub cannot wake a watch that reads the store.
        stopping = asyncio.ensure_future(self.server.stopping.wait())
        try:
            await asyncio.wait(
                {self._next, stopping}, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
        if self.server.stopping.is_set():
            self.closed = True
        batch: list[ObjEvent] = []
        while self._next is not None and self._next.done():
            task, self._next = self._next, None
            try:
                event = task.result()
            except StopAsyncIteration:
                self.closed = True
                break
            ev = self.server.hub.decode_event(event)
            if ev is not None:
                batch.append(ev)
            if len(batch) < 500:  # drain what is ready without waiting again
                self._next = asyncio.ensure_future(self.store_watch.__anext__())
                await asyncio.sleep(0)
        return batch

    async def close(self) -> None:
        if self.sub is not None:
            self.server.hub.unsubscribe(self.sub)
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(BaseException):
                await self._next
        if self.store_watch is not None:
            await self.store_watch.aclose()


class WatchWriter:
    """Encodes watch events (plain objects or one-row Tables) and writes them in batches."""

    def __init__(
        self,
        resp: web.StreamResponse,
        *,
        rd: ResourceDef,
        label: LabelSelector,
        field: FieldSelector,
        table_version: str | None,
        include: str,
        metrics: Metrics,
        printer: Printer,
        convert: Callable[[ResourceDef, Obj], Obj] | None = None,
    ) -> None:
        self.resp = resp
        self.convert = convert
        self.printer = printer
        self.rd = rd
        self.label = label
        self.field = field
        self.table_version = table_version
        self.include = include
        self.metrics = metrics
        self.buf: list[bytes] = []
        self.columns_sent = False
        self.filtered = not (label.empty and field.empty)

    def _matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if not self.filtered:
            return True
        labels = get_path(obj, "metadata", "labels") or {}
        return self.label.matches(labels) and self.field.matches(obj)

    def event(self, ev: ObjEvent) -> None:
        if self.convert is not None:
            # The event is shared by every watcher (of any version): convert copies.
            rd = self.rd
            ev = ObjEvent(
                ev.revision,
                ev.key,
                ev.deleted,
                self.convert(rd, ev.obj),
                self.convert(rd, ev.prev) if ev.prev is not None else None,
            )
        if ev.deleted:
            if self._matches(ev.obj):
                self.add("DELETED", ev.obj, ev)
            return
        now_match = self._matches(ev.obj)
        before = self._matches(ev.prev) if ev.prev is not None else False
        if now_match and before:
            self.add("MODIFIED", ev.obj, ev)
        elif now_match:
            self.add("ADDED", ev.obj, ev)
        elif before:
            self.add("DELETED", ev.obj, ev)

    def add(self, etype: str, obj: Obj, ev: ObjEvent | None = None) -> None:
        if self.table_version:
            table = to_table(
                self.printer,
                [obj],
                table_api_version=self.table_version,
                resource_version=str(get_path(obj, "metadata", "resourceVersion") or ""),
                include_object=self.include,
                with_columns=not self.columns_sent,
            )
            self.columns_sent = True
            body = orjson.dumps(table)
        elif ev is not None:
            body = ev._json.get("obj") or b""
            if not body:
                body = ev._json["obj"] = orjson.dumps(obj)
        else:
            body = orjson.dumps(obj)
        self.buf.append(b'{"type":"' + etype.encode() + b'","object":' + body + b"}\n")

    def bookmark(self, revision: int, *, initial_events_end: bool = False) -> None:
        meta: Obj = {"resourceVersion": str(revision)}
        if initial_events_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": self.rd.kind, "apiVersion": self.rd.api_version, "metadata": meta}
        self.buf.append(orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n")

    async def error(self, status: Obj) -> None:
        self.buf.append(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
        await self.flush()

    async def flush(self) -> None:
        if not self.buf:
            return
        data = b"".join(self.buf)
        self.metrics.watch_events += len(self.buf)
        self.buf.clear()
        await self.resp.write(data)
