"""A small Prometheus registry for berth's components (scheduler, controller manager, agent):
counters, histograms and gauges read at render time, in the text exposition format.

Names follow upstream's components so existing alerts and dashboards read them
(``workqueue_depth``, ``scheduler_schedule_attempts_total``,
``kubelet_pod_start_duration_seconds``, ``kubelet_runtime_operations_errors_total``...).
Every operation is O(1) per observation; label sets are small and fixed by the code, never
taken from clients.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
POD_START_BUCKETS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{v}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help_: str) -> None:
        self.name = name
        self.help = help_
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(labels)} {v:g}"


class Histogram:
    def __init__(self, name: str, help_: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help_
        self.buckets = buckets
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)
        self.totals: dict[Labels, int] = defaultdict(int)

    def observe(self, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * len(self.buckets)
        for i, le in enumerate(self.buckets):
            if seconds <= le:
                counts[i] += 1
        self.sums[key] += seconds
        self.totals[key] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            for le, n in zip(self.buckets, counts, strict=True):
                bound = 'le="' + f"{le:g}" + '"'
                yield f"{self.name}_bucket{_labels(labels, bound)} {n}"
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(labels, inf)} {self.totals[labels]}"
            yield f"{self.name}_sum{_labels(labels)} {self.sums[labels]:.6f}"
            yield f"{self.name}_count{_labels(labels)} {self.totals[labels]}"


class Gauge:
    """Read when rendered: ``collect`` returns (labels, value) pairs."""

    def __init__(
        self, name: str, help_: str, collect: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        self.name = name
        self.help = help_
        self.collect = collect

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for labels, v in sorted(self.collect()):
            yield f"{self.name}{_labels(labels)} {v:g}"


Metric = Counter | Histogram | Gauge


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, metric: Metric) -> Metric:
        self.metrics.setdefault(metric.name, metric)
        return self.metrics[metric.name]

    def counter(self, name: str, help_: str) -> Counter:
        m = self.add(Counter(name, help_))
        assert isinstance(m, Counter)
        return m

    def histogram(
        self, name: str, help_: str, buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> Histogram:
        m = self.add(Histogram(name, help_, buckets))
        assert isinstance(m, Histogram)
        return m

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self.metrics):
            lines.extend(self.metrics[name].render())
        return "\n".join(lines) + "\n"


REGISTRY = Registry()
"""The process's registry (one component per process; tests read it directly)."""

# Work queues register themselves; their depth is read when /metrics is rendered.
_QUEUES: weakref.WeakSet[object] = weakref.WeakSet()
QUEUE_ADDS = REGISTRY.counter("workqueue_adds_total", "Total number of adds handled by workqueue")


def track_queue(queue: object) -> None:
    _QUEUES.add(queue)


def _depths() -> list[tuple[Labels, float]]:
    by_name: dict[str, float] = defaultdict(float)
    for q in list(_QUEUES):
        name = str(getattr(q, "name", "") or "unnamed")
        by_name[name] += len(q)  # type: ignore[arg-type]
    return [((("name", n),), v) for n, v in by_name.items()]


REGISTRY.add(Gauge("workqueue_depth", "Current depth of workqueue", _depths))
