"""Recording ``core/v1`` Events so users see what a control loop did (``kubectl describe``).

Concurrency contract: :meth:`EventRecorder.record` never raises and never blocks the caller
for long — a failure to record is logged and dropped. Identical events (same object, type,
reason and message) within ``aggregate_window`` seconds are folded into one Event whose
``count`` is bumped, as kube's recorder does, so a retry loop cannot flood the API.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from berth.api.meta import format_time
from berth.api.resources import EVENTS
from berth.client import errors
from berth.client.interface import ApiClient, Obj
from berth.machinery.clock import Clock
from berth.machinery.objects import meta

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"


class EventRecorder:
    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        *,
        component: str,
        host: str = "",
        aggregate_window: float = 600.0,
    ) -> None:
        self.client = client
        self.clock = clock
        self.component = component
        self.host = host
        self.window = aggregate_window
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int, float]] = {}

    async def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        await self.record(obj, type_=NORMAL, reason=reason, message=message)

    async def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        await self.record(obj, type_=WARNING, reason=reason, message=message)

    async def record(
        self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str
    ) -> None:
        m = meta(obj)
        ns = str(m.get("namespace") or "default")
        ident = (str(m.get("uid", "")), type_, reason, message)
        now = format_time(self.clock.now())
        prior = self._seen.get(ident)
        try:
            if prior is not None and self.clock.monotonic() - prior[3] < self.window:
                ev_ns, ev_name, count, _ = prior
                await self.client.patch(
                    EVENTS,
                    ev_name,
                    {"count": count + 1, "lastTimestamp": now},
                    namespace=ev_ns,
                )
                self._seen[ident] = (ev_ns, ev_name, count + 1, self.clock.monotonic())
                return
            body: Obj = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{m.get('name')}.{uuid.uuid4().hex[:16]}",
                    "namespace": ns,
                },
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": m.get("name"),
                    "namespace": m.get("namespace"),
                    "uid": m.get("uid"),
                    "resourceVersion": m.get("resourceVersion"),
                },
                "type": type_,
                "reason": reason,
                "message": message,
                "source": {"component": self.component, "host": self.host}
                if self.host
                else {"component": self.component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "reportingComponent": self.component,
            }
            created = await self.client.create(EVENTS, body, namespace=ns)
            self._seen[ident] = (ns, created["metadata"]["name"], 1, self.clock.monotonic())
        except errors.ApiError as exc:
            self._seen.pop(ident, None)
            log.debug("could not record event %s on %s: %s", reason, m.get("name"), exc)
        except OSError as exc:
            log.debug("could not record event %s: %s", reason, exc)
