"""Request metrics in the Prometheus text format (``GET /metrics``).

Names follow kube-apiserver's (``apiserver_request_total``,
``apiserver_request_duration_seconds``, ``apiserver_registered_watchers``) so existing
dashboards read them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        # (verb, group, resource, code) -> count, code kept as the int it comes as: the
        # text is made when rendering, not on every request
        self.requests: dict[tuple[str, str, str, int], int] = defaultdict(int)
        # (verb, resource) -> [requests per bucket, its own bucket only (the first bucket
        # it fits), then one for those above the last] + [count]: the cumulative counts of
        # the format are summed when rendering, so a request increments two numbers, not
        # every bucket it fits
        self.durations: dict[tuple[str, str], list[int]] = {}
        self.duration_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.watchers: dict[str, int] = defaultdict(int)
        self.watch_events = 0

    def observe(
        self, *, verb: str, resource: str, code: int, seconds: float, group: str = ""
    ) -> None:
        self.requests[(verb, group, resource, code)] += 1
        if verb == "WATCH":
            return
        key = (verb, resource)
        buckets = self.durations.get(key)
        if buckets is None:
            buckets = self.durations[key] = [0] * (len(BUCKETS) + 1)
        buckets[bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum[key] += seconds

    def render(self) -> str:
        out = [
            "# HELP apiserver_request_total Requests by verb, group, resource and HTTP code.",
            "# TYPE apiserver_request_total counter",
        ]
        counts: dict[tuple[str, str, str, str], int] = defaultdict(int)
        for (verb, group, resource, status), n in self.requests.items():
            counts[(verb, group, resource, str(status))] += n
        for (verb, group, resource, code), n in sorted(counts.items()):
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
            below = 0
            for le, n in zip(BUCKETS, buckets, strict=False):
                below += n
                out.append(
                    f'apiserver_request_duration_seconds_bucket{{{labels},le="{le}"}} {below}'
                )
            count = sum(buckets)
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
