"""The storage contract every backend (SQLite, etcd) implements, and its errors.

The model is etcd's: one cluster-wide revision counter that every write increments; each key
remembers the revision that created it and the one that last modified it. Compare-and-swap is on
the key's ``mod_revision``. A watch replays every event after a given revision and then follows
live writes; once a revision has been compacted away, reading or watching from it fails with
:class:`Compacted`, which the API server turns into ``410 Gone``.

All methods are coroutines so that network-backed stores fit the same seam.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class StoreError(Exception):
    """Base of all storage errors."""


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


class Compacted(StoreError):
    """The requested revision is older than the compaction point."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (oldest is {compacted})")
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
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


class Store(Protocol):
    async def current_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        """Keys under ``prefix`` in key order, as of ``revision`` (0 = now)."""
        ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create ``key``; raises :class:`KeyExists`."""
        ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        """Replace ``key`` if its mod_revision is ``expected_revision``; raises
        :class:`Conflict` or :class:`KeyNotFound`."""
        ...

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Delete ``key`` (CAS when ``expected_revision`` is non-zero); returns the deleted
        value with ``mod_revision`` set to the delete's revision."""
        ...

    def watch(self, prefix: str, *, revision: int) -> AsyncIterator[Event]:
        """Events under ``prefix`` with revision > ``revision``, then live ones, in order.
        Raises :class:`Compacted` if ``revision`` is older than the compaction point."""
        ...

    async def compact(self, revision: int) -> None: ...

    async def close(self) -> None: ...
