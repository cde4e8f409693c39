"""ClusterIP and NodePort allocation shared by every API server on one datastore.

Each allocated address or port is one key in the datastore, taken with the store's atomic
``create``::

    /berth/allocations/serviceips/10.96.0.17   {"service": "default/web", "uid": "..."}
    /berth/allocations/nodeports/30412         {"service": "default/web", "uid": "..."}

When two API servers race for the same item exactly one create succeeds and the other moves on
to another, so no two Services ever get the same ClusterIP or NodePort however many servers
share the datastore. One key per item (the model of Kubernetes' newer IPAddress objects) rather
than one bitmap under a single key (the older RangeAllocation): concurrent allocations of
different items never conflict, and a write is a few bytes instead of the whole range.

Each server keeps a *hint* of the offsets it believes taken, so that it rarely tries a taken
item; the datastore alone decides. The keys live outside ``/registry/`` so the watch hub never
sees them. Keys that no Service holds any more (a server died between reserving and storing the
Service, or between deleting it and releasing) are found by :meth:`ServiceAddresses.repair
<berth.apiserver.services.ServiceAddresses.repair>`.
"""

from __future__ import annotations

import ipaddress
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from berth.store.interface import Conflict, KeyExists, KeyNotFound, KeyValue, Store

from .errors import ApiError

