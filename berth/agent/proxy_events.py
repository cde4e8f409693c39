"""Events for the Services the node's proxy leaves out of its rules (rate-limited).

The proxy re-renders on every change and resync, so the same rejection comes back every few
seconds: each (Service, reason) is reported at most once per :data:`REPORT_INTERVAL` seconds
(and the recorder folds repeats into one Event's count).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from berth.machinery.clock import Clock
from berth.machinery.events import EventRecorder
from berth.proxy.checks import Rejected

REPORT_INTERVAL = 600.0
REASON = "FailedToProgramService"


class RejectionReporter:
    """Reports :class:`Rejected` Services as Warning Events on the Service."""

    def __init__(self, recorder: EventRecorder, clock: Clock) -> None:
        self.recorder = recorder
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}

    async def report(
        self, rejected: Iterable[Rejected], services: Iterable[Mapping[str, Any]]
    ) -> int:
        """Record an Event for each rejection not reported lately; returns how many."""
        by_key: dict[str, Mapping[str, Any]] = {}
        for svc in services:
            m = svc.get("metadata") or {}
            by_key[f"{m.get('namespace') or 'default'}/{m.get('name')}"] = svc
        now = self.clock.monotonic()
        sent = 0
        current = {(r.key, r.reason) for r in rejected}
        for ident in list(self._last):
            if ident not in current:
                del self._last[ident]  # fixed (or gone): report again if it comes back
        for key, reason in sorted(current):
            last = self._last.get((key, reason))
            if last is not None and now - last < REPORT_INTERVAL:
                continue
            self._last[(key, reason)] = now
            found = by_key.get(key)
            m = (found.get("metadata") or {}) if found is not None else {}
            namespace, _, name = key.partition("/")
            involved = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": m.get("uid"),
                    "resourceVersion": m.get("resourceVersion"),
                },
            }
            message = f"service rules not programmed on this node: {reason}"
            await self.recorder.warning(involved, REASON, message)
            sent += 1
        return sent
