"""Where the HPA controller reads pods' usage: the ``metrics.k8s.io`` API (as upstream's
REST metrics client), or anything else with the same shape (tests give a fake)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Protocol

from berth.api.meta import parse_time
from berth.api.resources import POD_METRICS
from berth.client.interface import ApiClient

from .replicas import MetricsError, PodSample, quantity_value

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: object) -> timedelta:
    """A Go duration string (``30s``, ``1m0.5s``); zero when unreadable."""
    if not isinstance(text, str) or len(text) > 64:
        return timedelta(0)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return timedelta(0)
    return timedelta(seconds=sum(float(n) * _UNIT[u] for n, u in parts))


class MetricsSource(Protocol):
    async def pod_usage(
        self, namespace: str, selector: str, resource: str, container: str | None = None
    ) -> dict[str, PodSample]:
        """Usage of ``resource`` by each pod (by name) matching ``selector``; only
        ``container``'s when given (ContainerResource metrics)."""
        ...


class ResourceMetricsClient:
    """Reads ``PodMetrics`` through the API server."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def pod_usage(
        self, namespace: str, selector: str, resource: str, container: str | None = None
    ) -> dict[str, PodSample]:
        try:
            found = await self.client.list(
                POD_METRICS, namespace=namespace, label_selector=selector or None
            )
        except Exception as exc:
            raise MetricsError(f"unable to fetch metrics from resource metrics API: {exc}") from exc
        out: dict[str, PodSample] = {}
        for item in found.items:
            name = str((item.get("metadata") or {}).get("name"))
            stamp = parse_time(item.get("timestamp"))
            if stamp is None:
                continue
            total = 0.0
            seen = False
            for c in item.get("containers") or ():
                if container is not None and c.get("name") != container:
                    continue
                value = (c.get("usage") or {}).get(resource)
                if value is None:
                    continue
                try:
                    total += quantity_value(value)
                except ValueError:
                    continue
                seen = True
            if seen:
                out[name] = PodSample(total, stamp, parse_duration(item.get("window")))
        if not out:
            raise MetricsError("no metrics returned from resource metrics API")
        return out
