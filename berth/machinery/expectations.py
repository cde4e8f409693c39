"""Expectations: remembering writes a controller made that its cache has not shown yet.

A reconcile reads the informer cache, which lags the API by a watch event. Right after a
ReplicaSet reconcile creates three pods, a second reconcile (triggered by any event) would not
see them and create three more. Kubernetes' answer — adopted here — is to remember what was
asked for: names created but not yet observed count as existing; names deleted but still in
the cache count as gone. An expectation expires after ``ttl`` seconds (a lost watch event must
not wedge a controller forever).

Concurrency contract: used by one controller on one loop; reconciles of the same key never
overlap (the work queue guarantees it), and entries are per key.
"""

from __future__ import annotations

from collections.abc import Iterable

from berth.client.keys import ObjectKey
from berth.machinery.clock import Clock


class Expectations:
    def __init__(self, clock: Clock, *, ttl: float = 300.0) -> None:
        self._clock = clock
        self._ttl = ttl
        self._creates: dict[ObjectKey, dict[str, float]] = {}
        self._deletes: dict[ObjectKey, dict[str, float]] = {}

    def created(self, key: ObjectKey, name: str) -> None:
        self._creates.setdefault(key, {})[name] = self._clock.monotonic()

    def create_failed(self, key: ObjectKey, name: str) -> None:
        """The create of ``name`` failed: it will never appear, stop expecting it."""
        self._creates.get(key, {}).pop(name, None)

    def deleted(self, key: ObjectKey, name: str) -> None:
        self._deletes.setdefault(key, {})[name] = self._clock.monotonic()

    def pending_creates(self, key: ObjectKey, cached: Iterable[str]) -> set[str]:
        """Names created for ``key`` that the cache does not show yet (and forget the rest)."""
        return self._pending(self._creates, key, set(cached), want_present=False)

    def pending_deletes(self, key: ObjectKey, cached: Iterable[str]) -> set[str]:
        """Names deleted for ``key`` that the cache still shows (and forget the rest)."""
        return self._pending(self._deletes, key, set(cached), want_present=True)

    def _pending(
        self,
        table: dict[ObjectKey, dict[str, float]],
        key: ObjectKey,
        cached: set[str],
        *,
        want_present: bool,
    ) -> set[str]:
        entries = table.get(key)
        if not entries:
            return set()
        now = self._clock.monotonic()
        for n, at in list(entries.items()):
            if (n in cached) != want_present or now - at > self._ttl:
                del entries[n]
        if not entries:
            del table[key]
            return set()
        return set(entries)

    def forget(self, key: ObjectKey) -> None:
        self._creates.pop(key, None)
        self._deletes.pop(key, None)