ALLOCATIONS_PREFIX = "/berth/allocations/"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Owner:
    """The Service an item is allocated to: ``namespace/name`` and its uid."""

    service: str
    uid: str

    def encode(self) -> bytes:
        return orjson.dumps({"service": self.service, "uid": self.uid})

    @classmethod
    def decode(cls, value: bytes) -> Owner:
        try:
            data = orjson.loads(value)
            return cls(str(data["service"]), str(data["uid"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return cls("", "")  # unreadable: owned by nobody we know, repair may reclaim it


class ItemRange(ABC, Generic[T]):
    """A range of allocatable items numbered by offset; ``used`` is this server's hint."""

    name: str  # the key segment: serviceips | nodeports
    field: str  # what error messages name

    def __init__(self) -> None:
        self.used: set[int] = set()

    @abstractmethod
    def offset(self, item: Any) -> int | None:
        """The offset of ``item``, or ``None`` if it is not an item of this range."""

    @abstractmethod
    def item(self, offset: int) -> T: ...

    @abstractmethod
    def automatic(self) -> range:
        """The offsets handed out when no item is asked for."""

    @abstractmethod
    def describe(self) -> str: ...

    def key(self, item: T) -> str:
        return f"{ALLOCATIONS_PREFIX}{self.name}/{item}"

    def key_at(self, offset: int) -> str:
        return self.key(self.item(offset))

    def offset_of_key(self, key: str) -> int | None:
        """The offset a key of this range names, or ``None`` (outside the range now)."""
        raw = key.removeprefix(self.prefix())
        return self.offset(int(raw) if raw.isdigit() else raw)

    def prefix(self) -> str:
        return f"{ALLOCATIONS_PREFIX}{self.name}/"

    def contains(self, item: Any) -> bool:
        return self.offset(item) is not None


class IPAllocator(ItemRange[str]):
    """Addresses of ``cidr`` without the network and broadcast addresses; the first host
    address belongs to the ``kubernetes`` Service and is never handed out automatically."""

    name = "serviceips"
    field = "spec.clusterIP"

    def __init__(self, cidr: str) -> None:
        super().__init__()
        self.network = ipaddress.ip_network(cidr, strict=False)
        self._base = int(self.network.network_address)
        self._size = self.network.num_addresses

    @property
    def first(self) -> str:
        return self.item(1)

    def offset(self, item: Any) -> int | None:
        if not isinstance(item, str):
            return None
        try:
            address = ipaddress.ip_address(item)
        except ValueError:
            return None
        if address not in self.network:
            return None
        off = int(address) - self._base
        return off if 0 < off < self._size - 1 else None

    def item(self, offset: int) -> str:
        return str(ipaddress.ip_address(self._base + offset))

    def automatic(self) -> range:
        return range(2, self._size - 1)

    def describe(self) -> str:
        return f"The range of valid IPs is {self.network}"


class PortAllocator(ItemRange[int]):
    """NodePorts from an inclusive range (default 30000-32767)."""

    name = "nodeports"
    field = "spec.ports.nodePort"

    def __init__(self, low: int = 30000, high: int = 32767) -> None:
        super().__init__()
        self.low = low
        self.high = high

    def offset(self, item: Any) -> int | None:
        if not isinstance(item, int) or isinstance(item, bool):
            return None
        return item - self.low if self.low <= item <= self.high else None

    def item(self, offset: int) -> int:
        return self.low + offset

    def automatic(self) -> range:
        return range(0, self.high - self.low + 1)

    def describe(self) -> str:
        return f"The range of valid ports is {self.low}-{self.high}"


def _scan(offsets: range) -> Iterator[int]:
    """Every offset once, from a random start: servers allocating at the same moment rarely
    try the same item (a fixed start would make them collide on every allocation)."""
    if not offsets:
        return
    start = random.randrange(len(offsets))  # noqa: S311 (spreading load, not a secret)
    for i in range(len(offsets)):
        yield offsets[(start + i) % len(offsets)]


class StoreAllocator(Generic[T]):
    """Takes and gives back items of ``items`` as keys in ``store``."""

    def __init__(self, store: Store, items: ItemRange[T]) -> None:
        self.store = store
        self.items = items

    def _invalid(self, item: Any, why: str) -> ApiError:
        return ApiError(422, "Invalid", f"{self.items.field}: Invalid value: {item!r}: {why}")

    async def reserve(self, item: T, owner: Owner, *, dry_run: bool = False) -> bool:
        """Take ``item`` for ``owner``. True when newly taken (the caller releases it if the
        Service is not stored); False when a Service of the same name already holds it (two
        servers creating the same Service: only one create of the Service itself wins).
        Raises 422 when ``item`` is outside the range or held by another Service."""
        off = self.items.offset(item)
        if off is None:
            raise self._invalid(item, f"provided {self._noun()} is not in the valid range. "
                                f"{self.items.describe()}")  # fmt: skip
        key = self.items.key(item)
        for _ in range(3):
            if dry_run:
                current = await self.store.get(key)
                if current is None:
                    return True
            else:
                try:
                    await self.store.create(key, owner.encode())
                except KeyExists:
                    current = await self.store.get(key)
                    if current is None:
                        continue  # released in between: try again
                else:
                    self.items.used.add(off)
                    return True
            self.items.used.add(off)
            if Owner.decode(current.value).service == owner.service:
                return False
            raise self._invalid(item, f"provided {self._noun()} is already allocated")
        raise ApiError(409, "Conflict", f"{self.items.field}: {item!r} is changing; try again")

    async def allocate(self, owner: Owner, *, dry_run: bool = False) -> T:
        """Take any free item for ``owner`` (with ``dry_run``: name one, take nothing)."""
        for attempt in range(2):
            for off in _scan(self.items.automatic()):
                if off in self.items.used:
                    continue
                item = self.items.item(off)
                if dry_run:
                    return item
                try:
                    await self.store.create(self.items.key(item), owner.encode())
                except KeyExists:
                    self.items.used.add(off)  # another server took it since our last look
                    continue
                self.items.used.add(off)
                return item
            if attempt == 0:
                await self.held()  # the hint may hold items other servers released
        raise ApiError(500, "InternalError", f"failed to allocate a {self._noun()}: range is full")

    async def release(self, item: Any, owner: Owner) -> None:
        """Give ``item`` back if ``owner`` holds it (a same-named Service that lost a create
        race must not free the winner's item)."""
        off = self.items.offset(item)
        if off is None:
            return
        key = self.items.key(item)
        current = await self.store.get(key)
        if current is None or Owner.decode(current.value).uid != owner.uid:
            return
        try:
            await self.store.delete(key, expected_revision=current.mod_revision)
        except (Conflict, KeyNotFound):
            return
        self.items.used.discard(off)

    async def held(self) -> dict[int, KeyValue]:
        """Every allocated item's key by offset, read from the store; refreshes the hint."""
        result = await self.store.list(self.items.prefix())
        found: dict[int, KeyValue] = {}
        for kv in result.items:
            off = self.items.offset_of_key(kv.key)
            if off is not None:
                found[off] = kv
        self.items.used = set(found)
        return found

    def _noun(self) -> str:
        return "IP" if self.items.name == "serviceips" else "port"
