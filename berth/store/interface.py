"""The storage contract every backend (SQLite, etcd) implements, and its errors.

The model is etcd's: one cluster-wide revision counter that every write increments; each key
remembers the revision that created it and the one that last modified it. Compare-and-swap is on
the key's ``mod_revision``. A watch replays every event after a given revision and then follows
live writes; once a revision has been compacted away, reading or watching from it fails with
:class:`Compacted`, which the API server turns into ``410 Gone``.

A create or update may give the key a time to live (``ttl`` seconds, etcd's leases; the API
server gives Events one, as kube-apiserver's ``--event-ttl``): once it has passed the store
deletes the key itself, as an ordinary delete (the next revision, a DELETE watch event). A
later write without a ``ttl`` makes the key permanent again; one with a ``ttl`` starts the
clock again. The deletion comes at most a few seconds late (stores sweep, etcd rounds leases)
and survives a restart of the store.

Every successful write (create, update, delete) takes exactly the next revision; failed writes
take none. A fresh store is at revision 1, as etcd is, so the first write is revision 2 and a
revision is never 0 (``0`` means "now" in :meth:`Store.list`).

All methods are coroutines so that network-backed stores fit the same seam. Implementations:
``berth.store.memory.MemoryStore`` (tests), ``berth.store.sqlite.SqliteStore`` (embedded
default) and ``berth.store.etcd.EtcdStore`` (HA).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from berth.api.values import value_class


class StoreError(Exception):
    """Base of all storage errors."""


class Unavailable(StoreError):
    """The datastore cannot serve now: no quorum (an etcd member cut off from the others),
    unreachable, or no answer in time. The same request may succeed later or through another
    API server (the API server answers ``503`` with ``Retry-After``).

    ``outcome_unknown`` is True when a write had been sent before the failure showed: it may
    still be applied (by the majority the member lost). Otherwise nothing was done.
    ``summary`` is the reason without addresses or details (for anonymous ``/readyz``)."""

    def __init__(
        self,
        message: str,
        *,
        outcome_unknown: bool = False,
        summary: str = "the datastore is unavailable",
    ) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown
        self.summary = summary


class KeyExists(StoreError):
    """``create`` found the key already present."""


class KeyNotFound(StoreError):
    """The key does not exist (or no longer exists)."""


class Conflict(StoreError):
    """Compare-and-swap failed: the key's ``mod_revision`` is not the expected one."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"conflict on {key}")
        self.key = key
        self.current = current


class FutureRevision(StoreError):
    """A read or compaction asked for a revision newer than the store's current one (the API
    server answers ``504 Too large resource version``)."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is newer than the current revision {current}")
        self.requested = requested
        self.current = current


class WatchOverflow(StoreError):
    """A watcher fell too far behind the writers and was dropped.

    Every store gives each live watcher a bounded buffer so that one slow reader can never hold
    up writes or grow memory without bound. When the buffer is full the watch ends with this
    error *after* delivering the events it had buffered. ``revision`` is the last revision it
    delivered: the caller may resume with ``watch(prefix, revision=exc.revision)`` (history is
    replayed from the log) or, as the API server does towards its own clients, end the stream
    with a ``410 Expired`` so the client relists. (``EtcdStore`` never raises it: etcd
    slows a lagging watcher down instead of dropping it.)
    """

    def __init__(self, prefix: str, revision: int) -> None:
        super().__init__(f"watch on {prefix!r} fell behind after revision {revision}")
        self.prefix = prefix
        self.revision = revision


class Compacted(StoreError):
    """The requested revision is older than the compaction point."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (oldest is {compacted})")
        self.requested = requested
        self.compacted = compacted


@value_class
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@value_class
class Event:
    """One change. For DELETE, ``kv`` holds the last value and ``kv.mod_revision`` is the
    revision of the delete itself; ``prev`` is the value before the change, if any."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the store revision the list was read at
    more: bool  # True when ``limit`` cut the list short


class Watch(Protocol):
    """An open watch: an async iterator of events that must be closed when abandoned.

    ``aclose`` unregisters the watcher (and for network stores ends the stream); calling it
    twice is harmless. Async generators satisfy this protocol.
    """

    def __aiter__(self) -> Watch: ...

    async def __anext__(self) -> Event: ...

    async def aclose(self) -> None: ...


class Store(Protocol):
    async def current_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        """Keys under ``prefix`` in key order, as of ``revision`` (0 = now).

        ``limit`` (0 = no limit) and ``start_after`` (exclusive) paginate; pass the first
        page's ``ListResult.revision`` as ``revision`` for the next pages to get one consistent
        snapshot. Raises :class:`Compacted` when ``revision`` is below the compaction point and
        :class:`FutureRevision` when it is above the current revision."""
        ...

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        """Create ``key`` (deleted by the store ``ttl`` seconds later if ``ttl`` > 0); raises
        :class:`KeyExists`."""
        ...

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int = 0
    ) -> KeyValue:
        """Replace ``key`` if its mod_revision is ``expected_revision`` (``ttl`` as in
        :meth:`create`; 0: the key no longer expires); raises :class:`Conflict` or
        :class:`KeyNotFound`."""
        ...

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Delete ``key`` (CAS when ``expected_revision`` is non-zero); returns the deleted
        value with ``mod_revision`` set to the delete's revision."""
        ...

    def watch(self, prefix: str, *, revision: int) -> Watch:
        """Events under ``prefix`` with revision > ``revision``, then live ones, in order.

        Errors surface from iteration, never from this call. The first ``__anext__`` raises
        :class:`Compacted` at once (without waiting for an event) if ``revision`` is below the
        compaction point; a watcher that falls behind ends with :class:`WatchOverflow`. Any
        other :class:`StoreError` (e.g. etcd unreachable after retries) means: wait a little
        and watch again from the last revision seen. ``revision`` may be in the future: the
        watch then waits for it."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision``: reads and watches at older revisions raise
        :class:`Compacted`. Compacting at or below the current compaction point is a no-op;
        above the current revision raises :class:`FutureRevision`."""
        ...

    async def close(self) -> None: ...
