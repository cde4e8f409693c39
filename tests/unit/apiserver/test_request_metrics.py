"""The request metrics' Prometheus text: cumulative histogram buckets, counts by code."""

from __future__ import annotations

from berth.apiserver.metrics import BUCKETS, Metrics


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_buckets_are_cumulative_and_inf_counts_everything() -> None:
    m = Metrics()
    observed = (0.001, 0.005, 0.0051, 0.3, 0.3, 100.0)
    for seconds in observed:
        m.observe(verb="CREATE", resource="pods", code=201, seconds=seconds)
    text = m.render()
    buckets = _lines(text, 'apiserver_request_duration_seconds_bucket{verb="CREATE"')
    counts = [int(line.rsplit(" ", 1)[1]) for line in buckets]
    assert len(buckets) == len(BUCKETS) + 1
    expected = [sum(1 for s in observed if s <= le) for le in BUCKETS]
    assert counts == [*expected, 6]
    assert counts[0] == 2  # 0.005 is in the le="0.005" bucket (a bound is inclusive)
    assert buckets[-1].endswith('le="+Inf"} 6')
    assert 'apiserver_request_duration_seconds_count{verb="CREATE",resource="pods"} 6' in text
    assert 'apiserver_request_duration_seconds_sum{verb="CREATE",resource="pods"} 100.611' in text


def test_request_counts_by_code_and_watches_are_not_timed() -> None:
    m = Metrics()
    m.observe(verb="CREATE", resource="pods", code=201, seconds=0.01)
    m.observe(verb="CREATE", resource="pods", code=201, seconds=0.01)
    m.observe(verb="CREATE", resource="pods", code=403, seconds=0.01)
    m.observe(verb="WATCH", resource="pods", code=200, seconds=30.0)
    text = m.render()
    assert _lines(text, "apiserver_request_total") == [
        'apiserver_request_total{verb="CREATE",group="",resource="pods",code="201"} 2',
        'apiserver_request_total{verb="CREATE",group="",resource="pods",code="403"} 1',
        'apiserver_request_total{verb="WATCH",group="",resource="pods",code="200"} 1',
    ]
    assert 'verb="WATCH",resource' not in text
