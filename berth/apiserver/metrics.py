"""Request metrics in the Prometheus text format (``GET /metrics``).

Names follow kube-apiserver's (``apiserver_request_total``,
``apiserver_request_duration_seconds``, ``apiserver_registered_watchers``) so existing
dashboards read them.
"""

from __future__ import annotations

from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self.durations: dict[tuple[str, str], list[int]] = {}
        self.duration_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.duration_count: dict[tuple[str, str], int] = defaultdict(int)
        self.watchers: dict[str, int] = defaultdict(int)
        self.watch_events = 0

    def observe(
        self, *, verb: str, resource: str, code: int, seconds: float, group: str = ""
    ) -> None:
        self.requests[(verb, group, resource, str(code))] += 1
        if verb == "WATCH":
            return
        key = (verb, resource)
        buckets = self.durations.get(key)
        if buckets is None:
            buckets = self.durations[key] = [0] * len(BUCKETS)
        for i, le in enumerate(BUCKETS):
            if seconds <= le:
                buckets[i] += 1
        self.duration_sum[key] += seconds
        self.duration_count[key] += 1

    def render(self) -> str:
        out = [
            "# HELP apiserver_request_total Requests by verb, group, resource and HTTP code.",
            "# TYPE apiserver_request_total counter",
        ]
        for (verb, group, resource, code), n in sorted(self.requests.items()):
            out.append(
                f'apiserver_request_total{{verb="{verb}",group="{group}",'
                f'resource="{resource}",code="{code}"}} {n}'
            )
        out += [
            "# HELP apiserver_request_duration_seconds Response latency by verb and resource.",
            "# TYPE apiserver_request_duration_seconds histogram",
        ]
        for (verb, resource), buckets in sorted(self.durations.items()):
            labels = f'verb="{verb}",resource="{resource}"'
            for le, n in zip(BUCKETS, buckets, strict=True):
                out.append(f'apiserver_request_duration_seconds_bucket{{{labels},le="{le}"}} {n}')
            count = self.duration_count[(verb, resource)]
            out.append(f'apiserver_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
            out.append(
                f"apiserver_request_duration_seconds_sum{{{labels}}}"
                f" {self.duration_sum[(verb, resource)]:.6f}"
            )
            out.append(f"apiserver_request_duration_seconds_count{{{labels}}} {count}")
        out += [
            "# HELP apiserver_registered_watchers Open watches by resource.",
            "# TYPE apiserver_registered_watchers gauge",
        ]
        for resource, n in sorted(self.watchers.items()):
            out.append(f'apiserver_registered_watchers{{resource="{resource}"}} {n}')
        out += [
            "# HELP apiserver_watch_events_total Number of events sent in watch clients.",
            "# TYPE apiserver_watch_events_total counter",
            f"apiserver_watch_events_total {self.watch_events}",
        ]
        return "\n".join(out) + "\n"
